package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/external"
	"github.com/kpaas/kpaas/cpi/local"
)

// buildKpaas builds the kpaas binary for tests that run it as a user (or a
// BOSH director) would.
func buildKpaas(t testing.TB) string {
	t.Helper()
	tinyStemcell(t) // makes fixtureDir
	kpaasOnce.Do(func() {
		kpaasBin = filepath.Join(fixtureDir, "kpaas")
		cmd := exec.Command("go", "build", "-o", kpaasBin, "../../cmd/kpaas")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			kpaasErr = fmt.Errorf("building kpaas: %v: %s", err, out)
		}
	})
	require.NoError(t, kpaasErr)
	return kpaasBin
}

var (
	kpaasOnce sync.Once
	kpaasBin  string
	kpaasErr  error
)

func TestWithoutRootOneLineSaysHowToRun(t *testing.T) {
	needRoot(t) // to switch to an unprivileged user
	kpaas := buildKpaas(t)
	dir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(kpaas), 0o755))
	require.NoError(t, os.Chmod(kpaas, 0o755))
	cmd := exec.Command(kpaas, "cpi", "local")
	cmd.Env = []string{"KPAAS_STATE=" + dir, "HOME=" + dir}
	cmd.Stdin = strings.NewReader(`{"method":"info","arguments":[],"context":{}}`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	require.NoError(t, err, "%s", out)
	var resp struct {
		Error *cpi.Error `json:"error"`
	}
	require.NoError(t, json.Unmarshal(out, &resp), "%s", out)
	require.NotNil(t, resp.Error)
	assert.Contains(t, resp.Error.Message, "needs root")
	assert.Contains(t, resp.Error.Message, "sudo kpaas")
	assert.NotContains(t, resp.Error.Message, "\n")
}

// TestKpaasCPILocalThroughExternal proves both ends of the wire: cpi/external
// drives `kpaas cpi local` (one process per call, the VM launcher being the
// binary's hidden `cpi local-vm-init`) through the whole conformance suite.
func TestKpaasCPILocalThroughExternal(t *testing.T) {
	needRoot(t)
	tinyStemcell(t)
	kpaas := buildKpaas(t)
	dir, err := os.MkdirTemp("", "kpaas-local-ext-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) }) // after the suite's own cleanups, which open the cloud again
	cfg := filepath.Join(t.TempDir(), "cpi.json")
	b, _ := json.Marshal(map[string]any{"dir": dir})
	require.NoError(t, os.WriteFile(cfg, b, 0o600))
	view, err := local.New(local.Config{Dir: dir}, nil) // the same state, read for the probes
	require.NoError(t, err)

	var pids []int
	c := external.New(external.Config{Command: kpaas, Args: []string{"cpi", "local", "--config", cfg}, Timeout: time.Minute})
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		return cpitest.Target{
			CPI: c, StemcellImage: stemcellImage(t),
			Networks:  func(i int) cpi.Networks { return cpi.Networks{"default": manual(9, 10+i)} },
			Inventory: view.Inventory, Settings: view.Settings,
			Reachable: func(ctx context.Context, nets cpi.Networks) error {
				vms, _ := view.VMs()
				for _, v := range vms {
					pids = append(pids, v.PID)
				}
				return reachable(ctx, nets)
			},
		}
	})
	inv, err := view.Inventory()
	require.NoError(t, err)
	assert.Empty(t, inv, "nothing is left after the suite")
	// The VMs' processes are gone from the host (reaped, not zombies).
	require.NotEmpty(t, pids)
	for _, pid := range pids {
		assert.Eventually(t, func() bool {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			return err != nil || !strings.Contains(string(b), "kpaas") && !strings.Contains(string(b), "testinit")
		}, 5*time.Second, 10*time.Millisecond, "VM init pid %d is still on the host", pid)
	}
}

// TestParallelCallsFromSeparateProcesses: max_in_flight runs several `kpaas
// cpi local` processes at once; dynamic IPs must not collide and every VM
// must come up (the state directory's lock is between processes).
func TestParallelCallsFromSeparateProcesses(t *testing.T) {
	needRoot(t)
	kpaas := buildKpaas(t)
	dir, err := os.MkdirTemp("", "kpaas-local-par-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) }) // after the suite's own cleanups, which open the cloud again
	cfg := filepath.Join(t.TempDir(), "cpi.json")
	b, _ := json.Marshal(map[string]any{"dir": dir})
	require.NoError(t, os.WriteFile(cfg, b, 0o600))
	c := external.New(external.Config{Command: kpaas, Args: []string{"cpi", "local", "--config", cfg}, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := c.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)

	const n = 8
	ips := make([]string, n)
	vms := make([]cpi.VMCID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm, nets, err := c.CreateVM(ctx, cpi.AgentID(fmt.Sprint("p", i)), st, nil,
				cpi.Networks{"d": {Type: "dynamic", CloudProperties: cpi.Props{"range": "10.213.17.0/24"}}}, nil, nil)
			vms[i], errs[i] = vm, err
			if err == nil {
				ips[i] = nets["d"].IP
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		require.NoError(t, errs[i])
		assert.False(t, seen[ips[i]], "IP %s handed out twice", ips[i])
		seen[ips[i]] = true
		id, err := waitAnswer(ctx, ips[i], "id")
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint("p", i), id, "the VM at %s is the one create_vm said", ips[i])
	}
	for _, vm := range vms {
		wg.Add(1)
		go func() { defer wg.Done(); assert.NoError(t, c.DeleteVM(ctx, vm)) }()
	}
	wg.Wait()
	require.NoError(t, c.DeleteStemcell(ctx, st))
	view, err := local.New(local.Config{Dir: dir}, nil)
	require.NoError(t, err)
	inv, err := view.Inventory()
	require.NoError(t, err)
	assert.Empty(t, inv)
}
