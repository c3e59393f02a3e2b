// Package agentclienttest runs real kpaas-agent processes for tests: it
// builds cmd/kpaas-agent once, generates the host and client keys kpaas
// would, writes a settings file and starts the agent with a temporary
// directory as its root, listening on loopback.
package agentclienttest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kpaas/kpaas/pkg/agent/settings"
	"github.com/kpaas/kpaas/pkg/agentclient"
)

// BuildAgent builds cmd/kpaas-agent (static) into a temporary directory
// (with the race detector when KPAAS_AGENT_RACE is set).
// Call it from TestMain; cleanup removes the binary.
func BuildAgent() (path string, cleanup func(), err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", nil, fmt.Errorf("finding the module root: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "kpaas-agent-bin-")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(dir, "kpaas-agent")
	args := []string{"build", "-o", path}
	env := append(os.Environ(), "CGO_ENABLED=0")
	if os.Getenv("KPAAS_AGENT_RACE") != "" { // run the agents with the race detector
		args = append(args, "-race")
		env = append(os.Environ(), "CGO_ENABLED=1")
	}
	cmd := exec.Command(goBin, append(args, "./cmd/kpaas-agent")...)
	cmd.Dir = root
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building kpaas-agent: %v\n%s", err, b)
	}
	return path, func() { os.RemoveAll(dir) }, nil
}

// Keys is an SSH key pair.
type Keys struct {
	Signer ssh.Signer
	PEM    string // private key
	Public string // authorized_keys line
}

// NewKeys generates an ed25519 key pair (agentclient.GenerateKey).
func NewKeys() (Keys, error) {
	k, err := agentclient.GenerateKey()
	if err != nil {
		return Keys{}, err
	}
	return Keys{Signer: k.Signer, PEM: k.PrivatePEM, Public: k.Public}, nil
}

// MustKeys is NewKeys failing the test.
func MustKeys(t testing.TB) Keys {
	k, err := NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Agent is a running kpaas-agent.
type Agent struct {
	Bin      string
	Root     string
	Settings string
	Host     Keys
	Client   Keys
	Addr     string
	Name     string
	Args     []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
}

// Options of Start.
type Options struct {
	Name   string // instance name (default "test/0")
	Root   string // default t.TempDir()
	Modify func(*settings.Settings)
	Args   []string // extra agent flags
	Client *Keys    // client key (default: generated)
}

// Start writes settings and starts the agent at bin; it is stopped when the test ends.
func Start(t testing.TB, bin string, o Options) *Agent {
	t.Helper()
	if o.Name == "" {
		o.Name = "test/0"
	}
	if o.Root == "" {
		o.Root = t.TempDir()
	}
	host := MustKeys(t)
	client := MustKeys(t)
	if o.Client != nil {
		client = *o.Client
	}
	st := &settings.Settings{AgentID: "agent-" + strings.ReplaceAll(o.Name, "/", "-"), VM: settings.VM{Name: "vm-" + strings.ReplaceAll(o.Name, "/", "-")},
		Networks: map[string]settings.Network{"default": {Type: "manual", IP: "127.0.0.1", Default: []string{"dns", "gateway"}}},
		Disks:    settings.Disks{Persistent: map[string]any{}}}
	st.Env.Kpaas = settings.KpaasEnv{HostKey: host.PEM, AuthorizedKeys: []string{client.Public}, Listen: "127.0.0.1:0"}
	if o.Modify != nil {
		o.Modify(st)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "settings.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	a := &Agent{Bin: bin, Root: o.Root, Settings: path, Host: host, Client: client, Name: o.Name, Args: o.Args}
	if err := a.start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Stop()
		if log := a.Log(); strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("the agent %s reported a data race:\n%s", a.Name, log)
		}
	})
	return a
}

var listenRe = regexp.MustCompile(`msg=listening addr=(\S+)`)

func (a *Agent) start(listen string) error {
	args := []string{"--root", a.Root, "--settings", a.Settings, "--log-level", "debug", "--restart-backoff", "200ms"}
	if listen != "" {
		args = append(args, "--listen", listen)
	}
	args = append(args, a.Args...)
	cmd := exec.Command(a.Bin, args...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return err
	}
	pw.Close()
	buf := &syncBuffer{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			buf.Write([]byte(line + "\n"))
			if m := listenRe.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	select {
	case a.Addr = <-addr:
	case <-exited:
		return fmt.Errorf("kpaas-agent exited at start:\n%s", buf.String())
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		return fmt.Errorf("kpaas-agent did not start listening in 20s:\n%s", buf.String())
	}
	a.mu.Lock()
	a.cmd, a.stderr, a.exited = cmd, buf, exited
	a.mu.Unlock()
	return nil
}

// Target is how kpaas reaches this agent.
func (a *Agent) Target() agentclient.Target {
	group, id, _ := strings.Cut(a.Name, "/")
	return agentclient.Target{Name: a.Name, Group: group, ID: id, Address: a.Addr, HostKey: a.Host.Public, Signer: a.Client.Signer}
}

// Log is what the agent wrote on stderr.
func (a *Agent) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stderr == nil {
		return ""
	}
	return a.stderr.String()
}

// PID of the agent process.
func (a *Agent) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cmd.Process.Pid
}

// Stop sends SIGTERM and waits (the agent stops its jobs first).
func (a *Agent) Stop() {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// Kill kills the agent with SIGKILL only (its jobs' processes live on).
func (a *Agent) Kill() {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Restart starts the agent again on the same address.
func (a *Agent) Restart() error { return a.start(a.Addr) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// File is one entry of a test archive.
type File struct {
	Body string
	Mode int64 // default 0644
}

// TarGz builds a tar.gz of files (paths relative, "./"-prefixed in the archive).
func TarGz(files map[string]File) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := files[n]
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		tw.WriteHeader(&tar.Header{Name: "./" + n, Mode: mode, Size: int64(len(f.Body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(f.Body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// SHA256 is the hex SHA-256 of b.
func SHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// StaticTargets is a Targets resolver over a fixed list (for command tests);
// it knows one deployment, Deployment.
type StaticTargets struct {
	Deployment string
	List       []agentclient.Target
}

// Targets returns the list for the known deployment.
func (s StaticTargets) Targets(ctx context.Context, deployment string) ([]agentclient.Target, error) {
	if deployment != s.Deployment {
		return nil, fmt.Errorf("deployment %q not found", deployment)
	}
	return s.List, nil
}
