package cmdutil

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/registry"
	"github.com/kpaas/kpaas/pkg/state"
)

func TestLocalCloudDir(t *testing.T) {
	assert.Equal(t, "/srv/kp/local", LocalCloudDir("/srv/kp"))
	assert.NotContains(t, LocalCloudDir("postgres://u@h/db"), "postgres")
}

func TestOpenCPIs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := state.Open(ctx, dir, state.Options{Key: make([]byte, 32)})
	require.NoError(t, err)
	defer st.Close()

	var gotDefault string
	reg := registry.New()
	reg.Register("local", func(config json.RawMessage, _ *slog.Logger) (cpi.CPI, error) {
		var c struct{ Dir string }
		require.NoError(t, json.Unmarshal(config, &c))
		gotDefault = c.Dir
		return cpitest.NewFake(), nil
	})
	reg.Register("fake", func(config json.RawMessage, _ *slog.Logger) (cpi.CPI, error) { return cpitest.NewFake(), nil })
	f := &Factory{Globals: &GlobalOptions{State: dir}, Drivers: func() *registry.Registry { return reg },
		Logger: func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}

	// No cpi-config: the local cloud under the state directory, as "default".
	set, err := f.OpenCPIs(ctx, st)
	require.NoError(t, err)
	assert.Equal(t, []string{"default"}, set.Names())
	assert.Equal(t, filepath.Join(dir, "local"), gotDefault)

	// Two named cpi-configs: all their CPIs.
	_, _, err = st.SaveConfig(ctx, state.Config{Type: state.CPIConfig, Name: "default", Content: "cpis:\n- name: a\n  type: fake\n"})
	require.NoError(t, err)
	_, _, err = st.SaveConfig(ctx, state.Config{Type: state.CPIConfig, Name: "more", Content: "cpis:\n- name: b\n  type: fake_cpi\n"})
	require.NoError(t, err)
	set, err = f.OpenCPIs(ctx, st)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, set.Names())
	_, _, err = set.ForAZ("z1", "")
	assert.ErrorContains(t, err, "several")

	_, _, err = st.SaveConfig(ctx, state.Config{Type: state.CPIConfig, Name: "more", Content: "cpis:\n- name: c\n  type: nope\n"})
	require.NoError(t, err)
	_, err = f.OpenCPIs(ctx, st)
	assert.ErrorContains(t, err, `unknown type "nope"`)
}
