package openstack

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
)

// BenchmarkCreateDeleteVM10Parallel: 10 create_vm calls in parallel (each to
// ACTIVE, on a manual network with a static IP), then the 10 delete_vm calls
// in parallel. ns/op is one batch of 10; the metrics are the API calls one
// create_vm and one delete_vm make (counted at the HTTP transport).
func BenchmarkCreateDeleteVM10Parallel(b *testing.B) {
	tc := newTestCloud(b)
	ctx := context.Background()
	sc, err := tc.cpi.CreateStemcell(ctx, "", cpi.Props{"image_id": tc.imageID(b, "fake-image")})
	require.NoError(b, err)
	props := cpi.Props{"instance_type": "m1.tiny"}
	const n = 10
	var createCalls, deleteCalls int64
	var createTime time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		vms := make([]cpi.VMCID, n)
		errs := make([]error, n)
		c0 := tc.calls.n.Load()
		t0 := time.Now()
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vms[i], _, errs[i] = tc.cpi.CreateVM(ctx, cpi.AgentID(fmt.Sprintf("bench-%d", i)), sc, props, tc.manual(fmt.Sprintf("10.0.0.%d", 200+i)), nil, cpi.Env{})
			}()
		}
		wg.Wait()
		createTime += time.Since(t0)
		c1 := tc.calls.n.Load()
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if vms[i] != "" {
					if err := tc.cpi.DeleteVM(ctx, vms[i]); err != nil && errs[i] == nil {
						errs[i] = err
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(b, err)
		}
		createCalls += c1 - c0
		deleteCalls += tc.calls.n.Load() - c1
	}
	b.ReportMetric(float64(createCalls)/float64(b.N*n), "calls/create_vm")
	b.ReportMetric(float64(deleteCalls)/float64(b.N*n), "calls/delete_vm")
	b.ReportMetric(createTime.Seconds()/float64(b.N), "s/10-creates")
}

// TestAPICallsPerCreateVM logs which API calls one create_vm and one
// delete_vm make, so a change that adds calls shows up. The bound is the
// calls this design needs (flavors, image, port, server create, polls) plus
// slack for slow polls; it fails when a change adds calls per VM.
func TestAPICallsPerCreateVM(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc, err := tc.cpi.CreateStemcell(ctx, "", cpi.Props{"image_id": tc.imageID(t, "fake-image")})
	require.NoError(t, err)
	rec := &recorder{}
	tc.calls.setHook(rec.add)
	vm, _, err := tc.cpi.CreateVM(ctx, "agent-calls", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.199"), nil, cpi.Env{})
	tc.calls.setHook(nil)
	require.NoError(t, err)
	create := rec.take()
	tc.calls.setHook(rec.add)
	require.NoError(t, tc.cpi.DeleteVM(ctx, vm))
	tc.calls.setHook(nil)
	del := rec.take()
	t.Logf("create_vm: %d calls: %s", create.total(), create)
	t.Logf("delete_vm: %d calls: %s", del.total(), del)
	polls := create["GET compute/servers/ID"]
	require.LessOrEqual(t, create.total()-polls, 5, "create_vm without the status polls: flavors, image, port, server")
}

type callCounts map[string]int

func (c callCounts) total() (n int) {
	for _, v := range c {
		n += v
	}
	return n
}

func (c callCounts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
	}
	return strings.Join(parts, ", ")
}

var idRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}`)

type recorder struct {
	mu sync.Mutex
	c  callCounts
}

func (r *recorder) add(method, host, path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		r.c = callCounts{}
	}
	svc := map[string]string{"8774": "compute", "9696": "network", "9292": "image", "8776": "volume", "5000": "identity"}[host[strings.LastIndexByte(host, ':')+1:]]
	p := idRE.ReplaceAllString(path, "ID")
	p = strings.TrimPrefix(p, "/v2.1")
	p = strings.TrimPrefix(p, "/v2.0")
	p = strings.TrimPrefix(p, "/v2")
	p = strings.TrimPrefix(p, "/v3/ID")
	r.c[method+" "+svc+p]++
}

func (r *recorder) take() callCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.c
	r.c = nil
	return c
}
