package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/local"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
	"github.com/kpaas/kpaas/stemcells"
)

var (
	agentStemcellOnce sync.Once
	agentStemcellPath string
	agentStemcellErr  error
)

// agentStemcell builds (once) the tiny stemcell with the real kpaas-agent.
func agentStemcell(t testing.TB) string {
	tinyStemcell(t) // makes fixtureDir
	agentStemcellOnce.Do(func() {
		bin, _, err := agentclienttest.BuildAgent()
		if err != nil {
			agentStemcellErr = err
			return
		}
		defer os.RemoveAll(filepath.Dir(bin))
		agentStemcellPath = filepath.Join(fixtureDir, "agent-stemcell.tgz")
		_, agentStemcellErr = stemcells.Tiny(context.Background(), stemcells.TinyOptions{BuildOptions: stemcells.BuildOptions{AgentBinary: bin, Out: agentStemcellPath}})
	})
	require.NoError(t, agentStemcellErr)
	return agentStemcellPath
}

type agentVM struct {
	vm     cpi.VMCID
	client *agentclient.Client
}

// createAgentVM creates a VM whose init is the real kpaas-agent, with a host
// key kpaas generated and pins, and returns a client for it.
func createAgentVM(t testing.TB, l *local.Local, st cpi.StemcellCID, pool *agentclient.Pool, net cpi.Network) agentVM {
	host, client := agentclienttest.MustKeys(t), agentclienttest.MustKeys(t)
	env := cpi.Env{"kpaas": map[string]any{"host_key": host.PEM, "authorized_keys": []string{client.Public}}}
	vm, _, err := l.CreateVM(context.Background(), cpi.AgentID("agent-"+net.IP), st, nil, cpi.Networks{"n": net}, nil, env)
	require.NoError(t, err)
	c := pool.Client(agentclient.Target{Name: string(vm), Address: net.IP + ":6868", HostKey: host.Public, Signer: client.Signer})
	return agentVM{vm: vm, client: c}
}

func waitPing(ctx context.Context, c *agentclient.Client) error {
	for {
		err := c.Ping(ctx)
		if err == nil {
			return nil
		}
		var ce *agentclient.ConnectError
		if !errors.As(err, &ce) || ce.Phase != agentclient.PhaseTCP {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent did not answer: %w", err)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func TestRealAgentAnswersOverSSHAndMountsADisk(t *testing.T) {
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, agentStemcell(t), nil)
	require.NoError(t, err)
	pool := agentclient.NewPool(agentclient.Options{DialTimeout: 2 * time.Second})
	defer pool.Close()

	a := createAgentVM(t, l, st, pool, manual(12, 10))
	require.NoError(t, waitPing(ctx, a.client), "console: %s", console(l, a.vm))
	info, err := a.client.GetState(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, "agent-10.213.12.10", info.AgentID, "the agent read the settings the CPI wrote")
	assert.Contains(t, console(l, a.vm), "warden-cpi-agent-env.json", "from the File source of the stemcell's agent.json")

	disk, err := l.CreateDisk(ctx, 32, nil, a.vm)
	require.NoError(t, err)
	hint, err := l.AttachDisk(ctx, a.vm, disk)
	require.NoError(t, err)
	require.NoError(t, a.client.AddPersistentDisk(ctx, string(disk), map[string]any{"path": hint.Path}))
	require.NoError(t, a.client.MountDisk(ctx, string(disk)), "console: %s", console(l, a.vm))
	disks, err := a.client.ListDisk(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{string(disk)}, disks)
	require.NoError(t, a.client.UnmountDisk(ctx, string(disk)))
	require.NoError(t, l.DetachDisk(ctx, a.vm, disk))
	require.NoError(t, l.DeleteVM(ctx, a.vm))
	require.NoError(t, l.DeleteDisk(ctx, disk))
}

func console(l *local.Local, vm cpi.VMCID) string {
	b, _ := os.ReadFile(filepath.Join(l.Dir(), "vms", string(vm), "console.log"))
	return string(b)
}

// BenchmarkCreateVMToAgentSSH: create_vm until the real kpaas-agent answers
// ping over SSH (host key pinned), on a network in use.
func BenchmarkCreateVMToAgentSSH(b *testing.B) {
	l := newCloud(b)
	ctx := context.Background()
	st, err := l.CreateStemcell(ctx, agentStemcell(b), nil)
	require.NoError(b, err)
	pool := agentclient.NewPool(agentclient.Options{DialTimeout: 2 * time.Second})
	defer pool.Close()
	keep := createAgentVM(b, l, st, pool, manual(13, 250))
	defer l.DeleteVM(ctx, keep.vm)
	for i := 0; b.Loop(); i++ {
		a := createAgentVM(b, l, st, pool, manual(13, 10+i%200))
		require.NoError(b, waitPing(ctx, a.client))
		b.StopTimer()
		require.NoError(b, l.DeleteVM(ctx, a.vm))
		b.StartTimer()
	}
}

// BenchmarkCreate50AgentVMsParallel: 50 create_vm at once until all 50 agents answer over SSH.
func BenchmarkCreate50AgentVMsParallel(b *testing.B) {
	l := newCloud(b)
	ctx := context.Background()
	st, err := l.CreateStemcell(ctx, agentStemcell(b), nil)
	require.NoError(b, err)
	const n = 50
	for b.Loop() {
		pool := agentclient.NewPool(agentclient.Options{DialTimeout: 5 * time.Second})
		vms := make([]agentVM, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vms[i] = createAgentVM(b, l, st, pool, manual(14, 10+i))
				errs[i] = waitPing(ctx, vms[i].client)
			}()
		}
		wg.Wait()
		b.StopTimer()
		for i := range n {
			require.NoError(b, errs[i])
		}
		infos, _ := l.VMs()
		var rss int64
		for _, v := range infos {
			rss += vmRSS(v.PID)
		}
		b.ReportMetric(float64(rss)/float64(len(infos))/(1<<20), "agent-rss-MiB/vm")
		pool.Close()
		for _, v := range vms {
			require.NoError(b, l.DeleteVM(ctx, v.vm))
		}
		b.StartTimer()
	}
}
