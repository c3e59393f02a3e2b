package cpi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/external"
	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// TestServesVsphereThroughTheWire runs the conformance suite through
// `kpaas cpi vsphere --config FILE` (one command run per call, as BOSH runs
// a CPI) against the vCenter simulator started in this process.
func TestServesVsphereThroughTheWire(t *testing.T) {
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		s := vspheretest.Start(t)
		b, err := json.Marshal(s.Config)
		require.NoError(t, err)
		cfg := filepath.Join(t.TempDir(), "cpi.json")
		require.NoError(t, os.WriteFile(cfg, b, 0o600))
		return cpitest.Target{
			CPI:           external.New(external.Config{Run: runCommand("vsphere", "--config", cfg)}),
			StemcellImage: vspheretest.StemcellImage(t),
			VMProps:       cpi.Props{"cpu": 1, "ram": 512, "disk": 1024},
			Networks:      vspheretest.Manual,
			Inventory:     s.Inventory,
			Settings:      func(vm cpi.VMCID) (*settings.Settings, error) { return s.Settings(t, vm) },
		}
	})
}
