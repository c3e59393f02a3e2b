package vsphere

import (
	"context"

	"github.com/vmware/govmomi/session"
)

// EndSession logs the driver's session out behind its back, as an expired
// session or a restarted vCenter would.
func EndSession(ctx context.Context, d *Driver) error {
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	return session.NewManager(c).Logout(ctx)
}

// Transient is transient, for the error classification tests.
var Transient = transient
