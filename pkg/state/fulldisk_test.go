package state_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

// TestFullDiskIsAClearErrorAndLosesNothing fills a small tmpfs under the
// embedded store: the failing change is refused whole with a message that
// says the disk is full, what was committed stays, and once space is freed
// the next change works.
func TestFullDiskIsAClearErrorAndLosesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	fs := filepath.Join(t.TempDir(), "fs")
	require.NoError(t, os.MkdirAll(fs, 0o700))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", fs).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", fs).Run() })

	ctx := context.Background()
	dir := filepath.Join(fs, "state")
	s, err := state.OpenSQLite(ctx, dir, state.Options{Key: statetest.Key})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.CreateDeployment(ctx, "cf")
	require.NoError(t, err)
	filler := filepath.Join(fs, "filler")
	require.NoError(t, os.WriteFile(filler, make([]byte, 1<<20), 0o600))

	spec := json.RawMessage(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 2000)))
	var failure error
	batches := 0
	for k := 0; k < 1000 && failure == nil; k++ {
		failure = s.Update(ctx, func(tx state.Tx) error {
			for i := 0; i < 50; i++ {
				if err := tx.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: fmt.Sprintf("b%d", k), Index: i, UUID: fmt.Sprintf("b%d-%d", k, i), Spec: spec}); err != nil {
					return err
				}
			}
			return nil
		})
		if failure == nil {
			batches++
		}
	}
	require.Error(t, failure, "the disk never filled")
	t.Logf("the error a user sees: %v", failure)
	assert.Contains(t, failure.Error(), "is full; nothing of this change was recorded: free some space and run the command again")
	require.Greater(t, batches, 0)

	st, err := s.LoadDeployment(ctx, "cf")
	require.NoError(t, err)
	assert.Len(t, st.Instances, batches*50, "every committed batch, nothing of the failed one")

	require.NoError(t, os.Remove(filler))
	require.NoError(t, s.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "after", UUID: "after-0"}), "works again once space is freed")
	st, err = s.LoadDeployment(ctx, "cf")
	require.NoError(t, err)
	assert.Len(t, st.Instances, batches*50+1)
}
