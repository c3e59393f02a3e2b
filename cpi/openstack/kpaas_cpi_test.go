package openstack

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/external"
)

// TestKpaasCPIOpenStackThroughExternal drives `kpaas cpi openstack` (one
// process per call, configured with BOSH's openstack job properties) through
// cpi/external: the v2 results and BOSH error types cross the wire.
func TestKpaasCPIOpenStackThroughExternal(t *testing.T) {
	tc := newTestCloud(t)
	bin := filepath.Join(t.TempDir(), "kpaas")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/kpaas")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building kpaas: %s", out)

	cfg := configFromEnv(tc.userEnv)
	cfg.Agent = map[string]any{"ntp": []string{"ntp.example"}}
	b, err := json.Marshal(map[string]any{"cloud": map[string]any{"plugin": "openstack", "properties": cfg}})
	require.NoError(t, err)
	cfgPath := filepath.Join(t.TempDir(), "cpi.json")
	require.NoError(t, os.WriteFile(cfgPath, b, 0o600))
	c := external.New(external.Config{Command: bin, Args: []string{"cpi", "openstack", "--config", cfgPath}, Timeout: 3 * time.Minute})
	ctx := context.Background()

	before := tc.inv(t)
	info, err := c.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, info.APIVersion)
	assert.Contains(t, info.StemcellFormats, "openstack-qcow2")

	img := filepath.Join(t.TempDir(), "root.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 4096), 0o644))
	sc, err := c.CreateStemcell(ctx, img, cpi.Props{"disk_format": "raw"})
	require.NoError(t, err)
	vm, nets, err := c.CreateVM(ctx, "agent-wire", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.120"), nil, cpi.Env{})
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.120", nets["private"].IP, "v2 create_vm returns the networks")
	assert.NotEmpty(t, nets["private"].MAC)
	if tc.admin != nil {
		s, err := tc.deliveredSettings(vm)
		require.NoError(t, err)
		assert.Equal(t, "agent-wire", s.AgentID)
		assert.Equal(t, []string{"ntp.example"}, s.NTP, "the job's agent properties reach the settings")
	}
	disk, err := c.CreateDisk(ctx, 1024, nil, vm)
	require.NoError(t, err)
	hint, err := c.AttachDisk(ctx, vm, disk)
	require.NoError(t, err)
	assert.Equal(t, string(disk), hint.VolumeID)
	assert.NotEmpty(t, hint.Path)
	_, err = c.AttachDisk(ctx, "d0d0d0d0-0000-4000-8000-000000000000", disk)
	assert.ErrorIs(t, err, cpi.ErrVMNotFound, "VMNotFound crosses the wire")
	require.NoError(t, c.DetachDisk(ctx, vm, disk))
	require.NoError(t, c.DeleteVM(ctx, vm))
	require.NoError(t, c.DeleteDisk(ctx, disk))
	require.NoError(t, c.DeleteStemcell(ctx, sc))
	assert.Equal(t, before, tc.inv(t))
}
