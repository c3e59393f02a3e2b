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
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/local"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
)

// net214 is a manual network on the container-host tests' subnet 10.214.<subnet>.0/24.
func net214(subnet, host int) cpi.Network {
	return cpi.Network{Type: "manual", IP: fmt.Sprintf("10.214.%d.%d", subnet, host), Netmask: "255.255.255.0",
		Gateway: fmt.Sprintf("10.214.%d.1", subnet), Default: []string{"dns", "gateway"}}
}

// hostHierarchies are the cgroup hierarchies mounted in /sys/fs/cgroup on
// this host (directories, not the symlinks to them).
func hostHierarchies(t *testing.T) []string {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var out []string
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && filepath.Dir(f[4]) == "/sys/fs/cgroup" && (strings.Contains(line, " - cgroup ") || strings.Contains(line, " - cgroup2 ")) {
			out = append(out, filepath.Base(f[4]))
		}
	}
	return out
}

// vmCgroup is the VM's cgroup directory in a host hierarchy ("" when none).
func vmCgroup(h string, vm cpi.VMCID) string {
	m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", h, "kpaas-*", string(vm)))
	if len(m) != 1 {
		return ""
	}
	return m[0]
}

func readSysctl(t *testing.T, name string) string {
	b, err := os.ReadFile("/proc/sys/" + name)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

var containerHostSysctls = []string{"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

func TestContainerHostVMHasItsOwnCgroupsSysctlsKmsgAndDataFilesystem(t *testing.T) {
	l := newCloud(t)
	if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err != nil {
		t.Skip("this test checks a cgroup v1 host's memory hierarchy; this host has none")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	marks := []string{"02:4b:0a:d6:01:01", "02:4b:0a:d6:02:01"} // the bridges' MACs (10.214.1.1, 10.214.2.1)
	before := hostView(t, l.Dir(), marks...)
	hostSysctls := map[string]string{}
	for _, s := range containerHostSysctls {
		hostSysctls[s] = readSysctl(t, s)
	}

	node, _, err := l.CreateVM(ctx, "node", st, cpi.Props{local.ContainerHostProperty: true, "ram": 256}, cpi.Networks{"n": net214(1, 10)}, nil, nil)
	require.NoError(t, err)
	plain, _, err := l.CreateVM(ctx, "plain", st, cpi.Props{"ram": 64}, cpi.Networks{"n": net214(2, 10)}, nil, nil)
	require.NoError(t, err)
	const nodeIP, plainIP = "10.214.1.10", "10.214.2.10"
	for _, ip := range []string{nodeIP, plainIP} {
		_, err := waitAnswer(ctx, ip, "id")
		require.NoError(t, err)
	}
	in := func(ip, cmd string) string {
		out, err := ask(ctx, ip, cmd)
		require.NoError(t, err, "%s on %s", cmd, ip)
		return out
	}
	marks = append(marks, strings.TrimPrefix(string(node), "vm-"), strings.TrimPrefix(string(plain), "vm-"))

	// 1. cgroups: the VM's cgroup is the root of every hierarchy inside it.
	assert.Equal(t, "tmpfs", in(nodeIP, "fstype /sys/fs/cgroup"))
	hiers := hostHierarchies(t)
	for _, h := range hiers {
		want := "cgroup"
		if h == "unified" {
			want = "cgroup2"
		}
		assert.Equal(t, want, in(nodeIP, "fstype /sys/fs/cgroup/"+h), "hierarchy %s is mounted in the VM", h)
		host := vmCgroup(h, node)
		require.NotEmpty(t, host, "the VM has a cgroup in the host's %s hierarchy", h)
		assert.Equal(t, "ok", in(nodeIP, "mkdir /sys/fs/cgroup/"+h+"/kpaas-probe"))
		assert.DirExists(t, filepath.Join(host, "kpaas-probe"), "a cgroup made in the VM's %s is under the VM's cgroup on the host", h)
	}
	assert.Equal(t, strconv.Itoa(256<<20), in(nodeIP, "read /sys/fs/cgroup/memory/memory.limit_in_bytes"), "the VM's memory root is its own cgroup, with its ram limit")
	assert.Equal(t, "ok", in(nodeIP, "mkdir /sys/fs/cgroup/memory/kpaas-probe/nested"), "nested cgroups, as kubepods/burstable/...")
	assert.Equal(t, "ok", in(nodeIP, "write /sys/fs/cgroup/memory/kpaas-probe/memory.limit_in_bytes 33554432"), "the hierarchy is writable")
	assert.Equal(t, "33554432", strings.TrimSpace(readFile(t, filepath.Join(vmCgroup("memory", node), "kpaas-probe/memory.limit_in_bytes"))))
	for _, line := range strings.Split(in(nodeIP, "lines /proc/self/cgroup"), ";") {
		assert.True(t, strings.HasSuffix(line, ":/"), "inside its cgroup namespace the VM is at the root of each hierarchy: %s", line)
	}

	// 2. The global sysctls the kubelet writes stay in the VM.
	for _, s := range containerHostSysctls {
		p := "/proc/sys/" + s
		// The write below must never reach the host: first make sure it
		// goes to the VM's own file, not the kernel.
		require.Equal(t, "ext4", in(nodeIP, "fstype "+p), "%s is the VM's own file", p)
		assert.Equal(t, hostSysctls[s], in(nodeIP, "read "+p), "%s starts with the host's value", p)
		v := "1"
		if hostSysctls[s] == "1" {
			v = "2"
		}
		assert.Equal(t, "ok", in(nodeIP, "write "+p+" "+v))
		assert.Equal(t, v, in(nodeIP, "read "+p))
		assert.Equal(t, hostSysctls[s], readSysctl(t, s), "the host's %s is unchanged", s)
	}

	// 3. /dev/kmsg for the kubelet's OOM watcher.
	assert.Equal(t, "c 1:11", in(nodeIP, "devno /dev/kmsg"))

	// 4. /var/vcap/data is a host directory on a real filesystem.
	hostFS, err := exec.Command("stat", "-f", "-c", "%T", l.Dir()).Output()
	require.NoError(t, err)
	if strings.TrimSpace(string(hostFS)) == "ext2/ext3" {
		assert.Equal(t, "ext4", in(nodeIP, "fstype /var/vcap/data"))
	}
	assert.NotEqual(t, "overlay", in(nodeIP, "fstype /var/vcap/data"), "containerd's overlayfs snapshotter cannot work on overlay")
	assert.Equal(t, "ok", in(nodeIP, "write /var/vcap/data/probe from-the-vm"))
	assert.Equal(t, "from-the-vm", readFile(t, filepath.Join(l.Dir(), "vms", string(node), "data", "probe")))

	// The ordinary VM has none of this.
	assert.Equal(t, "sysfs", in(plainIP, "fstype /sys/fs/cgroup"))
	assert.Equal(t, "missing", in(plainIP, "fstype /sys/fs/cgroup/memory"))
	assert.Equal(t, "proc", in(plainIP, "fstype /proc/sys/kernel/panic"))
	assert.Equal(t, "overlay", in(plainIP, "fstype /var/vcap/data"))
	assert.Equal(t, "missing", in(plainIP, "devno /dev/kmsg"))
	assert.Contains(t, in(plainIP, "lines /proc/self/cgroup"), ":memory:/kpaas-", "no cgroup namespace of its own")
	for _, h := range hiers {
		want := h == "memory" || h == "cpu" || h == "pids" || strings.Contains(h, "cpu,")
		assert.Equal(t, want, vmCgroup(h, plain) != "", "an ordinary VM has cgroups in pids, memory and cpu only (%s)", h)
	}

	during := hostView(t, l.Dir(), marks...)
	assert.Greater(t, len(during), len(before))

	// reboot_vm: the nested cgroups go, /var/vcap/data stays, the setup comes back.
	require.NoError(t, l.RebootVM(ctx, node))
	_, err = waitAnswer(ctx, nodeIP, "id")
	require.NoError(t, err)
	assert.NoDirExists(t, filepath.Join(vmCgroup("memory", node), "kpaas-probe"), "a reboot starts from empty cgroups")
	assert.Equal(t, "from-the-vm", in(nodeIP, "read /var/vcap/data/probe"), "the ephemeral data survives reboot_vm")
	assert.Equal(t, "cgroup", in(nodeIP, "fstype /sys/fs/cgroup/memory"))
	assert.Equal(t, "ok", in(nodeIP, "mkdir /sys/fs/cgroup/memory/kpaas-probe"))
	assert.Equal(t, "ok", in(nodeIP, "mkdir /sys/fs/cgroup/memory/kpaas-probe/nested"))
	assert.Equal(t, hostSysctls["vm/overcommit_memory"], in(nodeIP, "read /proc/sys/vm/overcommit_memory"), "sysctls start from the host's values, as after a boot")
	assert.Equal(t, "c 1:11", in(nodeIP, "devno /dev/kmsg"))
	require.NoError(t, l.DeleteVM(ctx, node))
	require.NoError(t, l.DeleteVM(ctx, plain))
	assert.Eventually(t, func() bool { return len(hostView(t, l.Dir(), marks...)) == len(before) }, 2*time.Second, 10*time.Millisecond)
	assert.Equal(t, before, hostView(t, l.Dir(), marks...), "delete_vm removes the nested cgroups, links and mounts")
	for _, h := range hiers {
		m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", h, "kpaas-*", "vm-*"))
		for _, c := range m {
			assert.NotContains(t, c, string(node), "cgroup left in %s", h)
		}
	}
	for _, vm := range []cpi.VMCID{node, plain} {
		_, err = os.Stat(filepath.Join(l.Dir(), "vms", string(vm)))
		assert.True(t, os.IsNotExist(err), "the VM's directory (data, sysctl files) is gone")
	}
	for _, s := range containerHostSysctls {
		assert.Equal(t, hostSysctls[s], readSysctl(t, s), "the host's %s is unchanged", s)
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func TestContainerHostPropertyMustBeABoolean(t *testing.T) {
	l := newCloud(t)
	ctx := context.Background()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	before, err := l.Inventory()
	require.NoError(t, err)
	_, _, err = l.CreateVM(ctx, "x", st, cpi.Props{local.ContainerHostProperty: "yes"}, cpi.Networks{"n": net214(4, 10)}, nil, nil)
	require.ErrorIs(t, err, cpi.ErrVMCreationFailed)
	assert.Contains(t, err.Error(), "cloud_properties.container_host must be true or false")
	after, err := l.Inventory()
	require.NoError(t, err)
	assert.Equal(t, before, after)
}

// TestRuncRunsAContainerInAContainerHost runs Debian's runc inside a
// container_host VM: it makes the container's cgroup (with a memory limit)
// under the VM's, as the kubelet's containerd would.
func TestRuncRunsAContainerInAContainerHost(t *testing.T) {
	l := newCloud(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is not installed (apt-get install runc; .ci/setup-local-cloud.sh does)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err != nil {
		t.Skip("this test checks a cgroup v1 host's memory hierarchy; this host has none")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	vm, _, err := l.CreateVM(ctx, "runc", st, cpi.Props{local.ContainerHostProperty: true}, cpi.Networks{"n": net214(3, 10)}, nil, nil)
	require.NoError(t, err)
	const ip = "10.214.3.10"
	_, err = waitAnswer(ctx, ip, "id")
	require.NoError(t, err)

	// runc and its libraries go through /var/vcap/data (the tiny stemcell has
	// no libc); a busybox bundle beside them.
	data := filepath.Join(l.Dir(), "vms", string(vm), "data")
	files := []string{runc}
	ldd, err := exec.Command("ldd", runc).Output()
	require.NoError(t, err)
	for _, f := range strings.Fields(string(ldd)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	for _, f := range files {
		copyHostFile(t, f, filepath.Join(data, "rt", f), 0o755)
	}
	bundle := filepath.Join(data, "bundle")
	copyHostFile(t, "/bin/busybox", filepath.Join(bundle, "rootfs/bin/busybox"), 0o755)
	for _, d := range []string{"proc", "dev", "sys"} {
		require.NoError(t, os.MkdirAll(filepath.Join(bundle, "rootfs", d), 0o755))
	}
	config := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false, "user": map[string]any{"uid": 0, "gid": 0}, "cwd": "/", "env": []string{"PATH=/bin"},
			"args": []string{"/bin/busybox", "sh", "-c",
				"/bin/busybox cat /sys/fs/cgroup/memory/memory.limit_in_bytes; /bin/busybox grep :memory: /proc/self/cgroup"},
			"noNewPrivileges": true,
		},
		"root":     map[string]any{"path": "rootfs", "readonly": true},
		"hostname": "probe",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "mode=755", "size=1024k"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
			{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		"linux": map[string]any{
			"cgroupsPath": "/kpaas-runc-probe",
			"resources": map[string]any{
				"memory":  map[string]any{"limit": 32 << 20},
				"devices": []map[string]any{{"allow": false, "access": "rwm"}},
			},
			"namespaces": []map[string]any{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}},
		},
	}
	b, err := json.Marshal(config)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644))

	out, err := ask(ctx, ip, "sh /bin/busybox cp -a /var/vcap/data/rt/. / && runc --root /var/vcap/data/runc-state run --bundle /var/vcap/data/bundle probe")
	require.NoError(t, err)
	t.Logf("the container said: %s", out)
	assert.Contains(t, out, strconv.Itoa(32<<20), "runc set the container's memory limit in its cgroup: %s", out)
	assert.Contains(t, out, ":memory:/kpaas-runc-probe", "the container's cgroup is under the VM's (its namespace root): %s", out)

	require.NoError(t, l.DeleteVM(ctx, vm))
	assert.Empty(t, vmCgroup("memory", vm), "delete_vm removes the VM's cgroups")
}

func copyHostFile(t *testing.T, src, dst string, mode os.FileMode) {
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	require.NoError(t, os.WriteFile(dst, b, mode))
}

// TestContainerHostThroughTheKpaasLauncher starts a container_host VM with
// the kpaas binary's own launcher (`kpaas cpi local-vm-init`), as a
// deployment does.
func TestContainerHostThroughTheKpaasLauncher(t *testing.T) {
	needRoot(t)
	tinyStemcell(t)
	kpaas := buildKpaas(t)
	if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err != nil {
		t.Skip("this test checks a cgroup v1 host's memory hierarchy; this host has none")
	}
	l, err := local.New(local.Config{Dir: t.TempDir(), InitCommand: []string{kpaas, "cpi", "local-vm-init"}}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	before, err := l.Inventory()
	require.NoError(t, err)
	vm, _, err := l.CreateVM(ctx, "node", st, cpi.Props{local.ContainerHostProperty: true}, cpi.Networks{"n": net214(6, 10)}, nil, nil)
	require.NoError(t, err)
	const ip = "10.214.6.10"
	_, err = waitAnswer(ctx, ip, "id")
	require.NoError(t, err)
	out, _ := ask(ctx, ip, "fstype /sys/fs/cgroup/memory")
	assert.Equal(t, "cgroup", out)
	out, _ = ask(ctx, ip, "lines /proc/self/cgroup")
	for _, line := range strings.Split(out, ";") {
		assert.True(t, strings.HasSuffix(line, ":/"), "the VM is at the root of its cgroup namespace: %s", line)
	}
	out, _ = ask(ctx, ip, "fstype /var/vcap/data")
	assert.NotEqual(t, "overlay", out)
	require.NoError(t, l.DeleteVM(ctx, vm))
	after, err := l.Inventory()
	require.NoError(t, err)
	assert.Equal(t, before, after)
}

// TestRealAgentOnAContainerHost: the kpaas-agent comes up on a container
// host and takes /var/vcap/data, already a mount point, as its ephemeral
// disk (no ephemeral disk hint is needed).
func TestRealAgentOnAContainerHost(t *testing.T) {
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, agentStemcell(t), nil)
	require.NoError(t, err)
	pool := agentclient.NewPool(agentclient.Options{DialTimeout: 2 * time.Second})
	defer pool.Close()
	host, client := agentclienttest.MustKeys(t), agentclienttest.MustKeys(t)
	env := cpi.Env{"kpaas": map[string]any{"host_key": host.PEM, "authorized_keys": []string{client.Public}}}
	net := net214(7, 10)
	vm, _, err := l.CreateVM(ctx, "node", st, cpi.Props{local.ContainerHostProperty: true}, cpi.Networks{"n": net}, nil, env)
	require.NoError(t, err)
	c := pool.Client(agentclient.Target{Name: string(vm), Address: net.IP + ":6868", HostKey: host.Public, Signer: client.Signer})
	require.NoError(t, waitPing(ctx, c), "console: %s", console(l, vm))
	state, err := c.GetState(ctx, true)
	require.NoError(t, err)
	require.NotNil(t, state.Vitals)
	assert.Contains(t, state.Vitals.Disk, "ephemeral", "the agent sees /var/vcap/data as its ephemeral disk")
	assert.DirExists(t, filepath.Join(l.Dir(), "vms", string(vm), "data", "sys", "run"), "the agent's layout lives in the VM's data directory on the host")
	require.NoError(t, l.DeleteVM(ctx, vm))
}
