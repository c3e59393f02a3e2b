package unlock

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

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func TestNewCmdUnlockArgs(t *testing.T) {
	tests := []struct {
		args    []string
		globals cmdutil.GlobalOptions
		want    Options
		err     string
	}{
		{args: []string{"deployment:cf"}, want: Options{ID: "deployment:cf"}},
		{args: []string{"global"}, globals: cmdutil.GlobalOptions{NonInteractive: true, JSON: true}, want: Options{ID: "global", NonInteractive: true, JSON: true}},
		{args: []string{}, err: "expected one lock ID"},
		{args: []string{"a", "b"}, err: "expected one lock ID (see `kpaas locks`), got 2 arguments"},
	}
	for _, tt := range tests {
		ios, _, _, _ := ui.Test()
		g := tt.globals
		f := &cmdutil.Factory{IO: ios, Globals: &g, Now: time.Now}
		var got *Options
		cmd := NewCmdUnlock(f, func(o *Options) error { got = o; return nil })
		cmd.SetArgs(tt.args)
		cmd.SetOut(ios.ErrOut)
		cmd.SetErr(ios.ErrOut)
		err := cmd.Execute()
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.want.ID, got.ID)
		assert.Equal(t, tt.want.NonInteractive, got.NonInteractive)
		assert.Equal(t, tt.want.JSON, got.JSON)
	}
}

func setup(t *testing.T) (string, *state.Lock) {
	dir := t.TempDir()
	s := statetest.OpenWith(t, dir, state.Options{Key: statetest.Key, Now: func() time.Time { return t0 }, User: "bob", Host: "ci", PID: 77})
	l, err := s.Lock(context.Background(), state.LockRequest{Name: state.DeploymentLock("cf"), Op: "deploy", TTL: time.Hour, Heartbeat: -1})
	require.NoError(t, err)
	return dir, l
}

func opener(dir string) func(ctx context.Context) (state.Store, error) {
	return func(ctx context.Context) (state.Store, error) {
		return state.Open(ctx, dir, state.Options{Key: statetest.Key, Now: func() time.Time { return t0.Add(3 * time.Minute) }, User: "alice", Host: "ws"})
	}
}

func TestUnlockRun(t *testing.T) {
	ctx := context.Background()
	t.Run("non-interactive breaks the lock and records an event", func(t *testing.T) {
		dir, l := setup(t)
		ios, _, out, errOut := ui.Test()
		opts := &Options{IO: ios, State: opener(dir), Now: func() time.Time { return t0.Add(3 * time.Minute) }, NonInteractive: true, ID: "deployment:cf"}
		require.NoError(t, unlockRun(ctx, opts))
		assert.Empty(t, out.String())
		assert.Equal(t, "Broke lock deployment:cf (was held by bob@ci, pid 77, deploy).\n", errOut.String())
		assert.ErrorIs(t, l.Refresh(ctx), state.ErrLockLost, "the old holder finds out")

		s, err := opener(dir)(ctx)
		require.NoError(t, err)
		defer s.Close()
		evs, err := s.Events(ctx, state.EventFilter{Action: "break"})
		require.NoError(t, err)
		require.Len(t, evs, 1)
		assert.Equal(t, "alice@ws", evs[0].User)
		assert.Equal(t, "cf", evs[0].Deployment)
		assert.JSONEq(t, `{"holder":"bob@ci","pid":77,"operation":"deploy"}`, string(evs[0].Context))
	})
	t.Run("asks on a terminal; no keeps the lock", func(t *testing.T) {
		dir, l := setup(t)
		ios, in, _, errOut := ui.Test()
		ios.SetTTY(true)
		in.WriteString("n\n")
		opts := &Options{IO: ios, State: opener(dir), Now: func() time.Time { return t0.Add(3 * time.Minute) }, ID: "deployment:cf"}
		assert.ErrorIs(t, unlockRun(ctx, opts), cmdutil.ErrCancelled)
		assert.Equal(t, `Break lock deployment:cf held by bob@ci (pid 77) running "deploy" for 3m0s? [y/N] `, errOut.String())
		assert.NoError(t, l.Refresh(ctx), "still held")
	})
	t.Run("asks on a terminal; yes breaks it (json)", func(t *testing.T) {
		dir, _ := setup(t)
		ios, in, out, _ := ui.Test()
		ios.SetTTY(true)
		in.WriteString("y\n")
		opts := &Options{IO: ios, State: opener(dir), Now: func() time.Time { return t0.Add(3 * time.Minute) }, ID: "deployment:cf", JSON: true}
		require.NoError(t, unlockRun(ctx, opts))
		assert.JSONEq(t, `{"id":"deployment:cf","holder":"bob@ci","pid":77,"operation":"deploy","since":"2026-03-04T10:00:00Z","broken":true}`, out.String())
	})
	t.Run("no terminal and no -n is refused", func(t *testing.T) {
		dir, _ := setup(t)
		ios, _, _, _ := ui.Test()
		opts := &Options{IO: ios, State: opener(dir), Now: func() time.Time { return t0.Add(3 * time.Minute) }, ID: "deployment:cf"}
		assert.ErrorContains(t, unlockRun(ctx, opts), "run again with -n to break it")
	})
	t.Run("unknown lock", func(t *testing.T) {
		dir, _ := setup(t)
		ios, _, _, _ := ui.Test()
		opts := &Options{IO: ios, State: opener(dir), Now: time.Now, ID: "deployment:nope", NonInteractive: true}
		assert.EqualError(t, unlockRun(ctx, opts), "no lock \"deployment:nope\" is held (IDs are global or deployment:NAME; see `kpaas locks`)")
	})
}
