package vsphere_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/vsphere"
	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
)

// BenchmarkCreateDeleteVM16Parallel: one op is 16 create_vm + delete_vm
// pairs running at once against the in-process simulator (warm caches).
// Reported besides ns/op: ms per VM, and vSphere API round trips (HTTP
// requests: SOAP, datastore and NFC transfers) per create_vm (cold: a fresh
// driver; warm: caches filled) and per delete_vm.
func BenchmarkCreateDeleteVM16Parallel(b *testing.B) {
	s := vspheretest.Start(b)
	d := s.Driver
	sc, err := d.CreateStemcell(ctx, vspheretest.StemcellImage(b), nil)
	require.NoError(b, err)
	props := cpi.Props{"cpu": 2, "ram": 1024, "disk": 10240}
	nets := func(i int) cpi.Networks {
		return cpi.Networks{"default": {Type: "manual", IP: fmt.Sprintf("10.1.%d.%d", i/200, i%200+10), Netmask: "255.255.0.0", Gateway: "10.1.0.1",
			Default: []string{"dns", "gateway"}, CloudProperties: cpi.Props{"name": "VM Network"}}}
	}
	// A fresh driver's first create_vm (login, inventory lookups: what each
	// call of a `kpaas cpi vsphere` process pays) warms the caches the way a
	// deploy's first VM does.
	d, err = vsphere.New(s.Config, nil)
	require.NoError(b, err)
	vm, _, err := d.CreateVM(ctx, "warm", sc, props, nets(0), nil, nil)
	require.NoError(b, err)
	cold := d.RoundTrips()
	require.NoError(b, d.DeleteVM(ctx, vm))

	var createTrips, deleteTrips, creates int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for j := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vm, _, err := d.CreateVM(ctx, cpi.AgentID(fmt.Sprint(j)), sc, props, nets(j+1), nil, nil)
				if err != nil {
					errs <- err
					return
				}
				if err := d.DeleteVM(ctx, vm); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		// Round trips of one create_vm and one delete_vm, measured alone
		// (the parallel ones interleave).
		b.StopTimer()
		t0 := d.RoundTrips()
		vm, _, err := d.CreateVM(ctx, "count", sc, props, nets(99), nil, nil)
		require.NoError(b, err)
		t1 := d.RoundTrips()
		require.NoError(b, d.DeleteVM(ctx, vm))
		createTrips += t1 - t0
		deleteTrips += d.RoundTrips() - t1
		creates++
		b.StartTimer()
	}
	b.ReportMetric(float64(cold), "trips/cold_create_vm")
	b.ReportMetric(float64(createTrips)/float64(creates), "trips/create_vm")
	b.ReportMetric(float64(deleteTrips)/float64(creates), "trips/delete_vm")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/16, "ms/vm")
}
