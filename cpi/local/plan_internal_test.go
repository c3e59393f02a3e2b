package local

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
)

func TestPlanNICs(t *testing.T) {
	dyn := func(r string) cpi.Network {
		return cpi.Network{Type: "dynamic", CloudProperties: cpi.Props{"range": r}}
	}
	tests := []struct {
		name    string
		nets    cpi.Networks
		used    map[string]string
		wantIPs map[string]string
		wantDef string
		wantErr string
	}{
		{name: "manual", nets: cpi.Networks{"a": {Type: "manual", IP: "10.0.0.5", Netmask: "255.255.255.0", Gateway: "10.0.0.1"}},
			wantIPs: map[string]string{"a": "10.0.0.5"}, wantDef: "a"},
		{name: "dynamic skips gateway and used", nets: cpi.Networks{"d": dyn("10.1.0.0/29")}, used: map[string]string{"10.1.0.2": "vm-x"},
			wantIPs: map[string]string{"d": "10.1.0.3"}, wantDef: "d"},
		{name: "dynamic exhausted", nets: cpi.Networks{"d": dyn("10.1.0.0/30")}, used: map[string]string{"10.1.0.2": "vm-x"}, wantErr: "no free IP left in 10.1.0.0/30"},
		{name: "ip in use", nets: cpi.Networks{"a": {IP: "10.0.0.5", Netmask: "255.255.255.0"}}, used: map[string]string{"10.0.0.5": "vm-y"}, wantErr: "already used by VM vm-y"},
		{name: "ip is gateway", nets: cpi.Networks{"a": {IP: "10.0.0.1", Netmask: "255.255.255.0"}}, wantErr: "is the gateway's"},
		{name: "bad netmask", nets: cpi.Networks{"a": {IP: "10.0.0.5"}}, wantErr: "netmask"},
		{name: "two networks, default follows gateway", nets: cpi.Networks{
			"a": {IP: "10.0.0.5", Netmask: "255.255.255.0"},
			"b": {IP: "10.2.0.5", Netmask: "255.255.0.0", Default: []string{"dns", "gateway"}},
		}, wantIPs: map[string]string{"a": "10.0.0.5", "b": "10.2.0.5"}, wantDef: "b"},
		{name: "two networks, none default: the first", nets: cpi.Networks{
			"b": {IP: "10.2.0.5", Netmask: "255.255.0.0"}, "a": {IP: "10.0.0.5", Netmask: "255.255.255.0"},
		}, wantIPs: map[string]string{"a": "10.0.0.5", "b": "10.2.0.5"}, wantDef: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used := map[string]string{}
			for k, v := range tt.used {
				used[k] = v
			}
			nics, got, err := planNICs("vm-0123abcd", tt.nets, used)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			var def []string
			for _, n := range nics {
				assert.Equal(t, tt.wantIPs[n.Network], n.IP)
				assert.Equal(t, tt.wantIPs[n.Network], got[n.Network].IP)
				assert.Equal(t, "vm-0123abcd", used[n.IP], "the IP is reserved")
				assert.LessOrEqual(t, len(n.HostVeth), 15, "interface names fit IFNAMSIZ")
				assert.LessOrEqual(t, len(n.Bridge), 15)
				if n.Default {
					def = append(def, n.Network)
				}
			}
			assert.Equal(t, []string{tt.wantDef}, def, "exactly one NIC carries the default route")
		})
	}
}

func TestMACFromIPIsStable(t *testing.T) {
	_, a, err := planNICs("vm-00000001", cpi.Networks{"a": {IP: "192.168.7.9", Netmask: "255.255.255.0"}}, map[string]string{})
	require.NoError(t, err)
	_, b, err := planNICs("vm-00000002", cpi.Networks{"a": {IP: "192.168.7.9", Netmask: "255.255.255.0"}}, map[string]string{})
	require.NoError(t, err)
	assert.Equal(t, "02:4b:c0:a8:07:09", a["a"].MAC)
	assert.Equal(t, a["a"].MAC, b["a"].MAC, "a VM recreated with the same IP has the same MAC")
}

func TestCgroupV2Files(t *testing.T) {
	root := t.TempDir()
	c := cgroups{root: root, v2: true, group: "kpaas-test"}
	require.NoError(t, c.create("vm-1", 4242, limits{CPU: 1.5, MemMiB: 256}, false))
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, "kpaas-test", "vm-1", p))
		require.NoError(t, err)
		return string(b)
	}
	assert.Equal(t, "268435456", read("memory.max"))
	assert.Equal(t, "150000 100000", read("cpu.max"))
	assert.Equal(t, "4242", read("cgroup.procs"))
	assert.Equal(t, []int{4242}, c.procs("vm-1"))
}

func TestCgroupV1Files(t *testing.T) {
	root := t.TempDir()
	c := cgroups{root: root, v1: []string{"pids", "memory", "cpu"}, group: "kpaas-test"}
	require.NoError(t, c.create("vm-1", 7, limits{CPU: 0.25, MemMiB: 64}, false))
	b, _ := os.ReadFile(filepath.Join(root, "memory", "kpaas-test", "vm-1", "memory.limit_in_bytes"))
	assert.Equal(t, "67108864", string(b))
	b, _ = os.ReadFile(filepath.Join(root, "cpu", "kpaas-test", "vm-1", "cpu.cfs_quota_us"))
	assert.Equal(t, "25000", string(b))
	b, _ = os.ReadFile(filepath.Join(root, "pids", "kpaas-test", "vm-1", "cgroup.procs"))
	assert.Equal(t, "7", string(b))
}

// A host like this machine kind (separate v1 controllers, a named systemd
// hierarchy, cgroup2 at unified) and one with combined controllers.
const testMountinfo = `25 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
42 25 0:32 / /mnt/again rw,relatime - cgroup cgroup rw,memory
43 25 0:35 / /tmp/elsewhere rw,relatime - cgroup cgroup rw,pids
`

func TestReadHierarchiesKeepsTheHostsCombinations(t *testing.T) {
	dir := t.TempDir()
	mi := filepath.Join(dir, "mountinfo")
	require.NoError(t, os.WriteFile(mi, []byte(testMountinfo), 0o644))
	got := readHierarchies(mi, "/sys/fs/cgroup")
	assert.Equal(t, []hierarchy{
		{Name: "cpu,cpuacct", Type: "cgroup", Opts: "cpu,cpuacct", Links: []string{"cpu", "cpuacct"}},
		{Name: "cpuset", Type: "cgroup", Opts: "cpuset"},
		{Name: "memory", Type: "cgroup", Opts: "memory"},
		{Name: "net_cls,net_prio", Type: "cgroup", Opts: "net_cls,net_prio", Links: []string{"net_cls", "net_prio"}},
		{Name: "systemd", Type: "cgroup", Opts: "none,name=systemd"},
		{Name: "unified", Type: "cgroup2"},
	}, got, "each hierarchy once (the memory one mounted again elsewhere is skipped), generic options dropped")

	v2 := filepath.Join(dir, "mountinfo2")
	require.NoError(t, os.WriteFile(v2, []byte("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"), 0o644))
	assert.Equal(t, []hierarchy{{Name: "", Type: "cgroup2"}}, readHierarchies(v2, "/sys/fs/cgroup"))
}

func TestContainerHostCgroupsInEveryHierarchy(t *testing.T) {
	root := t.TempDir()
	c := cgroups{root: root, v1: []string{"pids", "memory", "cpu"}, group: "kpaas-test", hier: []hierarchy{
		{Name: "cpu,cpuacct", Type: "cgroup", Opts: "cpu,cpuacct"},
		{Name: "cpuset", Type: "cgroup", Opts: "cpuset"},
		{Name: "memory", Type: "cgroup", Opts: "memory"},
		{Name: "pids", Type: "cgroup", Opts: "pids"},
		{Name: "systemd", Type: "cgroup", Opts: "none,name=systemd"},
		{Name: "unified", Type: "cgroup2"},
	}}
	// cpuset: the root has CPUs and memory nodes; a new group has none.
	require.NoError(t, os.MkdirAll(filepath.Join(root, "cpuset", "kpaas-test", "vm-1"), 0o755))
	for f, v := range map[string]string{"cpuset/cpuset.cpus": "0-1\n", "cpuset/cpuset.mems": "0\n",
		"cpuset/kpaas-test/cpuset.cpus": "", "cpuset/kpaas-test/cpuset.mems": "",
		"cpuset/kpaas-test/vm-1/cpuset.cpus": "", "cpuset/kpaas-test/vm-1/cpuset.mems": ""} {
		require.NoError(t, os.WriteFile(filepath.Join(root, f), []byte(v), 0o644))
	}
	require.NoError(t, c.create("vm-1", 9, limits{CPU: 0.5, MemMiB: 32}, true))
	for _, h := range []string{"cpu,cpuacct", "cpuset", "memory", "pids", "systemd", "unified"} {
		b, err := os.ReadFile(filepath.Join(root, h, "kpaas-test", "vm-1", "cgroup.procs"))
		require.NoError(t, err, h)
		assert.Equal(t, "9", string(b), h)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		require.NoError(t, err)
		return string(b)
	}
	assert.Equal(t, "0-1\n", read("cpuset/kpaas-test/vm-1/cpuset.cpus"), "copied down from the root")
	assert.Equal(t, "0\n", read("cpuset/kpaas-test/cpuset.mems"))
	assert.Equal(t, "50000", read("cpu,cpuacct/kpaas-test/vm-1/cpu.cfs_quota_us"), "limits go to the hierarchy holding the controller")
	assert.Equal(t, "33554432", read("memory/kpaas-test/vm-1/memory.limit_in_bytes"))
	_, err := os.Stat(filepath.Join(root, "unified", "kpaas-test", "vm-1", "memory.max"))
	assert.True(t, os.IsNotExist(err), "no v2 limits in a hybrid host's cgroup2")

	// Nested cgroups (the kubelet's) count for processes and go first on removal.
	nested := filepath.Join(root, "memory", "kpaas-test", "vm-1", "kubepods", "pod1")
	require.NoError(t, os.MkdirAll(nested, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(nested, "cgroup.procs"), []byte("77\n78\n"), 0o644))
	assert.ElementsMatch(t, []int{9, 77, 78}, c.procs("vm-1"))
	sub := subtree(filepath.Join(root, "memory", "kpaas-test", "vm-1"))
	assert.Equal(t, nested, sub[0], "children before parents")
	assert.Equal(t, filepath.Join(root, "memory", "kpaas-test", "vm-1"), sub[len(sub)-1])
}
