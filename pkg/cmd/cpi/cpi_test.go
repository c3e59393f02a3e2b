package cpi

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/external"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

func testFactory(ios *ui.IOStreams) *cmdutil.Factory {
	return &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{}, Logger: func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}
}

func TestArgsToOptions(t *testing.T) {
	t.Setenv("KPAAS_CPI_CONFIG", "/env/cfg.json")
	tests := []struct {
		argv    []string
		driver  string
		config  string
		wantErr string
	}{
		{argv: []string{"local", "--config", "c.json"}, driver: "local", config: "c.json"},
		{argv: []string{"fake"}, driver: "fake", config: "/env/cfg.json"},
		{argv: []string{}, wantErr: "accepts 1 arg"},
	}
	for _, tt := range tests {
		ios, _, _, _ := ui.Test()
		var got *Options
		cmd := NewCmdCPI(testFactory(ios), func(o *Options) error { got = o; return nil })
		cmd.SetArgs(tt.argv)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		if tt.wantErr != "" {
			assert.ErrorContains(t, err, tt.wantErr)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.driver, got.Driver)
		assert.Equal(t, tt.config, got.ConfigPath)
	}
}

// runCommand runs `kpaas cpi ARGS` in process as one CPI call.
func runCommand(args ...string) external.Runner {
	return func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
		ios := &ui.IOStreams{In: stdin, Out: stdout, ErrOut: stderr}
		cmd := NewCmdCPI(testFactory(ios), nil)
		cmd.SetArgs(args)
		cmd.SetIn(stdin)
		cmd.SetOut(stdout)
		cmd.SetErr(stderr)
		return cmd.ExecuteContext(ctx)
	}
}

func TestServesTheFakeThroughTheWire(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cpi.json")
	state := filepath.Join(dir, "state.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"state_file":"`+state+`"}`), 0o600))
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		inv := func() ([]string, error) {
			f, err := cpitest.NewFakeFile(state)
			if err != nil {
				return nil, err
			}
			return f.Inventory()
		}
		return cpitest.Target{CPI: external.New(external.Config{Run: runCommand("fake", "--config", cfg)}), Inventory: inv}
	})
}

func TestUnknownDriverIsAUsageError(t *testing.T) {
	ios, _, _, _ := ui.Test()
	cmd := NewCmdCPI(testFactory(ios), nil)
	cmd.SetArgs([]string{"aws"})
	err := cmd.Execute()
	require.Error(t, err)
	var fe *cmdutil.FlagError
	assert.ErrorAs(t, err, &fe)
	assert.Contains(t, err.Error(), "known: external, fake")
}

func TestContextPropertiesConfigureTheDriver(t *testing.T) {
	// A director with a multi-CPI cpi-config sends the CPI's properties in
	// the request context; here the fake's state file arrives that way.
	state := filepath.Join(t.TempDir(), "state.json")
	ios, _, out, _ := ui.Test()
	ios.In = strings.NewReader(`{"method":"create_disk","arguments":[10,{},null],"context":{"director_uuid":"d","request_id":"r","state_file":"` + state + `"},"api_version":2}`)
	cmd := NewCmdCPI(testFactory(ios), nil)
	cmd.SetArgs([]string{"fake"})
	require.NoError(t, cmd.Execute())
	assert.Contains(t, out.String(), `"result":"disk-1"`)
	f, err := cpitest.NewFakeFile(state)
	require.NoError(t, err)
	ok, err := f.HasDisk(context.Background(), "disk-1")
	require.NoError(t, err)
	assert.True(t, ok)
}
