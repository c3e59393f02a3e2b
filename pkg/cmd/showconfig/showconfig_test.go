package showconfig

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
	"github.com/kpaas/kpaas/pkg/ui"
)

func TestNewCmdShowConfigFlags(t *testing.T) {
	ios, _, _, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: true}, Now: time.Now}
	var got *Options
	cmd := NewCmdCPIConfig(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--name", "os", "--id", "4"})
	require.NoError(t, cmd.Execute())
	assert.True(t, got.JSON)
	assert.Equal(t, state.CPIConfig, got.Type)
	assert.Equal(t, "os", got.Name)
	assert.Equal(t, int64(4), got.ID)
}

func TestShowRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	s := statetest.OpenWith(t, dir, state.Options{Key: statetest.Key, Now: func() time.Time { return t0 }, User: "alice", Host: "ws"})
	c1, _, err := s.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Content: "azs: []\n"})
	require.NoError(t, err)
	_, _, err = s.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Content: "azs: [z1]"})
	require.NoError(t, err)
	open := func(ctx context.Context) (state.Store, error) {
		return state.Open(ctx, dir, state.Options{Key: statetest.Key})
	}

	ios, _, out, errOut := ui.Test()
	require.NoError(t, showRun(ctx, &Options{IO: ios, State: open, Type: state.CloudConfig, Name: "default"}))
	assert.Equal(t, "azs: [z1]\n", out.String())
	assert.Equal(t, "Using cloud config \"default\" version 2 (id 2), saved 2026-03-04T10:00:00Z by alice@ws\n\n", errOut.String())

	ios, _, out, _ = ui.Test()
	require.NoError(t, showRun(ctx, &Options{IO: ios, State: open, Type: state.CloudConfig, ID: c1.ID, JSON: true}))
	assert.JSONEq(t, `{"id":1,"type":"cloud","name":"default","version":1,"created_at":"2026-03-04T10:00:00Z","created_by":"alice@ws","content":"azs: []\n"}`, out.String())

	ios, _, _, _ = ui.Test()
	err = showRun(ctx, &Options{IO: ios, State: open, Type: state.RuntimeConfig, Name: "default"})
	assert.ErrorIs(t, err, state.ErrNotFound)
	assert.EqualError(t, err, "runtime config \"default\": not found: save one with `kpaas update-runtime-config FILE`")
	err = showRun(ctx, &Options{IO: ios, State: open, Type: state.CPIConfig, ID: c1.ID})
	assert.EqualError(t, err, "config id 1 is a cloud config, not a cpi config")
}
