package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// DefaultTimeouts bound every script the agent runs (BOSH has none: a drain
// or pre-start could hang a deploy forever). Settings env.kpaas.timeouts
// override them per VM, the apply spec's job.templates[].timeouts per job.
var DefaultTimeouts = map[string]time.Duration{
	"pre-start":   10 * time.Minute,
	"post-start":  10 * time.Minute,
	"post-deploy": 10 * time.Minute,
	"pre-stop":    10 * time.Minute,
	"post-stop":   10 * time.Minute,
	"drain":       15 * time.Minute, // includes the waits a drain script asks for
	"run":         60 * time.Minute, // errand
	"packaging":   60 * time.Minute, // compile_package
}

// LifecycleScripts are the scripts run_script accepts.
var LifecycleScripts = map[string]bool{"pre-start": true, "post-start": true, "post-deploy": true, "pre-stop": true, "post-stop": true}

// scriptEnv is the environment of lifecycle scripts: the agent's own plus
// PATH=/usr/sbin:/usr/bin:/sbin:/bin (bosh-formats.md section 6) and extra.
func scriptEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// scriptRun is one execution of a script.
type scriptRun struct {
	path    string
	args    []string
	env     []string
	dir     string
	timeout time.Duration
	stdout  *bytes.Buffer // captured when not nil
	logBase string        // append stdout/stderr to logBase.std{out,err}.log when set
	maxOut  int           // cap on captured stdout
}

// errTimedOut marks a script killed at its timeout.
var errTimedOut = errors.New("timed out")

// run executes the script at lower CPU priority in its own process group; at
// the timeout or when ctx ends the whole group is killed.
func (r scriptRun) run(ctx context.Context) (int, string, error) {
	cmd := exec.Command(r.path, r.args...)
	cmd.Env, cmd.Dir = r.env, r.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	var outs, errs []interface{ Write([]byte) (int, error) }
	if r.stdout != nil {
		outs = append(outs, r.stdout)
	}
	errs = append(errs, &limitedBuffer{buf: &stderr, max: 64 << 10})
	var files []*os.File
	if r.logBase != "" {
		os.MkdirAll(filepath.Dir(r.logBase), 0o770)
		if f, err := os.OpenFile(r.logBase+".stdout.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640); err == nil {
			outs, files = append(outs, f), append(files, f)
		}
		if f, err := os.OpenFile(r.logBase+".stderr.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640); err == nil {
			errs, files = append(errs, f), append(files, f)
		}
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	cmd.Stdout = multiWriter(outs)
	cmd.Stderr = multiWriter(errs)
	if err := cmd.Start(); err != nil {
		return -1, "", err
	}
	syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, 5)
	waitCh := make(chan error, 1)
	go func() { waitCh <- cmd.Wait() }()
	timer := time.NewTimer(r.timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-waitCh:
	case <-timer.C:
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waitCh
		return -1, stderr.String(), errTimedOut
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waitCh
		return -1, stderr.String(), ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String(), nil
	}
	if err != nil {
		return -1, stderr.String(), err
	}
	return 0, stderr.String(), nil
}

type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

type fanout []interface{ Write([]byte) (int, error) }

func (f fanout) Write(p []byte) (int, error) {
	for _, w := range f {
		w.Write(p)
	}
	return len(p), nil
}

func multiWriter(ws []interface{ Write([]byte) (int, error) }) fanout { return fanout(ws) }

// timeout returns the timeout of script for job.
func (a *Agent) timeout(job, script string) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.spec != nil {
		for _, t := range a.spec.Job.Templates {
			if t.Name == job && t.Timeouts[script] > 0 {
				return time.Duration(t.Timeouts[script]) * time.Second
			}
		}
	}
	if s := a.settings.Env.Kpaas.Timeouts[script]; s > 0 {
		return time.Duration(s) * time.Second
	}
	if d, ok := DefaultTimeouts[script]; ok {
		return d
	}
	return 10 * time.Minute
}

// jobNames returns the applied jobs in spec order.
func (a *Agent) jobNames() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.spec == nil {
		return nil
	}
	var out []string
	for _, t := range a.spec.Job.Templates {
		out = append(out, t.Name)
	}
	return out
}

// RunScript runs script of every job in parallel (BOSH's run_script). Jobs
// without it are skipped. The error names the failed and successful jobs as
// BOSH does, and where their logs are.
func (a *Agent) RunScript(ctx context.Context, name string, env map[string]string) ([]protocol.ScriptResult, error) {
	if !LifecycleScripts[name] {
		return nil, protocol.Errorf(protocol.ErrInvalidRequest, "unknown script %q: use pre-start, post-start, post-deploy, pre-stop or post-stop", name)
	}
	jobs := a.jobNames()
	results := make([]protocol.ScriptResult, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		path := filepath.Join(a.layout.JobDir(job), "bin", name)
		if _, err := os.Stat(path); err != nil {
			results[i] = protocol.ScriptResult{Job: job, Script: name, Skipped: true}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := scriptRun{path: path, env: scriptEnv(env), dir: a.layout.Bosh(), timeout: a.timeout(job, name),
				logBase: filepath.Join(a.layout.JobLogDir(job), name)}
			code, stderr, err := r.run(ctx)
			res := protocol.ScriptResult{Job: job, Script: name, ExitCode: code, Seconds: time.Since(start).Seconds()}
			switch {
			case errors.Is(err, errTimedOut):
				res.Error = fmt.Sprintf("timed out after %s and was killed (log: %s.stderr.log)", r.timeout, r.logBase)
			case err != nil:
				res.Error = err.Error()
			case code != 0:
				res.Error = fmt.Sprintf("exited %d: %s (log: %s.stderr.log)", code, lastLine(stderr), r.logBase)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	return results, scriptsError(name, results)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// scriptsError is BOSH's "N of M <name> scripts failed. Failed Jobs: a, b. Successful Jobs: c."
func scriptsError(name string, results []protocol.ScriptResult) error {
	var failed, ok, details []string
	timedOut := false
	total := 0
	for _, r := range results {
		if r.Skipped {
			continue
		}
		total++
		if r.Error != "" {
			failed = append(failed, r.Job)
			details = append(details, r.Job+": "+r.Error)
			timedOut = timedOut || strings.Contains(r.Error, "timed out")
		} else {
			ok = append(ok, r.Job)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	typ := protocol.ErrScriptFailed
	if timedOut {
		typ = protocol.ErrTimeout
	}
	msg := fmt.Sprintf("%d of %d %s scripts failed. Failed Jobs: %s.", len(failed), total, name, strings.Join(failed, ", "))
	if len(ok) > 0 {
		msg += fmt.Sprintf(" Successful Jobs: %s.", strings.Join(ok, ", "))
	}
	return protocol.Errorf(typ, "%s %s", msg, strings.Join(details, "; "))
}

// Drain runs every job's drain script in parallel with BOSH's protocol: the
// arguments job_change hash_change [updated packages...], BOSH_JOB_STATE /
// BOSH_JOB_NEXT_STATE, one integer on stdout: N >= 0 wait N seconds, N < 0
// wait |N| seconds and ask again with job_check_status. The whole drain of a
// job, waits included, is bounded by its drain timeout.
func (a *Agent) Drain(ctx context.Context, req protocol.DrainRequest) ([]protocol.ScriptResult, error) {
	a.supervisor.Unmonitor()
	a.mu.Lock()
	old := a.spec
	a.mu.Unlock()
	jobChange, hashChange := "job_shutdown", "hash_unchanged"
	var updated []string
	switch req.Type {
	case protocol.DrainShutdown:
	case protocol.DrainStatus:
		jobChange = "job_check_status"
	case protocol.DrainUpdate:
		jobChange = "job_changed"
		if old == nil || len(old.Job.Templates) == 0 {
			jobChange = "job_new"
		}
		switch {
		case old == nil || old.ConfigurationHash == "":
			hashChange = "hash_new"
		case req.Spec != nil && req.Spec.ConfigurationHash != old.ConfigurationHash:
			hashChange = "hash_changed"
		}
		if req.Spec != nil {
			for name, p := range req.Spec.Packages {
				if old == nil || old.Packages[name].SHA1 != p.SHA1 {
					updated = append(updated, name)
				}
			}
			sort.Strings(updated)
		}
	default:
		return nil, protocol.Errorf(protocol.ErrInvalidRequest, "drain type %q: use update, shutdown or status", req.Type)
	}
	env := map[string]string{}
	if req.JobState != "" {
		env["BOSH_JOB_STATE"] = req.JobState
	} else if old != nil {
		env["BOSH_JOB_STATE"] = fmt.Sprintf(`{"persistent_disk":%d}`, old.PersistentDisk)
	}
	if req.NextState != "" {
		env["BOSH_JOB_NEXT_STATE"] = req.NextState
	} else if req.Spec != nil {
		env["BOSH_JOB_NEXT_STATE"] = fmt.Sprintf(`{"persistent_disk":%d}`, req.Spec.PersistentDisk)
	}
	jobs := a.jobNames()
	results := make([]protocol.ScriptResult, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		path := filepath.Join(a.layout.JobDir(job), "bin", "drain")
		if _, err := os.Stat(path); err != nil {
			results[i] = protocol.ScriptResult{Job: job, Script: "drain", Skipped: true}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = a.drainJob(ctx, job, path, append([]string{jobChange, hashChange}, updated...), env)
		}()
	}
	wg.Wait()
	return results, scriptsError("drain", results)
}

func (a *Agent) drainJob(ctx context.Context, job, path string, args []string, env map[string]string) protocol.ScriptResult {
	start := time.Now()
	timeout := a.timeout(job, "drain")
	deadline := start.Add(timeout)
	res := protocol.ScriptResult{Job: job, Script: "drain"}
	logBase := filepath.Join(a.layout.JobLogDir(job), "drain")
	for {
		left := time.Until(deadline)
		if left <= 0 {
			res.Error = fmt.Sprintf("timed out after %s (the drain timeout, waits included)", timeout)
			break
		}
		var out bytes.Buffer
		r := scriptRun{path: path, args: args, env: scriptEnv(env), dir: a.layout.Bosh(), timeout: left, stdout: &out, logBase: logBase}
		code, stderr, err := r.run(ctx)
		res.ExitCode = code
		if errors.Is(err, errTimedOut) {
			res.Error = fmt.Sprintf("timed out after %s and was killed (log: %s.stderr.log)", timeout, logBase)
			break
		}
		if err != nil {
			res.Error = err.Error()
			break
		}
		if code != 0 {
			res.Error = fmt.Sprintf("exited %d: %s (log: %s.stderr.log)", code, lastLine(stderr), logBase)
			break
		}
		n, perr := strconv.Atoi(strings.TrimSpace(out.String()))
		if perr != nil {
			res.Error = fmt.Sprintf("Script did not return a signed integer: %q", strings.TrimSpace(out.String()))
			break
		}
		wait := time.Duration(n) * time.Second
		if n < 0 {
			wait = -wait
		}
		if time.Until(deadline) < wait {
			res.Error = fmt.Sprintf("timed out after %s: drain asked to wait %s more", timeout, wait)
			break
		}
		select {
		case <-ctx.Done():
			res.Error = ctx.Err().Error()
		case <-time.After(wait):
		}
		if res.Error != "" || n >= 0 {
			break
		}
		args = []string{"job_check_status", "hash_unchanged"}
	}
	res.Seconds = time.Since(start).Seconds()
	return res
}

// RunErrand runs bin/run of the errand job and returns BOSH's errand result.
func (a *Agent) RunErrand(ctx context.Context, req protocol.RunErrandRequest) (*protocol.RunErrandResponse, error) {
	jobs := a.jobNames()
	job := req.Job
	if job == "" {
		if len(jobs) != 1 {
			return nil, protocol.Errorf(protocol.ErrInvalidRequest, "this instance has %d jobs (%s); name the errand job", len(jobs), strings.Join(jobs, ", "))
		}
		job = jobs[0]
	}
	path := filepath.Join(a.layout.JobDir(job), "bin", "run")
	if _, err := os.Stat(path); err != nil {
		return nil, protocol.Errorf(protocol.ErrNotFound, "job %s has no bin/run: it is not an errand", job)
	}
	var out bytes.Buffer
	r := scriptRun{path: path, env: scriptEnv(req.Env), dir: a.layout.Bosh(), timeout: a.timeout(job, "run"), stdout: &out,
		logBase: filepath.Join(a.layout.JobLogDir(job), "run")}
	code, stderr, err := r.run(ctx)
	if errors.Is(err, errTimedOut) {
		return nil, protocol.Errorf(protocol.ErrTimeout, "errand %s timed out after %s and was killed", job, r.timeout)
	}
	if err != nil {
		return nil, protocol.Errorf(protocol.ErrInternal, "running errand %s: %v", job, err)
	}
	stdout := out.String()
	if len(stdout) > 1<<20 {
		stdout = stdout[len(stdout)-1<<20:]
	}
	return &protocol.RunErrandResponse{Stdout: stdout, Stderr: stderr, ExitCode: code}, nil
}
