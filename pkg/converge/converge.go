// Package converge keeps deployments in the state their last deploy left
// them: it observes every instance (get_state through a pooled agent
// connection at an interval; has_vm through the CPI for agents that stop
// answering), judges health with pkg/health, and remediates the unhealthy
// through the same plan and engine as deploy (a Remediator): restart a
// failing job first, recreate the VM (same IPs, persistent disk reattached)
// when that does not help or the VM or agent is gone.
//
// Gates, in order: a deployment whose lock is held (a deploy in progress) is
// left alone; resurrection rules may turn a deployment or group off; more
// than max_unhealthy unhealthy instances remediates nothing (recorded as an
// event); each instance has a retry budget with backoff.
//
// It must not import pkg/cmd/... (the commands build its dependencies).
package converge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/health"
	"github.com/kpaas/kpaas/pkg/state"
)

// Agent is what the observer asks of an agent.
type Agent interface {
	GetState(ctx context.Context, full bool) (*protocol.State, error)
}

// Action is a remediation.
type Action string

const (
	ActionRestart  Action = "restart"
	ActionRecreate Action = "recreate"
)

// Fix is one instance to remediate.
type Fix struct {
	UUID    string
	Name    string // group/index
	Group   string
	Action  Action
	Reasons []string
	// AgentDead is set when the VM is gone or its agent unresponsive: the
	// engine need not wait for it to stop jobs or unmount disks.
	AgentDead bool
}

// Remediator carries fixes out through the plan and engine (restart: stop and
// start the jobs; recreate: a plan of recreates). The deployment lock is
// already held by the caller.
type Remediator interface {
	Remediate(ctx context.Context, deployment string, fixes []Fix) error
}

// Deps are the reconciler's dependencies.
type Deps struct {
	Store state.Store
	// Dial returns the agent of a target (a pooled connection).
	Dial func(t agentclient.Target) Agent
	// Signer is kpaas's agent client key.
	Signer ssh.Signer
	// HasVM asks the CPI of az whether the VM exists.
	HasVM      func(ctx context.Context, deployment, az, cid string) (bool, error)
	Remediator Remediator
	Now        func() time.Time
	// Report receives what the reconciler sees and does (printed by monitor).
	Report func(Report)
	// Metrics, when set, is updated every pass.
	Metrics *Metrics
}

// Options tune the reconciler.
type Options struct {
	Policy       health.Policy
	Budget       health.Budget
	MaxUnhealthy health.MaxUnhealthy
	// Concurrency is how many agents are asked at once (default 64).
	Concurrency int
	// ProbeTimeout bounds one get_state (default 5 s).
	ProbeTimeout time.Duration
	// DryRun reports what would be done and does nothing.
	DryRun bool
}

// Report is one line of what happened.
type Report struct {
	Time       time.Time `json:"time"`
	Deployment string    `json:"deployment"`
	Instance   string    `json:"instance,omitempty"`
	Kind       string    `json:"kind"` // unhealthy, healthy-again, skipped, gated, remediating, remediated, failed
	Message    string    `json:"message"`
}

type instState struct {
	obs       health.Observation
	vmCheck   time.Time
	attempts  []time.Time
	lastFix   Action
	lastFixAt time.Time
	unhealthy bool
}

// Reconciler observes and remediates; safe for one goroutine at a time per
// method, observation runs its probes concurrently.
type Reconciler struct {
	deps   Deps
	opts   Options
	mu     sync.Mutex
	inst   map[string]*instState // by instance UUID
	seeded map[string]bool       // deployments whose history was read
	gated  map[string]string     // the last gate message per deployment
}

// New makes a reconciler.
func New(deps Deps, opts Options) *Reconciler {
	opts.Policy = opts.Policy.Defaults()
	opts.Budget = opts.Budget.Defaults()
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = 5 * time.Second
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Report == nil {
		deps.Report = func(Report) {}
	}
	return &Reconciler{deps: deps, opts: opts, inst: map[string]*instState{}, seeded: map[string]bool{}, gated: map[string]string{}}
}

func (r *Reconciler) report(dep, inst, kind, format string, args ...any) {
	r.deps.Report(Report{Time: r.deps.Now(), Deployment: dep, Instance: inst, Kind: kind, Message: fmt.Sprintf(format, args...)})
}

// Watched is one instance being Watched.
type Watched struct {
	target health.Target
	agent  agentclient.Target
	az     string
	vmCID  string
}

// load lists the deployment's instances as health targets.
func (r *Reconciler) load(ctx context.Context, dep string) ([]Watched, error) {
	ds, err := r.deps.Store.LoadDeployment(ctx, dep)
	if err != nil {
		return nil, err
	}
	r.seed(ctx, dep)
	vms := ds.VMsByInstance()
	var out []Watched
	for _, i := range ds.Instances {
		w := Watched{target: health.Target{Deployment: dep, Group: i.Group, Index: i.Index, UUID: i.UUID,
			Stopped: i.DesiredState != state.Started, Ignore: i.Ignore}, az: i.AZ}
		if v := vms[i.UUID]; len(v) > 0 && v[0].Active {
			w.target.HasVM = i.DesiredState != state.Detached
			w.vmCID = v[0].CID
			if len(v[0].IPs) > 0 {
				w.agent = agentclient.Target{Name: i.Name(), Group: i.Group, ID: i.UUID, Index: i.Index,
					Address: net.JoinHostPort(v[0].IPs[0], "6868"), HostKey: v[0].SSHHostKey, Signer: r.deps.Signer}
			}
		}
		out = append(out, w)
	}
	return out, nil
}

// seed reads the remediations of the last budget window from the events,
// so the retry budget and restart-then-recreate hold across runs of
// `kpaas converge` and restarts of the monitor.
func (r *Reconciler) seed(ctx context.Context, dep string) {
	r.mu.Lock()
	done := r.seeded[dep]
	r.seeded[dep] = true
	r.mu.Unlock()
	if done {
		return
	}
	evs, err := r.deps.Store.Events(ctx, state.EventFilter{Deployment: dep, After: r.deps.Now().Add(-r.opts.Budget.Window)})
	if err != nil {
		return
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range evs {
		a, ok := strings.CutPrefix(ev.Action, "resurrect-")
		if !ok || ev.ObjectType != "instance" {
			continue
		}
		_, uuid, _ := strings.Cut(ev.ObjectName, "/")
		s := r.state(uuid)
		s.attempts = append(s.attempts, ev.Time)
		s.lastFix, s.lastFixAt = Action(a), ev.Time
	}
}

// Observe asks every Watched instance's agent for its state once, and the
// CPI about the VMs of agents that did not answer.
func (r *Reconciler) Observe(ctx context.Context, ws []Watched) {
	sem := make(chan struct{}, r.opts.Concurrency)
	var wg sync.WaitGroup
	for _, w := range ws {
		if !w.target.HasVM {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(w Watched) {
			defer func() { <-sem; wg.Done() }()
			r.probe(ctx, w)
		}(w)
	}
	wg.Wait()
}

func (r *Reconciler) state(uuid string) *instState {
	s := r.inst[uuid]
	if s == nil {
		s = &instState{}
		r.inst[uuid] = s
	}
	return s
}

func (r *Reconciler) probe(ctx context.Context, w Watched) {
	var st *protocol.State
	err := errors.New("the instance has no IP address")
	start := r.deps.Now()
	if w.agent.Address != "" {
		pctx, cancel := context.WithTimeout(ctx, r.opts.ProbeTimeout)
		st, err = r.deps.Dial(w.agent).GetState(pctx, false)
		cancel()
	}
	now := r.deps.Now()
	if r.deps.Metrics != nil && err == nil {
		r.deps.Metrics.AgentLatency.Observe(now.Sub(start).Seconds())
	}
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	s := r.state(w.target.UUID)
	if err == nil {
		var failing []string
		for _, p := range st.Processes {
			if p.State != "running" {
				failing = append(failing, p.Name+" "+p.State)
			}
		}
		js := st.JobState
		if js == "" {
			js = "running"
		}
		s.obs = health.Observe(now, s.obs, js, failing, "")
		r.mu.Unlock()
		return
	}
	s.obs = health.Observe(now, s.obs, "", nil, err.Error())
	s.obs.Refused = errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
	check := r.deps.HasVM != nil && w.vmCID != "" && now.Sub(s.vmCheck) >= r.opts.Policy.Interval/2
	if check {
		s.vmCheck = now
	}
	r.mu.Unlock()
	if !check {
		return
	}
	ok, herr := r.deps.HasVM(ctx, w.target.Deployment, w.az, w.vmCID)
	if herr == nil && !ok {
		r.mu.Lock()
		r.state(w.target.UUID).obs.VMGone = true
		r.mu.Unlock()
	}
}

// Outcome is the result of one pass over a deployment.
type Outcome struct {
	Deployment string           `json:"deployment"`
	Total      int              `json:"total"`
	Healthy    int              `json:"healthy"`
	Suspect    int              `json:"suspect"`
	Unhealthy  []health.Verdict `json:"-"`
	Fixed      []Fix            `json:"fixed"`
	Gated      string           `json:"gated,omitempty"`
	Locked     string           `json:"locked,omitempty"`
	Error      string           `json:"error,omitempty"`
	// Next is when the deployment should be looked at again.
	Next time.Duration `json:"-"`
}

// Pass observes a deployment once, evaluates it, and remediates what the
// gates allow.
func (r *Reconciler) Pass(ctx context.Context, dep string, rules health.Resurrection) (Outcome, error) {
	ws, err := r.load(ctx, dep)
	if err != nil {
		return Outcome{Deployment: dep}, err
	}
	r.Observe(ctx, ws)
	if ctx.Err() != nil {
		return Outcome{Deployment: dep}, ctx.Err()
	}
	return r.Evaluate(ctx, dep, ws, rules, true)
}

// Evaluate judges the observations of ws and, when remediate is set,
// remediates.
func (r *Reconciler) Evaluate(ctx context.Context, dep string, ws []Watched, rules health.Resurrection, remediate bool) (Outcome, error) {
	now := r.deps.Now()
	targets := make([]health.Target, 0, len(ws))
	obs := make(map[string]health.Observation, len(ws))
	r.mu.Lock()
	for _, w := range ws {
		targets = append(targets, w.target)
		s := r.state(w.target.UUID)
		if s.obs.WatchedSince.IsZero() {
			s.obs.WatchedSince = now
		}
		obs[w.target.UUID] = s.obs
	}
	r.mu.Unlock()
	healthy, unhealthy, next := r.opts.Policy.Evaluate(now, targets, obs)
	out := Outcome{Deployment: dep, Total: len(targets), Healthy: len(healthy), Unhealthy: unhealthy, Next: next, Fixed: []Fix{}}
	r.mu.Lock()
	for _, v := range healthy {
		if v.Suspect {
			out.Suspect++
		}
		if s := r.state(v.Target.UUID); s.unhealthy {
			s.unhealthy = false
			r.mu.Unlock()
			r.report(dep, v.Target.Name(), "healthy-again", "healthy again")
			r.mu.Lock()
		}
	}
	var fresh []health.Verdict
	for _, v := range unhealthy {
		if s := r.state(v.Target.UUID); !s.unhealthy {
			s.unhealthy = true
			fresh = append(fresh, v)
		}
	}
	r.mu.Unlock()
	for _, v := range fresh {
		r.report(dep, v.Target.Name(), "unhealthy", "%s: %s", joinReasons(v.Reasons), strings.Join(v.Details, "; "))
	}
	if r.deps.Metrics != nil {
		r.deps.Metrics.set(dep, out)
	}
	if !remediate || len(unhealthy) == 0 {
		return out, nil
	}
	return r.remediate(ctx, out, rules)
}

func joinReasons(rs []health.Reason) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

func (r *Reconciler) event(ctx context.Context, ev state.Event) {
	if ev.Time.IsZero() {
		ev.Time = r.deps.Now()
	}
	_, _ = r.deps.Store.AppendEvents(context.WithoutCancel(ctx), ev)
}

func (r *Reconciler) remediate(ctx context.Context, out Outcome, rules health.Resurrection) (Outcome, error) {
	dep := out.Deployment
	now := r.deps.Now()
	hold, why := r.opts.MaxUnhealthy.Gate(len(out.Unhealthy), out.Total)
	r.mu.Lock()
	same := r.gated[dep] == why
	r.gated[dep] = why
	r.mu.Unlock()
	if hold {
		out.Gated = why
		if same {
			// Said and recorded already: a monitor in meltdown does not
			// repeat itself every interval.
			return out, nil
		}
		r.report(dep, "", "gated", "%s", why)
		var names []string
		for _, v := range out.Unhealthy {
			names = append(names, v.Target.Name())
		}
		ctxJSON, _ := json.Marshal(map[string]any{"unhealthy": names, "total": out.Total, "max_unhealthy": r.opts.MaxUnhealthy.String()})
		r.event(ctx, state.Event{Action: "meltdown", ObjectType: "deployment", ObjectName: dep, Deployment: dep, Error: why, Context: ctxJSON})
		if r.deps.Metrics != nil {
			r.deps.Metrics.Gated.WithLabelValues(dep).Inc()
		}
		return out, nil
	}
	var fixes []Fix
	r.mu.Lock()
	for _, v := range out.Unhealthy {
		t := v.Target
		if t.Ignore {
			continue
		}
		if !rules.Allows(dep, t.Group) {
			r.mu.Unlock()
			r.report(dep, t.Name(), "skipped", "resurrection is off for %s/%s", dep, t.Group)
			r.mu.Lock()
			continue
		}
		s := r.state(t.UUID)
		if ok, wait, why := r.opts.Budget.Allow(now, s.attempts); !ok {
			r.mu.Unlock()
			r.report(dep, t.Name(), "skipped", "%s (next try in %s)", why, wait.Round(time.Second))
			r.mu.Lock()
			continue
		}
		f := Fix{UUID: t.UUID, Name: t.Name(), Group: t.Group, Action: ActionRecreate,
			AgentDead: v.Has(health.ReasonMissingVM) || v.Has(health.ReasonUnresponsive)}
		for i, reason := range v.Reasons {
			f.Reasons = append(f.Reasons, string(reason)+": "+v.Details[i])
		}
		// A failing job is restarted first, unless a restart was the last
		// thing tried: then the VM is recreated.
		if len(v.Reasons) == 1 && v.Reasons[0] == health.ReasonFailingJob && !(s.lastFix == ActionRestart && now.Sub(s.lastFixAt) < r.opts.Budget.Window) {
			f.Action = ActionRestart
		}
		fixes = append(fixes, f)
	}
	r.mu.Unlock()
	if len(fixes) == 0 {
		return out, nil
	}
	if r.opts.DryRun {
		for _, f := range fixes {
			r.report(dep, f.Name, "would-remediate", "would %s: %s", f.Action, strings.Join(f.Reasons, "; "))
		}
		return out, nil
	}
	lock, err := r.deps.Store.Lock(ctx, state.LockRequest{Name: state.DeploymentLock(dep), Op: "converge"})
	if err != nil {
		var le *state.LockError
		if errors.As(err, &le) {
			out.Locked = fmt.Sprintf("deployment %s is locked by %s (%s): left alone", dep, le.Holder, le.Op)
			r.report(dep, "", "skipped", "%s", out.Locked)
			return out, nil
		}
		return out, err
	}
	defer lock.Release(context.WithoutCancel(ctx))
	r.mu.Lock()
	for _, f := range fixes {
		s := r.state(f.UUID)
		s.attempts = append(s.attempts, now)
		s.lastFix, s.lastFixAt = f.Action, now
	}
	r.mu.Unlock()
	for _, f := range fixes {
		r.report(dep, f.Name, "remediating", "%s: %s", f.Action, strings.Join(f.Reasons, "; "))
	}
	task, _ := r.deps.Store.CreateTask(ctx, state.Task{Description: "converge: " + describe(fixes), Deployment: dep, State: state.TaskProcessing, StartedAt: now})
	err = r.deps.Remediator.Remediate(ctx, dep, fixes)
	done := r.deps.Now()
	if task != 0 {
		st, msg := state.TaskDone, ""
		if err != nil {
			st, msg = state.TaskError, err.Error()
		}
		_ = r.deps.Store.FinishTask(context.WithoutCancel(ctx), task, st, describe(fixes), msg)
	}
	var evs []state.Event
	r.mu.Lock()
	for _, f := range fixes {
		ev := state.Event{Time: done, Action: "resurrect-" + string(f.Action), ObjectType: "instance", ObjectName: f.Group + "/" + f.UUID, Deployment: dep, Instance: f.Name, TaskID: task}
		ctxJSON, _ := json.Marshal(map[string]any{"reasons": f.Reasons, "seconds": done.Sub(now).Seconds()})
		ev.Context = ctxJSON
		if err != nil {
			ev.Error = err.Error()
		}
		evs = append(evs, ev)
		// Watch the remediated instance afresh: its agent gets a full
		// timeout, its job a full grace period.
		s := r.state(f.UUID)
		s.obs = health.Observation{WatchedSince: done}
		s.vmCheck = time.Time{}
	}
	r.mu.Unlock()
	_, _ = r.deps.Store.AppendEvents(context.WithoutCancel(ctx), evs...)
	if r.deps.Metrics != nil {
		res := "ok"
		if err != nil {
			res = "error"
		}
		for _, f := range fixes {
			r.deps.Metrics.Remediations.WithLabelValues(dep, string(f.Action), res).Inc()
		}
	}
	if err != nil {
		r.report(dep, "", "failed", "remediation failed after %s: %v", done.Sub(now).Round(time.Millisecond), err)
		out.Error = err.Error()
		return out, nil
	}
	for _, f := range fixes {
		r.report(dep, f.Name, "remediated", "%s done in %s", f.Action, done.Sub(now).Round(time.Millisecond))
	}
	out.Fixed = fixes
	return out, nil
}

func describe(fixes []Fix) string {
	by := map[Action][]string{}
	for _, f := range fixes {
		by[f.Action] = append(by[f.Action], f.Name)
	}
	var parts []string
	for _, a := range []Action{ActionRestart, ActionRecreate} {
		if l := by[a]; len(l) > 0 {
			sort.Strings(l)
			parts = append(parts, string(a)+" "+strings.Join(l, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

// Forget drops what is known of instances not in keep (deleted ones).
func (r *Reconciler) Forget(keep map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for u := range r.inst {
		if !keep[u] {
			delete(r.inst, u)
		}
	}
}

// Load lists a deployment's instances to watch.
func (r *Reconciler) Load(ctx context.Context, dep string) ([]Watched, error) {
	return r.load(ctx, dep)
}

// ResurrectionConfigName is the name of the resurrection config.
const ResurrectionConfigName = "default"
