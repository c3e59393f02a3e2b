package local_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/local"
)

func benchCloud(b *testing.B) (*local.Local, cpi.StemcellCID) {
	l := newCloud(b)
	st, err := l.CreateStemcell(context.Background(), stemcellImage(b), nil)
	require.NoError(b, err)
	return l, st
}

// BenchmarkCreateVMToTCP: create_vm until the VM's init answers on TCP over
// the bridge; "first-on-network" also creates the network's bridge (the last
// VM's delete removed it), "network-in-use" is the usual case of a deployment.
func BenchmarkCreateVMToTCP(b *testing.B) {
	b.Run("first-on-network", func(b *testing.B) { benchCreate(b, false, nil) })
	b.Run("network-in-use", func(b *testing.B) { benchCreate(b, true, nil) })
	b.Run("container-host", func(b *testing.B) { benchCreate(b, true, cpi.Props{local.ContainerHostProperty: true}) })
}

func benchCreate(b *testing.B, keepBridge bool, props cpi.Props) {
	l, st := benchCloud(b)
	ctx := context.Background()
	if keepBridge {
		keep, _, err := l.CreateVM(ctx, "keep", st, nil, cpi.Networks{"n": manual(20, 250)}, nil, nil)
		require.NoError(b, err)
		b.Cleanup(func() { _ = l.DeleteVM(ctx, keep) })
	}
	for i := 0; b.Loop(); i++ {
		ip := fmt.Sprintf("10.213.20.%d", 10+i%200)
		vm, _, err := l.CreateVM(ctx, "bench", st, props, cpi.Networks{"n": manual(20, 10+i%200)}, nil, nil)
		require.NoError(b, err)
		_, err = waitAnswer(ctx, ip, "id")
		require.NoError(b, err)
		b.StopTimer()
		require.NoError(b, l.DeleteVM(ctx, vm))
		b.StartTimer()
	}
}

// BenchmarkDeleteVM: delete_vm of a running VM with a NIC and cgroups
// ("container-host": cgroups in every hierarchy, its data directory).
func BenchmarkDeleteVM(b *testing.B) {
	b.Run("ordinary", func(b *testing.B) { benchDelete(b, nil) })
	b.Run("container-host", func(b *testing.B) { benchDelete(b, cpi.Props{local.ContainerHostProperty: true}) })
}

func benchDelete(b *testing.B, props cpi.Props) {
	l, st := benchCloud(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		vm, _, err := l.CreateVM(ctx, "bench", st, props, cpi.Networks{"n": manual(21, 10+i%200)}, nil, nil)
		require.NoError(b, err)
		_, err = waitAnswer(ctx, fmt.Sprintf("10.213.21.%d", 10+i%200), "id")
		require.NoError(b, err)
		b.StartTimer()
		require.NoError(b, l.DeleteVM(ctx, vm))
	}
}

// BenchmarkCreate50VMsParallel: 50 create_vm calls at once, until all 50 answer.
func BenchmarkCreate50VMsParallel(b *testing.B) {
	l, st := benchCloud(b)
	ctx := context.Background()
	const n = 50
	for b.Loop() {
		vms := make([]cpi.VMCID, n)
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vm, _, err := l.CreateVM(ctx, cpi.AgentID(fmt.Sprint("a", i)), st, nil, cpi.Networks{"n": manual(22, 10+i)}, nil, nil)
				if err == nil {
					_, err = waitAnswer(ctx, fmt.Sprintf("10.213.22.%d", 10+i), "id")
				}
				vms[i], errs[i] = vm, err
			}()
		}
		wg.Wait()
		b.StopTimer()
		for i := range n {
			require.NoError(b, errs[i])
		}
		for _, vm := range vms {
			require.NoError(b, l.DeleteVM(ctx, vm))
		}
		b.StartTimer()
	}
}

// BenchmarkIdleVMMemory reports the host memory an idle VM costs: the RSS of
// its processes (rss-MiB/vm) and its memory cgroup's usage (cgroup-MiB/vm,
// which adds the page cache and kernel memory charged to the VM).
func BenchmarkIdleVMMemory(b *testing.B) {
	l, st := benchCloud(b)
	ctx := context.Background()
	const n = 20
	// The timer runs throughout (time per op = 20 creates + settling), so
	// b.Loop stays bounded; the metrics that matter are the memory ones.
	for b.Loop() {
		var vms []cpi.VMCID
		for i := range n {
			vm, _, err := l.CreateVM(ctx, "idle", st, nil, cpi.Networks{"n": manual(23, 10+i)}, nil, nil)
			require.NoError(b, err)
			_, err = waitAnswer(ctx, fmt.Sprintf("10.213.23.%d", 10+i), "id")
			require.NoError(b, err)
			vms = append(vms, vm)
		}
		time.Sleep(500 * time.Millisecond)
		infos, _ := l.VMs()
		var rss, cg int64
		for _, v := range infos {
			rss += vmRSS(v.PID)
			cg += cgroupMemory(v.CID)
		}
		b.ReportMetric(float64(rss)/float64(n)/(1<<20), "rss-MiB/vm")
		b.ReportMetric(float64(cg)/float64(n)/(1<<20), "cgroup-MiB/vm")
		for _, vm := range vms {
			require.NoError(b, l.DeleteVM(ctx, vm))
		}
	}
}

func cgroupMemory(vm cpi.VMCID) int64 {
	for _, pattern := range []string{"/sys/fs/cgroup/memory/kpaas-*/" + string(vm) + "/memory.usage_in_bytes", "/sys/fs/cgroup/kpaas-*/" + string(vm) + "/memory.current"} {
		if m, _ := filepath.Glob(pattern); len(m) == 1 {
			b, _ := os.ReadFile(m[0])
			v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return v
		}
	}
	return 0
}

func vmRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
