package scp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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

func TestNewCmdSCPFlags(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		want    Options
		wantErr string
	}{
		{name: "upload", argv: []string{"./a", "api:/tmp/a"}, want: Options{Deployment: "cf", Source: "./a", Dest: "api:/tmp/a"}},
		{name: "download recursive", argv: []string{"-r", "api/0:/var/vcap/sys/log", "/tmp/x"}, want: Options{Deployment: "cf", Source: "api/0:/var/vcap/sys/log", Dest: "/tmp/x", Recursive: true}},
		{name: "both local", argv: []string{"./a", "/tmp/b"}, wantErr: "exactly one of SOURCE and DESTINATION"},
		{name: "both remote", argv: []string{"a:/x", "b:/y"}, wantErr: "exactly one of SOURCE and DESTINATION"},
		{name: "one arg", argv: []string{"a:/x"}, wantErr: "accepts 2 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: "cf"}}
			var got *Options
			cmd := NewCmdSCP(f, func(o *Options) error { got = o; return nil })
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
			got.IO, got.Targets = nil, nil
			assert.Equal(t, tt.want, *got)
		})
	}
}

func TestUploadAndDownload(t *testing.T) {
	client := act.MustKeys(t)
	var agents []*act.Agent
	var list []agentclient.Target
	for i := 0; i < 2; i++ {
		a := act.Start(t, agentBin, act.Options{Name: fmt.Sprintf("web/u%d", i), Client: &client})
		agents = append(agents, a)
		list = append(list, a.Target())
	}
	targets := func() (Targets, error) { return act.StaticTargets{Deployment: "dep", List: list}, nil }
	// Both agents share a host here, so upload to a path under each one's root.
	src := filepath.Join(t.TempDir(), "tool.sh")
	require.NoError(t, os.WriteFile(src, []byte("#!/bin/sh\necho tool\n"), 0o755))
	ctx := context.Background()
	for _, a := range agents {
		ios, _, _, errOut := ui.Test()
		require.NoError(t, scpRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Source: src, Dest: a.Name + ":" + a.Root + "/tmp-tool.sh"}))
		assert.Contains(t, errOut.String(), a.Name+": copied")
		b, err := os.ReadFile(filepath.Join(a.Root, "tmp-tool.sh"))
		require.NoError(t, err)
		assert.Equal(t, "#!/bin/sh\necho tool\n", string(b))
		fi, _ := os.Stat(filepath.Join(a.Root, "tmp-tool.sh"))
		assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	}

	// Recursive download from one instance.
	logDir := filepath.Join(agents[0].Root, "var/vcap/sys/log/web")
	require.NoError(t, os.MkdirAll(filepath.Join(logDir, "sub"), 0o755))
	os.WriteFile(filepath.Join(logDir, "web.log"), []byte("w"), 0o644)
	os.WriteFile(filepath.Join(logDir, "sub/x.log"), []byte("x"), 0o644)
	dst := t.TempDir()
	ios, _, out, _ := ui.Test()
	require.NoError(t, scpRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Source: "web/u0:" + logDir, Dest: dst, Recursive: true, JSON: true}))
	b, err := os.ReadFile(filepath.Join(dst, "web", "sub", "x.log"))
	require.NoError(t, err)
	assert.Equal(t, "x", string(b))
	assert.Contains(t, out.String(), `"bytes": 2`)

	// A directory without -r is refused.
	ios, _, _, _ = ui.Test()
	err = scpRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Source: "web/u0:" + logDir, Dest: t.TempDir()})
	assert.ErrorContains(t, err, "is a directory: pass -r")

	// Download from both instances: one folder per instance. (Both agents run
	// on this host, so both serve the same absolute path.)
	os.WriteFile(filepath.Join(agents[0].Root, "same.txt"), []byte("0"), 0o644)
	dst = t.TempDir()
	ios, _, _, _ = ui.Test()
	err = scpRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Source: "web:" + filepath.Join(agents[0].Root, "same.txt"), Dest: dst})
	require.NoError(t, err)
	for _, id := range []string{"u0", "u1"} {
		b, err := os.ReadFile(filepath.Join(dst, "web", id, "same.txt"))
		require.NoError(t, err)
		assert.Equal(t, "0", string(b))
	}
}

// TestSCPFromState runs the real command wired to a real SQLite store whose
// VM is a real agent on loopback, selected by group/index.
func TestSCPFromState(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	inst := cmdutiltest.Instance{Group: "web", Index: 3, UUID: "c0ffee00-0000-4000-8000-000000000000"}
	a := cmdutiltest.StartAgent(t, agentBin, s, &inst)
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", []cmdutiltest.Instance{inst})
	require.NoError(t, os.WriteFile(filepath.Join(a.Root, "remote.txt"), []byte("from the VM\n"), 0o644))

	dst := t.TempDir()
	ios, _, _, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: "cf", State: dir}}
	cmd := NewCmdSCP(f, nil)
	cmd.SetArgs([]string{"web/3:" + filepath.Join(a.Root, "remote.txt"), dst})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	require.NoError(t, cmd.Execute())
	b, err := os.ReadFile(filepath.Join(dst, "remote.txt"))
	require.NoError(t, err)
	assert.Equal(t, "from the VM\n", string(b))
}
