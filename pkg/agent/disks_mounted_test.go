package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// A reboot unmounts the persistent disk; the agent coming back mounts it
// again before it restarts the jobs, so they find their data.
func TestRecoverMountsThePersistentDiskAgainBeforeTheJobs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop device and mount")
	}
	for _, c := range []string{"losetup", "mkfs.ext4", "blkid"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed", c)
		}
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(img, nil, 0o600))
	require.NoError(t, os.Truncate(img, 16<<20))
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	require.NoError(t, err, string(out))
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	l := Layout{Root: t.TempDir()}
	t.Cleanup(func() { unix.Unmount(l.Store(), unix.MNT_DETACH) })
	s := testSettings()
	s.Disks.Persistent["disk-1"] = dev
	a, err := New(Options{Layout: l, Settings: s})
	require.NoError(t, err)
	require.NoError(t, a.MountDisk(t.Context(), "disk-1"))
	require.NoError(t, os.WriteFile(filepath.Join(l.Store(), "data"), []byte("kept"), 0o600))

	// the reboot: the mount is gone, the agent's files are not
	require.NoError(t, unix.Unmount(l.Store(), 0))
	require.NoError(t, os.WriteFile(l.SpecFile(), []byte(`{}`), 0o600))
	a2, err := New(Options{Layout: l, Settings: s})
	require.NoError(t, err)
	require.NoError(t, a2.Recover())
	b, err := os.ReadFile(filepath.Join(l.Store(), "data"))
	require.NoError(t, err, "the store is the disk again")
	assert.Equal(t, "kept", string(b))
	assert.Equal(t, []string{"disk-1"}, a2.ListDisk())

	// a disk that cannot be mounted again keeps the jobs from starting
	require.NoError(t, unix.Unmount(l.Store(), 0))
	s.Disks.Persistent["disk-1"] = "/dev/kpaas-no-such-disk"
	a3, err := New(Options{Layout: l, Settings: s})
	require.NoError(t, err)
	defer func(d time.Duration) { diskAppearTimeout = d }(diskAppearTimeout)
	diskAppearTimeout = 10 * time.Millisecond
	err = a3.Recover()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not starting the jobs")
	assert.Contains(t, err.Error(), "disk-1")
}
