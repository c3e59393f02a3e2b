package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

func newTestSupervisor(t *testing.T, o SupervisorOptions, jobs map[string]string) (*Supervisor, Layout) {
	l := Layout{Root: t.TempDir()}
	require.NoError(t, l.Ensure())
	var cfgs []JobConfig
	for job, bpm := range jobs {
		dir := filepath.Join(l.JobDir(job), "config")
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "bpm.yml"), []byte(bpm), 0o644))
		cfgs = append(cfgs, JobConfig{Name: job})
	}
	o.Layout = l
	s := NewSupervisor(o)
	require.NoError(t, s.Load(cfgs))
	t.Cleanup(func() { s.Stop(t.Context()) })
	return s, l
}

func TestSupervisorRotatesProcessLogs(t *testing.T) {
	s, l := newTestSupervisor(t, SupervisorOptions{LogMaxSize: 1000, LogKeep: 2}, map[string]string{
		"chatty": "processes:\n- name: chatty\n  executable: /bin/sh\n  args: [\"-c\", \"i=0; while [ $i -lt 200 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; exec sleep 1000\"]\n",
	})
	require.NoError(t, s.Start())
	log := filepath.Join(l.JobLogDir("chatty"), "chatty.stdout.log")
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "line-199-")
	}, 10*time.Second, 20*time.Millisecond)
	for _, p := range []string{log, log + ".1", log + ".2"} {
		fi, err := os.Stat(p)
		require.NoError(t, err, p)
		assert.LessOrEqual(t, fi.Size(), int64(1000), p)
	}
	assert.NoFileExists(t, log+".3")
	// The rotated file holds the lines just before the current file's first.
	cur, _ := os.ReadFile(log)
	old, _ := os.ReadFile(log + ".1")
	var first, last int
	fmt.Sscanf(string(cur), "line-%d-", &first)
	oldLines := strings.Split(strings.TrimSpace(string(old)), "\n")
	fmt.Sscanf(oldLines[len(oldLines)-1], "line-%d-", &last)
	assert.Equal(t, first-1, last)
}

func TestSupervisorBacksOffExponentially(t *testing.T) {
	s, _ := newTestSupervisor(t, SupervisorOptions{MinBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}, map[string]string{
		"crash": "processes:\n- name: crash\n  executable: /bin/false\n",
	})
	start := time.Now()
	require.NoError(t, s.Start())
	require.Eventually(t, func() bool { return s.Processes()[0].Restarts >= 4 }, 10*time.Second, 10*time.Millisecond)
	// 100 + 200 + 400 (capped) ms of backoff at least between the first four exits
	assert.GreaterOrEqual(t, time.Since(start), 700*time.Millisecond)
	assert.Equal(t, protocol.JobFailing, RollUp(false, s.Processes()))
}

func TestSupervisorUnmonitoredDoesNotRestart(t *testing.T) {
	s, _ := newTestSupervisor(t, SupervisorOptions{MinBackoff: 50 * time.Millisecond}, map[string]string{
		"once": "processes:\n- name: once\n  executable: /bin/sh\n  args: [\"-c\", \"sleep 0.2\"]\n",
	})
	require.NoError(t, s.Start())
	s.Unmonitor()
	require.Eventually(t, func() bool { return s.Processes()[0].Restarts == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 1, s.Processes()[0].Restarts, "an unmonitored process is not restarted")
}

// A memory limit from bpm.yml is enforced with a cgroup: a process growing
// past it is killed by the kernel.
func TestSupervisorMemoryLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root")
	}
	_, v2err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	_, v1err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes")
	if v2err != nil && v1err != nil {
		t.Skip("no cgroup memory controller mounted")
	}
	name := fmt.Sprintf("kpaas-test-%d", os.Getpid())
	s, l := newTestSupervisor(t, SupervisorOptions{CgroupName: name}, map[string]string{
		"hog": "processes:\n- name: hog\n  executable: /bin/sh\n  args: [\"-c\", \"head -c 300000000 /dev/zero | tail -n 1 > /dev/null; echo rc=$?; exec sleep 1000\"]\n  limits: {memory: 32M}\n",
	})
	require.NoError(t, s.Start())
	require.Eventually(t, func() bool { p := s.Processes()[0]; return p.PID > 0 || p.Restarts > 0 }, 10*time.Second, 10*time.Millisecond)
	if e := s.Processes()[0].Error; strings.Contains(e, "not enforced") {
		t.Skipf("this machine does not let the agent create memory cgroups: %s", e)
	}
	log := filepath.Join(l.JobLogDir("hog"), "hog.stdout.log")
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "rc=")
	}, 20*time.Second, 50*time.Millisecond)
	b, _ := os.ReadFile(log)
	assert.Equal(t, "rc=137\n", string(b), "tail was killed (SIGKILL) by the memory limit")
	require.NoError(t, s.Stop(t.Context()))
	_, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", name))
	assert.True(t, os.IsNotExist(err), "the cgroup is removed when the process stops")
}
