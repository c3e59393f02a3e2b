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
	require.NoError(t, c.create("vm-1", 4242, limits{CPU: 1.5, MemMiB: 256}))
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
	require.NoError(t, c.create("vm-1", 7, limits{CPU: 0.25, MemMiB: 64}))
	b, _ := os.ReadFile(filepath.Join(root, "memory", "kpaas-test", "vm-1", "memory.limit_in_bytes"))
	assert.Equal(t, "67108864", string(b))
	b, _ = os.ReadFile(filepath.Join(root, "cpu", "kpaas-test", "vm-1", "cpu.cfs_quota_us"))
	assert.Equal(t, "25000", string(b))
	b, _ = os.ReadFile(filepath.Join(root, "pids", "kpaas-test", "vm-1", "cgroup.procs"))
	assert.Equal(t, "7", string(b))
}
