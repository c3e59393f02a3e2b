package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/plan"
	"github.com/kpaas/kpaas/pkg/state"
)

// Select returns the plan's instances (not being deleted) that selector
// names: "" for all, GROUP, GROUP/UUID, GROUP/INDEX or GROUP/PREFIX (a UUID
// prefix of at least 4 characters), tried in that order, as `kpaas ssh` does:
// "web/0" is index 0 even when another instance's UUID starts with "0". An id
// that matches several instances is refused rather than acting on all of them.
func Select(p *plan.Plan, selector string) ([]*plan.Instance, error) {
	group, id, hasID := strings.Cut(selector, "/")
	var candidates []*plan.Instance
	for _, g := range p.Groups {
		if g.Manifest == nil || (group != "" && g.Name != group) {
			continue
		}
		for _, i := range g.Instances {
			if i.Action != plan.ActionDelete {
				candidates = append(candidates, i)
			}
		}
	}
	out := candidates
	if hasID {
		out = nil
		for _, match := range []func(*plan.Instance) bool{
			func(i *plan.Instance) bool { return i.UUID == id },
			func(i *plan.Instance) bool { return fmt.Sprint(i.Index) == id },
			func(i *plan.Instance) bool { return len(id) >= 4 && strings.HasPrefix(i.UUID, id) },
		} {
			for _, i := range candidates {
				if match(i) {
					out = append(out, i)
				}
			}
			if len(out) > 0 {
				break
			}
		}
		if len(out) > 1 {
			names := make([]string, len(out))
			for n, i := range out {
				names[n] = i.Group + "/" + i.UUID
			}
			return nil, fmt.Errorf("%q is ambiguous in deployment %s: it matches %s; give more of the UUID", selector, p.Deployment, strings.Join(names, ", "))
		}
	}
	if len(out) == 0 && selector != "" {
		return nil, fmt.Errorf("no instance matches %q in deployment %s", selector, p.Deployment)
	}
	return out, nil
}

func (e *Engine) newRun(p *Prepared) *run {
	r := &run{e: e, p: p.Plan, prep: p, vms: map[string]state.VM{}, disks: map[string]state.Disk{}, results: map[string]*Result{}}
	for _, v := range p.State.VMs {
		if v.Active {
			r.vms[v.Instance] = v
		}
	}
	for _, d := range p.State.Disks {
		if d.Active {
			r.disks[d.Instance] = d
		}
	}
	for _, inst := range p.Plan.Instances() {
		r.order = append(r.order, inst)
		r.results[inst.UUID] = &Result{Instance: inst.Name(), ID: inst.UUID, Action: inst.Action, Status: "untouched"}
	}
	return r
}

func groupOf(p *plan.Plan, inst *plan.Instance) *plan.Group {
	for _, g := range p.Groups {
		if g.Name == inst.Group {
			return g
		}
	}
	return nil
}

// Stop stops the jobs of insts and records them stopped; hard also deletes
// their VMs (the instances are then detached: disks and IPs are kept).
func (e *Engine) Stop(ctx context.Context, p *Prepared, insts []*plan.Instance, hard bool) error {
	r := e.newRun(p)
	var errs []error
	for _, inst := range insts {
		next := "keep"
		if hard {
			next = "delete"
		}
		if err := r.stopJobs(ctx, "stopping", inst.Name(), inst, next, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		st := state.Stopped
		if hard {
			if err := r.deleteVM(ctx, "stopping", inst.Name(), inst); err != nil {
				errs = append(errs, err)
				continue
			}
			st = state.Detached
		}
		if err := e.State.SetInstanceState(ctx, p.Plan.Deployment, inst.UUID, st); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Start starts the jobs of insts (creating the VM of a detached instance).
func (e *Engine) Start(ctx context.Context, p *Prepared, insts []*plan.Instance) error {
	r := e.newRun(p)
	var errs []error
	for _, inst := range insts {
		if err := e.State.SetInstanceState(ctx, p.Plan.Deployment, inst.UUID, state.Started); err != nil {
			errs = append(errs, err)
			continue
		}
		if inst.Existing != nil {
			inst.Existing.Stopped, inst.Existing.Detached = false, false
		}
		g := groupOf(p.Plan, inst)
		if _, ok := r.vm(inst.UUID); !ok {
			if err := r.compileAll(ctx); err != nil {
				return err
			}
			if err := r.createInstance(ctx, "starting", inst.Name(), g, inst, false); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		vm, _ := r.vm(inst.UUID)
		if err := e.step("starting", inst.Name(), "start", func() error {
			return e.startJobs(ctx, r.agentFor(inst, vm), inst.Name(), watchTime(g, false))
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// watchTime is the group's canary or update watch time; 0-60000 when the
// manifest gives none.
func watchTime(g *plan.Group, canary bool) manifest.WatchTime {
	def := manifest.WatchTime{Min: 0, Max: 60000}
	if g == nil {
		return def
	}
	wt := g.Update.UpdateWatchTime
	if canary && g.Update.CanaryWatchTime != nil {
		wt = g.Update.CanaryWatchTime
	}
	if wt == nil || wt.Max <= 0 {
		return def
	}
	return *wt
}

// startJobs is the director's start phase: run_script pre-start, start, then
// the watch schedule (sleep min, then poll get_state every clamp((max-min)/9,
// 1 s, 15 s) until job_state is running or max has passed), then
// run_script post-start.
func (e *Engine) startJobs(ctx context.Context, a Agent, name string, wt manifest.WatchTime) error {
	if _, err := a.RunScript(ctx, "pre-start", nil); err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	if err := e.watchJobs(ctx, a, name, wt); err != nil {
		return err
	}
	_, err := a.RunScript(ctx, "post-start", nil)
	return err
}

// watchJobs follows the watch schedule until job_state is running.
func (e *Engine) watchJobs(ctx context.Context, a Agent, name string, wt manifest.WatchTime) error {
	var st *protocol.State
	for _, d := range wt.Schedule() {
		if err := e.sleep(ctx, d); err != nil {
			return err
		}
		var err error
		if st, err = a.GetState(ctx, false); err != nil {
			return err
		}
		if st.JobState == protocol.JobRunning {
			break
		}
	}
	if st == nil || st.JobState != protocol.JobRunning {
		js := "unknown"
		if st != nil {
			js = st.JobState
		}
		return &JobNotRunningError{Instance: name, JobState: js, Watch: wt, State: st}
	}
	return nil
}

// JobNotRunningError is the director's AgentJobNotRunning: the jobs were not
// running when the watch time ran out.
type JobNotRunningError struct {
	Instance string
	JobState string
	Watch    manifest.WatchTime
	State    *protocol.State
}

func (e *JobNotRunningError) Error() string {
	var bad []string
	if e.State != nil {
		for _, p := range e.State.Processes {
			if p.State != protocol.JobRunning {
				bad = append(bad, fmt.Sprintf("%s/%s is %s", p.Job, p.Name, p.State))
			}
		}
	}
	return fmt.Sprintf("'%s' is not running after update (job_state %s after watch time %s ms). Review logs for failed jobs: %s (in /var/vcap/sys/log/ on the instance)", e.Instance, e.JobState, e.Watch, strings.Join(bad, ", "))
}

func (e *Engine) sleep(ctx context.Context, d time.Duration) error {
	if e.Sleep != nil {
		return e.Sleep(ctx, d)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ErrandResult is one errand run.
type ErrandResult struct {
	Instance string `json:"instance"`
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

// RunErrand runs the errand group's bin/run on VMs created for it (and
// deleted afterwards unless keepAlive), or on a service group's instances
// when name is a job of theirs.
func (e *Engine) RunErrand(ctx context.Context, p *Prepared, name string, keepAlive bool) ([]ErrandResult, error) {
	r := e.newRun(p)
	var g *plan.Group
	for _, x := range p.Plan.Groups {
		if x.Name == name && x.Manifest != nil {
			g = x
		}
	}
	job := ""
	if g == nil {
		// A job of a service group: run on its instances as they are.
		for _, x := range p.Plan.Groups {
			if x.Manifest == nil || x.Lifecycle == manifest.LifecycleErrand {
				continue
			}
			for _, j := range x.Manifest.Jobs {
				if j.Name == name {
					g, job = x, name
				}
			}
		}
	}
	if g == nil {
		return nil, fmt.Errorf("deployment %s has no errand %q (an instance group with lifecycle: errand, or a job of one)", p.Plan.Deployment, name)
	}
	if g.Lifecycle == manifest.LifecycleErrand {
		if err := r.compileAll(ctx); err != nil {
			return nil, err
		}
	}
	var out []ErrandResult
	for _, inst := range g.Instances {
		if inst.Action == plan.ActionDelete {
			continue
		}
		if g.Lifecycle == manifest.LifecycleErrand {
			if _, ok := r.vm(inst.UUID); !ok {
				inst.Existing = &plan.Existing{Stopped: true} // apply, do not start
				if err := r.createInstance(ctx, "errand", inst.Name(), g, inst, false); err != nil {
					return out, err
				}
			}
		}
		vm, ok := r.vm(inst.UUID)
		if !ok {
			return out, fmt.Errorf("%s has no VM", inst.Name())
		}
		var res *protocol.RunErrandResponse
		err := e.step("errand", inst.Name(), "run", func() error {
			var err error
			res, err = r.agentFor(inst, vm).RunErrand(ctx, protocol.RunErrandRequest{Job: job})
			return err
		})
		if err != nil {
			return out, err
		}
		out = append(out, ErrandResult{Instance: inst.Name(), ExitCode: res.ExitCode, Stdout: res.Stdout, Stderr: res.Stderr})
		if g.Lifecycle == manifest.LifecycleErrand && !keepAlive {
			if err := r.deleteInstance(context.WithoutCancel(ctx), "errand", inst.Name(), inst, false); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}
