package vsphere_test

import (
	"testing"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// vmType is the vm_type K-PaaS's vSphere cloud-config calls "default"
// (cpu, ram, disk), merged with its AZ's datacenters/clusters.
var vmType = cpi.Props{
	"cpu": 2, "ram": 1024, "disk": 10240,
	"datacenters": []any{map[string]any{"name": "DC0", "clusters": []any{map[string]any{"DC0_C0": map[string]any{}}}}},
}

func TestConformance(t *testing.T) {
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		s := vspheretest.Start(t)
		return cpitest.Target{
			CPI:           s.Driver,
			StemcellImage: vspheretest.StemcellImage(t),
			StemcellProps: cpi.Props{"name": "bosh-vsphere-esxi-ubuntu-jammy-go_agent", "version": "1.0"},
			VMProps:       vmType,
			Networks:      vspheretest.Manual,
			Inventory:     s.Inventory,
			Settings:      func(vm cpi.VMCID) (*settings.Settings, error) { return s.Settings(t, vm) },
		}
	})
}
