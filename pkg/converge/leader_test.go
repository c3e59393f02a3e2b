package converge

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/state/statetest"
)

func TestPGLeaderElectsOne(t *testing.T) {
	url, why := statetest.PostgresURL()
	if url == "" {
		t.Skip(why)
	}
	ctx := context.Background()
	a := &PGLeader{URL: url, Scope: t.Name()}
	b := &PGLeader{URL: url, Scope: t.Name()}
	other := &PGLeader{URL: url, Scope: t.Name() + "-other-store"}
	defer a.Release(ctx)
	defer b.Release(ctx)
	defer other.Release(ctx)

	ok, _, err := a.TryLead(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	ok, holder, err := b.TryLead(ctx)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Contains(t, holder, "backend pid")
	ok, _, err = other.TryLead(ctx)
	require.NoError(t, err)
	assert.True(t, ok, "another store elects apart")
	require.NoError(t, a.Check(ctx))

	// The leader's connection ends (a killed monitor): the other takes over.
	require.NoError(t, a.conn.Close(ctx))
	assert.Error(t, a.Check(ctx))
	// The server ends the old session asynchronously.
	require.Eventually(t, func() bool {
		ok, _, err := b.TryLead(ctx)
		return err == nil && ok
	}, 10*time.Second, 50*time.Millisecond)
}

func TestStoreLeaderElectsOne(t *testing.T) {
	ctx := context.Background()
	st := statetest.Open(t, filepath.Join(t.TempDir(), "state.db"))
	a, b := &StoreLeader{Store: st, Name: "monitor"}, &StoreLeader{Store: st, Name: "monitor"}
	ok, _, err := a.TryLead(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	ok, holder, err := b.TryLead(ctx)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Contains(t, holder, "pid")
	require.NoError(t, a.Check(ctx))
	a.Release(ctx)
	ok, _, err = b.TryLead(ctx)
	require.NoError(t, err)
	assert.True(t, ok)
	b.Release(ctx)
}
