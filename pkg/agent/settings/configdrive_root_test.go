package settings

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The real config drive path: a block device (a loop device holding an ext4
// filesystem with the OpenStack layout) that the source mounts read-only.
func TestConfigDriveSourceOnABlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a config drive needs root")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "config-2.img")
	f, err := os.Create(img)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(8<<20))
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device available: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	mnt := filepath.Join(dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a loop device here: %v: %s", err, out)
	}
	os.MkdirAll(filepath.Join(mnt, "ec2/latest"), 0o755)
	os.WriteFile(filepath.Join(mnt, "ec2/latest/user-data"), []byte(settingsDoc), 0o644)
	require.NoError(t, exec.Command("umount", mnt).Run())

	s, err := ConfigDriveSource{DiskPaths: []string{dev}, UserDataPath: "ec2/latest/user-data"}.Read(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "a-1", s.AgentID)
	mounts, _ := os.ReadFile("/proc/mounts")
	assert.NotContains(t, string(mounts), dev+" ", "the drive is unmounted after reading")
}
