package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agent/settings"
	"github.com/kpaas/kpaas/pkg/agentclient"
	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
)

var bin string

func TestMain(m *testing.M) {
	b, cleanup, err := act.BuildAgent()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = b
	code := m.Run()
	cleanup()
	os.Exit(code)
}

var listenRe = regexp.MustCompile(`msg=listening addr=(\S+)`)

// runAgent starts the binary with args and returns the address it listens on.
func runAgent(t *testing.T, args ...string) (string, *exec.Cmd) {
	return runAgentCmd(t, bin, args...)
}

func runAgentCmd(t *testing.T, name string, args ...string) (string, *exec.Cmd) {
	cmd := exec.Command(name, args...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Process.Wait() })
	addr := make(chan string, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		require.True(t, ok, "agent exited: %s", log.String())
		return a, cmd
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not listen")
	}
	return "", nil
}

// The agent reads its settings from the sources of agent.json (here an HTTP
// metadata service on loopback), and after a reboot without any source
// answering, from the settings it saved.
func TestSettingsFromAgentConfigAndCache(t *testing.T) {
	host, client := act.MustKeys(t), act.MustKeys(t)
	st := settings.Settings{AgentID: "from-http", VM: settings.VM{Name: "vm-http"}, Disks: settings.Disks{Persistent: map[string]any{}}}
	st.Env.Kpaas = settings.KpaasEnv{HostKey: host.PEM, AuthorizedKeys: []string{client.Public}, Listen: "127.0.0.1:0"}
	doc, _ := json.Marshal(st)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/latest/user-data" {
			w.Write(doc)
			return
		}
		http.NotFound(w, r)
	}))
	root := t.TempDir()
	cfg := filepath.Join(root, "var/vcap/bosh/agent.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(cfg), 0o755))
	require.NoError(t, os.WriteFile(cfg, []byte(`{"Infrastructure":{"Settings":{"Sources":[{"Type":"HTTP","URI":"`+srv.URL+`","UserDataPath":"/latest/user-data"}]}}}`), 0o644))

	addr, cmd := runAgent(t, "--root", root)
	tg := agentclient.Target{Name: "x/0", Address: addr, HostKey: host.Public, Signer: client.Signer}
	pool := agentclient.NewPool(agentclient.Options{})
	defer pool.Close()
	info, err := pool.Client(tg).Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "from-http", info.AgentID)
	cmd.Process.Kill()
	cmd.Wait()

	srv.Close() // the metadata service is gone: the cached settings are used
	addr, _ = runAgent(t, "--root", root)
	tg.Name, tg.Address = "x/0-again", addr
	info, err = pool.Client(tg).Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "from-http", info.AgentID)
}

func TestNoSettingsIsAClearError(t *testing.T) {
	out, err := exec.Command(bin, "--root", t.TempDir()).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "no settings: pass --settings FILE or --config agent.json")
}

func TestSettingsWithoutHostKeyAreRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.json")
	os.WriteFile(p, []byte(`{"agent_id":"a","env":{"kpaas":{"listen":"127.0.0.1:0"}}}`), 0o600)
	out, err := exec.Command(bin, "--root", t.TempDir(), "--settings", p).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "settings have no env.kpaas.host_key")
}

// As PID 1 (a new PID namespace), the agent runs under its own init reaper:
// an orphaned daemon leaves no zombie, the agent still answers, and SIGTERM
// to PID 1 stops the agent.
func TestAgentAsPID1ReapsOrphans(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace needs root")
	}
	if out, err := exec.Command("unshare", "--fork", "--pid", "--mount-proc", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a PID namespace here: %v: %s", err, out)
	}
	host, client := act.MustKeys(t), act.MustKeys(t)
	st := settings.Settings{AgentID: "pid1", Disks: settings.Disks{Persistent: map[string]any{}}}
	st.Env.Kpaas = settings.KpaasEnv{HostKey: host.PEM, AuthorizedKeys: []string{client.Public}, Listen: "127.0.0.1:0"}
	doc, _ := json.Marshal(st)
	root := t.TempDir()
	sp := filepath.Join(root, "settings.json")
	require.NoError(t, os.WriteFile(sp, doc, 0o600))
	addr, cmd := runAgentCmd(t, "unshare", "--fork", "--pid", "--mount-proc", bin, "--root", root, "--settings", sp)
	pool := agentclient.NewPool(agentclient.Options{})
	defer pool.Close()
	c := pool.Client(agentclient.Target{Name: "pid1/0", Address: addr, HostKey: host.Public, Signer: client.Signer})
	ctx := context.Background()

	var out strings.Builder
	code, err := c.Exec(ctx, "tr '\\0' ' ' < /proc/1/cmdline", nil, &out, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	assert.Contains(t, out.String(), bin, "PID 1 is kpaas-agent (the reaper)")

	// A background job of a shell is orphaned to PID 1; once it exits it
	// must be reaped (without the reaper it stays a zombie).
	_, err = c.Exec(ctx, "sh -c 'sleep 0.2 &'", nil, io.Discard, io.Discard)
	require.NoError(t, err)
	out.Reset()
	zombies := `for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null; case "$l" in *") Z "*) echo z;; esac; done | wc -l`
	_, err = c.Exec(ctx, "sleep 0.6; "+zombies, nil, &out, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "0", strings.TrimSpace(out.String()), "no zombies under the init reaper")

	// SIGTERM to the reaper (PID 1 inside, a child of unshare outside)
	// reaches the agent, which stops, and the reaper exits with it.
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	require.NoError(t, err)
	var reaper int
	fmt.Sscan(string(kids), &reaper)
	require.NotZero(t, reaper)
	require.NoError(t, syscall.Kill(reaper, syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { _, err := cmd.Process.Wait(); done <- err }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not stop on SIGTERM")
	}
}
