package converge

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agent"
	"github.com/kpaas/kpaas/pkg/agent/settings"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/health"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

// fleetAddr is agent i's loopback address (port 6868, as on a VM).
func fleetAddr(i int) string { return fmt.Sprintf("127.1.%d.%d", i/250, i%250+1) }

// TestMain runs an in-process agent fleet when the benchmark starts this
// test binary as its helper (KPAAS_BENCH_FLEET=N), so that the monitor's
// CPU and memory are measured in a process of their own.
func TestMain(m *testing.M) {
	if n, _ := strconv.Atoi(os.Getenv("KPAAS_BENCH_FLEET")); n > 0 {
		if err := runFleet(n, os.Getenv("KPAAS_BENCH_HOST_KEY"), os.Getenv("KPAAS_BENCH_CLIENT_PUB")); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runFleet(n int, hostPEM, clientPub string) error {
	root, err := os.MkdirTemp("", "kpaas-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	ctx := context.Background()
	for i := 0; i < n; i++ {
		st := &settings.Settings{AgentID: fmt.Sprintf("agent-%d", i), VM: settings.VM{Name: fmt.Sprintf("vm-%d", i)},
			Networks: map[string]settings.Network{"default": {Type: "manual", IP: fleetAddr(i), Default: []string{"dns", "gateway"}}},
			Disks:    settings.Disks{Persistent: map[string]any{}}}
		st.Env.Kpaas = settings.KpaasEnv{HostKey: hostPEM, AuthorizedKeys: []string{clientPub}}
		a, err := agent.New(agent.Options{Layout: agent.Layout{Root: filepath.Join(root, strconv.Itoa(i))}, Settings: st,
			Supervisor: agent.SupervisorOptions{CgroupName: "-"}})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(fleetAddr(i), "6868"))
		if err != nil {
			return err
		}
		go func() { _ = a.Serve(ctx, ln) }()
	}
	fmt.Println("ready")
	// Serve until the benchmark closes stdin.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func statusKB(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			n, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return n
		}
	}
	return -1
}

// BenchmarkMonitor1000Agents: one monitor pass every 10 s over 1,000 agents
// (an in-process fleet in a helper process, on loopback addresses, real SSH
// and get_state), with the state in SQLite. Reports the monitor process's
// CPU as a percentage of one core over the steady-state intervals and its
// RSS. Target: under 5% of a core and under 300 MB. Run with
// -benchtime=3x (each iteration is one 10 s interval).
func BenchmarkMonitor1000Agents(b *testing.B) {
	const n = 1000
	host, err := agentclient.GenerateKey()
	require.NoError(b, err)
	client, err := agentclient.GenerateKey()
	require.NoError(b, err)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "KPAAS_BENCH_FLEET="+strconv.Itoa(n), "KPAAS_BENCH_HOST_KEY="+host.PrivatePEM, "KPAAS_BENCH_CLIENT_PUB="+client.Public)
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	cmd.Stderr = os.Stderr
	require.NoError(b, cmd.Start())
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(b, err)
	require.Equal(b, "ready\n", line)

	ctx := context.Background()
	st := statetest.Open(b, filepath.Join(b.TempDir(), "state.db"))
	_, err = st.CreateDeployment(ctx, "big")
	require.NoError(b, err)
	require.NoError(b, st.Update(ctx, func(tx state.Tx) error {
		for i := 0; i < n; i++ {
			uuid := fmt.Sprintf("u%04d", i)
			if err := tx.SaveInstance(ctx, state.Instance{Deployment: "big", Group: "web", Index: i, UUID: uuid, DesiredState: state.Started}); err != nil {
				return err
			}
			if err := tx.SaveVM(ctx, state.VM{CID: "vm-" + uuid, Deployment: "big", Instance: uuid, IPs: []string{fleetAddr(i)}, SSHHostKey: host.Public, Active: true}); err != nil {
				return err
			}
		}
		return nil
	}))
	pool := agentclient.NewPool(agentclient.Options{DialTimeout: 5 * time.Second})
	defer pool.Close()
	const interval = 10 * time.Second
	r := New(Deps{Store: st, Signer: client.Signer, Dial: func(t agentclient.Target) Agent { return pool.Client(t) }},
		Options{Policy: health.Policy{Interval: interval}})
	t0 := time.Now()
	out, err := r.Pass(ctx, "big", health.Resurrection{})
	require.NoError(b, err)
	require.Equal(b, n, out.Healthy, "every agent answered")
	firstPass := time.Since(t0)

	cpu0, wall0 := cpuTime(), time.Now()
	passes := 0
	var passTime time.Duration
	b.ResetTimer()
	for b.Loop() {
		next := time.Now().Add(interval)
		p0 := time.Now()
		out, err := r.Pass(ctx, "big", health.Resurrection{})
		passTime += time.Since(p0)
		passes++
		if err != nil || out.Healthy != n {
			b.Fatalf("pass: %v, %d healthy", err, out.Healthy)
		}
		time.Sleep(time.Until(next))
	}
	b.StopTimer()
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%-of-core")
	b.ReportMetric(statusKB("VmRSS")/1024, "rss-MB")
	b.ReportMetric(statusKB("VmHWM")/1024, "peak-rss-MB")
	b.ReportMetric(passTime.Seconds()/float64(passes), "pass-s")
	b.ReportMetric(firstPass.Seconds(), "first-pass-s")
}
