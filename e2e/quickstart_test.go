package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
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

	// The registry takes a blob upload (v2 API, monolithic) with the generated password.
	regPW := stateVar(t, kpaas, state, "registry_password")
	blob := []byte("kpaas-quickstart-blob")
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	reg := "http://" + quickstartRegistryIP + ":5000/v2/quickstart/test/blobs/"
	req, _ := http.NewRequest(http.MethodPost, reg+"uploads/", nil)
	resp = doAuth(t, req, "wrong")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the registry needs the password")
	req, _ = http.NewRequest(http.MethodPost, reg+"uploads/", nil)
	resp = doAuth(t, req, regPW)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	loc, err := resp.Location()
	require.NoError(t, err)
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(blob))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp = doAuth(t, req, regPW)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	req, _ = http.NewRequest(http.MethodGet, reg+digest, nil)
	resp = doAuth(t, req, regPW)
	require.Equal(t, http.StatusOK, resp.StatusCode)

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

	out, err = run(kpaas, "delete-deployment", "-d", "kpaas-lite", "-n")
	require.NoError(t, err, out)
	assert.False(t, hostHasAddr("10.244.0.1"), "delete-deployment leaves no bridge with the quickstart's gateway")
}

// doAuth sends req with the registry's basic auth (user admin) and closes the body.
func doAuth(t *testing.T, req *http.Request, password string) *http.Response {
	t.Helper()
	req.SetBasicAuth("admin", password)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
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
