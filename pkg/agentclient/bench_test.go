package agentclient_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agentclient"
	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
)

// rssKB reads VmRSS (or another field such as VmHWM) of pid from /proc.
func rssKB(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), field+":") {
			n, _ := strconv.ParseInt(strings.Fields(sc.Text())[1], 10, 64)
			return n
		}
	}
	return -1
}

// BenchmarkRPCRoundTrip: one RPC (ping) on a pooled connection on loopback.
// Target: p50 under 1 ms.
func BenchmarkRPCRoundTrip(b *testing.B) {
	_, c := startAgent(b, act.Options{})
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		require.NoError(b, c.Ping(ctx))
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// patternReader yields n deterministic pseudo-random bytes without holding them.
type patternReader struct {
	block []byte
	left  int64
	pos   int
}

func newPattern(n int64) *patternReader {
	block := make([]byte, 1<<20+7) // odd length so blocks do not line up with buffers
	x := uint64(88172645463325252)
	for i := range block {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		block[i] = byte(x)
	}
	return &patternReader{block: block, left: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n := 0
	for n < len(b) {
		c := copy(b[n:], p.block[p.pos:])
		n += c
		p.pos = (p.pos + c) % len(p.block)
	}
	p.left -= int64(n)
	return n, nil
}

// BenchmarkBlobUpload streams a blob to an agent on loopback, at two sizes.
// Targets: at least 300 MB/s; memory bounded: the agent's peak RSS and the
// client's allocations are the same for 64 MiB and 512 MiB.
func BenchmarkBlobUpload(b *testing.B) {
	for _, size := range []int64{64 << 20, 512 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) { benchUpload(b, size) })
	}
}

func benchUpload(b *testing.B, size int64) {
	a, c := startAgent(b, act.Options{})
	ctx := context.Background()
	h := sha256.New()
	io.Copy(h, newPattern(size))
	id := hex.EncodeToString(h.Sum(nil))
	blob := a.Root + "/var/vcap/data/blobs/" + id
	// One untimed upload warms the agent (heap, page cache, connection).
	require.NoError(b, c.PutBlob(ctx, id, size, newPattern(size)))
	os.Remove(blob)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.PutBlob(ctx, id, size, newPattern(size)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(blob)
		b.StartTimer()
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(rssKB(a.PID(), "VmHWM"))/1024, "agent-peak-rss-MB")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/(1<<20), "client-alloc-MB/op")
}

func raiseNoFile(b *testing.B) {
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < 2200 {
		b.Skipf("RLIMIT_NOFILE is %d; 1,000 connections need more", lim.Cur)
	}
}

// BenchmarkThousandConnections: one kpaas process holding 1,000 agent
// connections (to four agents' listeners on loopback). Target: under 200 MB RSS.
func BenchmarkThousandConnections(b *testing.B) {
	raiseNoFile(b)
	client := act.MustKeys(b)
	var agents []*act.Agent
	for i := 0; i < 4; i++ {
		agents = append(agents, act.Start(b, agentBin, act.Options{Name: fmt.Sprintf("a/%d", i), Client: &client}))
	}
	runtime.GC()
	base := rssKB(os.Getpid(), "VmRSS")
	for n := 0; n < b.N; n++ {
		pool := agentclient.NewPool(agentclient.Options{})
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		errs := make(chan error, 1000)
		for i := 0; i < 1000; i++ {
			tg := agents[i%len(agents)].Target()
			tg.Name = fmt.Sprintf("vm/%d", i)
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := pool.Client(tg).Ping(context.Background()); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		if pool.Len() != 1000 {
			b.Fatalf("pool holds %d connections", pool.Len())
		}
		runtime.GC()
		rss := rssKB(os.Getpid(), "VmRSS")
		b.ReportMetric(float64(rss)/1024, "rss-MB")
		b.ReportMetric(float64(rss-base)/1000, "KB/conn")
		pool.Close()
	}
}

// BenchmarkAgentIdleRSS: an agent with nothing to do. Target: under 20 MB.
func BenchmarkAgentIdleRSS(b *testing.B) {
	a, c := startAgent(b, act.Options{})
	for i := 0; i < b.N; i++ {
		require.NoError(b, c.Ping(context.Background()))
	}
	time.Sleep(500 * time.Millisecond)
	b.ReportMetric(float64(rssKB(a.PID(), "VmRSS"))/1024, "agent-rss-MB")
}
