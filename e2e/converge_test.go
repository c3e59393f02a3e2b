package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/local"
	"github.com/kpaas/kpaas/pkg/state"
)

func needNsenter(t testing.TB) {
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter (util-linux) is needed to look inside a VM")
	}
}

// killVM kills every process of a local-cloud VM behind kpaas's back (its
// PID 1, which takes the PID namespace with it); the VM's record stays, so
// the CPI still has it: the agent just stops answering.
func killVM(t testing.TB, e *env, vm string) {
	pid := vmPID(t, e, vm)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("VM %s (pid %d) did not die", vm, pid)
}

type convergeJSON struct {
	Total     int `json:"total"`
	Healthy   int `json:"healthy"`
	Unhealthy []struct {
		Instance string
		Reasons  []string
		Details  []string
	} `json:"unhealthy"`
	Fixed []struct{ Name, Action string } `json:"fixed"`
	Gated string                          `json:"gated"`
}

func TestConvergeReplacesAKilledVMKeepingItsDisk(t *testing.T) {
	needNsenter(t)
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("db.yml", dbManifest), "-n")
	vms := vmDirs(t, e)
	require.Len(t, vms, 1)
	created := inVM(t, e, vms[0], "cat", "/var/vcap/store/store-writer/created")

	// Healthy: converge does nothing.
	r := e.must("converge", "-d", "hello", "--json")
	var out convergeJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	assert.Equal(t, 1, out.Healthy)
	assert.Empty(t, out.Fixed)

	killVM(t, e, vms[0])
	cck := e.kpaas("cck", "-d", "hello", "--report", "--json")
	assert.Equal(t, 1, cck.code, cck.stderr)
	assert.Contains(t, cck.stdout, `"type": "unresponsive_agent"`)

	start := time.Now()
	r = e.must("converge", "-d", "hello", "--agent-timeout", "5s", "--json")
	took := time.Since(start)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	require.Len(t, out.Unhealthy, 1)
	assert.Equal(t, []string{"unresponsive_agent"}, out.Unhealthy[0].Reasons)
	require.Len(t, out.Fixed, 1)
	assert.Equal(t, "recreate", out.Fixed[0].Action)
	t.Logf("killed VM replaced by converge in %s (agent timeout 5 s): %v", took.Round(time.Millisecond), out.Unhealthy[0].Details)

	after := vmDirs(t, e)
	require.Len(t, after, 1, "the dead VM was deleted")
	assert.NotEqual(t, vms, after)
	assert.Equal(t, created, inVM(t, e, after[0], "cat", "/var/vcap/store/store-writer/created"), "the persistent disk's data survived")
	ev := e.must("events", "-d", "hello", "--action", "resurrect-recreate", "--json")
	assert.Contains(t, ev.stdout, "db/0")
	e.must("cck", "-d", "hello", "--report")
}

func TestCCKAutoRecreatesAVMDeletedBehindKpaasBack(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("hello.yml", helloManifest), "-v", "instances=2", "-v", "greeting=hi", "-n")
	vms := vmDirs(t, e)
	require.Len(t, vms, 2)
	l, err := local.New(local.Config{Dir: filepath.Join(e.state, "local")}, nil)
	require.NoError(t, err)
	require.NoError(t, l.DeleteVM(context.Background(), cpi.VMCID(vms[0])))

	r := e.kpaas("cck", "-d", "hello", "--report")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "VMs: 1 missing, 0 unresponsive")
	assert.Contains(t, r.stdout, "missing_vm")
	e.must("cck", "-d", "hello", "--auto", "-n")
	assert.Len(t, vmDirs(t, e), 2)
	e.must("cck", "-d", "hello", "--report")
	for _, ip := range []string{e.subnet + ".20", e.subnet + ".21"} {
		assert.Contains(t, get(t, "http://"+ip+":8080/"), "<h1>hi</h1>", "same IPs, serving again")
	}
}

func TestHalfTheDeploymentDownHoldsTheGate(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("hello.yml", helloManifest), "-v", "instances=4", "-v", "greeting=hi", "-n", "--max-in-flight", "4")
	vms := vmDirs(t, e)
	require.Len(t, vms, 4)
	l, err := local.New(local.Config{Dir: filepath.Join(e.state, "local")}, nil)
	require.NoError(t, err)
	for _, vm := range vms[:2] {
		require.NoError(t, l.DeleteVM(context.Background(), cpi.VMCID(vm)))
	}
	r := e.kpaas("converge", "-d", "hello", "--max-unhealthy", "1", "--json")
	assert.Equal(t, 1, r.code, r.stderr)
	var out convergeJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	assert.Len(t, out.Unhealthy, 2)
	assert.Contains(t, out.Gated, "2 of 4 instances are unhealthy")
	assert.Empty(t, out.Fixed)
	assert.Len(t, vmDirs(t, e), 2, "nothing was recreated")
	ev := e.must("events", "-d", "hello", "--action", "meltdown", "--json")
	assert.Contains(t, ev.stdout, "max_unhealthy (1)")

	// With the default gate (20% with a minimum of 5) two of four are remediated.
	e.must("converge", "-d", "hello")
	assert.Len(t, vmDirs(t, e), 4)
}

func TestACrashingJobIsRestartedThenItsVMRecreated(t *testing.T) {
	needNsenter(t)
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("hello.yml", helloManifest), "-v", "instances=1", "-v", "greeting=hi", "-n")
	vms := vmDirs(t, e)
	require.Len(t, vms, 1)
	// Break the job's executable inside the VM and kill it: it crashes in a
	// loop; a restart does not help (the file stays broken), a new VM does.
	inVM(t, e, vms[0], "sh", "-c", `printf '#!/bin/sh\nexit 1\n' > /var/vcap/packages/hello-scripts/bin/hello-server`)
	// Kill the running server inside the VM's PID namespace.
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(vmPID(t, e, vms[0])), "-m", "-p", "--", "sh", "-c",
		`for p in /proc/[0-9]*; do n=${p#/proc/}; [ "$n" = "$$" ] && continue; tr '\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^busybox httpd' && kill -9 $n; done; true`).CombinedOutput()
	require.NoError(t, err, "%s", out)
	deadline := time.Now().Add(90 * time.Second)
	var log strings.Builder
	for time.Now().Before(deadline) && len(vmDirs(t, e)) == 1 && vmDirs(t, e)[0] == vms[0] {
		r := e.kpaas("converge", "-d", "hello", "--grace", "2s", "--backoff", "1s")
		log.WriteString(r.stderr)
		time.Sleep(time.Second)
	}
	t.Log(log.String())
	assert.Contains(t, log.String(), "REMEDIATING: restart: failing_job", "a restart came first")
	assert.Contains(t, log.String(), "REMEDIATING: recreate: failing_job", "then the VM was recreated")
	after := vmDirs(t, e)
	require.Len(t, after, 1)
	assert.NotEqual(t, vms, after, "the VM was recreated")
	assert.Contains(t, get(t, "http://"+e.subnet+".20:8080/"), "<h1>hi</h1>")
}

// monitorProc runs `kpaas monitor` and collects its NDJSON reports.
type monitorProc struct {
	cmd     *exec.Cmd
	reports chan map[string]any
}

func startMonitor(t testing.TB, e *env, args ...string) *monitorProc {
	cmd := exec.Command(filepath.Join(binDir, "kpaas"), append([]string{"monitor", "--json", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "KPAAS_STATE="+e.state)
	cmd.Dir = e.work
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	m := &monitorProc{cmd: cmd, reports: make(chan map[string]any, 1000)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r map[string]any
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				m.reports <- r
			}
		}
		close(m.reports)
	}()
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGINT); _ = cmd.Wait() })
	return m
}

// until waits for a report of kind (and instance prefix) and returns it.
func (m *monitorProc) until(t testing.TB, kind string, within time.Duration) map[string]any {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case r, ok := <-m.reports:
			require.True(t, ok, "monitor exited")
			if r["kind"] == kind {
				return r
			}
		case <-timer.C:
			t.Fatalf("no %q report within %s", kind, within)
		}
	}
}

func TestMonitorReplacesAKilledVMWithDefaultSettings(t *testing.T) {
	needNsenter(t)
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("db.yml", dbManifest), "-n")
	vms := vmDirs(t, e)
	created := inVM(t, e, vms[0], "cat", "/var/vcap/store/store-writer/created")
	m := startMonitor(t, e)
	m.until(t, "leader", 10*time.Second)

	// A second monitor on the same store stands by.
	m2 := startMonitor(t, e)
	m2.until(t, "standby", 10*time.Second)

	killVM(t, e, vms[0])
	start := time.Now()
	m.until(t, "unhealthy", 60*time.Second)
	m.until(t, "remediated", 60*time.Second)
	took := time.Since(start)
	t.Logf("VM killed -> replacement with all jobs running: %s (default settings)", took.Round(time.Millisecond))
	after := vmDirs(t, e)
	require.Len(t, after, 1)
	assert.Equal(t, created, inVM(t, e, after[0], "cat", "/var/vcap/store/store-writer/created"), "the persistent disk's data survived")
}

func TestCCKFindsAnInactiveDiskAndActivatesIt(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("db.yml", dbManifest), "-n")
	ctx := context.Background()
	loc, err := state.ResolveLocation(e.state)
	require.NoError(t, err)
	st, err := state.Open(ctx, loc, state.Options{})
	require.NoError(t, err)
	ds, err := st.LoadDeployment(ctx, "hello")
	require.NoError(t, err)
	require.Len(t, ds.Disks, 1)
	d := ds.Disks[0]
	d.Active = false
	require.NoError(t, st.SaveDisk(ctx, d))
	require.NoError(t, st.Close())

	r := e.kpaas("cck", "-d", "hello", "--report", "--json")
	assert.Equal(t, 1, r.code, r.stderr)
	var v struct {
		Problems []struct {
			Type    string `json:"type"`
			DiskCID string `json:"disk_cid"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v), r.stdout)
	require.Len(t, v.Problems, 1)
	assert.Equal(t, "inactive_disk", v.Problems[0].Type)
	assert.Equal(t, d.CID, v.Problems[0].DiskCID)

	e.must("cck", "-d", "hello", "--auto")
	assert.Equal(t, 1, e.kpaas("cck", "-d", "hello", "--report").code, "--auto ignores an inactive disk, as BOSH")
	e.must("cck", "-d", "hello", "--resolution", "activate_disk")
	e.must("cck", "-d", "hello", "--report")
}

// cck's reboot_vm: the killed VM comes back as the same VM (no new VM, same
// IPs), its agent mounts the persistent disk again before the jobs start, and
// the data is there.
func TestCCKRebootsAnUnresponsiveVMKeepingItsDisk(t *testing.T) {
	needNsenter(t)
	e := newEnv(t)
	e.setup()
	e.must("deploy", e.write("db.yml", dbManifest), "-n")
	vms := vmDirs(t, e)
	require.Len(t, vms, 1)
	created := inVM(t, e, vms[0], "cat", "/var/vcap/store/store-writer/created")

	killVM(t, e, vms[0])
	r := e.kpaas("cck", "-d", "hello", "--report", "--json")
	require.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"reboot_vm"`, "an unresponsive agent offers a reboot")

	start := time.Now()
	r = e.must("cck", "-d", "hello", "--resolution", "reboot_vm")
	t.Logf("killed VM rebooted by cck --resolution reboot_vm in %s", time.Since(start).Round(time.Millisecond))
	assert.Contains(t, r.stderr, "jobs running")
	assert.Equal(t, vms, vmDirs(t, e), "the same VM, not a new one")
	assert.Contains(t, inVM(t, e, vms[0], "cat", "/proc/1/mounts"), " /var/vcap/store ", "the persistent disk is mounted again")
	assert.Equal(t, created, inVM(t, e, vms[0], "cat", "/var/vcap/store/store-writer/created"), "the data is there")
	e.must("cck", "-d", "hello", "--report")
	ev := e.must("events", "-d", "hello", "--action", "cck-reboot_vm", "--json")
	assert.Contains(t, ev.stdout, "db/0")
}
