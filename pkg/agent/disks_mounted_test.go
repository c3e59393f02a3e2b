package agent

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// After a reboot the saved record of mounted disks outlives the mounts: the
// agent must not report (or skip mounting) a disk that is not mounted.
func TestMountedDisksAreCheckedAgainstTheMounts(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	a, err := New(Options{Layout: l, Settings: testSettings()})
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(l.Store(), 0o755))
	require.NoError(t, os.MkdirAll(l.Bosh(), 0o755))
	require.NoError(t, a.saveJSON(l.MountsFile(), map[string]mountedDisk{"disk-1": {Device: "/dev/sdc", MountPoint: l.Store()}}))

	assert.Empty(t, a.ListDisk(), "the store is a plain directory: nothing is mounted")
	saved := map[string]mountedDisk{}
	a.loadJSON(l.MountsFile(), &saved)
	assert.Empty(t, saved, "the stale record is dropped")

	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs at the store needs root")
	}
	require.NoError(t, unix.Mount("tmpfs", l.Store(), "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { unix.Unmount(l.Store(), unix.MNT_DETACH) })
	require.NoError(t, a.saveJSON(l.MountsFile(), map[string]mountedDisk{"disk-1": {Device: "/dev/sdc", MountPoint: l.Store()}}))
	assert.Equal(t, []string{"disk-1"}, a.ListDisk(), "a disk whose mount point is mounted stays")
}
