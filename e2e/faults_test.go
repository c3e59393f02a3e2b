package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/local"
)

// TestConvergeRecreatesAVMWhoseAgentWasKilled kills only the kpaas-agent
// process (not PID 1, the init reaper) inside the VM's PID namespace. On
// the local cloud the init exits with its agent, so the VM's processes go
// too; the CPI still has the VM record: an unresponsive agent.
func TestConvergeRecreatesAVMWhoseAgentWasKilled(t *testing.T) {
	needNsenter(t)
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("db.yml", dbManifest), "-n")
	vms := vmDirs(t, e)
	require.Len(t, vms, 1)
	created := inVM(t, e, vms[0], "cat", "/var/vcap/store/store-writer/created")

	// Inside the VM's PID namespace only: the pids are the VM's own.
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(vmPID(t, e, vms[0])), "-m", "-p", "--", "sh", "-c",
		`k=0; for p in /proc/[0-9]*; do n=${p#/proc/}; [ "$n" = 1 ] && continue; [ "$n" = "$$" ] && continue; case "$(readlink $p/exe)" in */kpaas-agent) kill -9 $n && k=$((k+1));; esac; done; echo $k`).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "1\n", string(out), "exactly one agent process was killed")

	start := time.Now()
	r := e.must("converge", "-d", "hello", "--agent-timeout", "3s", "--refused-timeout", "2s", "--json")
	took := time.Since(start)
	var res convergeJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	require.Len(t, res.Unhealthy, 1)
	assert.Equal(t, []string{"unresponsive_agent"}, res.Unhealthy[0].Reasons)
	require.Len(t, res.Fixed, 1)
	assert.Equal(t, "recreate", res.Fixed[0].Action)
	t.Logf("killed agent -> instance recreated by converge in %s (agent timeout 3 s): %v", took.Round(time.Millisecond), res.Unhealthy[0].Details)

	after := vmDirs(t, e)
	require.Len(t, after, 1)
	assert.NotEqual(t, vms, after, "a new VM")
	assert.Equal(t, created, inVM(t, e, after[0], "cat", "/var/vcap/store/store-writer/created"), "the persistent disk's data survived")
	e.must("cck", "-d", "hello", "--report")
}

// TestCCKReattachesADiskDetachedBehindKpaasBack detaches the persistent
// disk through the local CPI directly: cck sees the agent no longer mounts
// it and reattach_disk (recreating the VM with the disk) fixes it.
func TestCCKReattachesADiskDetachedBehindKpaasBack(t *testing.T) {
	needNsenter(t)
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("db.yml", dbManifest), "-n")
	vms := vmDirs(t, e)
	require.Len(t, vms, 1)
	created := inVM(t, e, vms[0], "cat", "/var/vcap/store/store-writer/created")

	ctx := context.Background()
	l, err := local.New(local.Config{Dir: filepath.Join(e.state, "local")}, nil)
	require.NoError(t, err)
	disks, err := l.GetDisks(ctx, cpi.VMCID(vms[0]))
	require.NoError(t, err)
	require.Len(t, disks, 1)
	require.NoError(t, l.DetachDisk(ctx, cpi.VMCID(vms[0]), disks[0]))

	r := e.kpaas("cck", "-d", "hello", "--report", "--json")
	assert.Equal(t, 1, r.code, r.stderr)
	var v struct {
		Problems []struct {
			Type    string `json:"type"`
			DiskCID string `json:"disk_cid"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v), r.stdout)
	require.Len(t, v.Problems, 1, r.stdout)
	assert.Equal(t, "mount_info_mismatch", v.Problems[0].Type)
	assert.Equal(t, string(disks[0]), v.Problems[0].DiskCID)

	start := time.Now()
	e.must("cck", "-d", "hello", "--resolution", "reattach_disk")
	took := time.Since(start)
	t.Logf("detached disk -> reattached by cck --resolution reattach_disk in %s", took.Round(time.Millisecond))
	e.must("cck", "-d", "hello", "--report")
	after := vmDirs(t, e)
	require.Len(t, after, 1)
	got, err := l.GetDisks(ctx, cpi.VMCID(after[0]))
	require.NoError(t, err)
	assert.Equal(t, disks, got, "the same disk is attached")
	assert.Equal(t, created, inVM(t, e, after[0], "cat", "/var/vcap/store/store-writer/created"), "the persistent disk's data survived")
}

// TestMonitorKilledDuringRemediationIsReplacedByANewOne kills -9 the
// monitor once it has started recreating a killed VM; a new monitor takes
// over (the dead one's locks are recognised as abandoned: same host, pid
// gone) and finishes the job.
func TestMonitorKilledDuringRemediationIsReplacedByANewOne(t *testing.T) {
	needNsenter(t)
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("db.yml", dbManifest), "-n")
	vms := vmDirs(t, e)
	require.Len(t, vms, 1)
	created := inVM(t, e, vms[0], "cat", "/var/vcap/store/store-writer/created")
	flags := []string{"--interval", "1s", "--agent-timeout", "3s", "--refused-timeout", "2s", "--backoff", "1s"}
	m := startMonitor(t, e, flags...)
	m.until(t, "leader", 10*time.Second)

	killVM(t, e, vms[0])
	start := time.Now()
	m.until(t, "remediating", 60*time.Second)
	t.Logf("remediation started %s after the VM was killed", time.Since(start).Round(time.Millisecond))
	require.NoError(t, m.cmd.Process.Signal(syscall.SIGKILL)) // the pid this test started
	_ = m.cmd.Wait()

	restart := time.Now()
	m2 := startMonitor(t, e, flags...)
	m2.until(t, "leader", 15*time.Second) // not the 60 s lock TTL: the dead holder is seen at once
	t.Logf("new monitor leads %s after the old one was killed", time.Since(restart).Round(time.Millisecond))
	m2.until(t, "remediated", 120*time.Second)
	t.Logf("VM killed -> running again after a monitor crash mid-remediation: %s (the new monitor needed %s)",
		time.Since(start).Round(time.Millisecond), time.Since(restart).Round(time.Millisecond))

	e.must("cck", "-d", "hello", "--report")
	after := vmDirs(t, e)
	require.Len(t, after, 1, "one VM: the half-made one of the dead monitor is not left behind")
	assert.Equal(t, created, inVM(t, e, after[0], "cat", "/var/vcap/store/store-writer/created"), "the persistent disk's data survived")
}
