// Package vsphere is the vSphere CPI: BOSH's CPI method set on a vCenter,
// through github.com/vmware/govmomi. Stemcells are OVF templates imported
// through an NFC lease (snapshotted, so VMs are linked clones); a VM is one
// CloneVM_Task that places, sizes, wires (NICs on port groups, MACs derived
// from the IPs), delivers the agent settings (guestinfo.userdata and an env
// ISO on the CD-ROM) and powers on; persistent disks are independent VMDKs in
// the datacenter's disk_path on the persistent datastores.
//
// CIDs are UUIDs ("vm-<uuid>" is the VM's instanceUuid, "disk-<uuid>" the
// VMDK's name, "sc-<uuid>" the template's instanceUuid), so they survive
// vCenter restarts, renames and moves. Inventory lookups (datacenter, folders,
// clusters, resource pools, networks, templates, datastores) are cached for
// the life of the driver.
//
// It imports cpi, pkg/agent/settings and govmomi; nothing above it.
package vsphere

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kpaas/kpaas/cpi"
)

// Formats are the stemcell formats the driver accepts.
var Formats = []string{"vsphere-ovf", "vsphere-ova"}

// Driver is the vSphere CPI.
type Driver struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	trips  atomic.Int64
	mu     sync.Mutex // guards client, login, lastUse
	client *vim25.Client
	login  func(context.Context) error
	// lastUse is when the session was last used; after sessionIdle the
	// session is checked (and renewed) before use.
	lastUse time.Time
	inv     *inventory
}

// Options tune a Driver for tests.
type Options struct {
	// Transport replaces the HTTP transport (the round-trip counter wraps it).
	Transport http.RoundTripper
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// New returns a driver for cfg. It connects on first use.
func New(cfg Config, logger *slog.Logger) (*Driver, error) {
	return NewWithOptions(cfg, logger, Options{})
}

// NewWithOptions is New with test hooks.
func NewWithOptions(cfg Config, logger *slog.Logger, o Options) (*Driver, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Driver{cfg: cfg, log: logger, now: o.Now}
	d.inv = newInventory(d)
	return d, nil
}

// RoundTrips returns the number of HTTP requests made to vCenter so far
// (SOAP calls, datastore and NFC transfers).
func (d *Driver) RoundTrips() int64 { return d.trips.Load() }

// Config returns the driver's configuration (defaults applied).
func (d *Driver) Config() Config { return d.cfg }

type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// vc returns the logged-in client, connecting on first use.
func (d *Driver) vc(ctx context.Context) (*vim25.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if d.client != nil {
		if now.Sub(d.lastUse) > sessionIdle {
			// vCenter ends idle sessions (30 min by default) and forgets all
			// of them when it restarts.
			if us, err := session.NewManager(d.client).UserSession(ctx); err != nil || us == nil {
				if err := d.login(ctx); err != nil {
					return nil, err
				}
				d.log.Info("vsphere: the vCenter session had ended; logged in again")
			}
		}
		d.lastUse = now
		return d.client, nil
	}
	c, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	d.client = c
	d.lastUse = now
	return c, nil
}

// sessionIdle is how long a session may sit unused before it is checked.
const sessionIdle = 5 * time.Minute

func (d *Driver) connect(ctx context.Context) (*vim25.Client, error) {
	u, err := soap.ParseURL(d.cfg.Host)
	if err != nil {
		return nil, cpi.Errorf(cpi.TypeCloudError, false, "vsphere: parsing vCenter address %q: %w", d.cfg.Host, err)
	}
	u.User = nil
	insecure := d.cfg.ConnectionOptions.CACert == ""
	if d.cfg.Insecure != nil {
		insecure = *d.cfg.Insecure
	}
	if d.cfg.ConnectionOptions.CACert == "" && d.cfg.Insecure == nil {
		d.log.Warn("vsphere: no connection_options.ca_cert given; vCenter's TLS certificate is not verified (set ca_cert to verify it)", "host", u.Host)
	}
	sc := soap.NewClient(u, insecure)
	if d.cfg.ConnectionOptions.CACert != "" && !insecure {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(d.cfg.ConnectionOptions.CACert)) {
			return nil, cpi.Errorf(cpi.TypeCloudError, false, "vsphere: connection_options.ca_cert holds no PEM certificate")
		}
		if tr, ok := sc.Client.Transport.(*http.Transport); ok {
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
	}
	next := sc.Client.Transport
	sc.Client.Transport = countingTransport{next: next, n: &d.trips}
	c, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, classify(fmt.Errorf("vsphere: connecting to vCenter %s: %w", u.Host, err))
	}
	login := func(ctx context.Context) error {
		if err := session.NewManager(c).Login(ctx, url.UserPassword(d.cfg.User, d.cfg.Password)); err != nil {
			return classify(fmt.Errorf("vsphere: logging in to vCenter %s as %s: %w", u.Host, d.cfg.User, err))
		}
		return nil
	}
	if err := login(ctx); err != nil {
		return nil, err
	}
	d.login = login
	c.RoundTripper = &relogin{next: c.RoundTripper, login: login, log: d.log}
	return c, nil
}

// relogin logs in again when vCenter says the session is gone (it expired,
// or vCenter restarted) and repeats the call once, so a long-lived driver
// survives both.
type relogin struct {
	next  soap.RoundTripper
	login func(context.Context) error
	log   *slog.Logger
	mu    sync.Mutex
}

func (r *relogin) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	err := r.next.RoundTrip(ctx, req, res)
	if err == nil || !notAuthenticated(err) {
		return err
	}
	r.mu.Lock()
	lerr := r.login(ctx)
	r.mu.Unlock()
	if lerr != nil {
		r.log.Warn("vsphere: the vCenter session had ended; logging in again failed", "err", lerr)
		return err
	}
	r.log.Info("vsphere: the vCenter session had ended; logged in again")
	// The response body kept the first answer's fault: clear it.
	if v := reflect.ValueOf(res); v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
		if f := v.Elem().FieldByName("Fault_"); f.IsValid() && f.CanSet() {
			f.Set(reflect.Zero(f.Type()))
		}
	}
	return r.next.RoundTrip(ctx, req, res)
}

func notAuthenticated(err error) bool {
	if fault.Is(err, &types.NotAuthenticated{}) {
		return true
	}
	if soap.IsSoapFault(err) {
		switch soap.ToSoapFault(err).VimFault().(type) {
		case types.NotAuthenticated, *types.NotAuthenticated:
			return true
		}
	}
	return false
}

// Close logs out.
func (d *Driver) Close(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return nil
	}
	err := session.NewManager(d.client).Logout(ctx)
	d.client = nil
	return err
}

// Info declares api_version 2, the vSphere stemcell formats and the
// optional abilities.
func (d *Driver) Info(context.Context) (cpi.Info, error) {
	return cpi.Info{APIVersion: 2, StemcellFormats: Formats, Capabilities: cpi.AllCapabilities}, nil
}

// errInternal marks a programming error.
var errInternal = errors.New("internal error")
