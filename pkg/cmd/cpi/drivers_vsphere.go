package cpi

import (
	"encoding/json"
	"log/slog"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/registry"
	"github.com/kpaas/kpaas/cpi/vsphere"
)

// registerVsphere adds "vsphere" (also "vsphere_cpi"): its configuration is
// the vcenter block of a cpi.yml/cpi-config, or the cpi.json BOSH's
// vsphere_cpi job renders (vsphere.ParseConfig reads both).
func registerVsphere(r *registry.Registry) {
	r.Register("vsphere", func(config json.RawMessage, logger *slog.Logger) (cpi.CPI, error) {
		c, err := vsphere.ParseConfig(config)
		if err != nil {
			return nil, err
		}
		return vsphere.New(c, logger)
	})
}
