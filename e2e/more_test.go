package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// vmPID is the PID 1 of a local-cloud VM (from the local cloud's record).
func vmPID(t testing.TB, e *env, vm string) int {
	b, err := os.ReadFile(filepath.Join(e.state, "local", "vms", vm, "vm.json"))
	require.NoError(t, err)
	var v struct{ PID int }
	require.NoError(t, json.Unmarshal(b, &v))
	return v.PID
}

func inVM(t testing.TB, e *env, vm string, args ...string) string {
	out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(vmPID(t, e, vm)), "-m", "--"}, args...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(string(out))
}

const dbManifest = `name: hello
releases: [{name: kpaas-hello, version: latest}]
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000-30000, update_watch_time: 1000-30000}
instance_groups:
- name: db
  azs: [z1]
  instances: 1
  vm_type: small
  stemcell: default
  persistent_disk_type: d1
  networks: [{name: net}]
  jobs:
  - name: store-writer
    release: kpaas-hello
    properties: {store_writer: {interval: 1}}
`

func TestPersistentDiskSurvivesRecreate(t *testing.T) {
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter (util-linux) is needed to look inside a VM")
	}
	e := newEnv(t)
	e.setup()
	m := e.write("db.yml", dbManifest)
	e.must("deploy", m, "-n")
	vms := vmDirs(t, e)
	require.Len(t, vms, 1)
	created := inVM(t, e, vms[0], "cat", "/var/vcap/store/store-writer/created")
	require.NotEmpty(t, created)

	e.must("recreate", "-d", "hello", "db/0", "-n")
	after := vmDirs(t, e)
	require.Len(t, after, 1)
	assert.NotEqual(t, vms, after, "a new VM")
	assert.Equal(t, created, inVM(t, e, after[0], "cat", "/var/vcap/store/store-writer/created"), "the disk's data survived")
	assert.Equal(t, "2", inVM(t, e, after[0], "cat", "/var/vcap/store/store-writer/starts"), "pre-start ran again on the same data")
}

func TestFailingCanaryStopsTheDeploy(t *testing.T) {
	e := newEnv(t)
	e.setup()
	bad := strings.Replace(helloManifest, "greeting: ((greeting))", "greeting: ((greeting))\n        port: 99999\n        post_start_timeout: 2", 1)
	bad = strings.Replace(bad, "canary_watch_time: 1000-30000", "canary_watch_time: 1000-3000", 1)
	m := e.write("bad.yml", bad)
	r := e.kpaas("deploy", m, "-v", "instances=3", "-v", "greeting=hi", "-n")
	require.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "web/0 (canary)")
	assert.Contains(t, r.stderr, "untouched create   web/1")
	assert.Contains(t, r.stderr, "kpaas logs -d hello web/0")
	assert.Len(t, vmDirs(t, e), 1, "only the canary got a VM")

	// Fixed, the next deploy carries on from there.
	good := e.write("good.yml", helloManifest)
	e.must("deploy", good, "-v", "instances=3", "-v", "greeting=hi", "-n")
	assert.Len(t, vmDirs(t, e), 3)
	assert.Contains(t, get(t, "http://"+e.subnet+".20:8080/"), "<h1>hi</h1>")
}

func TestCtrlCFinishesInFlightThenRedeployCompletes(t *testing.T) {
	e := newEnv(t)
	e.setup()
	m := e.write("hello.yml", strings.Replace(helloManifest, "max_in_flight: 2", "max_in_flight: 1", 1))
	cmd := exec.Command(filepath.Join(binDir, "kpaas"), "deploy", m, "-v", "instances=4", "-v", "greeting=hi", "-n", "--json")
	cmd.Env = append(os.Environ(), "KPAAS_STATE="+e.state)
	cmd.Dir = e.work
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stderr)
	sent := false
	var done []string
	for sc.Scan() {
		var p progress
		if json.Unmarshal(sc.Bytes(), &p) != nil {
			continue
		}
		if p.Step == "" && p.Status == "done" && p.Stage == "creating" {
			done = append(done, p.Object)
		}
		if !sent && p.Step == "create_vm" && p.Status == "started" && strings.HasPrefix(p.Object, "web/2") {
			require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
			sent = true
		}
	}
	err = cmd.Wait()
	require.True(t, sent, "the deploy reached web/2")
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.ExitCode(), "Ctrl-C exits 2")
	assert.Contains(t, done, "web/2", "the instance in flight was finished")
	assert.NotContains(t, done, "web/1", "nothing new started after Ctrl-C")
	assert.Len(t, vmDirs(t, e), len(done))

	r := e.must("plan", m, "-v", "instances=4", "-v", "greeting=hi", "--json")
	var pl planJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &pl))
	assert.Equal(t, 4-len(done), pl.Changes, "the next plan picks up from what was left")
	e.must("deploy", m, "-v", "instances=4", "-v", "greeting=hi", "-n")
	assert.Len(t, vmDirs(t, e), 4)
}
