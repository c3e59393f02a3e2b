package state_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

// deadPID returns the pid of a process that has exited (and been reaped).
func deadPID(t *testing.T) int {
	c := exec.Command("true")
	require.NoError(t, c.Run())
	return c.Process.Pid
}

// A lock whose holder on this host is gone (kill -9) is taken at once; one
// held from another host, or by a live process here, waits for its TTL.
func TestALockOfADeadProcessOnThisHostIsTakenAtOnce(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		loc := b.NewLocation(t)
		dead := deadPID(t)
		crashed := statetest.OpenWith(t, loc, state.Options{Key: statetest.Key, User: "ops", PID: dead})
		elsewhere := statetest.OpenWith(t, loc, state.Options{Key: statetest.Key, User: "ops", Host: host + "-other", PID: dead})
		alive := statetest.OpenWith(t, loc, state.Options{Key: statetest.Key, User: "ops", PID: os.Getppid()})
		me := statetest.OpenWith(t, loc, state.Options{Key: statetest.Key, User: "ops"})

		_, err := crashed.Lock(ctx, state.LockRequest{Name: "monitor", Op: "monitor", TTL: time.Hour, Heartbeat: -1})
		require.NoError(t, err)
		l, err := me.Lock(ctx, state.LockRequest{Name: "monitor", Op: "monitor", Heartbeat: -1})
		require.NoError(t, err, "the holder (pid %d on %s) is gone", dead, host)
		assert.Equal(t, os.Getpid(), l.PID)
		require.NoError(t, l.Release(ctx))

		_, err = elsewhere.Lock(ctx, state.LockRequest{Name: "deployment:a", Op: "deploy", TTL: time.Hour, Heartbeat: -1})
		require.NoError(t, err)
		_, err = me.Lock(ctx, state.LockRequest{Name: "deployment:a", Op: "deploy", Heartbeat: -1})
		assert.ErrorIs(t, err, state.ErrLocked, "a pid of another host says nothing here")

		_, err = alive.Lock(ctx, state.LockRequest{Name: "deployment:b", Op: "deploy", TTL: time.Hour, Heartbeat: -1})
		require.NoError(t, err)
		_, err = me.Lock(ctx, state.LockRequest{Name: "deployment:b", Op: "deploy", Heartbeat: -1})
		assert.ErrorIs(t, err, state.ErrLocked, "the holder is alive")

		_, err = me.Lock(ctx, state.LockRequest{Name: "deployment:c", Op: "deploy", Heartbeat: -1})
		require.NoError(t, err)
		_, err = me.Lock(ctx, state.LockRequest{Name: "deployment:c", Op: "deploy", Heartbeat: -1})
		assert.ErrorIs(t, err, state.ErrLocked, "this process's own lock is not abandoned")
	})
}
