package locks

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

func TestNewCmdLocksFlags(t *testing.T) {
	ios, _, _, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: true}, Now: func() time.Time { return t0 }}
	var got *Options
	cmd := NewCmdLocks(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{})
	require.NoError(t, cmd.Execute())
	assert.True(t, got.JSON)

	cmd = NewCmdLocks(f, func(o *Options) error { return nil })
	cmd.SetArgs([]string{"extra"})
	cmd.SetErr(ios.ErrOut)
	cmd.SetOut(ios.ErrOut)
	assert.Error(t, cmd.Execute())
}

func TestLocksRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := t0
	s := statetest.OpenWith(t, dir, state.Options{Key: statetest.Key, Now: func() time.Time { return clock }, User: "alice", Host: "ws1", PID: 4242})
	l, err := s.Lock(ctx, state.LockRequest{Name: state.DeploymentLock("cf"), Op: "deploy", TTL: 10 * time.Minute, Heartbeat: -1})
	require.NoError(t, err)
	clock = t0.Add(5 * time.Minute)
	_, err = s.Lock(ctx, state.LockRequest{Name: state.GlobalLock, Op: "update-cloud-config", TTL: 10 * time.Minute, Heartbeat: -1})
	require.NoError(t, err)
	assert.Equal(t, 4242, l.PID)

	tests := []struct {
		name string
		tty  bool
		json bool
		out  string
	}{
		{"tty", true, false, "ID             HOLDER     PID   OPERATION            SINCE          EXPIRES\n" +
			"deployment:cf  alice@ws1  4242  deploy               7 minutes ago  in 2 minutes\n" +
			"global         alice@ws1  4242  update-cloud-config  2 minutes ago  in 7 minutes\n"},
		{"piped", false, false, "deployment:cf\talice@ws1\t4242\tdeploy\t2026-03-04T10:00:00Z\t2026-03-04T10:10:00Z\n" +
			"global\talice@ws1\t4242\tupdate-cloud-config\t2026-03-04T10:05:00Z\t2026-03-04T10:15:00Z\n"},
		{"json", false, true, `[
  {
    "id": "deployment:cf",
    "holder": "alice@ws1",
    "pid": 4242,
    "operation": "deploy",
    "since": "2026-03-04T10:00:00Z",
    "expires": "2026-03-04T10:10:00Z"
  },
  {
    "id": "global",
    "holder": "alice@ws1",
    "pid": 4242,
    "operation": "update-cloud-config",
    "since": "2026-03-04T10:05:00Z",
    "expires": "2026-03-04T10:15:00Z"
  }
]
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, _ := ui.Test()
			ios.SetTTY(tt.tty)
			// "now" for display is 7m02s after the deploy lock was taken; the store's clock (for
			// expiry) stays 5 minutes in, so the deploy lock still counts as held.
			opts := &Options{IO: ios, JSON: tt.json, Now: func() time.Time { return t0.Add(7*time.Minute + 2*time.Second) },
				State: func(ctx context.Context) (state.Store, error) {
					return state.Open(ctx, dir, state.Options{Key: statetest.Key, Now: func() time.Time { return clock }})
				}}
			require.NoError(t, locksRun(ctx, opts))
			assert.Equal(t, tt.out, out.String())
		})
	}
}
