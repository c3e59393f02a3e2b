package local_test

import (
	"context"
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
)

// hostView is what the host shows, read with the system's own tools (not the
// driver's Inventory): links, loop devices, mounts and cgroups that mention
// the cloud's names or state directory. Other local clouds may run on the
// host meanwhile: links count when their line mentions one of marks (the
// VM's ID, the bridges' MACs).
func hostView(t *testing.T, dir string, marks ...string) []string {
	var out []string
	links, err := exec.Command("ip", "-o", "link", "show").Output()
	require.NoError(t, err)
	for _, line := range strings.Split(string(links), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (strings.HasPrefix(f[1], "kv") || strings.HasPrefix(f[1], "kb")) {
			for _, m := range marks {
				if strings.Contains(line, m) {
					out = append(out, "link "+strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
					break
				}
			}
		}
	}
	loops, _ := exec.Command("losetup", "-a").Output()
	for _, line := range strings.Split(string(loops), "\n") {
		if strings.Contains(line, dir) {
			out = append(out, "loop "+line)
		}
	}
	mounts, err := os.ReadFile("/proc/mounts")
	require.NoError(t, err)
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, dir) {
			out = append(out, "mount "+line)
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/kpaas-*/vm-*")
	cgs2, _ := filepath.Glob("/sys/fs/cgroup/kpaas-*/vm-*")
	for _, c := range append(cgs, cgs2...) {
		for _, m := range marks {
			if strings.Contains(c, m) {
				out = append(out, "cgroup "+c)
				break
			}
		}
	}
	return out
}

func TestNothingLeaksOnTheHost(t *testing.T) {
	l := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	// The bridges' MACs come from their gateways (10.213.10.1, 10.213.11.1).
	marks := []string{"02:4b:0a:d5:0a:01", "02:4b:0a:d5:0b:01"}
	before := hostView(t, l.Dir(), marks...)

	vm, _, err := l.CreateVM(ctx, "leak", st, cpi.Props{"ram": 128, "cpu": 1}, cpi.Networks{
		"a": manual(10, 10), "b": {Type: "dynamic", CloudProperties: cpi.Props{"range": "10.213.11.0/24"}},
	}, nil, nil)
	require.NoError(t, err)
	_, err = waitAnswer(ctx, "10.213.10.10", "id")
	require.NoError(t, err)
	disk, err := l.CreateDisk(ctx, 16, nil, vm)
	require.NoError(t, err)
	hint, err := l.AttachDisk(ctx, vm, disk)
	require.NoError(t, err)
	out, _ := ask(ctx, "10.213.10.10", "mount "+hint.Path+" /var/vcap/store")
	require.Equal(t, "ok", out)
	infos, _ := l.VMs()
	require.Len(t, infos, 1)
	pid := infos[0].PID
	marks = append(marks, strings.TrimPrefix(string(vm), "vm-"))
	during := hostView(t, l.Dir(), marks...)
	assert.Greater(t, len(during), len(before), "the VM shows on the host while it runs: %v", during)

	require.NoError(t, l.DeleteVM(ctx, vm))
	require.NoError(t, l.DeleteDisk(ctx, disk))
	assert.Eventually(t, func() bool { return len(hostView(t, l.Dir(), marks...)) == len(before) }, 2*time.Second, 10*time.Millisecond)
	assert.Equal(t, before, hostView(t, l.Dir(), marks...), "delete_vm removes links, loop devices, mounts and cgroups")
	_, err = os.Stat("/proc/" + strconv.Itoa(pid))
	assert.True(t, os.IsNotExist(err), "the VM's init (pid %d) is gone", pid)
	_, err = os.Stat(filepath.Join(l.Dir(), "vms", string(vm)))
	assert.True(t, os.IsNotExist(err), "the VM's directory (ephemeral disk) is gone")
}
