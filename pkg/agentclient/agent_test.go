package agentclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agent/settings"
	"github.com/kpaas/kpaas/pkg/agentclient"
	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
)

var agentBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := act.BuildAgent()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newPool(t testing.TB) *agentclient.Pool {
	p := agentclient.NewPool(agentclient.Options{})
	t.Cleanup(func() { p.Close() })
	return p
}

func startAgent(t testing.TB, o act.Options) (*act.Agent, *agentclient.Client) {
	a := act.Start(t, agentBin, o)
	return a, newPool(t).Client(a.Target())
}

// job is a rendered job for apply: its files under the job directory.
type job struct {
	name     string
	files    map[string]act.File
	timeouts map[string]int
}

func putBlob(t testing.TB, c *agentclient.Client, b []byte) string {
	id := act.SHA256(b)
	require.NoError(t, c.PutBlob(ctxT(t), id, int64(len(b)), bytes.NewReader(b)))
	return id
}

// applyJobs uploads packages and the rendered templates archive and applies.
func applyJobs(t testing.TB, c *agentclient.Client, jobs []job, pkgs map[string]map[string]act.File, mods ...func(*protocol.ApplySpec)) protocol.ApplySpec {
	t.Helper()
	idx := 0
	spec := protocol.ApplySpec{Deployment: "dep", Name: "test", Index: &idx, ID: "uuid-1", AZ: "z1", Packages: map[string]protocol.BlobRef{},
		ConfigurationHash: "cfg1", PersistentDisk: 0}
	for name, files := range pkgs {
		id := putBlob(t, c, act.TarGz(files))
		spec.Packages[name] = protocol.BlobRef{Name: name, Version: "1.0", SHA1: "sha256:" + id, BlobstoreID: id}
	}
	all := map[string]act.File{}
	for _, j := range jobs {
		spec.Job.Templates = append(spec.Job.Templates, protocol.JobTemplate{Name: j.name, Version: "v1", Timeouts: j.timeouts})
		for p, f := range j.files {
			all[j.name+"/"+p] = f
		}
	}
	if len(jobs) > 0 {
		spec.Job.Name = "test"
		id := putBlob(t, c, act.TarGz(all))
		spec.RenderedTemplatesArchive = &protocol.BlobRef{SHA1: "sha256:" + id, BlobstoreID: id}
	}
	for _, m := range mods {
		m(&spec)
	}
	require.NoError(t, c.Apply(ctxT(t), spec))
	return spec
}

func waitState(t testing.TB, c *agentclient.Client, want string) *protocol.State {
	t.Helper()
	var st *protocol.State
	require.Eventually(t, func() bool {
		var err error
		st, err = c.GetState(ctxT(t), false)
		require.NoError(t, err)
		return st.JobState == want
	}, 20*time.Second, 50*time.Millisecond, "job_state never became %s", want)
	return st
}

func bpm(procs string) act.File { return act.File{Body: "processes:\n" + procs} }

func TestPingInfoAndEmptyState(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{Name: "api/0"})
	ctx := ctxT(t)
	require.NoError(t, c.Ping(ctx))
	info, err := c.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, "agent-api-0", info.AgentID)
	assert.Equal(t, "vm-api-0", info.VMName)
	assert.Equal(t, a.Root, info.Root)
	st, err := c.GetState(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, protocol.JobRunning, st.JobState, "no jobs rolls up as running, as BOSH")
	require.NotNil(t, st.Vitals)
	assert.Len(t, st.Vitals.Load, 3)
	assert.NotEmpty(t, st.Vitals.Mem.KB)
	assert.Contains(t, st.Vitals.Disk, "system")
	// An unknown method is a typed error, not a broken connection.
	err = c.Call(ctx, "no_such_method", nil, nil)
	assert.True(t, agentclient.IsType(err, protocol.ErrUnknownMethod), "%v", err)
	require.NoError(t, c.Ping(ctx))
}

func TestConnectErrorsNameVMAddressAndPhase(t *testing.T) {
	t.Parallel()
	a := act.Start(t, agentBin, act.Options{Name: "db/0"})
	pool := newPool(t)
	ctx := ctxT(t)

	wrongHost := a.Target()
	wrongHost.HostKey = act.MustKeys(t).Public
	err := pool.Client(wrongHost).Ping(ctx)
	var ce *agentclient.ConnectError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, agentclient.PhaseHostKey, ce.Phase)
	assert.ErrorIs(t, err, agentclient.ErrHostKeyMismatch)
	assert.Contains(t, err.Error(), "db/0")
	assert.Contains(t, err.Error(), a.Addr)

	noHostKey := a.Target()
	noHostKey.HostKey = ""
	err = pool.Client(noHostKey).Ping(ctx)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, agentclient.PhaseHostKey, ce.Phase)
	assert.Contains(t, err.Error(), "does not trust keys on first use")

	unknownClient := a.Target()
	unknownClient.Name = "db/0-other-key"
	unknownClient.Signer = act.MustKeys(t).Signer
	err = pool.Client(unknownClient).Ping(ctx)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, agentclient.PhaseAuth, ce.Phase, "%v", err)

	closed := a.Target()
	closed.Name = "db/1"
	closed.Address = "127.0.0.1:1"
	err = pool.Client(closed).Ping(ctx)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, agentclient.PhaseTCP, ce.Phase)
	assert.Contains(t, err.Error(), "db/1 at 127.0.0.1:1")

	// The right key still works on the same pool.
	require.NoError(t, pool.Client(a.Target()).Ping(ctx))
}

func TestBlobs(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	data := bytes.Repeat([]byte("kpaas blob "), 100000)
	id := act.SHA256(data)
	present, err := c.HasBlobs(ctx, []string{id})
	require.NoError(t, err)
	assert.Empty(t, present)
	require.NoError(t, c.PutBlob(ctx, id, int64(len(data)), bytes.NewReader(data)))
	present, err = c.HasBlobs(ctx, []string{id, strings.Repeat("0", 64), "sha256:" + id})
	require.NoError(t, err)
	assert.Equal(t, []string{id, "sha256:" + id}, present, "bare and sha256:-prefixed digests are both understood")
	var back bytes.Buffer
	require.NoError(t, c.GetBlob(ctx, id, &back))
	assert.True(t, bytes.Equal(data, back.Bytes()))

	// Bytes that do not match the digest are refused and not kept.
	bad := append([]byte(nil), data...)
	bad[10] ^= 1
	other := act.SHA256([]byte("something else"))
	err = c.PutBlob(ctx, other, int64(len(bad)), bytes.NewReader(bad))
	assert.True(t, agentclient.IsType(err, protocol.ErrDigestMismatch), "%v", err)
	present, err = c.HasBlobs(ctx, []string{other})
	require.NoError(t, err)
	assert.Empty(t, present)

	// A truncated upload (fewer bytes than announced) is refused and says so.
	small := []byte("0123456789")
	sid := act.SHA256(small)
	err = c.PutBlob(ctx, sid, 10, bytes.NewReader(small[:6]))
	assert.True(t, agentclient.IsType(err, protocol.ErrDigestMismatch), "%v", err)
	assert.Contains(t, err.Error(), "truncated: received 6 of 10 bytes")
	present, err = c.HasBlobs(ctx, []string{sid})
	require.NoError(t, err)
	assert.Empty(t, present)
	entries, _ := os.ReadDir(filepath.Join(a.Root, "var/vcap/data/blobs"))
	assert.Len(t, entries, 1, "only the good blob is on disk, no leftovers")

	// A missing blob is a typed error.
	err = c.GetBlob(ctx, other, io.Discard)
	assert.True(t, agentclient.IsType(err, protocol.ErrBlobMissing), "%v", err)
}

func TestApplyStartStopLifecycle(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{Name: "web/0"})
	ctx := ctxT(t)
	root := a.Root
	spec := applyJobs(t, c, []job{{name: "web", files: map[string]act.File{
		"config/bpm.yml": bpm(`- name: web
  executable: /bin/sh
  args: ["-c", "echo hello from web; echo oops >&2; exec sleep 1000"]
  env: {GREETING: hi}
  limits: {open_files: 123}
`),
		"bin/pre-start":  {Body: "#!/bin/sh\necho \"pre-start PATH=$PATH\"\n", Mode: 0o755},
		"bin/post-start": {Body: "#!/bin/sh\necho post-start ran\n", Mode: 0o755},
		"bin/pre-stop":   {Body: "#!/bin/sh\necho \"next=$BOSH_VM_NEXT_STATE/$BOSH_INSTANCE_NEXT_STATE/$BOSH_DEPLOYMENT_NEXT_STATE\"\n", Mode: 0o755},
		"config/app.yml": {Body: "port: 8080\n"},
	}}}, map[string]map[string]act.File{"ruby": {"bin/ruby": {Body: "#!/bin/sh\necho ruby\n", Mode: 0o755}}})

	// BOSH layout
	target, err := os.Readlink(filepath.Join(root, "var/vcap/jobs/web"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(target, filepath.Join(root, "var/vcap/data/jobs/web/")), target)
	fi, err := os.Stat(filepath.Join(root, "var/vcap/jobs/web/bin/pre-start"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o750), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(root, "var/vcap/jobs/web/config/app.yml"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	b, err := os.ReadFile(filepath.Join(root, "var/vcap/jobs/web/packages/ruby/bin/ruby"))
	require.NoError(t, err)
	assert.Equal(t, "#!/bin/sh\necho ruby\n", string(b))
	b, err = os.ReadFile(filepath.Join(root, "var/vcap/instance/az"))
	require.NoError(t, err)
	assert.Equal(t, "z1", string(b))
	assert.FileExists(t, filepath.Join(root, "var/vcap/bosh/spec.json"))

	res, err := c.RunScript(ctx, "pre-start", nil)
	require.NoError(t, err)
	require.Len(t, res.Results, 1)
	assert.Equal(t, 0, res.Results[0].ExitCode)
	b, _ = os.ReadFile(filepath.Join(root, "var/vcap/sys/log/web/pre-start.stdout.log"))
	assert.Equal(t, "pre-start PATH=/usr/sbin:/usr/bin:/sbin:/bin\n", string(b))

	require.NoError(t, c.Start(ctx))
	st := waitState(t, c, protocol.JobRunning)
	require.Len(t, st.Processes, 1)
	p := st.Processes[0]
	assert.Equal(t, "web", p.Name)
	assert.Equal(t, protocol.JobRunning, p.State)
	assert.Greater(t, p.PID, 0)
	assert.Greater(t, p.Mem.KB, int64(0))
	assert.Equal(t, spec.ConfigurationHash, st.ConfigurationHash)
	assert.Equal(t, "agent-web-0", st.AgentID)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.PID))
	require.NoError(t, err)
	assert.Regexp(t, `Max open files\s+123\s+123`, string(limits))
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID))
	require.NoError(t, err)
	assert.Contains(t, string(environ), "GREETING=hi\x00")
	assert.Contains(t, string(environ), "TMPDIR="+filepath.Join(root, "var/vcap/data/web/tmp")+"\x00")
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(root, "var/vcap/sys/log/web/web.stdout.log"))
		e, _ := os.ReadFile(filepath.Join(root, "var/vcap/sys/log/web/web.stderr.log"))
		return string(b) == "hello from web\n" && string(e) == "oops\n"
	}, 5*time.Second, 20*time.Millisecond)

	_, err = c.RunScript(ctx, "post-start", nil)
	require.NoError(t, err)
	err = c.Apply(ctx, spec)
	assert.True(t, agentclient.IsType(err, protocol.ErrBusy), "apply while jobs run is refused before anything changes: %v", err)
	_, err = c.RunScript(ctx, "pre-stop", map[string]string{"BOSH_VM_NEXT_STATE": "delete", "BOSH_INSTANCE_NEXT_STATE": "keep", "BOSH_DEPLOYMENT_NEXT_STATE": "keep"})
	require.NoError(t, err)
	b, _ = os.ReadFile(filepath.Join(root, "var/vcap/sys/log/web/pre-stop.stdout.log"))
	assert.Equal(t, "next=delete/keep/keep\n", string(b))
	_, err = c.RunScript(ctx, "not-a-script", nil)
	assert.True(t, agentclient.IsType(err, protocol.ErrInvalidRequest), "%v", err)

	require.NoError(t, c.Stop(ctx))
	st, err = c.GetState(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, protocol.JobStopped, st.JobState)
	assert.False(t, pidAlive(p.PID), "process %d still alive after stop", p.PID)
}

func pidAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

func TestProcessExitingAtOnceIsFailingAndRestarted(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	applyJobs(t, c, []job{{name: "crash", files: map[string]act.File{
		"config/bpm.yml": bpm("- name: crash\n  executable: /bin/sh\n  args: [\"-c\", \"echo dying; exit 3\"]\n"),
	}}}, nil)
	require.NoError(t, c.Start(ctx))
	var st *protocol.State
	require.Eventually(t, func() bool {
		var err error
		st, err = c.GetState(ctx, false)
		require.NoError(t, err)
		return st.JobState == protocol.JobFailing && st.Processes[0].Restarts >= 2
	}, 20*time.Second, 50*time.Millisecond)
	assert.Contains(t, st.Processes[0].Error, "exit status 3")
	require.NoError(t, c.Stop(ctx))
	st, err := c.GetState(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, protocol.JobStopped, st.JobState)
}

func TestProcessIgnoringSIGTERMIsKilledAfterShutdownTimeout(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	applyJobs(t, c, []job{{name: "stubborn", files: map[string]act.File{
		"config/bpm.yml": bpm("- name: stubborn\n  executable: /bin/sh\n  args: [\"-c\", \"trap '' TERM; while true; do sleep 0.05; done\"]\n  shutdown_timeout: 1s\n"),
	}}}, nil)
	require.NoError(t, c.Start(ctx))
	st := waitState(t, c, protocol.JobRunning)
	pid := st.Processes[0].PID
	start := time.Now()
	require.NoError(t, c.Stop(ctx))
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, time.Second, "stop waited for the shutdown timeout")
	assert.Less(t, took, 10*time.Second)
	assert.False(t, pidAlive(pid))
	st, err := c.GetState(ctx, false)
	require.NoError(t, err)
	assert.Contains(t, st.Processes[0].Error, "SIGKILL after the 1s shutdown timeout")
}

func TestHealthCheckGatesRunning(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	ready := filepath.Join(a.Root, "ready")
	applyJobs(t, c, []job{{name: "hc", files: map[string]act.File{
		"config/bpm.yml": bpm(fmt.Sprintf("- name: hc\n  executable: /bin/sleep\n  args: [\"1000\"]\n  health_check: {command: \"test -f %s\", interval: 100ms}\n", ready)),
	}}}, nil)
	require.NoError(t, c.Start(ctx))
	st, err := c.GetState(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, protocol.JobStarting, st.JobState)
	time.Sleep(300 * time.Millisecond) // several health checks fail meanwhile
	st, err = c.GetState(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, protocol.JobStarting, st.JobState, "not running until the health check passes")
	require.NoError(t, os.WriteFile(ready, nil, 0o644))
	waitState(t, c, protocol.JobRunning)
	require.NoError(t, c.Stop(ctx))
}

func TestDrain(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	calls := filepath.Join(a.Root, "drain-calls")
	applyJobs(t, c, []job{
		{name: "dynamic", files: map[string]act.File{
			// first call: wait 1s and ask again; then: done.
			"bin/drain": {Body: fmt.Sprintf("#!/bin/sh\necho \"$* $BOSH_JOB_STATE $BOSH_JOB_NEXT_STATE\" >> %s\nif [ \"$1\" = job_check_status ]; then echo 0; else echo -1; fi\n", calls), Mode: 0o755},
		}},
		{name: "nodrain", files: map[string]act.File{"config/x": {Body: "x"}}},
	}, nil)
	res, err := c.Drain(ctx, protocol.DrainRequest{Type: protocol.DrainShutdown, NextState: `{"persistent_disk":0}`})
	require.NoError(t, err)
	require.Len(t, res.Results, 2)
	assert.True(t, res.Results[1].Skipped)
	assert.GreaterOrEqual(t, res.Results[0].Seconds, 1.0)
	b, _ := os.ReadFile(calls)
	assert.Equal(t, "job_shutdown hash_unchanged {\"persistent_disk\":0} {\"persistent_disk\":0}\njob_check_status hash_unchanged {\"persistent_disk\":0} {\"persistent_disk\":0}\n", string(b))

	_, err = c.Drain(ctx, protocol.DrainRequest{Type: "bogus"})
	assert.True(t, agentclient.IsType(err, protocol.ErrInvalidRequest))
}

func TestDrainThatNeverEndsTimesOut(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	applyJobs(t, c, []job{
		{name: "hang", timeouts: map[string]int{"drain": 1}, files: map[string]act.File{
			"bin/drain": {Body: fmt.Sprintf("#!/bin/sh\necho $$ > %s/hang.pid\nsleep 1000\necho 0\n", a.Root), Mode: 0o755},
		}},
		{name: "quick", files: map[string]act.File{"bin/drain": {Body: "#!/bin/sh\necho 0\n", Mode: 0o755}}},
	}, nil)
	start := time.Now()
	_, err := c.Drain(ctx, protocol.DrainRequest{Type: protocol.DrainShutdown})
	assert.Less(t, time.Since(start), 10*time.Second)
	require.True(t, agentclient.IsType(err, protocol.ErrTimeout), "%v", err)
	assert.Contains(t, err.Error(), "1 of 2 drain scripts failed. Failed Jobs: hang. Successful Jobs: quick.")
	assert.Contains(t, err.Error(), "timed out after 1s")
	b, _ := os.ReadFile(filepath.Join(a.Root, "hang.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NotZero(t, pid)
	assert.False(t, pidAlive(pid), "the hanging drain script was killed")
}

func TestRunErrand(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	applyJobs(t, c, []job{{name: "smoke", files: map[string]act.File{
		"bin/run": {Body: "#!/bin/sh\necho all good\necho warn >&2\nexit 4\n", Mode: 0o755},
	}}}, nil)
	r, err := c.RunErrand(ctx, protocol.RunErrandRequest{})
	require.NoError(t, err)
	assert.Equal(t, protocol.RunErrandResponse{Stdout: "all good\n", Stderr: "warn\n", ExitCode: 4}, *r)
}

func TestMonitOnlyJob(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	pidfile := filepath.Join(a.Root, "var/vcap/sys/run/legacy/legacy.pid")
	ctl := fmt.Sprintf(`#!/bin/sh
case $1 in
start) mkdir -p %[1]s; sleep 1000 > /dev/null 2>&1 & echo $! > %[2]s ;;
stop) kill $(cat %[2]s) ;;
esac
`, filepath.Dir(pidfile), pidfile)
	monit := fmt.Sprintf(`check process legacy
  with pidfile %s
  start program "%s start" with timeout 10 seconds
  stop program "%s stop"
  group vcap

check file something with path /tmp/x
  if changed checksum then alert
`, pidfile, filepath.Join(a.Root, "var/vcap/jobs/legacy/bin/ctl"), filepath.Join(a.Root, "var/vcap/jobs/legacy/bin/ctl"))
	extraPid := filepath.Join(a.Root, "extra.pid")
	extra := fmt.Sprintf("check process extra\n  with pidfile %[1]s\n  start program \"/bin/sh -c 'sleep 1000 >/dev/null 2>&1 & echo $! > %[1]s'\"\n", extraPid)
	applyJobs(t, c, []job{{name: "legacy", files: map[string]act.File{"monit": {Body: monit}, "extra.monit": {Body: extra}, "bin/ctl": {Body: ctl, Mode: 0o755}}}}, nil)
	require.NoError(t, c.Start(ctx))
	st := waitState(t, c, protocol.JobRunning)
	require.Len(t, st.Processes, 2, "the monit file and the extra *.monit file")
	assert.Equal(t, "extra", st.Processes[0].Name)
	extraPID := st.Processes[0].PID
	st.Processes = st.Processes[1:]
	pid := st.Processes[0].PID
	assert.True(t, pidAlive(pid))
	// killed behind the supervisor's back: restarted
	syscall.Kill(pid, syscall.SIGKILL)
	require.Eventually(t, func() bool {
		st, err := c.GetState(ctx, false)
		require.NoError(t, err)
		return st.JobState == protocol.JobRunning && st.Processes[1].PID != pid && st.Processes[1].Restarts == 1
	}, 20*time.Second, 50*time.Millisecond)
	st, _ = c.GetState(ctx, false)
	pid = st.Processes[1].PID

	// An agent killed and restarted adopts the live process instead of starting another.
	a.Kill()
	require.NoError(t, a.Restart())
	st = waitState(t, c, protocol.JobRunning)
	assert.Equal(t, pid, st.Processes[1].PID)

	require.NoError(t, c.Stop(ctx))
	assert.False(t, pidAlive(pid))
	assert.False(t, pidAlive(extraPID), "a process without stop program gets SIGTERM")
}

func TestAgentRestartBringsJobsBack(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	applyJobs(t, c, []job{{name: "svc", files: map[string]act.File{
		"config/bpm.yml": bpm("- name: svc\n  executable: /bin/sleep\n  args: [\"1000\"]\n"),
	}}}, nil)
	require.NoError(t, c.Start(ctx))
	old := waitState(t, c, protocol.JobRunning).Processes[0].PID

	a.Kill() // SIGKILL: the agent cannot stop its jobs
	require.True(t, pidAlive(old))
	require.NoError(t, a.Restart())
	// the pooled connection is dead; the client reconnects by itself
	st := waitState(t, c, protocol.JobRunning)
	assert.NotEqual(t, old, st.Processes[0].PID)
	assert.False(t, pidAlive(old), "the process left by the killed agent was stopped, not duplicated")

	// stopped jobs stay stopped across a restart
	require.NoError(t, c.Stop(ctx))
	a.Stop()
	require.NoError(t, a.Restart())
	st, err := c.GetState(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, protocol.JobStopped, st.JobState)
}

func TestFetchAndTailLogs(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	logDir := filepath.Join(a.Root, "var/vcap/sys/log")
	require.NoError(t, os.MkdirAll(filepath.Join(logDir, "api"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(logDir, "worker"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(logDir, "api/api.stdout.log"), []byte("a1\na2\na3\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(logDir, "worker/w.log"), []byte("w1\n"), 0o644))

	var tgz bytes.Buffer
	require.NoError(t, c.FetchLogs(ctx, []string{"api"}, &tgz))
	names := tarNames(t, tgz.Bytes())
	assert.Equal(t, []string{"./api/", "./api/api.stdout.log"}, names)

	var out bytes.Buffer
	require.NoError(t, c.TailLogs(ctx, protocol.TailLogsRequest{Num: 2}, &out))
	assert.Equal(t, "api/api.stdout.log: a2\napi/api.stdout.log: a3\nworker/w.log: w1\n", out.String())

	fctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- c.TailLogs(fctx, protocol.TailLogsRequest{Jobs: []string{"api"}, Num: 1, Follow: true}, pw)
		pw.Close()
	}()
	buf := make([]byte, 4096)
	n, _ := io.ReadAtLeast(pr, buf, len("api/api.stdout.log: a3\n"))
	assert.Equal(t, "api/api.stdout.log: a3\n", string(buf[:n]))
	f, _ := os.OpenFile(filepath.Join(logDir, "api/api.stdout.log"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("a4\n")
	f.Close()
	os.WriteFile(filepath.Join(logDir, "api/new.log"), []byte("n1\n"), 0o644)
	var got string
	for !strings.Contains(got, "a4") || !strings.Contains(got, "n1") {
		n, err := pr.Read(buf)
		require.NoError(t, err)
		got += string(buf[:n])
	}
	assert.ElementsMatch(t, []string{"api/api.stdout.log: a4", "api/new.log: n1"}, strings.Split(strings.TrimSpace(got), "\n"))
	cancel()
	go io.Copy(io.Discard, pr)
	assert.NoError(t, <-done)
}

func TestCompilePackage(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	dep := act.TarGz(map[string]act.File{"lib/dep.txt": {Body: "dependency\n"}})
	depID := putBlob(t, c, dep)
	src := act.TarGz(map[string]act.File{
		"packaging": {Body: `set -e
cat ${BOSH_PACKAGES_DIR}/dep/lib/dep.txt > ${BOSH_INSTALL_TARGET}/out.txt
echo "$BOSH_PACKAGE_NAME $BOSH_PACKAGE_VERSION $(basename $BOSH_COMPILE_TARGET)" >> ${BOSH_INSTALL_TARGET}/out.txt
cp src.c ${BOSH_INSTALL_TARGET}/
`},
		"src.c": {Body: "int main(){}\n"},
	})
	srcID := putBlob(t, c, src)
	r, err := c.CompilePackage(ctx, protocol.CompilePackageRequest{BlobstoreID: srcID, SHA1: "sha256:" + srcID, Name: "app", Version: "fp1.1",
		Deps: map[string]protocol.BlobRef{"dep": {Name: "dep", Version: "1", SHA1: "sha256:" + depID, BlobstoreID: depID}}})
	require.NoError(t, err)
	assert.Equal(t, "sha256:"+r.BlobstoreID, r.SHA1)
	var out bytes.Buffer
	require.NoError(t, c.GetBlob(ctx, r.BlobstoreID, &out))
	assert.Equal(t, r.BlobstoreID, act.SHA256(out.Bytes()))
	files := tarFiles(t, out.Bytes())
	assert.Equal(t, "dependency\napp fp1.1 app\n", files["./out.txt"])
	assert.Equal(t, "int main(){}\n", files["./src.c"])

	failing := act.TarGz(map[string]act.File{"packaging": {Body: "echo compiling; echo broken >&2; exit 2\n"}})
	fid := putBlob(t, c, failing)
	_, err = c.CompilePackage(ctx, protocol.CompilePackageRequest{BlobstoreID: fid, SHA1: "sha256:" + fid, Name: "bad", Version: "1"})
	assert.True(t, agentclient.IsType(err, protocol.ErrCompileFailed), "%v", err)
	assert.Contains(t, err.Error(), "broken")

	_, err = c.CompilePackage(ctx, protocol.CompilePackageRequest{BlobstoreID: strings.Repeat("a", 64), Name: "missing", Version: "1"})
	assert.True(t, agentclient.IsType(err, protocol.ErrBlobMissing), "%v", err)
}

func TestApplyRefusesMissingOrCorruptBlobs(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	missing := strings.Repeat("b", 64)
	spec := protocol.ApplySpec{Deployment: "d", Name: "g", Packages: map[string]protocol.BlobRef{"p": {Version: "1", SHA1: "sha256:" + missing, BlobstoreID: missing}}}
	err := c.Apply(ctx, spec)
	assert.True(t, agentclient.IsType(err, protocol.ErrBlobMissing), "%v", err)
	// a blob whose bytes do not match the spec's sha1 (here a SHA-1) is refused
	id := putBlob(t, c, act.TarGz(map[string]act.File{"x": {Body: "x"}}))
	spec.Packages["p"] = protocol.BlobRef{Version: "1", SHA1: strings.Repeat("c", 40), BlobstoreID: id}
	err = c.Apply(ctx, spec)
	assert.True(t, agentclient.IsType(err, protocol.ErrDigestMismatch), "%v", err)
}

func TestShellExecAndPTY(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	var out, errOut bytes.Buffer
	code, err := c.Exec(ctx, "echo out; echo err >&2; exit 7", nil, &out, &errOut)
	require.NoError(t, err)
	assert.Equal(t, 7, code)
	assert.Equal(t, "out\n", out.String())
	assert.Equal(t, "err\n", errOut.String())

	out.Reset()
	code, err = c.Exec(ctx, "cat", strings.NewReader("stdin reaches the command"), &out, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Equal(t, "stdin reaches the command", out.String())

	out.Reset()
	resize := make(chan agentclient.WindowSize, 1)
	resize <- agentclient.WindowSize{Width: 100, Height: 40}
	code, err = c.Shell(ctx, agentclient.ShellOptions{Command: "sleep 0.3; tty; echo $TERM; stty size", Term: "xterm-256color", Size: agentclient.WindowSize{Width: 80, Height: 24},
		Resize: resize, Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard})
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Contains(t, out.String(), "/dev/pts/")
	assert.Contains(t, out.String(), "xterm-256color")
	assert.Contains(t, out.String(), "40 100", "the window change reached the pty")
}

func TestSFTP(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	sc, err := c.SFTP(ctxT(t))
	require.NoError(t, err)
	defer sc.Close()
	path := filepath.Join(a.Root, "copied.txt")
	f, err := sc.Create(path)
	require.NoError(t, err)
	f.Write([]byte("over sftp"))
	f.Close()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "over sftp", string(b))
}

func TestUpdateSettingsAuthorizedKeys(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	newKey := act.MustKeys(t)
	require.NoError(t, c.UpdateSettings(ctx, protocol.UpdateSettingsRequest{AuthorizedKeys: []string{a.Client.Public, newKey.Public}, TrustedCerts: "PEM"}))
	tg := a.Target()
	tg.Name, tg.Signer = "test/0-new", newKey.Signer
	require.NoError(t, newPool(t).Client(tg).Ping(ctx))
	b, err := os.ReadFile(filepath.Join(a.Root, "var/vcap/bosh/update_settings.json"))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"trusted_certs":"PEM"`)
}

func TestDisksWithoutABlockDevice(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	err := c.MountDisk(ctx, "disk-unknown")
	assert.True(t, agentclient.IsType(err, protocol.ErrNotFound), "%v", err)
	notDev := filepath.Join(a.Root, "plain-file")
	os.WriteFile(notDev, []byte("x"), 0o644)
	require.NoError(t, c.AddPersistentDisk(ctx, "disk-1", notDev))
	err = c.MountDisk(ctx, "disk-1")
	if os.Geteuid() == 0 {
		assert.True(t, agentclient.IsType(err, protocol.ErrDisk), "%v", err)
		assert.Contains(t, err.Error(), "is not a block device")
	} else {
		assert.True(t, agentclient.IsType(err, protocol.ErrNotSupported), "%v", err)
		assert.Contains(t, err.Error(), "needs root")
	}
	cids, err := c.ListDisk(ctx)
	require.NoError(t, err)
	assert.Empty(t, cids)
	require.NoError(t, c.RemovePersistentDisk(ctx, "disk-1"))
}

func TestShutdownStopsTheAgent(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	require.NoError(t, c.Shutdown(ctxT(t)))
	require.Eventually(t, func() bool { return !pidAlive(a.PID()) }, 10*time.Second, 20*time.Millisecond)
	err := c.Ping(ctxT(t))
	var ce *agentclient.ConnectError
	assert.True(t, errors.As(err, &ce), "%v", err)
}

func TestStartAndStopJobsInBoshOrder(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	order := filepath.Join(a.Root, "order")
	script := func(name string) act.File {
		return act.File{Body: fmt.Sprintf("#!/bin/sh\necho %s $BOSH_VM_NEXT_STATE >> %s\n", name, order), Mode: 0o755}
	}
	drain := act.File{Body: fmt.Sprintf("#!/bin/sh\necho drain $1 >> %s\necho 0\n", order), Mode: 0o755}
	applyJobs(t, c, []job{{name: "app", files: map[string]act.File{
		"config/bpm.yml": bpm("- name: app\n  executable: /bin/sleep\n  args: [\"1000\"]\n"),
		"bin/pre-start":  script("pre-start"), "bin/post-start": script("post-start"),
		"bin/pre-stop": script("pre-stop"), "bin/post-stop": script("post-stop"), "bin/drain": drain,
	}}}, nil)
	st, err := c.StartJobs(ctx, 20*time.Second)
	require.NoError(t, err)
	assert.Equal(t, protocol.JobRunning, st.JobState)
	require.NoError(t, c.StopJobs(ctx, agentclient.StopOptions{VMNextState: "delete"}))
	b, _ := os.ReadFile(order)
	assert.Equal(t, "pre-start\npost-start\npre-stop delete\ndrain job_shutdown\npost-stop\n", string(b))
	st, err = c.GetState(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, protocol.JobStopped, st.JobState)
}

func TestStartJobsReportsAFailingProcess(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	applyJobs(t, c, []job{{name: "broken", files: map[string]act.File{
		"config/bpm.yml": bpm("- name: broken\n  executable: /no/such/binary\n"),
	}}}, nil)
	_, err := c.StartJobs(ctx, time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "jobs are failing after 1s: broken/broken is failing")
	assert.Contains(t, err.Error(), "/no/such/binary")
	assert.Contains(t, err.Error(), "logs in /var/vcap/sys/log/broken/")
}

// A VM that stops answering (frozen, network gone) is noticed by the
// keep-alives: its connection is dropped, and the next call reconnects.
func TestKeepAliveDropsADeadConnection(t *testing.T) {
	t.Parallel()
	a := act.Start(t, agentBin, act.Options{})
	pool := agentclient.NewPool(agentclient.Options{KeepAlive: 100 * time.Millisecond, DialTimeout: 2 * time.Second})
	defer pool.Close()
	c := pool.Client(a.Target())
	ctx := ctxT(t)
	require.NoError(t, c.Ping(ctx))
	require.Equal(t, 1, pool.Len())
	require.NoError(t, syscall.Kill(a.PID(), syscall.SIGSTOP))
	t.Cleanup(func() { syscall.Kill(a.PID(), syscall.SIGCONT) })
	require.Eventually(t, func() bool { return pool.Len() == 0 }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, syscall.Kill(a.PID(), syscall.SIGCONT))
	require.NoError(t, c.Ping(ctx))
	assert.Equal(t, 1, pool.Len())
}

func TestInvalidBPMIsRefusedAndStateUnknown(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	idx := 0
	all := act.TarGz(map[string]act.File{"bad/config/bpm.yml": {Body: "processes:\n- name: bad\n"}})
	id := putBlob(t, c, all)
	spec := protocol.ApplySpec{Deployment: "d", Name: "g", Index: &idx, Packages: map[string]protocol.BlobRef{},
		Job:                      protocol.Job{Name: "g", Templates: []protocol.JobTemplate{{Name: "bad", Version: "1"}}},
		RenderedTemplatesArchive: &protocol.BlobRef{SHA1: "sha256:" + id, BlobstoreID: id}}
	err := c.Apply(ctx, spec)
	assert.True(t, agentclient.IsType(err, protocol.ErrInvalidRequest), "%v", err)
	assert.Contains(t, err.Error(), "job bad:")
	assert.Contains(t, err.Error(), "executable is required")
	st, err := c.GetState(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, protocol.JobUnknown, st.JobState)
}

func TestEnsureBlobsSendsOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	mk := func(s string) agentclient.Blob {
		b := []byte(s)
		return agentclient.Blob{SHA256: act.SHA256(b), Size: int64(len(b)), Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
	}
	a, b := mk("first"), mk("second")
	n, err := c.EnsureBlobs(ctx, []agentclient.Blob{a})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = c.EnsureBlobs(ctx, []agentclient.Blob{a, b, b})
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the blob already there is not sent twice")
}

// The VM-wide script timeouts come from the settings (env.kpaas.timeouts).
func TestPreStartTimeoutFromSettings(t *testing.T) {
	t.Parallel()
	_, c := startAgent(t, act.Options{Modify: func(s *settings.Settings) { s.Env.Kpaas.Timeouts = map[string]int{"pre-start": 1} }})
	ctx := ctxT(t)
	applyJobs(t, c, []job{
		{name: "slow", files: map[string]act.File{"bin/pre-start": {Body: "#!/bin/sh\nsleep 1000\n", Mode: 0o755}}},
		{name: "slow-but-allowed", timeouts: map[string]int{"pre-start": 30}, files: map[string]act.File{"bin/pre-start": {Body: "#!/bin/sh\nsleep 1.5\n", Mode: 0o755}}},
	}, nil)
	start := time.Now()
	res, err := c.RunScript(ctx, "pre-start", nil)
	assert.Less(t, time.Since(start), 10*time.Second)
	require.True(t, agentclient.IsType(err, protocol.ErrTimeout), "%v", err)
	assert.Contains(t, err.Error(), "1 of 2 pre-start scripts failed. Failed Jobs: slow. Successful Jobs: slow-but-allowed.")
	assert.Contains(t, err.Error(), "timed out after 1s and was killed (log: ")
	assert.Nil(t, res.Results, "the typed error replaces the value")
}

func TestPrepareUnpacksAheadOfApply(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	m1, m2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	spec := protocol.ApplySpec{Packages: map[string]protocol.BlobRef{"a": {Version: "1", BlobstoreID: m1}, "b": {Version: "1", BlobstoreID: m2}}}
	err := c.Prepare(ctx, spec)
	require.True(t, agentclient.IsType(err, protocol.ErrBlobMissing), "%v", err)
	assert.Contains(t, err.Error(), "2 blobs missing")
	id := putBlob(t, c, act.TarGz(map[string]act.File{"bin/tool": {Body: "t", Mode: 0o755}}))
	spec.Packages = map[string]protocol.BlobRef{"tool": {Version: "1", SHA1: "sha256:" + id, BlobstoreID: id}}
	require.NoError(t, c.Prepare(ctx, spec))
	matches, _ := filepath.Glob(filepath.Join(a.Root, "var/vcap/data/packages/tool/*/bin/tool"))
	assert.Len(t, matches, 1, "unpacked under data/packages")
	_, err = os.Lstat(filepath.Join(a.Root, "var/vcap/packages/tool"))
	assert.True(t, os.IsNotExist(err), "but not linked until apply")
}

// The apply spec's logging.max_log_file_size sets where process logs rotate.
func TestProcessLogsRotateAtMaxLogFileSize(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t, act.Options{})
	ctx := ctxT(t)
	applyJobs(t, c, []job{{name: "chatty", files: map[string]act.File{
		"config/bpm.yml": bpm("- name: chatty\n  executable: /bin/sh\n  args: [\"-c\", \"i=0; while [ $i -lt 100 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; exec sleep 1000\"]\n"),
	}}}, nil, func(s *protocol.ApplySpec) {
		s.Properties = map[string]any{"logging": map[string]any{"max_log_file_size": "1K"}}
	})
	require.NoError(t, c.Start(ctx))
	log := filepath.Join(a.Root, "var/vcap/sys/log/chatty/chatty.stdout.log")
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "line-99-")
	}, 10*time.Second, 20*time.Millisecond)
	for _, p := range []string{log, log + ".1"} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.LessOrEqual(t, fi.Size(), int64(1024), p)
	}
	require.NoError(t, c.Stop(ctx))
}
