package vsphere_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
)

// TestTheEnvISOIsAnISO9660Image has the system's blkid identify the env
// ISO a VM got, then mounts it with the kernel's iso9660 driver, as an agent
// reading its CD-ROM does, and reads "env".
func TestTheEnvISOIsAnISO9660Image(t *testing.T) {
	blkid, err := exec.LookPath("blkid")
	if err != nil {
		t.Skip("no blkid (util-linux) to identify the image")
	}
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err)
	iso := filepath.Join(s.DSDir, "kpaas-env", string(vm)+".iso")
	out, err := exec.Command(blkid, "-p", "-o", "export", iso).CombinedOutput()
	require.NoError(t, err, "blkid -p %s: %s", iso, out)
	assert.Contains(t, string(out), "TYPE=iso9660")

	if os.Geteuid() != 0 {
		t.Skip("mounting an ISO needs root")
	}
	dir := t.TempDir()
	out, err = exec.Command("mount", "-t", "iso9660", "-o", "loop,ro", iso, dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot loop-mount an iso9660 image here: %s", strings.TrimSpace(string(out)))
	}
	defer func() { _ = exec.Command("umount", dir).Run() }()
	got, err := os.ReadFile(filepath.Join(dir, "env"))
	require.NoError(t, err, "the agent's CDROM source reads the file env")
	want := s.EnvISO(t, s.VM(t, vm))
	assert.Equal(t, string(want), string(got))
	assert.Contains(t, string(got), `"agent_id":"a"`)
}
