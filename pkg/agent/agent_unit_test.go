package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

func TestParseMonit(t *testing.T) {
	text := `# a BOSH job's monit file
check process gorouter
  with pidfile /var/vcap/sys/run/bpm/gorouter/gorouter.pid
  start program "/var/vcap/jobs/bpm/bin/bpm start gorouter" with timeout 60 seconds
  stop program "/var/vcap/jobs/bpm/bin/bpm stop gorouter"
  group vcap
  if totalmem > 2000 Mb then alert

check file gorouter_config with path /var/vcap/jobs/gorouter/config/gorouter.yml
  if changed checksum then exec "/bin/true"

check process healthchecker with pidfile /var/vcap/sys/run/hc.pid
  start program = "/var/vcap/jobs/gorouter/bin/hc_ctl start"
  stop program = "/var/vcap/jobs/gorouter/bin/hc_ctl stop" with timeout 5 seconds
`
	ps, err := ParseMonit(text)
	require.NoError(t, err)
	assert.Equal(t, []MonitProcess{
		{Name: "gorouter", PidFile: "/var/vcap/sys/run/bpm/gorouter/gorouter.pid", StartProgram: "/var/vcap/jobs/bpm/bin/bpm start gorouter",
			StartTimeout: 60 * time.Second, StopProgram: "/var/vcap/jobs/bpm/bin/bpm stop gorouter", StopTimeout: 30 * time.Second, Group: "vcap"},
		{Name: "healthchecker", PidFile: "/var/vcap/sys/run/hc.pid", StartProgram: "/var/vcap/jobs/gorouter/bin/hc_ctl start",
			StartTimeout: 30 * time.Second, StopProgram: "/var/vcap/jobs/gorouter/bin/hc_ctl stop", StopTimeout: 5 * time.Second},
	}, ps)

	ps, err = ParseMonit("")
	require.NoError(t, err)
	assert.Empty(t, ps, "an empty monit file is a job without processes")

	_, err = ParseMonit("check process x\n  start program \"/bin/x\"\n")
	assert.EqualError(t, err, "check process x: no pidfile")
	_, err = ParseMonit("check process x\n  with pidfile /p\n")
	assert.EqualError(t, err, "check process x: no start program")
}

func TestLoadBPM(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "bpm.yml")
		require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
		return p
	}
	c, err := LoadBPM(write(`processes:
- name: web
  executable: /var/vcap/packages/web/bin/web
  args: [--port, "8080"]
  env: {A: b}
  limits: {memory: 256M, open_files: 1024}
  shutdown_signal: INT
  health_check: {tcp: "8080", interval: 2s}
`))
	require.NoError(t, err)
	p := c.Processes[0]
	assert.Equal(t, []string{"--port", "8080"}, p.Args)
	assert.Equal(t, uint64(1024), *p.Limits.OpenFiles)
	assert.Equal(t, "8080", p.HealthCheck.TCP)
	mem, _ := parseMemory(p.Limits.Memory)
	assert.Equal(t, int64(256<<20), mem)

	for yml, want := range map[string]string{
		"processes: []\n":                "at least one process",
		"processes:\n- executable: /x\n": "processes[0].name is required",
		"processes:\n- name: a\n":        "processes[0] (a): executable is required",
		"processes:\n- {name: a, executable: /x}\n- {name: a, executable: /y}\n": `duplicate name "a"`,
		"processes:\n- {name: a, executable: /x, shutdown_signal: KILL}\n":       "shutdown_signal must be TERM or INT",
		"processes:\n- {name: a, executable: /x, limits: {memory: lots}}\n":      "limits.memory",
	} {
		_, err := LoadBPM(write(yml))
		assert.ErrorContains(t, err, want, yml)
	}
}

func TestRollUp(t *testing.T) {
	p := func(states ...string) []protocol.Process {
		var out []protocol.Process
		for _, s := range states {
			out = append(out, protocol.Process{State: s})
		}
		return out
	}
	tests := []struct {
		stopped bool
		procs   []protocol.Process
		want    string
	}{
		{false, nil, protocol.JobRunning},
		{false, p("running", "running"), protocol.JobRunning},
		{false, p("running", "starting"), protocol.JobStarting},
		{false, p("failing", "starting"), protocol.JobStarting},
		{false, p("running", "failing"), protocol.JobFailing},
		{false, p("running", "stopped"), protocol.JobFailing},
		{true, p("running"), protocol.JobStopped},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, RollUp(tt.stopped, tt.procs), "%+v", tt)
	}
}

func TestRotatingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.stdout.log")
	r, err := OpenRotating(path, 10, 2)
	require.NoError(t, err)
	for _, s := range []string{"aaaaaa\n", "bbbbbb\n", "cccccc\n", "dddddd\n"} {
		_, err := r.Write([]byte(s))
		require.NoError(t, err)
	}
	require.NoError(t, r.Close())
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	assert.Equal(t, "dddddd\n", read(path))
	assert.Equal(t, "cccccc\n", read(path+".1"))
	assert.Equal(t, "bbbbbb\n", read(path+".2"))
	assert.NoFileExists(t, path+".3", "only Keep rotated files are kept")
}

func TestParseDigest(t *testing.T) {
	d, err := parseDigest("3f786850e387550fdab836ed7e6dc881de23001b")
	require.NoError(t, err)
	assert.Equal(t, digestAlgo{"sha1", "3f786850e387550fdab836ed7e6dc881de23001b"}, d)
	d, err = parseDigest("3f786850e387550fdab836ed7e6dc881de23001b;sha256:ABCD")
	require.NoError(t, err)
	assert.Equal(t, digestAlgo{"sha256", "abcd"}, d, "the strongest entry wins")
	_, err = parseDigest("sha256:xyz")
	assert.Error(t, err)
	_, err = parseDigest("md5:abcd")
	assert.Error(t, err)

	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("test\n"), 0o644)
	assert.NoError(t, verifyFileDigest(p, "4e1243bd22c66e76c2ba9eddc1f91394e57f9f83"))
	assert.NoError(t, verifyFileDigest(p, "sha256:f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2"))
	assert.ErrorContains(t, verifyFileDigest(p, "sha256:00"), "expected 00")
}

func TestExtractArchiveRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "/etc/evil", "./a/../../evil"} {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		gz.Close()
		dir := t.TempDir()
		p := filepath.Join(dir, "a.tgz")
		os.WriteFile(p, buf.Bytes(), 0o644)
		err := extractArchive(p, filepath.Join(dir, "out"))
		assert.ErrorContains(t, err, "escapes the target directory", name)
		assert.NoFileExists(t, filepath.Join(dir, "evil"))
	}
}

func TestLastLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l")
	os.WriteFile(p, []byte("1\n2\n3\npartial"), 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	lines, off := lastLines(f, 13, 2)
	assert.Equal(t, []string{"2", "3"}, lines)
	assert.Equal(t, int64(6), off, "the partial last line is followed later, not printed now")
	lines, _ = lastLines(f, 13, 10)
	assert.Equal(t, []string{"1", "2", "3"}, lines)
}

func TestHealthChecks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ok := []HealthCheck{{TCP: ln.Addr().String()}, {TCP: port}, {HTTP: srv.URL + "/ok"}, {Command: "true"}}
	for _, hc := range ok {
		assert.NoError(t, newHealthChecker(&hc, t.TempDir(), nil).check(), "%+v", hc)
	}
	bad := []HealthCheck{{TCP: "127.0.0.1:1"}, {HTTP: srv.URL + "/bad"}, {Command: "echo nope; false"}}
	for _, hc := range bad {
		assert.Error(t, newHealthChecker(&hc, t.TempDir(), nil).check(), "%+v", hc)
	}
	err = newHealthChecker(&HealthCheck{Command: "echo nope; false"}, t.TempDir(), nil).check()
	assert.ErrorContains(t, err, "nope")
}

func TestHintDevice(t *testing.T) {
	assert.Equal(t, "/dev/sdc", hintDevice("/dev/sdc"))
	assert.Equal(t, "/dev/vdb", hintDevice(map[string]any{"path": "/dev/vdb", "id": "x"}))
	assert.Equal(t, "/dev/disk/by-id/abc", hintDevice(map[string]any{"id": "abc"}))
	assert.Equal(t, "/dev/disk/by-id/virtio-0123456789abcdef0123", hintDevice(map[string]any{"volume_id": "0123456789abcdef0123456789"}))
	assert.Equal(t, "", hintDevice(nil))
}

func TestBlobStorePutIsAtomic(t *testing.T) {
	bs := BlobStore{Dir: t.TempDir()}
	data := bytes.Repeat([]byte("x"), 3<<20+5)
	id := sha256hex(data)
	n, err := bs.Put(id, bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	got, _ := os.ReadFile(bs.Path(id))
	assert.True(t, bytes.Equal(data, got))

	_, err = bs.Put(strings.Repeat("1", 64), bytes.NewReader(data))
	var pe *protocol.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, protocol.ErrDigestMismatch, pe.Type)
	entries, _ := os.ReadDir(bs.Dir)
	assert.Len(t, entries, 1)
	_, err = bs.Put("NOTHEX", bytes.NewReader(nil))
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, protocol.ErrInvalidRequest, pe.Type)
}

func TestBlobStorePrune(t *testing.T) {
	bs := BlobStore{Dir: t.TempDir()}
	put := func(s string, age time.Duration) string {
		id := sha256hex([]byte(s))
		_, err := bs.Put(id, strings.NewReader(s))
		require.NoError(t, err)
		old := time.Now().Add(-age)
		require.NoError(t, os.Chtimes(bs.Path(id), old, old))
		return id
	}
	kept, oldUnused, fresh := put("kept", 2*time.Hour), put("old", 2*time.Hour), put("fresh", time.Minute)
	os.WriteFile(filepath.Join(bs.Dir, "not-a-blob"), nil, 0o644)
	assert.Equal(t, 1, bs.Prune(map[string]bool{kept: true}, time.Hour, time.Now()))
	assert.True(t, bs.Has(kept))
	assert.False(t, bs.Has(oldUnused))
	assert.True(t, bs.Has(fresh), "a blob uploaded recently (for the next apply) stays")
	assert.FileExists(t, filepath.Join(bs.Dir, "not-a-blob"))
}

func TestRotateJobLogs(t *testing.T) {
	a, err := New(Options{Layout: Layout{Root: t.TempDir()}, Settings: testSettings()})
	require.NoError(t, err)
	dir := filepath.Join(a.layout.SysLog(), "web")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	big := filepath.Join(dir, "access.log")
	small := filepath.Join(dir, "small.log")
	os.WriteFile(big, bytes.Repeat([]byte("x"), 200), 0o644)
	os.WriteFile(small, []byte("tiny"), 0o644)
	n, err := a.RotateJobLogs(100, 2)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	fi, _ := os.Stat(big)
	assert.Equal(t, int64(0), fi.Size(), "truncated in place: the writer keeps its file")
	b, _ := os.ReadFile(big + ".1")
	assert.Len(t, b, 200)
	os.WriteFile(big, bytes.Repeat([]byte("y"), 150), 0o644)
	n, _ = a.RotateJobLogs(100, 2)
	assert.Equal(t, 1, n)
	b, _ = os.ReadFile(big + ".2")
	assert.Len(t, b, 200, "older copies shift up")

	assert.Equal(t, int64(DefaultMaxLogFileSize), a.maxLogFileSize())
	a.spec = &protocol.ApplySpec{Properties: map[string]any{"logging": map[string]any{"max_log_file_size": "10M"}}}
	assert.Equal(t, int64(10<<20), a.maxLogFileSize())
}

func TestCapabilityNumbers(t *testing.T) {
	caps, err := capabilityNumbers([]string{"NET_BIND_SERVICE", "cap_sys_admin"})
	require.NoError(t, err)
	assert.Equal(t, []uintptr{10, 21}, caps)
}
