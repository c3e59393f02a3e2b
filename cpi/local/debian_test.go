package local_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agentclient"
)

// TestDebianStemcellWithRealAgent boots a Debian stemcell built by `kpaas
// create-stemcell --os debian --agent kpaas-agent` and talks to its agent over
// SSH, including a persistent disk formatted and mounted by the agent with
// Debian's own tools. Building the stemcell takes about a minute and needs the
// Debian archive, so the test runs only when KPAAS_DEBIAN_STEMCELL names one.
func TestDebianStemcellWithRealAgent(t *testing.T) {
	path := os.Getenv("KPAAS_DEBIAN_STEMCELL")
	if path == "" {
		t.Skip("set KPAAS_DEBIAN_STEMCELL to a stemcell built by `kpaas create-stemcell --os debian` to run")
	}
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	st, err := l.CreateStemcell(ctx, path, nil)
	require.NoError(t, err)
	t.Logf("create_stemcell: %s", time.Since(start))
	pool := agentclient.NewPool(agentclient.Options{DialTimeout: 2 * time.Second})
	defer pool.Close()

	start = time.Now()
	a := createAgentVM(t, l, st, pool, manual(18, 10))
	require.NoError(t, waitPing(ctx, a.client), "console: %s", console(l, a.vm))
	t.Logf("create_vm to agent ping over SSH: %s", time.Since(start))
	state, err := a.client.GetState(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, "agent-10.213.18.10", state.AgentID)

	disk, err := l.CreateDisk(ctx, 64, map[string]any{"fs": "none"}, a.vm) // the agent formats it
	require.NoError(t, err)
	hint, err := l.AttachDisk(ctx, a.vm, disk)
	require.NoError(t, err)
	require.NoError(t, a.client.AddPersistentDisk(ctx, string(disk), map[string]any{"path": hint.Path}))
	require.NoError(t, a.client.MountDisk(ctx, string(disk)), "console: %s", console(l, a.vm))
	require.NoError(t, a.client.UnmountDisk(ctx, string(disk)))
	require.NoError(t, l.DetachDisk(ctx, a.vm, disk))
	require.NoError(t, l.DeleteVM(ctx, a.vm))
	require.NoError(t, l.DeleteDisk(ctx, disk))
	require.NoError(t, l.DeleteStemcell(ctx, st))
}
