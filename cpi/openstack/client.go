package openstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gos "github.com/gophercloud/gophercloud/v2/openstack"
)

// clients are the service clients one CPI uses.
type clients struct {
	provider *gophercloud.ProviderClient
	compute  *gophercloud.ServiceClient
	network  *gophercloud.ServiceClient
	image    *gophercloud.ServiceClient
	volume   *gophercloud.ServiceClient
}

// computeMicroversion is the Nova API microversion the driver speaks: 2.67
// (Stein) has everything it uses (block_device_mapping_v2 volume_type,
// tagged attachments, server tags).
const computeMicroversion = "2.67"

func (o OpenStackConfig) authOptions() gophercloud.AuthOptions {
	url := strings.TrimRight(o.AuthURL, "/")
	url = strings.TrimSuffix(url, "/auth/tokens")
	url = strings.TrimSuffix(url, "/tokens")
	opts := gophercloud.AuthOptions{
		IdentityEndpoint: url + "/",
		Username:         o.Username,
		UserID:           o.UserID,
		Password:         o.password(),
		AllowReauth:      true,

		ApplicationCredentialID:     o.ApplicationCredentialID,
		ApplicationCredentialName:   o.ApplicationCredentialName,
		ApplicationCredentialSecret: o.ApplicationCredentialSecret,
	}
	if o.UserID == "" {
		switch {
		case o.UserDomainID != "":
			opts.DomainID = o.UserDomainID
		case o.UserDomainName != "":
			opts.DomainName = o.UserDomainName
		case o.Domain != "":
			opts.DomainName = o.Domain
		default:
			opts.DomainID = "default"
		}
	}
	if opts.ApplicationCredentialID != "" || opts.ApplicationCredentialName != "" {
		opts.Password = "" // an application credential is already scoped to its project
		if opts.ApplicationCredentialID != "" {
			opts.DomainID, opts.DomainName, opts.Username = "", "", ""
		}
		return opts
	}
	scope := &gophercloud.AuthScope{ProjectID: o.ProjectID}
	if scope.ProjectID == "" {
		scope.ProjectName = o.Project
		if scope.ProjectName == "" {
			scope.ProjectName = o.Tenant
		}
		switch {
		case o.ProjectDomainID != "":
			scope.DomainID = o.ProjectDomainID
		case o.ProjectDomainName != "":
			scope.DomainName = o.ProjectDomainName
		case o.Domain != "":
			scope.DomainName = o.Domain
		default:
			scope.DomainID = "default"
		}
	}
	opts.Scope = scope
	return opts
}

func (o OpenStackConfig) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.ConnectionOptions.Insecure || (o.ConnectionOptions.SSLVerifyPeer != nil && !*o.ConnectionOptions.SSLVerifyPeer) {
		cfg.InsecureSkipVerify = true //nolint:gosec // the operator asked for it (connection_options.ssl_verify_peer: false)
	}
	if o.ConnectionOptions.CACert != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(o.ConnectionOptions.CACert)) {
			return nil, fmt.Errorf("openstack.connection_options.ca_cert holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// connect authenticates and finds the four services in the catalog.
func connect(ctx context.Context, cfg OpenStackConfig, deps Deps, log *slog.Logger) (*clients, error) {
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tlsCfg
	base.MaxIdleConnsPerHost = 32
	// No overall client timeout: a stemcell upload may take long. A request
	// whose answer does not start within 5 minutes of being sent fails.
	base.ResponseHeaderTimeout = 5 * time.Minute
	var rt http.RoundTripper = base
	if deps.WrapTransport != nil {
		rt = deps.WrapTransport(rt)
	}
	opts := cfg.authOptions()
	provider, err := gos.NewClient(opts.IdentityEndpoint)
	if err != nil {
		return nil, fmt.Errorf("openstack.auth_url %q: %w", cfg.AuthURL, err)
	}
	provider.HTTPClient = http.Client{Transport: rt}
	provider.UserAgent.Prepend("kpaas-openstack-cpi")
	r := retrier{max: cfg.maxRetries(), sleep: deps.Sleep, log: log}
	provider.RetryFunc = r.retry
	provider.RetryBackoffFunc = r.backoff429
	provider.MaxBackoffRetries = uint(r.max)
	if err := gos.Authenticate(ctx, provider, opts); err != nil {
		return nil, authError(cfg, err)
	}
	eo := gophercloud.EndpointOpts{Region: cfg.Region}
	switch cfg.EndpointType {
	case "internal", "internalURL":
		eo.Availability = gophercloud.AvailabilityInternal
	case "admin", "adminURL":
		eo.Availability = gophercloud.AvailabilityAdmin
	}
	c := &clients{provider: provider}
	if c.compute, err = gos.NewComputeV2(provider, eo); err != nil {
		return nil, catalogError("compute (Nova)", cfg, err)
	}
	c.compute.Microversion = computeMicroversion
	if c.network, err = gos.NewNetworkV2(provider, eo); err != nil {
		return nil, catalogError("network (Neutron)", cfg, err)
	}
	if c.image, err = gos.NewImageV2(provider, eo); err != nil {
		return nil, catalogError("image (Glance)", cfg, err)
	}
	if c.volume, err = gos.NewBlockStorageV3(provider, eo); err != nil {
		return nil, catalogError("volumev3 (Cinder)", cfg, err)
	}
	return c, nil
}

func authError(cfg OpenStackConfig, err error) error {
	who := cfg.Username
	if who == "" {
		who = cfg.UserID
	}
	if cfg.ApplicationCredentialID != "" || cfg.ApplicationCredentialName != "" {
		who = "application credential " + cfg.ApplicationCredentialID + cfg.ApplicationCredentialName
	}
	retry := false
	hint := "check openstack.auth_url, the credentials, domain and project"
	if code := statusOf(err); code == http.StatusUnauthorized {
		hint = "Keystone refused the credentials: check username/api_key (or the application credential), domain and project"
	} else if code == 0 || code >= 500 {
		retry = true
		hint = "Keystone did not answer properly: check that " + cfg.AuthURL + " is reachable"
	}
	return cloudErr(fmt.Sprintf("authenticating %s at %s", who, cfg.AuthURL), err, hint, retry)
}

func catalogError(service string, cfg OpenStackConfig, err error) error {
	region := cfg.Region
	if region == "" {
		region = "(any region)"
	}
	return cloudErr("finding the "+service+" endpoint", err,
		"the Keystone catalog has no such endpoint in region "+region+"; check openstack.region and endpoint_type", false)
}

// retrier retries requests that failed for a reason that may pass: rate
// limits (429, honouring Retry-After), gateway errors (502/503/504) and, for
// requests that are safe to repeat, 500s and transport errors.
type retrier struct {
	max   int
	sleep func(context.Context, time.Duration) error
	log   *slog.Logger
}

func (r retrier) wait(ctx context.Context, d time.Duration) error {
	if r.sleep != nil {
		return r.sleep(ctx, d)
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

func backoff(n uint) time.Duration {
	d := 500 * time.Millisecond << min(n-1, 5)
	return min(d, 10*time.Second)
}

func (r retrier) retry(ctx context.Context, method, url string, options *gophercloud.RequestOpts, err error, n uint) error {
	if int(n) > r.max || ctx.Err() != nil || options.RawBody != nil {
		return err
	}
	idempotent := method == http.MethodGet || method == http.MethodHead || method == http.MethodDelete || method == http.MethodPut
	var ue gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &ue) {
		switch {
		case ue.Actual == http.StatusBadGateway || ue.Actual == http.StatusServiceUnavailable || ue.Actual == http.StatusGatewayTimeout:
		case ue.Actual == http.StatusInternalServerError && idempotent:
		default:
			return err
		}
	} else if !idempotent {
		return err // a POST whose answer was lost may have taken effect
	}
	d := backoff(n)
	if r.log != nil {
		r.log.Warn("retrying openstack request", "method", method, "url", url, "attempt", n, "after", d, "error", firstLine(err.Error()))
	}
	if werr := r.wait(ctx, d); werr != nil {
		return err
	}
	return nil
}

func (r retrier) backoff429(ctx context.Context, ue *gophercloud.ErrUnexpectedResponseCode, err error, n uint) error {
	d := backoff(n)
	if s := ue.ResponseHeader.Get("Retry-After"); s != "" {
		if secs, perr := strconv.Atoi(s); perr == nil && secs >= 0 {
			d = min(time.Duration(secs)*time.Second, time.Minute)
		}
	}
	if r.log != nil {
		r.log.Warn("openstack rate limit; backing off", "url", ue.URL, "attempt", n, "after", d)
	}
	if werr := r.wait(ctx, d); werr != nil {
		return *ue
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
