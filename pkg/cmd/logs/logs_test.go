package logs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agentclient"
	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/cmdutil/cmdutiltest"
	"github.com/kpaas/kpaas/pkg/ui"
)

var agentBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := act.BuildAgent()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func TestNewCmdLogsFlags(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		json    bool
		want    Options
		wantErr string
	}{
		{name: "all", argv: nil, want: Options{Deployment: "cf", Dir: "."}},
		{name: "follow a job", argv: []string{"router", "--job", "gorouter", "--job", "metron", "-f"}, want: Options{Deployment: "cf", Selector: "router", Jobs: []string{"gorouter", "metron"}, Follow: true, Dir: "."}},
		{name: "num and dir", argv: []string{"api/0", "--num", "20", "--dir", "/tmp/l"}, want: Options{Deployment: "cf", Selector: "api/0", Num: 20, Dir: "/tmp/l"}},
		{name: "json download", argv: []string{}, json: true, want: Options{Deployment: "cf", Dir: ".", JSON: true}},
		{name: "json follow", argv: []string{"-f"}, json: true, wantErr: "--json applies to downloads"},
		{name: "negative num", argv: []string{"--num", "-1"}, wantErr: "--num must be 0 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: "cf", JSON: tt.json}, Now: time.Now}
			var got *Options
			cmd := NewCmdLogs(f, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(tt.argv)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			got.IO, got.Targets, got.Now = nil, nil, nil
			assert.Equal(t, tt.want, *got)
		})
	}
}

func setup(t *testing.T) ([]*act.Agent, func() (Targets, error)) {
	client := act.MustKeys(t)
	var agents []*act.Agent
	var list []agentclient.Target
	for i := 0; i < 2; i++ {
		a := act.Start(t, agentBin, act.Options{Name: fmt.Sprintf("api/id%d", i), Client: &client})
		dir := filepath.Join(a.Root, "var/vcap/sys/log")
		os.MkdirAll(filepath.Join(dir, "api"), 0o755)
		os.MkdirAll(filepath.Join(dir, "metron"), 0o755)
		os.WriteFile(filepath.Join(dir, "api/api.log"), []byte(fmt.Sprintf("line1 of %d\nline2 of %d\n", i, i)), 0o644)
		os.WriteFile(filepath.Join(dir, "metron/m.log"), []byte("m\n"), 0o644)
		agents = append(agents, a)
		list = append(list, a.Target())
	}
	return agents, func() (Targets, error) { return act.StaticTargets{Deployment: "dep", List: list}, nil }
}

func TestDownload(t *testing.T) {
	_, targets := setup(t)
	dir := t.TempDir()
	now := func() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC) }
	ios, _, out, errOut := ui.Test()
	require.NoError(t, logsRun(context.Background(), &Options{IO: ios, Targets: targets, Now: now, Deployment: "dep", Jobs: []string{"api"}, Dir: dir}))
	want := []string{filepath.Join(dir, "dep.api.id0.20261126-100000.tgz"), filepath.Join(dir, "dep.api.id1.20261126-100000.tgz")}
	assert.Equal(t, want, strings.Split(strings.TrimSpace(out.String()), "\n"))
	assert.Contains(t, errOut.String(), "Downloaded the logs of api/id0")
	for i, p := range want {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		files := untar(t, b)
		assert.Equal(t, map[string]string{"./api/api.log": fmt.Sprintf("line1 of %d\nline2 of %d\n", i, i)}, files)
	}
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 2, "no temporary files left")

	ios, _, out, _ = ui.Test()
	require.NoError(t, logsRun(context.Background(), &Options{IO: ios, Targets: targets, Now: now, Deployment: "dep", Selector: "api/id1", Dir: t.TempDir(), JSON: true}))
	assert.Contains(t, out.String(), `"instance": "api/id1"`)
	assert.NotContains(t, out.String(), "api/id0")
}

func untar(t *testing.T, b []byte) map[string]string {
	gz, err := gzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		if h.Typeflag == tar.TypeReg {
			c, _ := io.ReadAll(tr)
			out[h.Name] = string(c)
		}
	}
}

func TestTailAndFollow(t *testing.T) {
	agents, targets := setup(t)
	ios, _, out, _ := ui.Test()
	require.NoError(t, logsRun(context.Background(), &Options{IO: ios, Targets: targets, Deployment: "dep", Num: 1, Jobs: []string{"api"}}))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	sort.Strings(lines)
	assert.Equal(t, []string{"api/id0: api/api.log: line2 of 0", "api/id1: api/api.log: line2 of 1"}, lines)

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	ios2 := &ui.IOStreams{In: strings.NewReader(""), Out: pw, ErrOut: io.Discard}
	done := make(chan error, 1)
	go func() {
		done <- logsRun(ctx, &Options{IO: ios2, Targets: targets, Deployment: "dep", Selector: "api/id1", Follow: true, Num: 1})
		pw.Close()
	}()
	buf := make([]byte, 4096)
	var got string
	for strings.Count(got, "\n") < 2 {
		n, err := pr.Read(buf)
		require.NoError(t, err)
		got += string(buf[:n])
	}
	f, _ := os.OpenFile(filepath.Join(agents[1].Root, "var/vcap/sys/log/api/api.log"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("live line\n")
	f.Close()
	for !strings.Contains(got, "live line") {
		n, err := pr.Read(buf)
		require.NoError(t, err)
		got += string(buf[:n])
	}
	assert.Contains(t, got, "api/id1: api/api.log: live line\n")
	assert.NotContains(t, got, "api/id0")
	cancel()
	go io.Copy(io.Discard, pr)
	assert.NoError(t, <-done)
}

// TestLogsFromState runs the real command against a real SQLite store whose
// VMs are real agents on loopback: instances are found by group/index.
func TestLogsFromState(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	insts := []cmdutiltest.Instance{
		{Group: "api", Index: 0, UUID: "a0a0a0a0-0000-4000-8000-000000000000"},
		{Group: "api", Index: 1, UUID: "a1a1a1a1-0000-4000-8000-000000000000"},
	}
	for i := range insts {
		a := cmdutiltest.StartAgent(t, agentBin, s, &insts[i])
		logDir := filepath.Join(a.Root, "var/vcap/sys/log/api")
		require.NoError(t, os.MkdirAll(logDir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(logDir, "api.log"), []byte(fmt.Sprintf("first %d\nlast %d\n", i, i)), 0o644))
	}
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", insts)
	ios, _, out, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: "cf", State: dir}, Now: time.Now}
	cmd := NewCmdLogs(f, nil)
	cmd.SetArgs([]string{"api/1", "--num", "1"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	require.NoError(t, cmd.Execute())
	assert.Equal(t, "api/a1a1a1a1-0000-4000-8000-000000000000: api/api.log: last 1\n", out.String())

	dl := t.TempDir()
	ios, _, out, _ = ui.Test()
	f = &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: "cf", State: dir}, Now: func() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC) }}
	cmd = NewCmdLogs(f, nil)
	cmd.SetArgs([]string{"api/a0a0", "--dir", dl})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	require.NoError(t, cmd.Execute())
	path := filepath.Join(dl, "cf.api.a0a0a0a0-0000-4000-8000-000000000000.20261126-100000.tgz")
	assert.Equal(t, path+"\n", out.String())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "first 0\nlast 0\n", untar(t, b)["./api/api.log"])
}
