package openstack

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
)

// faults answers matching requests itself (the real cloud never sees them)
// for their first N occurrences, to inject rate limits and server errors
// into runs against the real OpenStack.
type faults struct {
	rt    http.RoundTripper
	mu    sync.Mutex
	rules []*fault
}

type fault struct {
	method, pathSuffix string
	status, times      int
	header             http.Header
	hits               int
}

func (f *faults) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	for _, rule := range f.rules {
		if r.Method == rule.method && strings.HasSuffix(r.URL.Path, rule.pathSuffix) && rule.hits < rule.times {
			rule.hits++
			f.mu.Unlock()
			if r.Body != nil {
				_, _ = io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
			h := rule.header.Clone()
			if h == nil {
				h = http.Header{}
			}
			h.Set("Content-Type", "application/json")
			return &http.Response{StatusCode: rule.status, Header: h, Request: r,
				Body: io.NopCloser(strings.NewReader(`{"error":{"message":"injected by the test"}}`))}, nil
		}
	}
	f.mu.Unlock()
	return f.rt.RoundTrip(r)
}

func TestInjectedFaultsAgainstTheRealCloud(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	inj := &faults{}
	c, err := New(ctx, configFromEnv(tc.userEnv), Deps{WrapTransport: func(rt http.RoundTripper) http.RoundTripper { inj.rt = rt; return inj }}, nil)
	require.NoError(t, err)

	t.Run("503 and 429 are retried; one server results", func(t *testing.T) {
		before := tc.inv(t)
		inj.rules = []*fault{
			{method: "POST", pathSuffix: "/servers", status: 503, times: 2},
			{method: "GET", pathSuffix: "/flavors/detail", status: 429, times: 1, header: http.Header{"Retry-After": {"1"}}},
		}
		vm, _, err := c.CreateVM(ctx, "agent-retry", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.97"), nil, cpi.Env{})
		require.NoError(t, err)
		assert.Equal(t, 2, inj.rules[0].hits)
		assert.Equal(t, 1, inj.rules[1].hits)
		after := tc.inv(t)
		assert.Len(t, after, len(before)+2, "exactly one server and its port: %v", after)
		require.NoError(t, c.DeleteVM(ctx, vm))
		assert.Equal(t, before, tc.inv(t))
	})

	t.Run("a 500 on the server create is not repeated and the port is cleaned up", func(t *testing.T) {
		before := tc.inv(t)
		inj.rules = []*fault{{method: "POST", pathSuffix: "/servers", status: 500, times: 5}}
		_, _, err := c.CreateVM(ctx, "agent-500", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.98"), nil, cpi.Env{})
		assertCPIError(t, err, cpi.TypeVMCreationFail, false, "injected by the test")
		assert.Equal(t, 1, inj.rules[0].hits)
		assert.Equal(t, before, tc.inv(t))
	})

	t.Run("a failing cleanup is reported, not hidden", func(t *testing.T) {
		inj.rules = []*fault{
			{method: "POST", pathSuffix: "/servers", status: 400, times: 1},
			{method: "DELETE", pathSuffix: "", status: 403, times: 1},
		}
		_, _, err := c.CreateVM(ctx, "agent-cleanup", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.99"), nil, cpi.Env{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "cleanup also failed, delete by hand")
		inj.rules = nil
		// the port the failed cleanup left: delete it the way an operator would
		require.NoError(t, tc.deletePortsNamed(ctx, "-private"))
	})
}
