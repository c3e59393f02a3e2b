package local_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/local"
	"github.com/kpaas/kpaas/stemcells"
)

var fixtureDir string

// TestMain doubles as the VM launcher: the local cloud re-executes this test
// binary with KPAAS_LOCAL_VM_INIT=1 to become a VM's PID 1.
func TestMain(m *testing.M) {
	if os.Getenv("KPAAS_LOCAL_VM_INIT") == "1" {
		os.Exit(local.VMInit(os.Args[len(os.Args)-1]))
	}
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

var (
	fixtureOnce sync.Once
	fixtureErr  error
	stemcellTGZ string
)

// tinyStemcell builds (once) the test init and the tiny busybox stemcell with
// it as the agent.
func tinyStemcell(t testing.TB) string {
	fixtureOnce.Do(func() {
		fixtureDir, fixtureErr = os.MkdirTemp("", "kpaas-local-test-")
		if fixtureErr != nil {
			return
		}
		bin := filepath.Join(fixtureDir, "testinit")
		cmd := exec.Command("go", "build", "-o", bin, "./internal/testinit")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fixtureErr = fmt.Errorf("building testinit: %v: %s", err, out)
			return
		}
		stemcellTGZ = filepath.Join(fixtureDir, "stemcell.tgz")
		_, fixtureErr = stemcells.Tiny(context.Background(), stemcells.TinyOptions{BuildOptions: stemcells.BuildOptions{AgentBinary: bin, Out: stemcellTGZ}})
	})
	require.NoError(t, fixtureErr)
	return stemcellTGZ
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the local cloud needs root (namespaces, mounts, bridges); run the tests as root")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static is not installed (.ci/setup-local-cloud.sh installs it)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH (needed to build the test init)")
	}
}

// newCloud opens a local cloud in a temp dir with the test binary as launcher.
func newCloud(t testing.TB) *local.Local {
	needRoot(t)
	tinyStemcell(t)
	dir, err := os.MkdirTemp("", "kpaas-local-")
	require.NoError(t, err)
	l, err := local.New(local.Config{Dir: dir, InitCommand: []string{os.Args[0]}}, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		// Whatever a failed test left: delete it, then check nothing is left.
		ctx := context.Background()
		vms, _ := l.VMs()
		for _, v := range vms {
			_ = l.DeleteVM(ctx, v.CID)
		}
		inv, _ := l.Inventory()
		for _, item := range inv {
			if strings.HasPrefix(item, "disks/") || strings.HasPrefix(item, "stemcells/") || strings.HasPrefix(item, "snapshots/") {
				continue
			}
			t.Errorf("left behind: %s", item)
		}
		os.RemoveAll(dir)
	})
	return l
}

// manual returns a manual network on the test subnet 10.213.<subnet>.0/24.
func manual(subnet, host int) cpi.Network {
	return cpi.Network{Type: "manual", IP: fmt.Sprintf("10.213.%d.%d", subnet, host), Netmask: "255.255.255.0",
		Gateway: fmt.Sprintf("10.213.%d.1", subnet), Default: []string{"dns", "gateway"}}
}

// ask sends one command to the VM's test init and returns its answer.
func ask(ctx context.Context, ip, command string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, "6868"))
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, command); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// waitAnswer dials until the VM answers or ctx ends.
func waitAnswer(ctx context.Context, ip, command string) (string, error) {
	for {
		out, err := ask(ctx, ip, command)
		if err == nil {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("VM %s did not answer: %w", ip, err)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func reachable(ctx context.Context, nets cpi.Networks) error {
	for _, n := range nets {
		if _, err := waitAnswer(ctx, n.IP, "id"); err != nil {
			return err
		}
	}
	return nil
}

func TestLocalConformance(t *testing.T) {
	l := newCloud(t)
	image := stemcellImage(t)
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		return cpitest.Target{
			CPI: l, StemcellImage: image,
			Networks:  func(i int) cpi.Networks { return cpi.Networks{"default": manual(1, 10+i)} },
			Inventory: l.Inventory, Settings: l.Settings, Reachable: reachable,
		}
	})
}

// stemcellImage extracts the tiny stemcell's image (what BOSH passes to create_stemcell).
func stemcellImage(t testing.TB) string {
	tb, err := stemcells.Open(tinyStemcell(t), t.TempDir())
	require.NoError(t, err)
	return tb.ImagePath
}

func createVM(t testing.TB, l *local.Local, st cpi.StemcellCID, props cpi.Props, nets cpi.Networks) (cpi.VMCID, cpi.Networks) {
	t.Helper()
	vm, got, err := l.CreateVM(context.Background(), cpi.AgentID("agent-"+fmt.Sprint(time.Now().UnixNano()%100000)), st, props, nets, nil, nil)
	require.NoError(t, err)
	return vm, got
}

func TestVMIsAnIsolatedNamespaceWithItsAgentAsInit(t *testing.T) {
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, tinyStemcell(t), nil) // a whole stemcell tarball works too
	require.NoError(t, err)
	vm, _, err := l.CreateVM(ctx, "agent-iso", st, cpi.Props{"cpu": 0.5, "ram": 64}, cpi.Networks{"n": manual(2, 10)}, nil, nil)
	require.NoError(t, err)

	id, err := waitAnswer(ctx, "10.213.2.10", "id")
	require.NoError(t, err)
	assert.Equal(t, "agent-iso", id, "the settings written by the CPI reached the agent")
	pid, _ := ask(ctx, "10.213.2.10", "pid")
	assert.Equal(t, "1", pid, "the agent is PID 1 of its own PID namespace")
	host, _ := ask(ctx, "10.213.2.10", "hostname")
	assert.Equal(t, "agent-iso", host, "own UTS namespace")
	resolved, _ := ask(ctx, "10.213.2.10", "resolve agent-iso")
	assert.Equal(t, "10.213.2.10", resolved, "the VM resolves its own hostname")
	ips, _ := ask(ctx, "10.213.2.10", "ips")
	assert.Contains(t, ips, "10.213.2.10/24")
	assert.NotContains(t, ips, "10.213.2.1/", "own network namespace: the host's bridge address is not inside")
	busybox, _ := ask(ctx, "10.213.2.10", "stat /bin/busybox")
	assert.Equal(t, "other", busybox, "the stemcell's rootfs is the VM's root")

	infos, err := l.VMs()
	require.NoError(t, err)
	require.Len(t, infos, 1)
	assert.True(t, infos[0].Running)
	mem := readCgroupFile(t, vm, "memory", "memory.limit_in_bytes", "memory.max")
	assert.Equal(t, fmt.Sprint(64<<20), mem, "ram from cloud_properties is the memory limit")
	quota := readCgroupFile(t, vm, "cpu", "cpu.cfs_quota_us", "cpu.max")
	assert.Contains(t, []string{"50000", "50000 100000"}, quota, "cpu 0.5 is half a CPU's quota")
	require.NoError(t, l.DeleteVM(ctx, vm))
}

func readCgroupFile(t *testing.T, vm cpi.VMCID, ctrl, v1file, v2file string) string {
	for _, pattern := range []string{"/sys/fs/cgroup/" + ctrl + "/kpaas-*/" + string(vm) + "/" + v1file, "/sys/fs/cgroup/kpaas-*/" + string(vm) + "/" + v2file} {
		m, _ := filepath.Glob(pattern)
		if len(m) == 1 {
			b, err := os.ReadFile(m[0])
			require.NoError(t, err)
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("no cgroup file for %s", vm)
	return ""
}

func TestPersistentDiskHotAttachAndDataSurvivesDeleteVM(t *testing.T) {
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	vm1, _ := createVM(t, l, st, nil, cpi.Networks{"n": manual(3, 10)})
	_, err = waitAnswer(ctx, "10.213.3.10", "id")
	require.NoError(t, err)

	disk, err := l.CreateDisk(ctx, 32, nil, vm1)
	require.NoError(t, err)
	hint, err := l.AttachDisk(ctx, vm1, disk)
	require.NoError(t, err)
	out, _ := ask(ctx, "10.213.3.10", "stat "+hint.Path)
	require.Equal(t, "block", out, "the disk appears in the running VM at the hint's path")
	out, _ = ask(ctx, "10.213.3.10", "mount "+hint.Path+" /var/vcap/store")
	require.Equal(t, "ok", out)
	out, _ = ask(ctx, "10.213.3.10", "write /var/vcap/store/data kept-across-vms")
	require.Equal(t, "ok", out)

	// delete_vm with the disk still attached and mounted
	require.NoError(t, l.DeleteVM(ctx, vm1))
	ok, err := l.HasDisk(ctx, disk)
	require.NoError(t, err)
	require.True(t, ok)

	vm2, _ := createVM(t, l, st, nil, cpi.Networks{"n": manual(3, 11)})
	_, err = waitAnswer(ctx, "10.213.3.11", "id")
	require.NoError(t, err)
	hint, err = l.AttachDisk(ctx, vm2, disk)
	require.NoError(t, err)
	out, _ = ask(ctx, "10.213.3.11", "mount "+hint.Path+" /var/vcap/store")
	require.Equal(t, "ok", out)
	out, _ = ask(ctx, "10.213.3.11", "read /var/vcap/store/data")
	assert.Equal(t, "kept-across-vms", out)
	out, _ = ask(ctx, "10.213.3.11", "umount /var/vcap/store")
	require.Equal(t, "ok", out)
	require.NoError(t, l.DetachDisk(ctx, vm2, disk))
	out, _ = ask(ctx, "10.213.3.11", "stat "+hint.Path)
	assert.Equal(t, "missing", out, "detach_disk removes the device from the VM")
	require.NoError(t, l.DeleteVM(ctx, vm2))
	require.NoError(t, l.DeleteDisk(ctx, disk))
}

func TestSeveralNetworksStaticAndDynamic(t *testing.T) {
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	nets := cpi.Networks{
		"a": manual(4, 10),
		"b": {Type: "dynamic", CloudProperties: cpi.Props{"range": "10.213.5.0/28"}},
	}
	vm, got := createVM(t, l, st, nil, nets)
	assert.Equal(t, "10.213.5.2", got["b"].IP, "the first free address after the gateway")
	assert.Equal(t, "10.213.5.1", got["b"].Gateway)
	assert.Equal(t, "255.255.255.240", got["b"].Netmask)
	assert.Equal(t, "02:4b:0a:d5:05:02", got["b"].MAC, "the MAC is derived from the IP")
	for _, ip := range []string{"10.213.4.10", "10.213.5.2"} {
		_, err := waitAnswer(ctx, ip, "id")
		require.NoError(t, err, "reachable on %s", ip)
	}
	vm2, got2 := createVM(t, l, st, nil, cpi.Networks{"b": nets["b"]})
	assert.Equal(t, "10.213.5.3", got2["b"].IP, "dynamic IPs are not handed out twice")

	_, _, err = l.CreateVM(ctx, "dup", st, nil, cpi.Networks{"a": manual(4, 10)}, nil, nil)
	require.ErrorIs(t, err, cpi.ErrVMCreationFailed)
	assert.Contains(t, err.Error(), "already used by VM "+string(vm))
	require.NoError(t, l.DeleteVM(ctx, vm))
	require.NoError(t, l.DeleteVM(ctx, vm2))
}

func TestVMsOnDifferentNetworksReachEachOtherThroughTheHost(t *testing.T) {
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	a, _ := createVM(t, l, st, nil, cpi.Networks{"a": manual(15, 10)})
	b, _ := createVM(t, l, st, nil, cpi.Networks{"b": manual(16, 10)})
	c, _ := createVM(t, l, st, nil, cpi.Networks{"a": manual(15, 11)})
	for _, ip := range []string{"10.213.16.10", "10.213.15.11"} {
		_, err = waitAnswer(ctx, ip, "id")
		require.NoError(t, err)
	}
	out, err := waitAnswer(ctx, "10.213.15.10", "dial 10.213.16.10:6868")
	require.NoError(t, err)
	assert.Equal(t, "ok", out, "routed through the host between bridges")
	out, _ = ask(ctx, "10.213.15.10", "dial 10.213.15.11:6868")
	assert.Equal(t, "ok", out, "same bridge")
	for _, vm := range []cpi.VMCID{a, b, c} {
		require.NoError(t, l.DeleteVM(ctx, vm))
	}
}

func TestRecreatedVMWithTheSameIPAnswersAtOnce(t *testing.T) {
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	for i := range 3 {
		vm, _ := createVM(t, l, st, nil, cpi.Networks{"n": manual(6, 10)})
		start := time.Now()
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := waitAnswer(actx, "10.213.6.10", "id")
		acancel()
		require.NoError(t, err, "round %d: no stale ARP entry may hide the new VM", i)
		t.Logf("round %d: answered after %s", i, time.Since(start))
		require.NoError(t, l.DeleteVM(ctx, vm))
	}
}

func TestHostRebootIsRecoveredByRebootVM(t *testing.T) {
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	vm, _ := createVM(t, l, st, nil, cpi.Networks{"n": manual(7, 10)})
	disk, err := l.CreateDisk(ctx, 16, nil, vm)
	require.NoError(t, err)
	_, err = l.AttachDisk(ctx, vm, disk)
	require.NoError(t, err)
	_, err = waitAnswer(ctx, "10.213.7.10", "write /var/vcap/data/x ephemeral")
	require.NoError(t, err)

	// Simulate a host reboot: the processes, loop devices and bridges are gone.
	infos, _ := l.VMs()
	require.Len(t, infos, 1)
	require.NoError(t, exec.Command("kill", "-9", fmt.Sprint(infos[0].PID)).Run())
	require.Eventually(t, func() bool { ok, _ := l.Running(ctx, vm); return !ok }, 5*time.Second, 5*time.Millisecond)
	img := filepath.Join(l.Dir(), "disks", string(disk)+".img")
	loops, err := exec.Command("losetup", "-j", img, "-O", "NAME", "-n").Output()
	require.NoError(t, err)
	require.NotEmpty(t, strings.TrimSpace(string(loops)), "the disk was on a loop device")
	for _, dev := range strings.Fields(string(loops)) {
		require.NoError(t, exec.Command("losetup", "-d", dev).Run())
	}
	inv, _ := l.Inventory()
	for _, item := range inv {
		if strings.HasPrefix(item, "link/kb") {
			require.NoError(t, exec.Command("ip", "link", "del", strings.TrimPrefix(item, "link/")).Run())
		}
	}

	ok, err := l.HasVM(ctx, vm)
	require.NoError(t, err)
	assert.True(t, ok, "a VM whose processes are gone still exists")
	require.NoError(t, l.RebootVM(ctx, vm))
	out, err := waitAnswer(ctx, "10.213.7.10", "read /var/vcap/data/x")
	require.NoError(t, err)
	assert.Equal(t, "ephemeral", out, "the ephemeral disk (overlay upper) survives")
	out, _ = ask(ctx, "10.213.7.10", "stat /dev/kpaas/"+string(disk))
	assert.Equal(t, "block", out, "attached disks are re-attached")
	require.NoError(t, l.DeleteVM(ctx, vm))
	require.NoError(t, l.DeleteDisk(ctx, disk))
}

func TestFailedCreateVMLeavesNothing(t *testing.T) {
	needRoot(t)
	tinyStemcell(t)
	dir := t.TempDir()
	// An agent path the stemcell does not have: the launcher fails at exec.
	l, err := local.New(local.Config{Dir: dir, InitCommand: []string{os.Args[0]}, AgentPath: "/no/such/agent"}, nil)
	require.NoError(t, err)
	ctx := context.Background()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	before, err := l.Inventory()
	require.NoError(t, err)
	_, _, err = l.CreateVM(ctx, "a", st, nil, cpi.Networks{"n": manual(8, 10)}, nil, nil)
	require.ErrorIs(t, err, cpi.ErrVMCreationFailed)
	assert.Contains(t, err.Error(), "/no/such/agent")
	after, err := l.Inventory()
	require.NoError(t, err)
	assert.Equal(t, before, after)

	_, _, err = l.CreateVM(ctx, "a", st, nil, cpi.Networks{"n": {Type: "dynamic"}}, nil, nil)
	require.ErrorIs(t, err, cpi.ErrVMCreationFailed)
	assert.Contains(t, err.Error(), "needs cloud_properties.range")
	require.NoError(t, l.DeleteStemcell(ctx, st))
}
