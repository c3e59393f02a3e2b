package createstemcell

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
	"github.com/kpaas/kpaas/stemcells"
)

func factory(ios *ui.IOStreams, json bool) *cmdutil.Factory {
	return &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: json}, Now: time.Now,
		Logger: func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}
}

func TestArgsToOptions(t *testing.T) {
	tests := []struct {
		argv    []string
		want    Options
		wantErr string
	}{
		{argv: []string{"--os", "busybox", "--agent", "a", "-o", "t.tgz"}, want: Options{OS: "busybox", Agent: "a", Out: "t.tgz", Format: "local", Suite: "bookworm"}},
		{argv: []string{"--agent", "a", "--suite", "trixie"}, want: Options{OS: "debian", Agent: "a", Format: "local", Suite: "trixie"}},
		{argv: []string{"--os", "alpine", "--agent", "a"}, wantErr: "--os must be debian or busybox"},
		{argv: []string{"--agent", "a", "--format", "vhd"}, wantErr: "--format must be local, qcow2 or ova"},
		{argv: []string{"--os", "busybox", "--agent", "a", "--format", "ova"}, wantErr: "--format ova needs --os debian"},
		{argv: []string{"--os", "busybox", "--agent", "a", "--format", "qcow2"}, wantErr: "--format qcow2 needs --os debian"},
		{argv: []string{"--agent", "a", "--format", "qcow2"}, want: Options{OS: "debian", Agent: "a", Format: "qcow2", Suite: "bookworm"}},
		{argv: []string{"--os", "busybox"}, wantErr: "--agent is required"},
	}
	for _, tt := range tests {
		ios, _, _, _ := ui.Test()
		var got *Options
		cmd := NewCmdCreateStemcell(factory(ios, false), func(o *Options) error { got = o; return nil })
		cmd.SetArgs(tt.argv)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		if tt.wantErr != "" {
			assert.ErrorContains(t, err, tt.wantErr, "%v", tt.argv)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.want.OS, got.OS)
		assert.Equal(t, tt.want.Agent, got.Agent)
		assert.Equal(t, tt.want.Out, got.Out)
		assert.Equal(t, tt.want.Format, got.Format)
		assert.Equal(t, tt.want.Suite, got.Suite)
	}
}

func TestBuildsTheTinyStemcellWithJSON(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static is not installed (.ci/setup-local-cloud.sh installs it)")
	}
	ios, _, out, errOut := ui.Test()
	dst := filepath.Join(t.TempDir(), "tiny.tgz")
	opts := &Options{IO: ios, Now: time.Now, JSON: true, OS: "busybox", Agent: "/bin/busybox", Busybox: "/bin/busybox", Out: dst, Format: "local", Version: "7.1"}
	require.NoError(t, createStemcellRun(context.Background(), opts))
	var v stemcellView
	require.NoError(t, json.Unmarshal(out.Bytes(), &v), "stdout is JSON only: %s", out)
	assert.Equal(t, dst, v.Path)
	assert.Equal(t, "7.1", v.Version)
	assert.Equal(t, "bosh-kpaas-local-busybox-go_agent", v.Name)
	assert.Contains(t, errOut.String(), "Packing rootfs", "progress goes to stderr")
	tb, err := stemcells.Open(dst, t.TempDir())
	require.NoError(t, err)
	assert.Equal(t, v.SHA1, tb.Manifest.SHA1)
}
