package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// SupervisorOptions tune the process supervisor; zero values take the defaults.
type SupervisorOptions struct {
	Layout          Layout
	Logger          *slog.Logger
	MinBackoff      time.Duration // first restart delay (1s)
	MaxBackoff      time.Duration // restart delay cap (60s)
	StartGrace      time.Duration // a process without health check is "running" after this long alive (1s)
	ShutdownTimeout time.Duration // default stop timeout before SIGKILL (15s, as bpm)
	LogMaxSize      int64         // rotate stdout/stderr logs past this size (50M)
	LogKeep         int           // rotated files kept (5)
	CgroupName      string        // parent cgroup for memory limits; "" disables them
}

func (o *SupervisorOptions) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 60 * time.Second
	}
	if o.StartGrace == 0 {
		o.StartGrace = time.Second
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 15 * time.Second
	}
	if o.LogMaxSize == 0 {
		o.LogMaxSize = 50 << 20
	}
	if o.LogKeep == 0 {
		o.LogKeep = 5
	}
}

// Supervisor runs the processes of an instance's jobs, restarting them with
// exponential backoff while they are monitored. It replaces monit: jobs
// declare processes in config/bpm.yml, or (BOSH jobs without bpm) in the
// `check process` blocks of their monit file.
type Supervisor struct {
	opts SupervisorOptions

	mu         sync.Mutex
	procs      []*proc
	monitored  bool
	logMaxSize atomic.Int64
}

// NewSupervisor returns a supervisor with nothing loaded.
func NewSupervisor(opts SupervisorOptions) *Supervisor {
	opts.defaults()
	s := &Supervisor{opts: opts}
	s.logMaxSize.Store(opts.LogMaxSize)
	return s
}

// SetLogMaxSize changes the size at which process logs opened from now on
// rotate (the apply spec's logging.max_log_file_size).
func (s *Supervisor) SetLogMaxSize(n int64) {
	if n > 0 {
		s.logMaxSize.Store(n)
	}
}

// JobConfig is one job to supervise; StopTimeout overrides the process
// shutdown timeout for all its processes (the job's "stop" timeout).
type JobConfig struct {
	Name        string
	StopTimeout time.Duration
}

// Load reads the process declarations of jobs, replacing what was loaded.
// Running processes must have been stopped first.
func (s *Supervisor) Load(jobs []JobConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkIdle(); err != nil {
		return err
	}
	var procs []*proc
	for _, j := range jobs {
		dir := s.opts.Layout.JobDir(j.Name)
		bpmPath := filepath.Join(dir, "config", "bpm.yml")
		if _, err := os.Stat(bpmPath); err == nil {
			cfg, err := LoadBPM(bpmPath)
			if err != nil {
				return protocol.Errorf(protocol.ErrInvalidRequest, "job %s: %v", j.Name, err)
			}
			for i := range cfg.Processes {
				bp := cfg.Processes[i]
				to := s.opts.ShutdownTimeout
				if bp.ShutdownTimeout != "" {
					to, _ = parseDuration(bp.ShutdownTimeout)
				}
				if j.StopTimeout > 0 {
					to = j.StopTimeout
				}
				procs = append(procs, &proc{sup: s, job: j.Name, name: bp.Name, bpm: &bp, shutdownTimeout: to, state: protocol.JobStopped})
			}
			continue
		}
		// `monit` and any extra `*.monit` files at the job's root (bosh-formats 4.5)
		files := []string{filepath.Join(dir, "monit")}
		extra, _ := filepath.Glob(filepath.Join(dir, "*.monit"))
		sort.Strings(extra)
		var mps []MonitProcess
		for _, f := range append(files, extra...) {
			ps, err := LoadMonit(f)
			if err != nil {
				return protocol.Errorf(protocol.ErrInvalidRequest, "job %s: %v", j.Name, err)
			}
			mps = append(mps, ps...)
		}
		for i := range mps {
			mp := mps[i]
			to := mp.StopTimeout
			if j.StopTimeout > 0 {
				to = j.StopTimeout
			}
			procs = append(procs, &proc{sup: s, job: j.Name, name: mp.Name, monit: &mp, shutdownTimeout: to, state: protocol.JobStopped})
		}
	}
	for _, p := range s.procs {
		p.closeLogs()
	}
	s.procs = procs
	return nil
}

// bpmProcesses returns the loaded bpm declarations of job's processes by
// name; ok is false when the job is not loaded or is supervised through monit.
func (s *Supervisor) bpmProcesses(job string) (procs map[string]*BPMProcess, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	procs = map[string]*BPMProcess{}
	for _, p := range s.procs {
		if p.job != job {
			continue
		}
		if p.bpm == nil {
			return nil, false
		}
		procs[p.name] = p.bpm
	}
	return procs, len(procs) > 0
}

// Reload sends the reload signal of jobs' new declarations (whose process
// definitions are otherwise the loaded ones, see Agent.reloadable) to those
// of their processes that are running. A process with a health check counts
// as starting until its next check passes, so a watch sees a reload that
// broke it. Processes not running pick up the new configuration when they
// start.
func (s *Supervisor) Reload(jobs map[string]*BPMConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, p := range s.procs {
		cfg := jobs[p.job]
		if cfg == nil {
			continue
		}
		for i := range cfg.Processes {
			if np := &cfg.Processes[i]; np.Name == p.name {
				if err := p.reload(np); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (p *proc) reload(np *BPMProcess) error {
	if np.Reload == nil {
		return fmt.Errorf("process %s/%s declares no reload signal", p.job, p.name)
	}
	sig, ok := np.Reload.signal()
	if !ok {
		return fmt.Errorf("process %s/%s: unknown reload signal %q", p.job, p.name, np.Reload.Signal)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pid == 0 || p.state != protocol.JobRunning && p.state != protocol.JobStarting {
		return nil
	}
	if err := syscall.Kill(p.pid, sig); err != nil {
		return fmt.Errorf("sending SIG%s to %s/%s (pid %d): %w", strings.TrimPrefix(strings.ToUpper(np.Reload.Signal), "SIG"), p.job, p.name, p.pid, err)
	}
	p.reloads++
	if p.bpm.HealthCheck != nil {
		p.state = protocol.JobStarting
	}
	p.sup.opts.Logger.Info("process reloaded", "job", p.job, "process", p.name, "pid", p.pid, "signal", sig.String())
	return nil
}

// CheckIdle fails when a loaded process is still running.
func (s *Supervisor) CheckIdle() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkIdle()
}

func (s *Supervisor) checkIdle() error {
	for _, p := range s.procs {
		if p.active() {
			return protocol.Errorf(protocol.ErrBusy, "process %s/%s is still running; stop the jobs before applying new ones", p.job, p.name)
		}
	}
	return nil
}

// Start starts every loaded process that is not running and monitors them.
func (s *Supervisor) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.monitored = true
	for _, p := range s.procs {
		if err := p.start(); err != nil {
			return err
		}
	}
	return nil
}

// Unmonitor stops restarting processes that exit (BOSH drain does `monit unmonitor`).
func (s *Supervisor) Unmonitor() {
	s.mu.Lock()
	s.monitored = false
	s.mu.Unlock()
}

func (s *Supervisor) isMonitored() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.monitored
}

// Stop stops every process in parallel: the shutdown signal, then SIGKILL
// after the process's shutdown timeout. It returns when all have exited.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.monitored = false
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.requestStop() }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Processes reports every loaded process.
func (s *Supervisor) Processes() []protocol.Process {
	s.mu.Lock()
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	memTotal := memInfo()["MemTotal"]
	out := make([]protocol.Process, 0, len(procs))
	for _, p := range procs {
		out = append(out, p.status(memTotal))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Job != out[j].Job {
			return out[i].Job < out[j].Job
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// RollUp is BOSH's job_state from process states: stopped if the stopped
// marker is set, starting if any process is starting, failing if any is not
// running, running otherwise.
func RollUp(stopped bool, procs []protocol.Process) string {
	if stopped {
		return protocol.JobStopped
	}
	for _, p := range procs {
		if p.State == protocol.JobStarting {
			return protocol.JobStarting
		}
	}
	for _, p := range procs {
		if p.State != protocol.JobRunning {
			return protocol.JobFailing
		}
	}
	return protocol.JobRunning
}

// proc is one supervised process.
type proc struct {
	sup             *Supervisor
	job, name       string
	bpm             *BPMProcess
	monit           *MonitProcess
	shutdownTimeout time.Duration

	mu        sync.Mutex
	state     string
	pid       int
	startedAt time.Time
	restarts  int
	reloads   int
	lastErr   string
	stopCh    chan struct{}
	doneCh    chan struct{}
	stopOnce  *sync.Once
	stdout    *RotatingFile
	stderr    *RotatingFile
	lastTicks uint64
	lastAt    time.Time
}

func (p *proc) active() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.doneCh == nil {
		return false
	}
	select {
	case <-p.doneCh:
		return false
	default:
		return true
	}
}

func (p *proc) start() error {
	if p.active() {
		return nil
	}
	if err := p.openLogs(); err != nil {
		return fmt.Errorf("opening logs of %s/%s: %w", p.job, p.name, err)
	}
	p.mu.Lock()
	p.stopCh, p.doneCh, p.stopOnce = make(chan struct{}), make(chan struct{}), &sync.Once{}
	p.state, p.lastErr = protocol.JobStarting, ""
	stop, done := p.stopCh, p.doneCh
	p.mu.Unlock()
	go p.loop(stop, done)
	return nil
}

func (p *proc) requestStop() {
	p.mu.Lock()
	stop, done, once := p.stopCh, p.doneCh, p.stopOnce
	p.mu.Unlock()
	if done == nil {
		return
	}
	once.Do(func() { close(stop) })
	<-done
}

func (p *proc) set(state, errMsg string) {
	p.mu.Lock()
	p.state = state
	if errMsg != "" {
		p.lastErr = errMsg
	}
	if state != protocol.JobRunning && state != protocol.JobStarting {
		p.pid = 0
	}
	p.mu.Unlock()
}

func (p *proc) openLogs() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdout != nil {
		return nil
	}
	dir := p.sup.opts.Layout.JobLogDir(p.job)
	if err := os.MkdirAll(dir, 0o770); err != nil {
		return err
	}
	var err error
	if p.stdout, err = OpenRotating(filepath.Join(dir, p.name+".stdout.log"), p.sup.logMaxSize.Load(), p.sup.opts.LogKeep); err != nil {
		return err
	}
	if p.stderr, err = OpenRotating(filepath.Join(dir, p.name+".stderr.log"), p.sup.logMaxSize.Load(), p.sup.opts.LogKeep); err != nil {
		p.stdout.Close()
		p.stdout = nil
		return err
	}
	return nil
}

func (p *proc) closeLogs() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdout != nil {
		p.stdout.Close()
		p.stderr.Close()
		p.stdout, p.stderr = nil, nil
	}
}

func (p *proc) status(memTotal int64) protocol.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := protocol.Process{Name: p.name, Job: p.job, State: p.state, PID: p.pid, Restarts: p.restarts, Reloads: p.reloads, Error: p.lastErr}
	if p.pid > 0 {
		now := time.Now()
		out.Uptime.Secs = int64(now.Sub(p.startedAt).Seconds())
		if st, ok := readProcStat(p.pid); ok {
			out.Mem.KB = st.rssKB
			if memTotal > 0 {
				out.Mem.Percent = round1(float64(st.rssKB) * 100 / float64(memTotal))
			}
			base, at := p.lastTicks, p.lastAt
			if at.IsZero() || st.cpuTicks < base {
				base, at = 0, p.startedAt
			}
			if wall := now.Sub(at).Seconds(); wall > 0 {
				out.CPU.Total = round1(float64(st.cpuTicks-base) / clockTicks / wall * 100)
			}
			p.lastTicks, p.lastAt = st.cpuTicks, now
		}
	}
	return out
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

func (p *proc) loop(stop, done chan struct{}) {
	defer close(done)
	log := p.sup.opts.Logger.With("job", p.job, "process", p.name)
	backoff := p.sup.opts.MinBackoff
	for {
		began := time.Now()
		var stopped bool
		var err error
		if p.bpm != nil {
			stopped, err = p.runBPM(stop)
		} else {
			stopped, err = p.runMonit(stop)
		}
		if stopped {
			p.set(protocol.JobStopped, "")
			log.Info("process stopped")
			return
		}
		msg := "exited"
		if err != nil {
			msg = err.Error()
		}
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
		p.set(protocol.JobFailing, msg)
		log.Warn("process failed", "err", msg)
		if !p.sup.isMonitored() {
			<-stop
			p.set(protocol.JobStopped, "")
			return
		}
		if time.Since(began) > 4*backoff+10*time.Second {
			backoff = p.sup.opts.MinBackoff
		}
		select {
		case <-stop:
			p.set(protocol.JobStopped, "")
			return
		case <-time.After(backoff):
		}
		if backoff *= 2; backoff > p.sup.opts.MaxBackoff {
			backoff = p.sup.opts.MaxBackoff
		}
	}
}

// env is the process environment with bpm's defaults.
func (p *proc) env(extra map[string]string) []string {
	l := p.sup.opts.Layout
	env := map[string]string{
		"TMPDIR": filepath.Join(l.Data(), p.job, "tmp"),
		"LANG":   "en_US.UTF-8",
		"HOME":   filepath.Join(l.Data(), p.job),
		"PATH":   filepath.Join(l.JobDir(p.job), "bin") + ":/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin:.",
	}
	for k, v := range extra {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func (p *proc) sysProcAttr(privileged bool) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 && !privileged {
		if u, err := user.Lookup("vcap"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
			if p.bpm != nil {
				// bpm's capabilities, kept across the switch to vcap as ambient capabilities
				caps, err := capabilityNumbers(p.bpm.Capabilities)
				if err != nil {
					p.sup.opts.Logger.Warn("capabilities", "job", p.job, "process", p.name, "err", err)
				}
				attr.AmbientCaps = caps
			}
		}
	}
	return attr
}

var capabilities = map[string]uintptr{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
	"SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11,
	"NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17,
	"SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23,
	"SYS_RESOURCE": 24, "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29,
	"AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
	"BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

// capabilityNumbers maps bpm capability names (without CAP_) to numbers.
func capabilityNumbers(names []string) ([]uintptr, error) {
	var out []uintptr
	var unknown []string
	for _, n := range names {
		c, ok := capabilities[strings.TrimPrefix(strings.ToUpper(n), "CAP_")]
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		out = append(out, c)
	}
	if len(unknown) > 0 {
		return out, fmt.Errorf("unknown capabilities %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

func (p *proc) runBPM(stop chan struct{}) (bool, error) {
	b := p.bpm
	l := p.sup.opts.Layout
	for _, d := range []string{filepath.Join(l.Data(), p.job, "tmp"), filepath.Join(l.SysRun(), "bpm", p.job)} {
		os.MkdirAll(d, 0o770)
	}
	if b.PersistentDisk {
		if _, err := os.Stat(l.Store()); err == nil {
			os.MkdirAll(filepath.Join(l.Store(), p.job), 0o770)
		}
	}
	for _, v := range b.AdditionalVolumes {
		if !v.MountOnly {
			os.MkdirAll(l.Path(v.Path), 0o770)
		}
	}
	workdir := b.Workdir
	if workdir == "" {
		workdir = l.JobDir(p.job)
	}
	env := p.env(b.Env)
	if b.Hooks.PreStart != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		hook := exec.CommandContext(ctx, b.Hooks.PreStart)
		hook.Dir, hook.Env, hook.Stdout, hook.Stderr = workdir, env, p.stdout, p.stderr
		hook.SysProcAttr = p.sysProcAttr(b.Unsafe.Privileged)
		err := hook.Run()
		cancel()
		if err != nil {
			return false, fmt.Errorf("pre_start hook %s: %w", b.Hooks.PreStart, err)
		}
	}
	if fi, err := os.Stat(b.Executable); err != nil {
		return false, fmt.Errorf("executable %s: %w", b.Executable, err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return false, fmt.Errorf("executable %s is not an executable file", b.Executable)
	}
	pidPath := filepath.Join(l.SysRun(), "bpm", p.job, p.name+".pid")
	p.killStale(pidPath, b.Executable)
	attr := p.sysProcAttr(b.Unsafe.Privileged)
	argv, limErr := p.limitsShim(attr.Credential)
	if limErr != nil {
		p.sup.opts.Logger.Warn("limits", "job", p.job, "process", p.name, "err", limErr)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = workdir, env
	cmd.SysProcAttr = attr
	outW, err := pipeTo(p.stdout, nil)
	if err != nil {
		return false, err
	}
	errW, err := pipeTo(p.stderr, nil)
	if err != nil {
		outW.Close()
		return false, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return false, fmt.Errorf("starting %s: %w", b.Executable, err)
	}
	pid := cmd.Process.Pid
	p.mu.Lock()
	p.pid, p.startedAt, p.lastAt, p.lastTicks, p.reloads = pid, time.Now(), time.Time{}, 0, 0
	if limErr != nil {
		p.lastErr = limErr.Error()
	}
	p.mu.Unlock()
	writeFileAtomic(pidPath, []byte(strconv.Itoa(pid)), 0o644)
	p.applyLimits(pid)

	waitCh := make(chan error, 1)
	go func() { waitCh <- cmd.Wait() }()

	var tick <-chan time.Time
	var grace <-chan time.Time
	var hc *healthChecker
	if b.HealthCheck != nil {
		hc = newHealthChecker(b.HealthCheck, workdir, env)
		t := time.NewTicker(hc.interval)
		defer t.Stop()
		tick = t.C
	} else {
		grace = time.After(p.sup.opts.StartGrace)
	}
	fails := 0
	for {
		select {
		case err := <-waitCh:
			p.removeCgroup()
			last := ""
			if l := p.lastStderrLine(); l != "" {
				last = ": " + l
			}
			if err == nil {
				return false, fmt.Errorf("exited with status 0 after %s%s", time.Since(p.startedAt).Round(time.Millisecond), last)
			}
			return false, fmt.Errorf("%v after %s%s", err, time.Since(p.startedAt).Round(time.Millisecond), last)
		case <-stop:
			p.kill(pid, b.ShutdownSignal, waitCh)
			p.removeCgroup()
			return true, nil
		case <-grace:
			p.set(protocol.JobRunning, "")
		case <-tick:
			if err := hc.check(); err == nil {
				fails = 0
				p.set(protocol.JobRunning, "")
			} else {
				p.mu.Lock()
				wasRunning := p.state == protocol.JobRunning
				p.lastErr = "health check: " + err.Error()
				p.mu.Unlock()
				if wasRunning {
					if fails++; fails >= 3 && p.sup.isMonitored() {
						p.set(protocol.JobFailing, "")
						p.kill(pid, b.ShutdownSignal, waitCh)
						p.removeCgroup()
						return false, fmt.Errorf("health check failed 3 times: %v", err)
					}
				}
			}
		}
	}
}

// lastStderrLine is the last line the process wrote on stderr (for error messages).
func (p *proc) lastStderrLine() string {
	time.Sleep(20 * time.Millisecond) // let the pipe copier catch up
	f, err := os.Open(filepath.Join(p.sup.opts.Layout.JobLogDir(p.job), p.name+".stderr.log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return ""
	}
	off := fi.Size() - 512
	if off < 0 {
		off = 0
	}
	b := make([]byte, fi.Size()-off)
	f.ReadAt(b, off)
	return lastLine(string(b))
}

// killStale stops a process a previous agent left running (the agent was
// killed without stopping its jobs), so a restart does not run it twice.
func (p *proc) killStale(pidPath, executable string) {
	old := readPidFile(pidPath)
	if !pidAlive(old) {
		return
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(old) + "/cmdline")
	if err != nil || !strings.Contains(string(cmdline), executable) {
		return
	}
	p.sup.opts.Logger.Info("stopping a process left by a previous agent", "job", p.job, "process", p.name, "pid", old)
	syscall.Kill(-old, syscall.SIGTERM)
	syscall.Kill(old, syscall.SIGTERM)
	deadline := time.Now().Add(p.shutdownTimeout)
	for pidAlive(old) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-old, syscall.SIGKILL)
	syscall.Kill(old, syscall.SIGKILL)
}

// kill sends the shutdown signal to the process group and SIGKILL after the
// shutdown timeout, then waits for the exit.
func (p *proc) kill(pid int, signal string, waitCh chan error) {
	sig := syscall.SIGTERM
	if signal == "INT" {
		sig = syscall.SIGINT
	}
	syscall.Kill(-pid, sig)
	select {
	case <-waitCh:
		syscall.Kill(-pid, syscall.SIGKILL) // leftovers of the group
		return
	case <-time.After(p.shutdownTimeout):
	}
	p.sup.opts.Logger.Warn("process ignored the shutdown signal; killing it", "job", p.job, "process", p.name, "timeout", p.shutdownTimeout)
	p.mu.Lock()
	p.lastErr = fmt.Sprintf("killed with SIGKILL after the %s shutdown timeout", p.shutdownTimeout)
	p.mu.Unlock()
	syscall.Kill(-pid, syscall.SIGKILL)
	<-waitCh
}

// limitsShim wraps the process in a /bin/sh that puts itself in the
// process's cgroup and sets its rlimits, then execs the executable: the
// limits hold from the first instruction, for every child too.
func (p *proc) limitsShim(cred *syscall.Credential) (argv []string, err error) {
	b := p.bpm
	var script strings.Builder
	mem, _ := parseMemory(b.Limits.Memory)
	if mem > 0 || b.Limits.Processes != nil {
		procs, cerr := p.prepareCgroup(mem, b.Limits.Processes, cred)
		if cerr != nil {
			err = fmt.Errorf("memory/processes limits not enforced: %w", cerr)
		}
		for _, f := range procs {
			fmt.Fprintf(&script, "echo $$ > %s || exit 111; ", shellQuote(f))
		}
	}
	if b.Limits.OpenFiles != nil {
		fmt.Fprintf(&script, "ulimit -n %d 2>/dev/null; ", *b.Limits.OpenFiles)
	}
	core := uint64(0)
	if b.Limits.CoreFileSize != nil {
		core = *b.Limits.CoreFileSize
	}
	fmt.Fprintf(&script, "ulimit -c %d 2>/dev/null; exec \"$@\"", core/512)
	return append([]string{"/bin/sh", "-c", script.String(), "kpaas-" + p.name, b.Executable}, b.Args...), err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// applyLimits raises open_files after start too: the agent (root) may raise
// a hard limit the shim running as vcap could not.
func (p *proc) applyLimits(pid int) {
	if n := p.bpm.Limits.OpenFiles; n != nil && os.Geteuid() == 0 {
		unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: *n, Max: *n}, nil)
	}
}

func (p *proc) cgroupLeaf() string { return p.job + "." + p.name }

// prepareCgroup creates the process's cgroup with memory (and pids) limits
// and returns the cgroup.procs files the process must join: cgroup v2 when
// the unified hierarchy is at /sys/fs/cgroup, else v1 controllers.
func (p *proc) prepareCgroup(mem int64, pids *int64, cred *syscall.Credential) ([]string, error) {
	parent := p.sup.opts.CgroupName
	if parent == "" {
		return nil, errors.New("cgroups are disabled for this agent (not root)")
	}
	var procs []string
	own := func(f string) {
		if cred != nil {
			os.Chown(f, int(cred.Uid), int(cred.Gid))
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir := filepath.Join("/sys/fs/cgroup", parent, p.cgroupLeaf())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+memory +pids"), 0)
		os.WriteFile(filepath.Join("/sys/fs/cgroup", parent, "cgroup.subtree_control"), []byte("+memory +pids"), 0)
		if mem > 0 {
			if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(strconv.FormatInt(mem, 10)), 0); err != nil {
				return nil, err
			}
			os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
		}
		if pids != nil {
			os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.FormatInt(*pids, 10)), 0)
		}
		f := filepath.Join(dir, "cgroup.procs")
		own(f)
		return []string{f}, nil
	}
	if mem > 0 {
		dir := filepath.Join("/sys/fs/cgroup/memory", parent, p.cgroupLeaf())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(mem, 10)), 0); err != nil {
			return nil, err
		}
		os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), []byte(strconv.FormatInt(mem, 10)), 0)
		f := filepath.Join(dir, "cgroup.procs")
		own(f)
		procs = append(procs, f)
	}
	if pids != nil {
		dir := filepath.Join("/sys/fs/cgroup/pids", parent, p.cgroupLeaf())
		if err := os.MkdirAll(dir, 0o755); err == nil {
			os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.FormatInt(*pids, 10)), 0)
			f := filepath.Join(dir, "cgroup.procs")
			own(f)
			procs = append(procs, f)
		}
	}
	return procs, nil
}

func (p *proc) removeCgroup() {
	parent := p.sup.opts.CgroupName
	if parent == "" || p.bpm == nil || (p.bpm.Limits.Memory == "" && p.bpm.Limits.Processes == nil) {
		return
	}
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"} {
		os.Remove(filepath.Join(root, parent, p.cgroupLeaf()))
		os.Remove(filepath.Join(root, parent))
	}
}

// runMonit supervises a monit `check process`: run its start program, watch
// the pid in its pidfile, run its stop program on stop.
func (p *proc) runMonit(stop chan struct{}) (bool, error) {
	m := p.monit
	env := p.env(nil)
	// A process already alive in the pidfile (left by a previous agent, whose
	// restart did not stop it) is adopted, not started twice.
	if !pidAlive(readPidFile(m.PidFile)) {
		if err := p.runProgram(m.StartProgram, m.StartTimeout, env); err != nil {
			return false, fmt.Errorf("start program %q: %w", m.StartProgram, err)
		}
	}
	deadline := time.Now().Add(m.StartTimeout)
	pid := 0
	for {
		if pid = readPidFile(m.PidFile); pidAlive(pid) {
			break
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("no live process in pidfile %s %s after the start program", m.PidFile, m.StartTimeout)
		}
		select {
		case <-stop:
			p.stopMonit(env, 0)
			return true, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	p.mu.Lock()
	p.pid, p.startedAt, p.lastAt, p.lastTicks = pid, time.Now(), time.Time{}, 0
	p.state = protocol.JobRunning
	p.mu.Unlock()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			p.stopMonit(env, pid)
			return true, nil
		case <-t.C:
			if !pidAlive(pid) {
				return false, fmt.Errorf("process %d from %s is gone", pid, m.PidFile)
			}
		}
	}
}

func (p *proc) stopMonit(env []string, pid int) {
	m := p.monit
	if m.StopProgram != "" {
		if err := p.runProgram(m.StopProgram, p.shutdownTimeout, env); err != nil {
			p.sup.opts.Logger.Warn("stop program failed", "job", p.job, "process", p.name, "err", err)
		}
	} else if pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	if pid == 0 {
		pid = readPidFile(m.PidFile)
	}
	deadline := time.Now().Add(p.shutdownTimeout)
	for pidAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if pidAlive(pid) {
		p.mu.Lock()
		p.lastErr = fmt.Sprintf("killed with SIGKILL after the %s shutdown timeout", p.shutdownTimeout)
		p.mu.Unlock()
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (p *proc) runProgram(program string, timeout time.Duration, env []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.Command("/bin/sh", "-c", program)
	cmd.Env = env
	cmd.Dir = p.sup.opts.Layout.Bosh()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outW, err := pipeTo(p.stdout, nil)
	if err != nil {
		return err
	}
	errW, err := pipeTo(p.stderr, nil)
	if err != nil {
		outW.Close()
		return err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return err
	}
	waitCh := make(chan error, 1)
	go func() { waitCh <- cmd.Wait() }()
	select {
	case err := <-waitCh:
		return err
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waitCh
		return fmt.Errorf("timed out after %s", timeout)
	}
}

func readPidFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

type healthChecker struct {
	hc       *HealthCheck
	interval time.Duration
	timeout  time.Duration
	dir      string
	env      []string
}

func newHealthChecker(hc *HealthCheck, dir string, env []string) *healthChecker {
	h := &healthChecker{hc: hc, interval: time.Second, timeout: time.Second, dir: dir, env: env}
	if d, err := parseDuration(hc.Interval); err == nil && d > 0 {
		h.interval = d
	}
	if d, err := parseDuration(hc.Timeout); err == nil && d > 0 {
		h.timeout = d
	}
	return h
}

func (h *healthChecker) check() error {
	switch {
	case h.hc.TCP != "":
		addr := h.hc.TCP
		if _, err := strconv.Atoi(addr); err == nil {
			addr = net.JoinHostPort("127.0.0.1", addr)
		}
		c, err := net.DialTimeout("tcp", addr, h.timeout)
		if err != nil {
			return err
		}
		return c.Close()
	case h.hc.HTTP != "":
		cl := &http.Client{Timeout: h.timeout}
		resp, err := cl.Get(h.hc.HTTP)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s: %s", h.hc.HTTP, resp.Status)
		}
		return nil
	case h.hc.Command != "":
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", h.hc.Command)
		cmd.Dir, cmd.Env = h.dir, h.env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%q: %v: %s", h.hc.Command, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return nil
}
