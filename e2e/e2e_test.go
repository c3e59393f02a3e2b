// Package e2e builds the real kpaas and kpaas-agent and deploys
// releases/kpaas-hello onto the local cloud (Linux namespaces on this host).
// It needs root and busybox-static; without them every test skips.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi/local"
)

var (
	binDir    string
	buildErr  error
	skipWhy   string
	moduleDir string
)

func TestMain(m *testing.M) {
	switch {
	case os.Geteuid() != 0:
		skipWhy = "e2e tests need root (namespaces, bridges, loop devices)"
	case !exists("/bin/busybox"):
		skipWhy = "e2e tests need busybox-static for the tiny stemcell (apt-get install busybox-static)"
	}
	if skipWhy == "" {
		binDir, buildErr = build()
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func build() (string, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	moduleDir = filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "kpaas-e2e-bin-")
	if err != nil {
		return "", err
	}
	for _, b := range []struct{ out, pkg string }{{"kpaas", "./cmd/kpaas"}, {"kpaas-agent", "./cmd/kpaas-agent"}} {
		cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = moduleDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building %s: %v: %s", b.pkg, err, out)
		}
	}
	return dir, nil
}

// env is one kpaas environment: a state directory and a private network.
type env struct {
	t      testing.TB
	state  string
	work   string
	subnet string // e.g. 10.231.7
}

// newEnv makes an environment on a /24 of 10.231.0.0/16 that no other test,
// in this process or another (several checkouts may run these tests at
// once), is using: each subnet is held with an flock until the test ends.
func newEnv(t testing.TB) *env {
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	require.NoError(t, buildErr)
	subnet := ""
	for n := 20; n < 250 && subnet == ""; n++ {
		f, err := os.OpenFile(fmt.Sprintf("/tmp/kpaas-e2e-10.231.%d.lock", n), os.O_CREATE|os.O_RDWR, 0o600)
		require.NoError(t, err)
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		subnet = fmt.Sprintf("10.231.%d", n)
		t.Cleanup(func() { f.Close() }) // registered first: released last
	}
	require.NotEmpty(t, subnet, "every e2e subnet is in use")
	e := &env{t: t, state: t.TempDir(), work: t.TempDir(), subnet: subnet}
	t.Cleanup(func() {
		// Whatever a failed test left: delete the deployment, then the stemcells.
		e.kpaas("delete-deployment", "-d", "hello", "--force", "-n")
		l, err := local.New(local.Config{Dir: filepath.Join(e.state, "local")}, nil)
		if err == nil {
			if inv, _ := l.Inventory(); len(inv) > 0 {
				for _, sc := range listStemcells(e) {
					e.kpaas("delete-stemcell", sc, "--force")
				}
			}
		}
	})
	return e
}

func listStemcells(e *env) []string {
	var out []string
	dir := filepath.Join(e.state, "local", "stemcells")
	ents, _ := os.ReadDir(dir)
	if len(ents) == 0 {
		return nil
	}
	res := e.kpaas("upload-stemcell", filepath.Join(e.work, "stemcell.tgz"), "--json")
	var v struct{ Name, Version string }
	_ = json.Unmarshal([]byte(res.stdout), &v)
	if v.Name != "" {
		out = append(out, v.Name+"/"+v.Version)
	}
	return out
}

type result struct {
	stdout, stderr string
	code           int
}

func (e *env) kpaas(args ...string) result {
	cmd := exec.Command(filepath.Join(binDir, "kpaas"), args...)
	cmd.Env = append(os.Environ(), "KPAAS_STATE="+e.state)
	cmd.Dir = e.work
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return result{out.String(), errb.String(), code}
}

func (e *env) must(args ...string) result {
	e.t.Helper()
	r := e.kpaas(args...)
	require.Equal(e.t, 0, r.code, "kpaas %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

func (e *env) write(name, content string) string {
	p := filepath.Join(e.work, name)
	require.NoError(e.t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// setup builds and uploads the stemcell and the hello release and saves a
// cloud-config for the local cloud on e.subnet.0/24.
func (e *env) setup() {
	e.t.Helper()
	e.must("create-stemcell", "--os", "busybox", "--agent", filepath.Join(binDir, "kpaas-agent"), "-o", filepath.Join(e.work, "stemcell.tgz"))
	e.must("upload-stemcell", filepath.Join(e.work, "stemcell.tgz"))
	e.must("upload-release", filepath.Join(moduleDir, "releases", "kpaas-hello"))
	e.write("cloud.yml", fmt.Sprintf(`
azs: [{name: z1}, {name: z2}]
vm_types: [{name: small}]
disk_types: [{name: d1, disk_size: 32}]
networks:
- name: net
  subnets:
  - range: %[1]s.0/24
    gateway: %[1]s.1
    reserved: [%[1]s.2-%[1]s.9]
    static: [%[1]s.10-%[1]s.19]
    azs: [z1, z2]
compilation: {workers: 2, az: z1, network: net, vm_type: small, reuse_compilation_vms: true}
`, e.subnet))
	e.must("update-cloud-config", "cloud.yml", "-n")
}

const helloManifest = `name: hello
releases: [{name: kpaas-hello, version: latest}]
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000-30000, update_watch_time: 1000-30000}
instance_groups:
- name: web
  azs: [z1, z2]
  instances: ((instances))
  vm_type: small
  stemcell: default
  networks: [{name: net}]
  jobs:
  - name: hello
    release: kpaas-hello
    properties:
      hello:
        greeting: ((greeting))
        message: ((secret))
variables:
- name: secret
  type: password
`

func get(t testing.TB, url string) string {
	t.Helper()
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	require.NoError(t, err, url)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type progress struct {
	Stage, Object, Step, Status, Error string
}

func events(stderr string) []progress {
	var out []progress
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		var p progress
		if json.Unmarshal(sc.Bytes(), &p) == nil && p.Status != "" {
			out = append(out, p)
		}
	}
	return out
}

type planJSON struct {
	Changes   int `json:"changes"`
	Instances []struct {
		Instance, Action string
		Reasons          []string
		IPs              []string
	} `json:"instances"`
	ManifestDiff []string `json:"manifest_diff"`
}

func TestDeployHelloOnTheLocalCloud(t *testing.T) {
	e := newEnv(t)
	e.setup()
	m := e.write("hello.yml", helloManifest)
	l, err := local.New(local.Config{Dir: filepath.Join(e.state, "local")}, nil)
	require.NoError(t, err)
	before, err := l.Inventory()
	require.NoError(t, err)

	// The plan writes nothing.
	r := e.kpaas("plan", m, "-v", "instances=2", "-v", "greeting=hi", "--json", "--detailed-exitcode")
	require.Equal(t, 4, r.code, r.stderr)
	var pl planJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &pl))
	assert.Equal(t, 2, pl.Changes)
	assert.NotContains(t, e.must("events", "--json").stdout, `"deploy"`)

	// First deploy.
	e.must("deploy", m, "-v", "instances=2", "-v", "greeting=hi", "-n")
	ips := []string{e.subnet + ".20", e.subnet + ".21"}
	for _, ip := range ips {
		assert.Contains(t, get(t, "http://"+ip+":8080/"), "<h1>hi</h1>", ip)
	}
	// The generated password is redacted in plans.
	r = e.kpaas("plan", m, "-v", "instances=2", "-v", "greeting=hi", "--json")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &pl))
	assert.Equal(t, 0, pl.Changes)

	// No change: no VM touched.
	vmsBefore := vmDirs(t, e)
	r = e.must("deploy", m, "-v", "instances=2", "-v", "greeting=hi", "-n", "--json")
	for _, ev := range events(r.stderr) {
		assert.NotEqual(t, "create_vm", ev.Step)
		assert.NotEqual(t, "stop", ev.Step)
	}
	assert.Equal(t, vmsBefore, vmDirs(t, e))

	// A property change: a rolling update, canary first, same VMs.
	r = e.kpaas("plan", m, "-v", "instances=2", "-v", "greeting=bonjour", "--json")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &pl))
	require.Equal(t, 2, pl.Changes)
	assert.Equal(t, "update", pl.Instances[0].Action)
	assert.Contains(t, pl.Instances[0].Reasons, "job hello changed (properties, links or templates)")
	assert.Contains(t, strings.Join(pl.ManifestDiff, "\n"), "-         greeting: hi\n+         greeting: bonjour")
	secret := secretOf(t, ips[0])
	assert.Equal(t, secret, secretOf(t, ips[1]))
	assert.NotContains(t, r.stdout, secret, "variable values never appear in a plan")
	r = e.must("deploy", m, "-v", "instances=2", "-v", "greeting=bonjour", "-n", "--json")
	var order []string
	for _, ev := range events(r.stderr) {
		if ev.Step == "" && (ev.Status == "started" || ev.Status == "done") {
			order = append(order, ev.Object+" "+ev.Status)
		}
	}
	assert.Equal(t, []string{"web/0 (canary) started", "web/0 (canary) done", "web/1 started", "web/1 done"}, order)
	assert.Equal(t, vmsBefore, vmDirs(t, e), "an update keeps the VMs")
	for _, ip := range ips {
		assert.Contains(t, get(t, "http://"+ip+":8080/"), "<h1>bonjour</h1>", ip)
	}
	assert.Equal(t, secret, secretOf(t, ips[0]), "the generated variable is kept in the state, not generated again")

	// Scale down: web/1 goes, its IP is released.
	e.must("deploy", m, "-v", "instances=1", "-v", "greeting=bonjour", "-n")
	assert.Len(t, vmDirs(t, e), 1)

	// Delete: nothing left in the cloud, on the host or in the state.
	e.must("delete-deployment", "-d", "hello", "-n")
	after, err := l.Inventory()
	require.NoError(t, err)
	assert.Equal(t, before, after)
	r = e.kpaas("plan", m, "-v", "instances=1", "-v", "greeting=bonjour", "--json")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &pl))
	assert.Equal(t, 1, pl.Changes, "the deployment is gone: everything would be created")
	assert.Equal(t, []string{e.subnet + ".20"}, pl.Instances[0].IPs, "its IPs were released")
}

// secretOf reads the generated password back from the page that shows it.
func secretOf(t testing.TB, ip string) string {
	page := get(t, "http://"+ip+":8080/")
	_, rest, ok := strings.Cut(page, `<p class="message">`)
	require.True(t, ok, page)
	secret, _, _ := strings.Cut(rest, "</p>")
	require.Len(t, secret, 20, "a generated password")
	return secret
}

func vmDirs(t testing.TB, e *env) []string {
	ents, err := os.ReadDir(filepath.Join(e.state, "local", "vms"))
	require.NoError(t, err)
	var out []string
	for _, x := range ents {
		out = append(out, x.Name())
	}
	return out
}

func TestBadInputIsRefusedBeforeAnyChange(t *testing.T) {
	e := newEnv(t)
	e.setup()
	base := strings.Replace(helloManifest, "((instances))", "1", 1)
	tests := []struct {
		name, from, to, want string
	}{
		{"unknown vm_type", "vm_type: small", "vm_type: huge", "huge"},
		{"unknown network", "networks: [{name: net}]", "networks: [{name: nowhere}]", "nowhere"},
		{"unknown az", "azs: [z1, z2]", "azs: [z9]", "z9"},
		{"unknown release", "release: kpaas-hello\n", "release: nope\n", "nope"},
		{"unknown stemcell", "os: busybox", "os: windows", "not uploaded"},
		{"unprovided link", "  - name: hello\n    release: kpaas-hello\n", "  - name: greeter\n    release: kpaas-hello\n  - name: hello\n    release: kpaas-hello\n    provides: {hello: nil}\n", "backend"},
		{"duplicate static IP", "networks: [{name: net}]", "networks: [{name: net, static_ips: [" + e.subnet + ".10]}]\n- name: web2\n  azs: [z1]\n  instances: 1\n  vm_type: small\n  stemcell: default\n  networks: [{name: net, static_ips: [" + e.subnet + ".10]}]\n  jobs: [{name: hello, release: kpaas-hello}]", e.subnet + ".10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := strings.Replace(base, tt.from, tt.to, 1)
			require.NotEqual(t, base, bad)
			m := e.write("bad.yml", bad)
			r := e.kpaas("deploy", m, "-v", "greeting=x", "-n")
			assert.Equal(t, 1, r.code, r.stderr)
			assert.Contains(t, r.stderr, tt.want)
			assert.Empty(t, vmDirs(t, e), "no VM was created")
			assert.NotContains(t, e.must("events", "--json").stdout, `"object_type": "instance"`)
		})
	}
}
