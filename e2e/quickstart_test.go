package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
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
)

// quickstartIP is the HAProxy static IP of manifests/quickstart/vars.yml.
const quickstartIP = "10.244.0.10"

// quickstartRegistryIP is the registry's static IP there.
const quickstartRegistryIP = "10.244.0.12"

// TestQuickstart runs scripts/quickstart.sh (what `make quickstart` runs) into
// a fresh state, then checks the app answers through HAProxy from both app
// instances, the registry takes an upload with the generated password, a
// note written survives `kpaas recreate` of postgres, a second
// run changes nothing, and delete-deployment leaves no bridge behind.
func TestQuickstart(t *testing.T) {
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	if testing.Short() {
		t.Skip("the quickstart builds a Debian stemcell and deploys four VMs (not in -short)")
	}
	require.NoError(t, buildErr)
	lock, err := os.OpenFile("/tmp/kpaas-quickstart-10.244.0.lock", os.O_CREATE|os.O_RDWR, 0o600)
	require.NoError(t, err)
	defer lock.Close()
	if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		t.Skip("another quickstart test holds 10.244.0.0/24")
	}
	if hostHasAddr("10.244.0.1") {
		t.Skip("10.244.0.0/24 is in use on this host (a kpaas-lite is deployed here?): the quickstart test needs it")
	}
	state, qsDir := t.TempDir(), t.TempDir()
	if d := os.Getenv("KPAAS_TEST_QS_DIR"); d != "" {
		qsDir = d // a stemcell cache to reuse (the script rebuilds it when the agent changed)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = moduleDir
		cmd.Env = append(os.Environ(), "KPAAS_STATE="+state, "QS_DIR="+qsDir, "GO="+filepath.Join(runtime.GOROOT(), "bin", "go"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	kpaas := filepath.Join(moduleDir, "bin", "kpaas")
	t.Cleanup(func() { run(kpaas, "delete-deployment", "-d", "kpaas-lite", "--force", "-n") })

	out, err := run("sh", "scripts/quickstart.sh")
	require.NoError(t, err, out)
	assert.Contains(t, out, "http://"+quickstartIP+"/")

	// Through HAProxy: both app instances answer, from the database.
	seen := map[string]bool{}
	for i := 0; i < 6; i++ {
		page := get(t, "http://"+quickstartIP+"/")
		require.Contains(t, page, "recorded in PostgreSQL", page)
		for _, in := range []string{"app/0", "app/1"} {
			if strings.Contains(page, "<b>"+in+"</b>") {
				seen[in] = true
			}
		}
	}
	assert.Equal(t, map[string]bool{"app/0": true, "app/1": true}, seen, "HAProxy balances over both app instances")
	note := "written-before-recreate-" + time.Now().Format("150405.000")
	resp, err := http.PostForm("http://"+quickstartIP+"/notes", url.Values{"text": {note}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, get(t, "http://"+quickstartIP+"/notes"), note)

	// HAProxy's health checks take a stopped app instance out: every answer
	// comes from the other one, then both again once it is started.
	out, err = run(kpaas, "stop", "-d", "kpaas-lite", "app/0", "-n")
	require.NoError(t, err, out)
	onlyApp1 := 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && onlyApp1 < 6; time.Sleep(500 * time.Millisecond) {
		if page := tryGet("http://" + quickstartIP + "/"); strings.Contains(page, "<b>app/1</b>") {
			onlyApp1++
		} else {
			onlyApp1 = 0
		}
	}
	assert.Equal(t, 6, onlyApp1, "six answers in a row from app/1 while app/0 is stopped")
	out, err = run(kpaas, "start", "-d", "kpaas-lite", "app/0", "-n")
	require.NoError(t, err, out)

	// The stats page is there and asks for the generated password.
	resp, err = http.Get("http://" + quickstartIP + ":8404/stats")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// The registry: TLS from the generated CA, the generated password, and a
	// whole image pushed and pulled back as docker does.
	regPW := stateVar(t, kpaas, state, "registry_password")
	ca := stateCert(t, kpaas, state, "registry_ca")
	reg := "https://" + quickstartRegistryIP + ":5000"
	untrusted, err := newRegistryClient(reg, "admin", regPW, nil)
	require.NoError(t, err)
	assert.ErrorContains(t, untrusted.ping(), "certificate", "the registry's certificate is not one the system trusts")
	wrong, err := newRegistryClient(reg, "admin", "wrong", []byte(ca))
	require.NoError(t, err)
	assert.ErrorContains(t, wrong.ping(), "401", "the registry needs the password")
	rc, err := newRegistryClient(reg, "admin", regPW, []byte(ca))
	require.NoError(t, err)
	require.NoError(t, rc.ping())
	checkImagePushPull(t, rc, "quickstart/hello")

	// A second run changes nothing.
	out, err = run("sh", "scripts/quickstart.sh")
	require.NoError(t, err, out)
	assert.Contains(t, out, "0 instance(s) to change")
	assert.NotContains(t, out, "create_vm")

	// The data is on the persistent disk: it survives a new postgres VM.
	out, err = run(kpaas, "recreate", "-d", "kpaas-lite", "postgres", "-n")
	require.NoError(t, err, out)
	var notes string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if notes = tryGet("http://" + quickstartIP + "/notes"); strings.Contains(notes, note) {
			break
		}
	}
	assert.Contains(t, notes, note, "the note written before the recreate")

	haproxyReloads(t, run, kpaas)

	out, err = run(kpaas, "delete-deployment", "-d", "kpaas-lite", "-n")
	require.NoError(t, err, out)
	assert.False(t, hostHasAddr("10.244.0.1"), "delete-deployment leaves no bridge with the quickstart's gateway")
}

// haproxyReloads deploys kpaas-lite with a third app instance (a changed
// backend set), then with a changed haproxy property, while requests stream
// through HAProxy on keep-alive connections and, during the second, a
// long-lived request is in flight: haproxy/0 is reloaded, not restarted
// (same master PID), and no request fails.
func haproxyReloads(t *testing.T, run func(...string) (string, error), kpaas string) {
	t.Helper()
	pid, reloads := haproxyProcess(t, run, kpaas)
	require.NotZero(t, pid)
	ops := filepath.Join(t.TempDir(), "ops.yml")
	deploy := func(opsYAML string) string {
		require.NoError(t, os.WriteFile(ops, []byte(opsYAML), 0o644))
		out, err := run(kpaas, "deploy", "-d", "kpaas-lite", "manifests/quickstart/kpaas-lite.yml", "-l", "manifests/quickstart/vars.yml", "-o", ops, "-n")
		require.NoError(t, err, out)
		return out
	}
	stream := startStream("http://" + quickstartIP + "/")
	threeApps := "- type: replace\n  path: /instance_groups/name=app/instances\n  value: 3\n"
	out := deploy(threeApps)
	assert.Regexp(t, `reload\s+haproxy/0`, out, "the plan reloads haproxy for the new backend")
	assert.Regexp(t, `create\s+app/2`, out)
	seen := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !seen; time.Sleep(200 * time.Millisecond) {
		seen = strings.Contains(tryGet("http://"+quickstartIP+"/"), "<b>app/2</b>")
	}
	assert.True(t, seen, "HAProxy balances to the new app/2 after the reload")

	long := make(chan string, 1)
	go func() {
		c := &http.Client{Timeout: 40 * time.Second}
		resp, err := c.Get("http://" + quickstartIP + "/wait?d=12s")
		if err != nil {
			long <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		long <- resp.Status + " " + strings.TrimSpace(string(b))
	}()
	time.Sleep(time.Second) // the long request is through HAProxy before the reload
	out = deploy(threeApps + "- type: replace\n  path: /instance_groups/name=haproxy/jobs/name=haproxy/properties/haproxy/health_check_path?\n  value: /ready\n")
	assert.Regexp(t, `reload\s+haproxy/0`, out)
	assert.NotRegexp(t, `(update|recreate)\s+haproxy/0`, out)
	assert.Equal(t, "200 OK waited 12s", <-long, "the request in flight during the reload completes")
	ok, failed := stream.stop()
	t.Logf("through HAProxy during the two reload deploys: %d requests answered, %d failed", ok, len(failed))
	assert.Empty(t, failed, "no request through HAProxy failed during the two reloads")
	assert.Greater(t, ok, 50, "requests streamed through HAProxy during the deploys")

	pid2, reloads2 := haproxyProcess(t, run, kpaas)
	assert.Equal(t, pid, pid2, "the haproxy master was signalled, not restarted")
	assert.Equal(t, reloads+2, reloads2, "two in-place reloads reported")
}

// haproxyProcess is haproxy/0's haproxy process PID and reload count, from `kpaas instances --ps --json`.
func haproxyProcess(t *testing.T, run func(...string) (string, error), kpaas string) (pid, reloads int) {
	t.Helper()
	out, err := run(kpaas, "instances", "-d", "kpaas-lite", "--ps", "--json")
	require.NoError(t, err, out)
	var insts []struct {
		Instance  string `json:"instance"`
		Processes []struct {
			Name    string `json:"name"`
			PID     int    `json:"pid"`
			Reloads int    `json:"reloads"`
			State   string `json:"state"`
		} `json:"processes"`
	}
	require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "["):]), &insts), out)
	for _, i := range insts {
		if strings.HasPrefix(i.Instance, "haproxy/") {
			for _, p := range i.Processes {
				if p.Name == "haproxy" {
					assert.Equal(t, "running", p.State)
					return p.PID, p.Reloads
				}
			}
		}
	}
	t.Fatalf("no haproxy process in %s", out)
	return 0, 0
}

// stream sends GET requests one after the other on keep-alive connections
// until stopped, recording every failure.
type stream struct {
	stopCh chan struct{}
	done   chan struct{}
	ok     int
	failed []string
}

func startStream(u string) *stream {
	s := &stream{stopCh: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stopCh:
				return
			default:
			}
			resp, err := c.Get(u)
			switch {
			case err != nil:
				s.failed = append(s.failed, time.Now().Format("15:04:05.000")+" "+err.Error())
			default:
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					s.failed = append(s.failed, time.Now().Format("15:04:05.000")+" "+resp.Status)
				} else {
					s.ok++
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return s
}

func (s *stream) stop() (int, []string) {
	close(s.stopCh)
	<-s.done
	return s.ok, s.failed
}

// stateCert is a generated certificate variable's certificate (for a CA, the CA itself).
func stateCert(t *testing.T, kpaas, state, name string) string {
	t.Helper()
	cmd := exec.Command(kpaas, "state", "export", "--include-secrets")
	cmd.Env = append(os.Environ(), "KPAAS_STATE="+state)
	out, err := cmd.Output()
	require.NoError(t, err)
	var exp struct {
		Variables []struct{ Name, Value string }
	}
	require.NoError(t, json.Unmarshal(out, &exp))
	for _, v := range exp.Variables {
		if v.Name == name {
			var c struct {
				Certificate string `json:"certificate"`
			}
			require.NoError(t, json.Unmarshal([]byte(v.Value), &c), "variable %s", name)
			require.NotEmpty(t, c.Certificate, "variable %s", name)
			return c.Certificate
		}
	}
	t.Fatalf("no variable %s in the state", name)
	return ""
}

// stateVar reads a generated variable's value from `kpaas state export --include-secrets`.
func stateVar(t *testing.T, kpaas, state, name string) string {
	t.Helper()
	cmd := exec.Command(kpaas, "state", "export", "--include-secrets")
	cmd.Env = append(os.Environ(), "KPAAS_STATE="+state)
	out, err := cmd.Output()
	require.NoError(t, err)
	var exp struct {
		Variables []struct{ Name, Value string }
	}
	require.NoError(t, json.Unmarshal(out, &exp))
	for _, v := range exp.Variables {
		if v.Name == name {
			var s string
			require.NoError(t, json.Unmarshal([]byte(v.Value), &s), "variable %s", name)
			return s
		}
	}
	t.Fatalf("no variable %s in the state", name)
	return ""
}

func hostHasAddr(ip string) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
			return true
		}
	}
	return false
}
