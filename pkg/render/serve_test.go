package render

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hello job's process really serves its rendered page: hello-server from
// the hello-scripts package, run as its bpm.yml says (with the port bound to
// loopback), answers GET / with the page and GET /health with ok.
func TestHelloServesRenderedPage(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox is not installed (Debian: busybox-static)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())

	h := loadHello(t, 1, map[string]any{"hello": map[string]any{"port": port, "greeting": "Served by busybox"}})
	hello := h.render(t, NewRenderer(), "web", 0).Job("hello")
	dir := t.TempDir()
	page := filepath.Join(dir, "index.html")
	require.NoError(t, os.WriteFile(page, hello.File("config/index.html").Content, 0o644))

	src, err := filepath.Abs("../../releases/kpaas-hello/src")
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(src, "hello-scripts/bin/hello-server"),
		"--port", "127.0.0.1:"+strconv.Itoa(port), "--root", filepath.Join(dir, "www"), "--page", page)
	cmd.Env = append(os.Environ(), "HELLO_LIB="+filepath.Join(src, "hello-lib/lib/log.sh"))
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	client := &http.Client{Timeout: 2 * time.Second}
	var health string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(base + "/health"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			health = string(b)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, "ok\n", health, "server output: %s", out.String())
	resp, err := client.Get(base + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "<h1>Served by busybox</h1>")
	assert.Contains(t, string(body), "web/0 (web-uuid-0)")
	assert.Contains(t, out.String(), "serving "+filepath.Join(dir, "www")+" on port 127.0.0.1:"+strconv.Itoa(port))
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
