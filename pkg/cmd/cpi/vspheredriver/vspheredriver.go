// Package vspheredriver registers the vSphere CPI (cpi/vsphere, govmomi) in a
// driver registry. Only cmd/kpaas-cpi-vsphere (and tests) import it: govmomi's
// package initialisation costs about 10 ms and 9 MB of RSS, which every kpaas
// command would otherwise pay (kpaas interpolate included), so the main binary
// reaches vSphere through that executable instead (see pkg/cmd/cpi Plugins).
package vspheredriver

import (
	"encoding/json"
	"log/slog"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/registry"
	"github.com/kpaas/kpaas/cpi/vsphere"
)

// Register adds "vsphere" (also "vsphere_cpi"): its configuration is the
// vcenter block of a cpi.yml/cpi-config, or the cpi.json BOSH's vsphere_cpi
// job renders (vsphere.ParseConfig reads both).
func Register(r *registry.Registry) {
	r.Register("vsphere", func(config json.RawMessage, logger *slog.Logger) (cpi.CPI, error) {
		c, err := vsphere.ParseConfig(config)
		if err != nil {
			return nil, err
		}
		return vsphere.New(c, logger)
	})
}
