package agentclient_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
)

// loopDevice attaches a sparse file of size MB as a loop device.
func loopDevice(t *testing.T, mb int) string {
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(int64(mb)<<20))
	f.Close()
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device available: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		exec.Command("umount", dev).Run()
		exec.Command("losetup", "-d", dev).Run()
	})
	return dev
}

// The real disk path: format a new disk, mount it on /var/vcap/store, then
// replace it with a second disk and find the data migrated.
func TestPersistentDiskOnLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("formatting and mounting a loop device needs root")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "blkid", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	probe := loopDevice(t, 16)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot format a loop device here: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", probe, t.TempDir()).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a loop device here: %v: %s", err, out)
	}
	exec.Command("umount", probe).Run()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	store := filepath.Join(a.Root, "var/vcap/store")
	t.Cleanup(func() {
		exec.Command("umount", filepath.Join(a.Root, "var/vcap/store_migration_target")).Run()
		exec.Command("umount", store).Run()
	})
	dev1 := loopDevice(t, 32)
	require.NoError(t, c.AddPersistentDisk(ctx, "disk-1", map[string]any{"path": dev1}))
	require.NoError(t, c.MountDisk(ctx, "disk-1"))
	require.NoError(t, c.MountDisk(ctx, "disk-1"), "mounting again is a no-op")
	mounts, _ := os.ReadFile("/proc/mounts")
	assert.Contains(t, string(mounts), dev1+" "+store+" ext4")
	require.NoError(t, os.WriteFile(filepath.Join(store, "data.txt"), []byte("keep me"), 0o644))
	cids, err := c.ListDisk(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"disk-1"}, cids)

	// The second disk already carries a filesystem with a file: it must not be reformatted.
	dev2 := loopDevice(t, 32)
	out, err := exec.Command("mkfs.ext4", "-q", "-F", dev2).CombinedOutput()
	require.NoError(t, err, string(out))
	pre := t.TempDir()
	require.NoError(t, exec.Command("mount", dev2, pre).Run())
	require.NoError(t, os.WriteFile(filepath.Join(pre, "preexisting.txt"), []byte("old"), 0o644))
	require.NoError(t, exec.Command("umount", pre).Run())
	require.NoError(t, c.AddPersistentDisk(ctx, "disk-2", dev2))
	require.NoError(t, c.MountDisk(ctx, "disk-2"))
	mounts, _ = os.ReadFile("/proc/mounts")
	assert.Contains(t, string(mounts), dev2+" "+store+" ext4")
	assert.NotContains(t, string(mounts), dev1+" ")
	b, err := os.ReadFile(filepath.Join(store, "data.txt"))
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(b), "data migrated to the new disk")
	assert.FileExists(t, filepath.Join(store, "preexisting.txt"), "a disk with a filesystem is not reformatted")
	cids, err = c.ListDisk(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"disk-2"}, cids)

	st, err := c.GetState(ctx, true)
	require.NoError(t, err)
	assert.Contains(t, st.Vitals.Disk, "persistent")

	require.NoError(t, c.UnmountDisk(ctx, "disk-2"))
	mounts, _ = os.ReadFile("/proc/mounts")
	assert.NotContains(t, string(mounts), " "+store+" ")
	cids, err = c.ListDisk(ctx)
	require.NoError(t, err)
	assert.Empty(t, cids)
}
