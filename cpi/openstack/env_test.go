package openstack

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/kpaas/kpaas/cpi/openstack/openstacktest"
)

// ciPointer is where .ci/setup-openstack.sh records the demorc it made, so
// the tests find the cloud in CI without .ci/run exporting anything.
const ciPointer = "/tmp/kpaas-ci/openstack-rc"

// cloudEnv finds the OpenStack the integration tests use: OS_* from the
// environment (source the demorc setup.sh writes), else the rc file named by
// $KPAAS_OPENSTACK_RC or recorded in ciPointer. It skips the test otherwise.
// It also returns the admin rc's variables when an adminrc sits beside the
// rc file (to read back user_data, which only admins may see).
func cloudEnv(t testing.TB) (user, admin map[string]string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against a real OpenStack; skipped with -short")
	}
	openstacktest.Use(t)
	if os.Getenv("OS_AUTH_URL") != "" {
		user = map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OS_") {
				user[k] = v
			}
		}
		if p := os.Getenv("KPAAS_OPENSTACK_ADMIN_RC"); p != "" {
			admin, _ = readRC(p)
		}
		return user, admin
	}
	rc := os.Getenv("KPAAS_OPENSTACK_RC")
	if rc == "" {
		if b, err := os.ReadFile(ciPointer); err == nil {
			rc = strings.TrimSpace(string(b))
		}
	}
	if rc == "" {
		t.Skip("no OpenStack: set OS_AUTH_URL (source the demorc of ../shared/openstack/setup.sh) to run")
	}
	user, err := readRC(rc)
	require.NoError(t, err, "reading the OpenStack rc file %s", rc)
	admin, _ = readRC(filepath.Join(filepath.Dir(rc), "adminrc"))
	return user, admin
}

// readRC reads `export K=V` lines.
func readRC(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "OS_") {
			out[k] = strings.Trim(v, `"'`)
		}
	}
	return out, sc.Err()
}

// configFromEnv maps the OS_* variables of an rc file onto the driver's config.
func configFromEnv(env map[string]string) Config {
	o := OpenStackConfig{
		AuthURL: env["OS_AUTH_URL"], Username: env["OS_USERNAME"], APIKey: env["OS_PASSWORD"],
		Project: env["OS_PROJECT_NAME"], ProjectID: env["OS_PROJECT_ID"],
		UserDomainID: env["OS_USER_DOMAIN_ID"], UserDomainName: env["OS_USER_DOMAIN_NAME"],
		ProjectDomainID: env["OS_PROJECT_DOMAIN_ID"], ProjectDomainName: env["OS_PROJECT_DOMAIN_NAME"],
		Region:                      env["OS_REGION_NAME"],
		ApplicationCredentialID:     env["OS_APPLICATION_CREDENTIAL_ID"],
		ApplicationCredentialSecret: env["OS_APPLICATION_CREDENTIAL_SECRET"],
		StateTimeout:                120,
		WaitResourcePollInterval:    1,
	}
	if o.ProjectID != "" {
		o.Project = "" // by ID; the by-name path is tested on its own
	}
	if ca := env["OS_CACERT"]; ca != "" {
		if b, err := os.ReadFile(ca); err == nil {
			o.ConnectionOptions.CACert = string(b)
		}
	}
	return Config{OpenStack: o}
}

// counter counts HTTP requests, for API calls per operation.
type counter struct {
	rt   http.RoundTripper
	n    atomic.Int64
	hook atomic.Pointer[func(method, host, path string)]
}

// setHook makes every request call h (nil: none).
func (c *counter) setHook(h func(method, host, path string)) {
	if h == nil {
		c.hook.Store(nil)
		return
	}
	c.hook.Store(&h)
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	if h := c.hook.Load(); h != nil {
		(*h)(r.Method, r.URL.Host, r.URL.Path)
	}
	return c.rt.RoundTrip(r)
}

// testCloud is the driver as the demo project, plus the IDs of the seeded
// networks.
type testCloud struct {
	cpi      *CPI
	admin    *CPI // nil without admin credentials
	privNet  string
	pubNet   string
	calls    *counter
	userEnv  map[string]string
	adminEnv map[string]string
}

func newTestCloud(t testing.TB) *testCloud {
	t.Helper()
	user, admin := cloudEnv(t)
	ctx := context.Background()
	tc := &testCloud{userEnv: user, adminEnv: admin}
	deps := Deps{WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
		tc.calls = &counter{rt: rt}
		return tc.calls
	}}
	c, err := New(ctx, configFromEnv(user), deps, nil)
	require.NoError(t, err, "connecting to OpenStack at %s as %s", user["OS_AUTH_URL"], user["OS_USERNAME"])
	tc.cpi = c
	if admin != nil {
		if a, err := New(ctx, configFromEnv(admin), Deps{}, nil); err == nil {
			tc.admin = a
		}
	}
	tc.privNet = tc.networkID(t, "private")
	tc.pubNet = tc.networkID(t, "public")
	return tc
}

func (tc *testCloud) networkID(t testing.TB, name string) string {
	t.Helper()
	pages, err := networks.List(tc.cpi.c.network, networks.ListOpts{Name: name}).AllPages(context.Background())
	require.NoError(t, err)
	ns, err := networks.ExtractNetworks(pages)
	require.NoError(t, err)
	require.NotEmpty(t, ns, "network %q (seeded by setup.sh) not found", name)
	return ns[0].ID
}

type gophercloudServiceClient = gophercloud.ServiceClient

func gophercloudEndpointOpts(region string) gophercloud.EndpointOpts {
	return gophercloud.EndpointOpts{Region: region}
}

func (tc *testCloud) imageID(t testing.TB, name string) string {
	t.Helper()
	pages, err := images.List(tc.cpi.c.image, images.ListOpts{Name: name}).AllPages(context.Background())
	require.NoError(t, err)
	is, err := images.ExtractImages(pages)
	require.NoError(t, err)
	require.NotEmpty(t, is, "image %q (seeded by setup.sh) not found", name)
	return is[0].ID
}

// deletePortsNamed deletes the project's unbound ports whose name ends with suffix.
func (tc *testCloud) deletePortsNamed(ctx context.Context, suffix string) error {
	pages, err := ports.List(tc.cpi.c.network, ports.ListOpts{}).AllPages(ctx)
	if err != nil {
		return err
	}
	ps, err := ports.ExtractPorts(pages)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.DeviceID == "" && strings.HasSuffix(p.Name, suffix) {
			if err := ports.Delete(ctx, tc.cpi.c.network, p.ID).ExtractErr(); err != nil {
				return err
			}
		}
	}
	return nil
}
