package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// A lock held by someone else is exit code 3 with the holder in the message,
// through the real command tree.
func TestLockHeldIsExitCode3(t *testing.T) {
	t.Setenv(state.KeyEnv, "")
	ctx := context.Background()
	dir := t.TempDir()
	holder, err := state.OpenSQLite(ctx, dir, state.Options{User: "bob", Host: "ci", PID: 9, Now: func() time.Time { return time.Now().Add(-90 * time.Second) }})
	require.NoError(t, err)
	defer holder.Close()
	_, err = holder.Lock(ctx, state.LockRequest{Name: state.GlobalLock, Op: "upload-stemcell", TTL: time.Hour, Heartbeat: -1})
	require.NoError(t, err)

	cc := filepath.Join(t.TempDir(), "cc.yml")
	require.NoError(t, os.WriteFile(cc, []byte("azs: [{name: z1}]\n"), 0o600))
	ios, _, out, errOut := ui.Test()
	code := Run(ctx, []string{"update-cloud-config", cc, "-n", "--state", dir}, ios)
	assert.Equal(t, 3, code)
	assert.Contains(t, errOut.String(), `Error: the global lock (configs, stemcells, releases) is locked by bob@ci (pid 9) running "upload-stemcell" for 1m30s`)
	assert.NotContains(t, out.String(), "Saved")

	// After the holder is gone and the lock broken, the same command works.
	ios, _, _, errOut = ui.Test()
	require.Equal(t, 0, Run(ctx, []string{"unlock", "global", "-n", "--state", dir}, ios), errOut.String())
	ios, _, _, errOut = ui.Test()
	assert.Equal(t, 0, Run(ctx, []string{"update-cloud-config", cc, "-n", "--state", dir}, ios), errOut.String())
	assert.Contains(t, errOut.String(), `Saved the cloud config "default" as version 1`)
}
