package cpi

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/external"
)

// TestServesQEMUThroughTheWire drives `kpaas cpi qemu --config FILE` through
// the wire: info, create_stemcell of the cached qcow2 stemcell, create_vm,
// has_vm, delete_vm, delete_stemcell (the full suite runs in cpi/qemu).
func TestServesQEMUThroughTheWire(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the QEMU cloud needs root (bridges, tap devices)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (.ci/setup-qemu.sh)")
	}
	stemcell := os.Getenv("KPAAS_QCOW2_STEMCELL")
	if stemcell == "" {
		stemcell = "/var/cache/kpaas/qcow2-stemcell.tgz"
	}
	if _, err := os.Stat(stemcell); err != nil {
		t.Skipf("no qcow2 stemcell at %s (.ci/setup-qemu.sh builds it)", stemcell)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cpi.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"dir":"`+filepath.Join(dir, "state")+`","accel":"tcg"}`), 0o600))
	c := external.New(external.Config{Run: runCommand("qemu", "--config", cfg)})
	ctx := context.Background()
	info, err := c.Info(ctx)
	require.NoError(t, err)
	assert.Contains(t, info.StemcellFormats, "openstack-qcow2")
	sc, err := c.CreateStemcell(ctx, stemcell, nil)
	require.NoError(t, err)
	nets := cpi.Networks{"default": {Type: "manual", IP: "10.245.9.10", Netmask: "255.255.255.0", Gateway: "10.245.9.1",
		CloudProperties: cpi.Props{"bridge": "kqtest9"}}}
	vm, got, err := c.CreateVM(ctx, "agent-wire", sc, cpi.Props{"ram": 256}, nets, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, "10.245.9.10", got["default"].IP)
	ok, err := c.HasVM(ctx, vm)
	require.NoError(t, err)
	assert.True(t, ok)
	require.NoError(t, c.DeleteVM(ctx, vm))
	ok, err = c.HasVM(ctx, vm)
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, c.DeleteStemcell(ctx, sc))
}
