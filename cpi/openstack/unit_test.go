package openstack

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
)

func TestParseConfigShapes(t *testing.T) {
	props := `{"openstack":{"auth_url":"https://ks:5000/v3","username":"u","api_key":"p","domain":"D","project":"ap","region":"RegionOne","default_key_name":"ap","default_security_groups":["ap"],"human_readable_vm_names":true},"agent":{"ntp":["pool.ntp.org"]}}`
	flat := `{"auth_url":"https://ks:5000/v3","username":"u","api_key":"p","domain":"D","project":"ap","region":"RegionOne","default_key_name":"ap","default_security_groups":["ap"],"human_readable_vm_names":true}`
	for name, doc := range map[string]string{
		"job properties": props,
		"cpi.json":       `{"cloud":{"plugin":"openstack","properties":` + props + `}}`,
		"flat":           flat,
	} {
		t.Run(name, func(t *testing.T) {
			c, err := ParseConfig([]byte(doc))
			require.NoError(t, err)
			o := c.OpenStack
			assert.Equal(t, "https://ks:5000/v3", o.AuthURL)
			assert.Equal(t, "p", o.password())
			assert.Equal(t, []string{"ap"}, o.DefaultSecurityGroups)
			assert.True(t, o.HumanReadableVMNames)
			assert.True(t, o.useDHCP(), "use_dhcp defaults to true as in BOSH")
			assert.Equal(t, 300*time.Second, o.stateTimeout())
		})
	}
}

// TestParseConfigContextOverlay: a multi-CPI context's flat properties
// (overlaid at the top level by kpaas cpi) replace the job's openstack keys.
func TestParseConfigContextOverlay(t *testing.T) {
	doc := `{"cloud":{"properties":{"openstack":{"auth_url":"https://a/v3","username":"u","api_key":"p","project":"ap","use_dhcp":false},"agent":{"ntp":["x"]}}},"auth_url":"https://b/v3","api_key":"q"}`
	c, err := ParseConfig([]byte(doc))
	require.NoError(t, err)
	assert.Equal(t, "https://b/v3", c.OpenStack.AuthURL)
	assert.Equal(t, "q", c.OpenStack.password())
	assert.Equal(t, "u", c.OpenStack.Username)
	assert.False(t, c.OpenStack.useDHCP())
	assert.Equal(t, []any{"x"}, c.Agent["ntp"])
}

func TestValidateSaysEveryProblem(t *testing.T) {
	_, err := ParseConfig([]byte(`{"openstack":{"config_drive":"floppy","use_nova_networking":true}}`))
	require.Error(t, err)
	for _, want := range []string{"auth_url is required", "username is required", "api_key is required", "project (or project_id) is required", `config_drive "floppy"`, "use_nova_networking is not supported"} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = ParseConfig([]byte(`{"auth_url":"u","application_credential_id":"x"}`))
	require.ErrorContains(t, err, "application_credential_secret is required")
	_, err = ParseConfig([]byte(`{"auth_url":"u","application_credential_id":"x","application_credential_secret":"s"}`))
	require.NoError(t, err, "an application credential needs no user, password or project")
}

func TestAuthOptions(t *testing.T) {
	cases := []struct {
		name  string
		in    OpenStackConfig
		check func(t *testing.T, o gophercloud.AuthOptions)
	}{
		{"names with one domain (BOSH)", OpenStackConfig{AuthURL: "https://ks:5000/v3/", Username: "u", APIKey: "p", Domain: "D", Project: "ap"},
			func(t *testing.T, o gophercloud.AuthOptions) {
				assert.Equal(t, "https://ks:5000/v3/", o.IdentityEndpoint)
				assert.Equal(t, "D", o.DomainName)
				assert.Equal(t, &gophercloud.AuthScope{ProjectName: "ap", DomainName: "D"}, o.Scope)
			}},
		{"ids and separate domains", OpenStackConfig{AuthURL: "https://ks/v3/auth/tokens", Username: "u", Password: "p", UserDomainID: "ud", ProjectDomainName: "PD", Project: "ap"},
			func(t *testing.T, o gophercloud.AuthOptions) {
				assert.Equal(t, "https://ks/v3/", o.IdentityEndpoint, "BOSH's /auth/tokens suffix is dropped")
				assert.Equal(t, "ud", o.DomainID)
				assert.Equal(t, &gophercloud.AuthScope{ProjectName: "ap", DomainName: "PD"}, o.Scope)
			}},
		{"project id, default domain", OpenStackConfig{AuthURL: "https://ks/v3", Username: "u", APIKey: "p", ProjectID: "pid"},
			func(t *testing.T, o gophercloud.AuthOptions) {
				assert.Equal(t, "default", o.DomainID)
				assert.Equal(t, &gophercloud.AuthScope{ProjectID: "pid"}, o.Scope)
			}},
		{"keystone v2 tenant name", OpenStackConfig{AuthURL: "https://ks/v3", Username: "u", APIKey: "p", Tenant: "t"},
			func(t *testing.T, o gophercloud.AuthOptions) {
				assert.Equal(t, "t", o.Scope.ProjectName)
			}},
		{"application credential id", OpenStackConfig{AuthURL: "https://ks/v3", ApplicationCredentialID: "acid", ApplicationCredentialSecret: "s", Username: "u"},
			func(t *testing.T, o gophercloud.AuthOptions) {
				assert.Equal(t, "acid", o.ApplicationCredentialID)
				assert.Empty(t, o.Username)
				assert.Empty(t, o.Password)
				assert.Nil(t, o.Scope, "an application credential is scoped already")
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, c.in.authOptions()) })
	}
}

// TestCACertAndInsecure: the CA bundle makes a TLS server with that CA
// trusted; without it the same request fails; insecure skips verification.
func TestCACertAndInsecure(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	get := func(o OpenStackConfig) error {
		cfg, err := o.tlsConfig()
		if err != nil {
			return err
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	require.Error(t, get(OpenStackConfig{}), "an unknown CA is refused")
	require.NoError(t, get(OpenStackConfig{ConnectionOptions: ConnectionOptions{CACert: ca}}))
	no := false
	require.NoError(t, get(OpenStackConfig{ConnectionOptions: ConnectionOptions{SSLVerifyPeer: &no}}))
	_, err := OpenStackConfig{ConnectionOptions: ConnectionOptions{CACert: "not pem"}}.tlsConfig()
	require.ErrorContains(t, err, "no PEM certificate")
}

// TestRetries: 503 and 429 are retried with backoff (429 after Retry-After),
// a POST that got a 500 is not repeated, and retries stop at max_retries.
func TestRetries(t *testing.T) {
	var calls atomic.Int32
	var failFirst atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.URL.Path {
		case "/flaky":
			if n <= failFirst.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		case "/limited":
			if n == 1 {
				w.Header().Set("Retry-After", "3")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
		case "/post500":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"computeFault":{"code":500,"message":"boom"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	var slept []time.Duration
	newProvider := func(max int) *gophercloud.ProviderClient {
		r := retrier{max: max, sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }}
		p := &gophercloud.ProviderClient{HTTPClient: http.Client{}}
		p.RetryFunc, p.RetryBackoffFunc, p.MaxBackoffRetries = r.retry, r.backoff429, uint(max)
		return p
	}
	ctx := context.Background()
	run := func(p *gophercloud.ProviderClient, method, path string) error {
		calls.Store(0)
		slept = nil
		_, err := p.Request(ctx, method, srv.URL+path, &gophercloud.RequestOpts{JSONBody: map[string]any{}, JSONResponse: new(map[string]any), OkCodes: []int{200}})
		return err
	}

	failFirst.Store(2)
	require.NoError(t, run(newProvider(5), http.MethodGet, "/flaky"))
	assert.Equal(t, int32(3), calls.Load())
	assert.Equal(t, []time.Duration{500 * time.Millisecond, time.Second}, slept, "exponential backoff")

	require.NoError(t, run(newProvider(5), http.MethodPost, "/flaky"), "a 503 means the request was not handled: even a POST is repeated")

	require.NoError(t, run(newProvider(5), http.MethodGet, "/limited"))
	assert.Equal(t, []time.Duration{3 * time.Second}, slept, "Retry-After is honoured")

	err := run(newProvider(5), http.MethodPost, "/post500")
	require.Error(t, err)
	assert.Equal(t, int32(1), calls.Load(), "a POST that may have taken effect is not repeated")
	assert.Equal(t, "boom (HTTP 500 from POST "+srv.URL+"/post500)", apiMessage(err))

	failFirst.Store(100)
	err = run(newProvider(2), http.MethodGet, "/flaky")
	require.Error(t, err)
	assert.Equal(t, int32(3), calls.Load(), "1 try + max_retries")
	assert.Equal(t, http.StatusServiceUnavailable, statusOf(err))
	assert.True(t, apiErr("getting x", err).OkToRetry, "a 503 that outlived the retries is still ok_to_retry for the caller")
}

func TestAPIErrClassification(t *testing.T) {
	mk := func(code int, body string) error {
		return gophercloud.ErrUnexpectedResponseCode{Actual: code, Body: []byte(body), Method: "POST", URL: "http://x/y"}
	}
	quota := apiErr("creating volume", mk(413, `{"overLimit":{"code":413,"message":"VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota."}}`))
	assert.Equal(t, cpi.TypeCloudError, quota.Type)
	assert.False(t, quota.OkToRetry)
	assert.Contains(t, quota.Message, "quota is exhausted")
	nf := mk(404, `{"NeutronError":{"type":"NetworkNotFound","message":"Network abc could not be found.","detail":""}}`)
	assert.True(t, isNotFound(nf))
	assert.Contains(t, apiMessage(nf), "Network abc could not be found.")
	assert.True(t, apiErr("x", mk(503, "<html>busy</html>")).OkToRetry)
	assert.False(t, apiErr("x", mk(400, `{"badRequest":{"message":"Invalid key_name provided."}}`)).OkToRetry)
}

func TestPlanNetworksRefusesWhatOpenStackCannotDo(t *testing.T) {
	for want, nets := range map[string]cpi.Networks{
		"net_id is required":               {"a": {Type: "manual", IP: "10.0.0.5"}},
		"only one vip":                     {"a": {Type: "manual", IP: "1.1.1.1", CloudProperties: cpi.Props{"net_id": "n"}}, "v1": {Type: "vip", IP: "2.2.2.2"}, "v2": {Type: "vip", IP: "3.3.3.3"}},
		"at least one manual or dynamic":   {"v": {Type: "vip", IP: "2.2.2.2"}},
		`type "bridge" is not one of`:      {"a": {Type: "bridge"}},
		"no ip and no cloud_properties.fl": {"a": {Type: "dynamic", CloudProperties: cpi.Props{"net_id": "n"}}, "v": {Type: "vip"}},
	} {
		_, err := planNetworks(nets)
		assert.ErrorContains(t, err, want)
	}
	p, err := planNetworks(cpi.Networks{
		"b": {Type: "manual", IP: "10.0.1.5", CloudProperties: cpi.Props{"net_id": "nb"}},
		"a": {Type: "dynamic", Default: []string{"gateway"}, CloudProperties: cpi.Props{"net_id": "na"}},
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, p.names)
	assert.Equal(t, "a", p.gateway, "the floating IP goes to the network with the default gateway")
}

func TestGiB(t *testing.T) {
	assert.Equal(t, 1, gib(1))
	assert.Equal(t, 1, gib(1024))
	assert.Equal(t, 2, gib(1025))
}
