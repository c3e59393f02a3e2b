// Package openstack is the kpaas CPI for OpenStack, built on gophercloud v2:
// Nova servers on Neutron ports (manual networks get a port with the static IP
// kpaas allocated, dynamic networks a port with whatever IP Neutron picks, vip
// networks a floating IP), Glance images as stemcells, Cinder volumes as
// persistent disks. The agent settings travel in the server's user_data (and
// the config drive when openstack.config_drive is set), as bosh-openstack-cpi
// delivers them. It accepts the cloud properties and job properties of
// bosh-openstack-cpi-release, so the K-PaaS OpenStack cloud-config and cpi.yml
// work unchanged.
//
// Job properties (Config; BOSH's openstack.* names): auth_url, username +
// api_key (or password), or application_credential_id/_name + _secret;
// domain (or user_domain_name/_id, project_domain_name/_id), project or
// project_id (tenant for Keystone v2 names); region, endpoint_type;
// connection_options.ca_cert / ssl_verify_peer: false; default_key_name,
// default_security_groups, default_volume_type, human_readable_vm_names,
// boot_from_volume, boot_volume_cloud_properties.type, config_drive
// (disk|cdrom), use_dhcp, ignore_server_availability_zone,
// stemcell_public_visibility, enable_auto_anti_affinity, state_timeout,
// wait_resource_poll_interval, max_retries; agent.{mbus,ntp,blobstore} go
// into the agent settings.
//
// vm_type cloud_properties: instance_type (flavor name or ID) or cpu/ram/
// ephemeral_disk_size (smallest flavor that fits), availability_zone(s),
// security_groups, key_name, scheduler_hints, boot_from_volume,
// root_disk.{size,type}, allowed_address_pairs, metadata. Network
// cloud_properties: net_id, security_groups; a vip network takes the
// floating IP named by its ip, or allocates one from floating_network_id
// (released by delete_vm). disk_type cloud_properties: type,
// availability_zone. Stemcell cloud_properties: disk_format,
// container_format, name, version, os_distro, ..., or image_id for a light
// stemcell. Not supported (refused with a message): loadbalancer_pools
// (Octavia), use_nova_networking.
//
// It imports cpi and gophercloud; nothing above it.
package openstack

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kpaas/kpaas/cpi"
)

// Deps are the driver's injectable parts.
type Deps struct {
	// WrapTransport wraps the HTTP transport (tests count API calls with it).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Sleep waits between polls and retries (default: a timer honouring ctx).
	Sleep func(ctx context.Context, d time.Duration) error
	// Progress receives stemcell upload progress (bytes sent, total; total is
	// -1 when unknown). Default: an info log line every 10%.
	Progress func(sent, total int64)
}

// CPI is the OpenStack driver.
type CPI struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	c    *clients
}

var _ cpi.CPI = (*CPI)(nil)

// New authenticates against Keystone and finds Nova, Neutron, Glance and
// Cinder in the catalog.
func New(ctx context.Context, cfg Config, deps Deps, logger *slog.Logger) (*CPI, error) {
	if err := cfg.Validate(); err != nil {
		return nil, &cpi.Error{Type: cpi.TypeCloudError, Message: err.Error(), Err: err}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := connect(ctx, cfg.OpenStack, deps, logger)
	if err != nil {
		return nil, apiErr("connecting to OpenStack", err)
	}
	return &CPI{cfg: cfg, deps: deps, log: logger, c: c}, nil
}

// Info declares api_version 2, the OpenStack stemcell formats and every
// optional ability.
func (o *CPI) Info(context.Context) (cpi.Info, error) {
	return cpi.Info{
		APIVersion:      2,
		StemcellFormats: []string{"openstack-qcow2", "openstack-raw", "openstack-light"},
		Capabilities:    cpi.AllCapabilities,
	}, nil
}

func (o *CPI) sleep(ctx context.Context, d time.Duration) error {
	if o.deps.Sleep != nil {
		return o.deps.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// poll calls check until it reports done, an error, or state_timeout passes.
// Pauses start at 200ms and double up to wait_resource_poll_interval.
func (o *CPI) poll(ctx context.Context, what string, check func(ctx context.Context) (done bool, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.OpenStack.stateTimeout())
	defer cancel()
	d := 200 * time.Millisecond
	for {
		done, err := check(ctx)
		if err != nil || done {
			return err
		}
		if err := o.sleep(ctx, d); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		d = min(2*d, o.cfg.OpenStack.pollMax())
	}
}

// cleanupCtx is a context for undoing work after a failure or cancellation:
// not cancelled with the caller's, but bounded.
func (o *CPI) cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), o.cfg.OpenStack.stateTimeout())
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
