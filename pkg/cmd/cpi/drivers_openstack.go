package cpi

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/openstack"
	"github.com/kpaas/kpaas/cpi/registry"
)

// registerOpenStack adds the "openstack" driver. Its configuration is BOSH's
// openstack CPI job properties ({"openstack":{...},"agent":{...}}), the job's
// cpi.json ({"cloud":{"properties":{...}}}), or a flat cpi-config entry.
func registerOpenStack(r *registry.Registry) {
	r.Register("openstack", func(config json.RawMessage, logger *slog.Logger) (cpi.CPI, error) {
		c, err := openstack.ParseConfig(config)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return openstack.New(ctx, c, openstack.Deps{}, logger)
	})
}
