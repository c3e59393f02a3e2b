package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/compile"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/plan"
	"github.com/kpaas/kpaas/pkg/render"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Agent is what the engine needs of an instance's agent (*agentclient.Client).
type Agent interface {
	Ping(ctx context.Context) error
	GetState(ctx context.Context, full bool) (*protocol.State, error)
	EnsureBlobs(ctx context.Context, blobs []agentclient.Blob) (int, error)
	Apply(ctx context.Context, spec protocol.ApplySpec) error
	StopJobs(ctx context.Context, o agentclient.StopOptions) error
	Start(ctx context.Context) error
	RunScript(ctx context.Context, name string, env map[string]string) (*protocol.RunScriptResponse, error)
	RunErrand(ctx context.Context, req protocol.RunErrandRequest) (*protocol.RunErrandResponse, error)
	AddPersistentDisk(ctx context.Context, cid string, hint any) error
	MountDisk(ctx context.Context, cid string) error
	UnmountDisk(ctx context.Context, cid string) error
	CompilePackage(ctx context.Context, req protocol.CompilePackageRequest) (*protocol.CompilePackageResponse, error)
	GetBlob(ctx context.Context, sha256 string, w io.Writer) error
}

// CPIs finds the CPI of an AZ (registry.Set.ForAZ with the cloud-config's cpi).
type CPIs func(az string) (cpi.CPI, string, error)

// Engine carries out plans.
type Engine struct {
	State     state.Store
	Blobs     *blobstore.Store
	CPIs      CPIs
	Dial      func(agentclient.Target) Agent
	ClientKey agentclient.Key
	Sink      ui.ProgressSink
	Now       func() time.Time
	// Sleep waits d or until ctx ends; nil is a real timer. Tests inject one
	// to follow the watch schedule without waiting.
	Sleep func(ctx context.Context, d time.Duration) error

	SkipDrain   bool
	Canaries    *manifest.CountOrPercent // --canaries
	MaxInFlight *manifest.CountOrPercent // --max-in-flight
	// AgentTimeout bounds waiting for a new VM's agent (default 2 min).
	AgentTimeout time.Duration
	// InUse, when set, tells whether something answers at an IP before a VM
	// is created with it (ProbeIP); nil: no check.
	InUse func(ctx context.Context, ip string) bool
}

// ProbeIP reports whether an agent (of a VM kpaas does not know) already
// answers at ip: a TCP connection to the agent port that is accepted.
func ProbeIP(ctx context.Context, ip string) bool {
	ctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(ip, "6868"))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Result is what happened to one instance.
type Result struct {
	Instance string      `json:"instance"`
	ID       string      `json:"id"`
	Action   plan.Action `json:"action"`
	Status   string      `json:"status"` // done, failed, untouched
	Error    string      `json:"error,omitempty"`
	Logs     string      `json:"logs,omitempty"`
}

// Error is a failed deploy with the per-instance report.
type Error struct {
	Results []Result
	Err     error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) emit(stage, obj, step, status string, start time.Time, err error, msg string) {
	if e.Sink == nil {
		return
	}
	p := ui.Progress{Time: e.now(), Stage: stage, Object: obj, Step: step, Status: status, Message: msg}
	if !start.IsZero() {
		p.Duration = e.now().Sub(start)
	}
	if err != nil {
		p.Error = err.Error()
	}
	e.Sink.Progress(p)
}

// step runs fn as one reported step.
func (e *Engine) step(stage, obj, step string, fn func() error) error {
	start := e.now()
	e.emit(stage, obj, step, "started", time.Time{}, nil, "")
	if err := fn(); err != nil {
		e.emit(stage, obj, step, "failed", start, err, "")
		return fmt.Errorf("%s: %s: %w", obj, step, err)
	}
	e.emit(stage, obj, step, "done", start, nil, "")
	return nil
}

// Apply carries out a prepared deploy. ctx cancelled (Ctrl-C): instances in
// flight finish and are saved, no new one starts, and the error is
// context.Canceled.
func (e *Engine) Apply(ctx context.Context, p *Prepared) error {
	dep := p.Plan.Deployment
	if _, err := e.State.CreateDeployment(ctx, dep); err != nil {
		return err
	}
	for name, v := range p.Generated {
		b, err := json.Marshal(jsonable(v))
		if err != nil {
			return fmt.Errorf("saving generated variable %s: %w", name, err)
		}
		if _, err := e.State.PutVariable(ctx, state.Variable{Deployment: dep, Name: name, Type: "generated", Value: string(b)}); err != nil {
			return err
		}
	}
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
	// Reservations of instances the state does not know (left by a deploy
	// that stopped before creating them, or by compile VMs) are stale.
	known := map[string]bool{}
	for _, i := range p.State.Instances {
		known[i.UUID] = true
	}
	for _, ip := range p.State.IPs {
		if !known[ip.Instance] {
			if err := e.State.ReleaseIP(ctx, ip.Network, ip.IP); err != nil && !errors.Is(err, state.ErrNotFound) {
				return r.fail(err)
			}
		}
	}
	// Every address the plan hands out is reserved before anything is
	// created, so a concurrent deploy (or a compile VM) cannot take it.
	for _, inst := range p.Plan.Instances() {
		if inst.Action != plan.ActionCreate && inst.Action != plan.ActionRecreate {
			continue
		}
		for net, ns := range inst.Desired.Networks {
			if ns.IP == "" || ns.Type == manifest.NetworkDynamic {
				continue
			}
			if err := e.State.ReserveIP(ctx, state.IPReservation{Network: net, IP: ns.IP, Deployment: dep, Instance: inst.UUID, Static: ns.Static}); err != nil {
				return r.fail(fmt.Errorf("reserving %s for %s: %w (another deployment took it since the plan: deploy again)", ns.IP, inst.Name(), err))
			}
		}
	}
	if p.Plan.Changes() > 0 {
		if err := r.compileAll(ctx); err != nil {
			return r.fail(err)
		}
	}
	groups := p.Plan.Groups
	for i := 0; i < len(groups); {
		batch := []*plan.Group{groups[i]}
		j := i + 1
		if !groups[i].Update.IsSerial() {
			for j < len(groups) && !groups[j].Update.IsSerial() {
				batch = append(batch, groups[j])
				j++
			}
		}
		i = j
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for k, g := range batch {
			wg.Add(1)
			go func() { defer wg.Done(); errs[k] = r.group(ctx, g) }()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return r.fail(err)
		}
		if ctx.Err() != nil {
			return r.fail(ctx.Err())
		}
	}
	if p.Plan.Changes() > 0 {
		r.postDeploy(ctx)
	}
	if err := e.State.RecordDeploySuccess(ctx, dep, p.ManifestText, p.ConfigIDs); err != nil {
		return err
	}
	if err := saveSharedLinks(ctx, e.State, dep, p.SharedLinks); err != nil {
		return err
	}
	_, _ = e.State.AppendEvents(ctx, state.Event{Time: e.now(), Action: "deploy", ObjectType: "deployment", ObjectName: dep, Deployment: dep})
	return nil
}

// Results are the per-instance results of the last Apply, in plan order.
func (r *run) report() []Result {
	out := make([]Result, 0, len(r.order))
	for _, i := range r.order {
		out = append(out, *r.results[i.UUID])
	}
	return out
}

func (r *run) fail(err error) error {
	return &Error{Results: r.report(), Err: err}
}

type run struct {
	e       *Engine
	p       *plan.Plan
	prep    *Prepared
	mu      sync.Mutex
	vms     map[string]state.VM   // by instance UUID
	disks   map[string]state.Disk // by instance UUID
	results map[string]*Result
	order   []*plan.Instance
	pkgs    map[string]compile.Compiled // compiled, by package name (per stemcell os/version key)
}

func (r *run) setResult(inst *plan.Instance, status string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.results[inst.UUID]
	res.Status = status
	if err != nil {
		res.Error = err.Error()
		res.Logs = "kpaas logs -d " + r.p.Deployment + " " + inst.Name()
	}
}

// group updates one instance group: deletes first, then canaries, then
// max_in_flight at a time, AZ by AZ.
func (r *run) group(ctx context.Context, g *plan.Group) error {
	var dels, changes []*plan.Instance
	for _, i := range g.Instances {
		switch i.Action {
		case plan.ActionDelete:
			dels = append(dels, i)
		case plan.ActionNone:
		default:
			changes = append(changes, i)
		}
	}
	if len(dels)+len(changes) == 0 {
		return nil
	}
	u := g.Update
	size := len(changes)
	maxIF := 1
	if u.MaxInFlight != nil {
		maxIF = u.MaxInFlight.MaxInFlight(max(size, 1))
	}
	if r.e.MaxInFlight != nil {
		maxIF = r.e.MaxInFlight.MaxInFlight(max(size, 1))
	}
	canaries := 0
	if u.Canaries != nil {
		canaries = u.Canaries.Canaries(size)
	}
	if r.e.Canaries != nil {
		canaries = r.e.Canaries.Canaries(size)
	}
	if err := r.batch(ctx, g, dels, maxIF, false); err != nil {
		return err
	}
	canaries = min(canaries, len(changes))
	if err := r.batch(ctx, g, changes[:canaries], 1, true); err != nil {
		return err
	}
	rest := changes[canaries:]
	// AZ by AZ, in the order the plan lists them.
	for len(rest) > 0 {
		az := rest[0].AZ
		var now, later []*plan.Instance
		for _, i := range rest {
			if i.AZ == az {
				now = append(now, i)
			} else {
				later = append(later, i)
			}
		}
		if err := r.batch(ctx, g, now, maxIF, false); err != nil {
			return err
		}
		rest = later
	}
	return nil
}

// batch runs insts with at most n at once; it starts nothing after a failure
// or a cancel, and waits for what is in flight.
func (r *run) batch(ctx context.Context, g *plan.Group, insts []*plan.Instance, n int, canary bool) error {
	if len(insts) == 0 {
		return nil
	}
	n = max(n, 1)
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	failed := false
	for _, inst := range insts {
		mu.Lock()
		stop := failed
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		mu.Lock()
		stop = failed
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// In-flight work finishes even after Ctrl-C, so the state stays true.
			err := r.instance(context.WithoutCancel(ctx), g, inst, canary)
			if err != nil {
				r.setResult(inst, "failed", err)
				mu.Lock()
				failed = true
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			r.setResult(inst, "done", nil)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *run) instance(ctx context.Context, g *plan.Group, inst *plan.Instance, canary bool) error {
	name := inst.Name()
	if canary {
		name += " (canary)"
	}
	stage := map[plan.Action]string{plan.ActionCreate: "creating", plan.ActionDelete: "deleting", plan.ActionUpdate: "updating", plan.ActionRecreate: "recreating", plan.ActionReload: "reloading"}[inst.Action]
	start := r.e.now()
	r.e.emit(stage, name, "", "started", time.Time{}, nil, strings.Join(inst.Reasons, ", "))
	var err error
	switch inst.Action {
	case plan.ActionDelete:
		err = r.deleteInstance(ctx, stage, name, inst, false)
	case plan.ActionCreate:
		err = r.createInstance(ctx, stage, name, g, inst, canary)
	case plan.ActionRecreate:
		if inst.Swap {
			err = r.swapInstance(ctx, stage, name, g, inst, canary)
		} else {
			err = r.recreateInstance(ctx, stage, name, g, inst, canary)
		}
	case plan.ActionUpdate:
		err = r.updateInstance(ctx, stage, name, g, inst, canary)
	case plan.ActionReload:
		err = r.reloadInstance(ctx, stage, name, g, inst, canary)
	}
	if err != nil {
		r.e.emit(stage, name, "", "failed", start, err, "")
		_, _ = r.e.State.AppendEvents(ctx, state.Event{Time: r.e.now(), Action: string(inst.Action), ObjectType: "instance", ObjectName: inst.Group + "/" + inst.UUID, Deployment: r.p.Deployment, Instance: inst.Group + "/" + inst.UUID, Error: err.Error()})
		return err
	}
	r.e.emit(stage, name, "", "done", start, nil, "")
	_, _ = r.e.State.AppendEvents(ctx, state.Event{Time: r.e.now(), Action: string(inst.Action), ObjectType: "instance", ObjectName: inst.Group + "/" + inst.UUID, Deployment: r.p.Deployment, Instance: inst.Group + "/" + inst.UUID})
	return nil
}

func (r *run) vm(uuid string) (state.VM, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.vms[uuid]
	return v, ok
}

func (r *run) disk(uuid string) (state.Disk, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.disks[uuid]
	return d, ok
}

func (r *run) agentFor(inst *plan.Instance, vm state.VM) Agent {
	addr := ""
	if len(vm.IPs) > 0 {
		addr = net.JoinHostPort(vm.IPs[0], strconv.Itoa(6868))
	}
	return r.e.Dial(agentclient.Target{Name: inst.Name(), Group: inst.Group, ID: inst.UUID, Index: inst.Index, Address: addr, HostKey: vm.SSHHostKey, Signer: r.e.ClientKey.Signer})
}

// stopJobs stops an instance's jobs, best effort when its agent is gone.
func (r *run) stopJobs(ctx context.Context, stage, name string, inst *plan.Instance, vmNext string, newSpec *protocol.ApplySpec) error {
	vm, ok := r.vm(inst.UUID)
	if !ok {
		return nil
	}
	a := r.agentFor(inst, vm)
	return r.e.step(stage, name, "stop", func() error {
		err := a.StopJobs(ctx, agentclient.StopOptions{SkipDrain: r.e.SkipDrain, NewSpec: newSpec, VMNextState: vmNext})
		var ce *agentclient.ConnectError
		if errors.As(err, &ce) && vmNext == "delete" {
			return nil // the VM is going away anyway
		}
		return err
	})
}

func (r *run) deleteVM(ctx context.Context, stage, name string, inst *plan.Instance) error {
	vm, ok := r.vm(inst.UUID)
	if !ok {
		return nil
	}
	c, _, err := r.e.CPIs(inst.AZ)
	if err != nil {
		return err
	}
	if d, ok := r.disk(inst.UUID); ok {
		a := r.agentFor(inst, vm)
		_ = a.UnmountDisk(ctx, d.CID)
		if err := r.e.step(stage, name, "detach_disk", func() error {
			err := c.DetachDisk(ctx, cpi.VMCID(vm.CID), cpi.DiskCID(d.CID))
			if errors.Is(err, cpi.ErrVMNotFound) || errors.Is(err, cpi.ErrDiskNotFound) {
				return nil
			}
			return err
		}); err != nil {
			return err
		}
	}
	if err := r.e.step(stage, name, "delete_vm", func() error {
		err := c.DeleteVM(ctx, cpi.VMCID(vm.CID))
		if err != nil && !errors.Is(err, cpi.ErrVMNotFound) {
			return err
		}
		return r.e.State.DeleteVM(ctx, vm.CID)
	}); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.vms, inst.UUID)
	r.mu.Unlock()
	return nil
}

func (r *run) deleteInstance(ctx context.Context, stage, name string, inst *plan.Instance, force bool) error {
	if err := r.stopJobs(ctx, stage, name, inst, "delete", nil); err != nil && !force {
		return err
	}
	if err := r.deleteVM(ctx, stage, name, inst); err != nil && !force {
		return err
	}
	if d, ok := r.disk(inst.UUID); ok {
		if err := r.e.State.OrphanDisk(ctx, d.CID); err != nil && !force {
			return err
		}
	}
	var specs []*plan.Spec
	if inst.Existing != nil && inst.Existing.Spec != nil {
		specs = append(specs, inst.Existing.Spec)
	}
	if inst.Desired != nil {
		specs = append(specs, inst.Desired)
	}
	for _, spec := range specs {
		for net, ns := range spec.Networks {
			if ns.IP != "" && ns.Type != manifest.NetworkDynamic {
				if err := r.e.State.ReleaseIP(ctx, net, ns.IP); err != nil && !errors.Is(err, state.ErrNotFound) && !force {
					return err
				}
			}
		}
	}
	return r.e.State.DeleteInstance(ctx, r.p.Deployment, inst.UUID)
}

func (r *run) saveInstance(ctx context.Context, inst *plan.Instance, spec *plan.Spec) error {
	i := state.Instance{Deployment: r.p.Deployment, Group: inst.Group, Index: inst.Index, UUID: inst.UUID, AZ: inst.AZ, Bootstrap: inst.Bootstrap, DesiredState: state.Started}
	if inst.Existing != nil && inst.Existing.Stopped {
		i.DesiredState = state.Stopped
		if inst.Existing.Detached {
			i.DesiredState = state.Detached
		}
	}
	if spec != nil {
		b, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		i.Spec = b
	}
	return r.e.State.SaveInstance(ctx, i)
}

func (r *run) createInstance(ctx context.Context, stage, name string, g *plan.Group, inst *plan.Instance, canary bool) error {
	var prev *plan.Spec
	if inst.Existing != nil {
		prev = inst.Existing.Spec
	}
	if err := r.saveInstance(ctx, inst, prev); err != nil {
		return err
	}
	for net, ns := range inst.Desired.Networks {
		if ns.IP != "" && ns.Type != manifest.NetworkDynamic {
			if err := r.e.State.ReserveIP(ctx, state.IPReservation{Network: net, IP: ns.IP, Deployment: r.p.Deployment, Instance: inst.UUID, Static: ns.Static}); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	if err := r.createVM(ctx, stage, name, g, inst); err != nil {
		return err
	}
	return r.applyAndStart(ctx, stage, name, g, inst, canary)
}

func (r *run) recreateInstance(ctx context.Context, stage, name string, g *plan.Group, inst *plan.Instance, canary bool) error {
	if err := r.stopJobs(ctx, stage, name, inst, "delete", nil); err != nil {
		return err
	}
	if err := r.deleteVM(ctx, stage, name, inst); err != nil {
		return err
	}
	// Addresses the instance gives up are released, new ones reserved.
	if inst.Existing != nil && inst.Existing.Spec != nil {
		for net, ns := range inst.Existing.Spec.Networks {
			if d, ok := inst.Desired.Networks[net]; ok && d.IP == ns.IP {
				continue
			}
			if ns.IP != "" && ns.Type != manifest.NetworkDynamic {
				_ = r.e.State.ReleaseIP(ctx, net, ns.IP)
			}
		}
	}
	return r.createInstance(ctx, stage, name, g, inst, canary)
}

// swapInstance recreates create-swap-delete: the new VM (at new addresses)
// is created and started before the old one is stopped and deleted; a
// persistent disk moves from the old VM to the new one in between.
func (r *run) swapInstance(ctx context.Context, stage, name string, g *plan.Group, inst *plan.Instance, canary bool) error {
	c, _, err := r.e.CPIs(inst.AZ)
	if err != nil {
		return err
	}
	old, hadVM := r.vm(inst.UUID)
	_, hasDisk := r.disk(inst.UUID)
	oldStopped := false
	if hadVM {
		// The old VM stays recorded (inactive) until it is deleted.
		old.Active = false
		if err := r.e.State.SaveVM(ctx, old); err != nil {
			return err
		}
		r.mu.Lock()
		delete(r.vms, inst.UUID)
		r.mu.Unlock()
		if hasDisk {
			oldAgent := r.agentFor(inst, old)
			if err := r.e.step(stage, name, "stop_old", func() error {
				return oldAgent.StopJobs(ctx, agentclient.StopOptions{SkipDrain: r.e.SkipDrain, VMNextState: "delete"})
			}); err != nil {
				return err
			}
			oldStopped = true
			if err := r.detachDisk(ctx, stage, name, c, old, oldAgent, inst); err != nil {
				return err
			}
		}
	}
	if err := r.createInstance(ctx, stage, name, g, inst, canary); err != nil {
		return err
	}
	if hadVM {
		if !oldStopped {
			_ = r.e.step(stage, name, "stop_old", func() error {
				err := r.agentFor(inst, old).StopJobs(ctx, agentclient.StopOptions{SkipDrain: r.e.SkipDrain, VMNextState: "delete"})
				var ce *agentclient.ConnectError
				if errors.As(err, &ce) {
					return nil
				}
				return err
			})
		}
		if err := r.e.step(stage, name, "delete_old_vm", func() error {
			if err := c.DeleteVM(ctx, cpi.VMCID(old.CID)); err != nil && !errors.Is(err, cpi.ErrVMNotFound) {
				return err
			}
			return r.e.State.DeleteVM(ctx, old.CID)
		}); err != nil {
			return err
		}
	}
	if inst.Existing != nil && inst.Existing.Spec != nil {
		for net, ns := range inst.Existing.Spec.Networks {
			if d, ok := inst.Desired.Networks[net]; ok && d.IP == ns.IP {
				continue
			}
			if ns.IP != "" && ns.Type != manifest.NetworkDynamic {
				_ = r.e.State.ReleaseIP(ctx, net, ns.IP)
			}
		}
	}
	return nil
}

func (r *run) updateInstance(ctx context.Context, stage, name string, g *plan.Group, inst *plan.Instance, canary bool) error {
	spec, _, err := r.applySpec(inst)
	if err != nil {
		return err
	}
	if err := r.stopJobs(ctx, stage, name, inst, "keep", &spec); err != nil {
		return err
	}
	dk, hasDisk := r.disk(inst.UUID)
	if want := inst.Desired.PersistentDiskMB; (hasDisk && dk.SizeMB != want) || (!hasDisk && want > 0) {
		c, _, err := r.e.CPIs(inst.AZ)
		if err != nil {
			return err
		}
		vm, _ := r.vm(inst.UUID)
		a := r.agentFor(inst, vm)
		if err := r.detachDisk(ctx, stage, name, c, vm, a, inst); err != nil {
			return err
		}
		if err := r.placeDisk(ctx, stage, name, c, cpi.VMCID(vm.CID), a, inst); err != nil {
			return err
		}
	}
	return r.applyAndStart(ctx, stage, name, g, inst, canary)
}

// reloadInstance applies a change of templates only, of jobs whose
// processes reload in place: no drain and no stop; the agent installs the new
// templates and signals the running processes, then the watch checks them as
// after a start (pre-start and post-start do not run: nothing started). The
// agent checks for itself that the change can be reloaded; when it cannot,
// the instance is updated the usual way.
func (r *run) reloadInstance(ctx context.Context, stage, name string, g *plan.Group, inst *plan.Instance, canary bool) error {
	a, spec, err := r.uploadBlobs(ctx, stage, name, inst)
	if err != nil {
		return err
	}
	var busy error
	if err := r.e.step(stage, name, "reload", func() error {
		err := a.Apply(ctx, spec)
		if agentclient.IsType(err, protocol.ErrBusy) {
			busy = err
			return nil
		}
		return err
	}); err != nil {
		return err
	}
	if busy != nil {
		r.e.emit(stage, name, "reload", "info", time.Time{}, nil, "restarting instead: "+busy.Error())
		return r.updateInstance(ctx, stage, name, g, inst, canary)
	}
	if inst.Existing == nil || !inst.Existing.Stopped {
		if err := r.e.step(stage, name, "watch", func() error { return r.e.watchJobs(ctx, a, name, watchTime(g, canary)) }); err != nil {
			return err
		}
	}
	return r.saveInstance(ctx, inst, inst.Desired)
}

func (r *run) createVM(ctx context.Context, stage, name string, g *plan.Group, inst *plan.Instance) error {
	c, cpiName, err := r.e.CPIs(inst.AZ)
	if err != nil {
		return err
	}
	sc, err := r.stemcellCID(g, cpiName)
	if err != nil {
		return err
	}
	host, err := agentclient.GenerateKey()
	if err != nil {
		return err
	}
	d := inst.Desired
	nets := cpi.Networks{}
	for n, ns := range d.Networks {
		nets[n] = cpi.Network{Type: ns.Type, IP: ns.IP, Netmask: ns.Netmask, Gateway: ns.Gateway, DNS: ns.DNS, Default: ns.Default, CloudProperties: ns.CloudProperties}
	}
	env := cpi.Env{}
	for k, v := range d.Env {
		env[k] = jsonable(v)
	}
	env["kpaas"] = map[string]any{"host_key": host.PrivatePEM, "authorized_keys": []string{r.e.ClientKey.Public}}
	bosh, _ := env["bosh"].(map[string]any)
	if bosh == nil {
		bosh = map[string]any{}
	}
	bosh["group"] = r.p.Deployment + "-" + inst.Group
	env["bosh"] = bosh
	if r.e.InUse != nil {
		for n, ns := range d.Networks {
			if ns.IP != "" && ns.Type != manifest.NetworkDynamic && r.e.InUse(ctx, ns.IP) {
				return fmt.Errorf("%s: ip %s on network %s answers on the network, but kpaas has no VM there: something else uses it; add it to the subnet's reserved IPs", name, ns.IP, n)
			}
		}
	}
	agentID := "agent-" + inst.UUID
	var disks []cpi.DiskCID
	if dk, ok := r.disk(inst.UUID); ok {
		disks = append(disks, cpi.DiskCID(dk.CID))
	}
	var vmCID cpi.VMCID
	var got cpi.Networks
	if err := r.e.step(stage, name, "create_vm", func() error {
		var err error
		vmCID, got, err = c.CreateVM(ctx, cpi.AgentID(agentID), cpi.StemcellCID(sc.CID), d.VMCloudProperties, nets, disks, env)
		if err != nil {
			return err
		}
		vm := state.VM{CID: string(vmCID), Deployment: r.p.Deployment, Instance: inst.UUID, AgentID: agentID, IPs: agentIPs(got, nets),
			Stemcell: sc.Name + "/" + sc.Version, SSHHostKey: host.Public, SSHHostPrivateKey: host.PrivatePEM, Active: true, CreatedAt: r.e.now()}
		// Recorded at once: a VM the state does not know would leak.
		if err := r.e.State.SaveVM(ctx, vm); err != nil {
			_ = c.DeleteVM(context.WithoutCancel(ctx), vmCID)
			return err
		}
		r.mu.Lock()
		r.vms[inst.UUID] = vm
		r.mu.Unlock()
		return nil
	}); err != nil {
		return err
	}
	{
		_ = c.SetVMMetadata(ctx, vmCID, cpi.Metadata{"deployment": r.p.Deployment, "instance_group": inst.Group, "index": strconv.Itoa(inst.Index), "id": inst.UUID, "name": inst.Group + "/" + inst.UUID})
	}
	vm, _ := r.vm(inst.UUID)
	a := r.agentFor(inst, vm)
	if err := r.e.step(stage, name, "wait_agent", func() error { return r.waitAgent(ctx, a) }); err != nil {
		return err
	}
	return r.placeDisk(ctx, stage, name, c, vmCID, a, inst)
}

// placeDisk gives a VM whose persistent disk is detached the disk its spec
// asks for: created once (it survives recreates), resized while detached
// when the size changed, orphaned when the spec has none any more, then
// attached and mounted.
func (r *run) placeDisk(ctx context.Context, stage, name string, c cpi.CPI, vmCID cpi.VMCID, a Agent, inst *plan.Instance) error {
	d := inst.Desired
	dk, ok := r.disk(inst.UUID)
	if d.PersistentDiskMB == 0 {
		if ok {
			if err := r.e.step(stage, name, "orphan_disk", func() error { return r.e.State.OrphanDisk(ctx, dk.CID) }); err != nil {
				return err
			}
			r.mu.Lock()
			delete(r.disks, inst.UUID)
			r.mu.Unlock()
		}
		return nil
	}
	if !ok {
		if err := r.e.step(stage, name, "create_disk", func() error {
			cid, err := c.CreateDisk(ctx, d.PersistentDiskMB, d.DiskCloudProperties, vmCID)
			if err != nil {
				return err
			}
			dk = state.Disk{CID: string(cid), Deployment: r.p.Deployment, Instance: inst.UUID, SizeMB: d.PersistentDiskMB, Active: true, CreatedAt: r.e.now()}
			return r.e.State.SaveDisk(ctx, dk)
		}); err != nil {
			return err
		}
	} else if dk.SizeMB != d.PersistentDiskMB {
		if err := r.e.step(stage, name, "resize_disk", func() error {
			info, err := c.Info(ctx)
			if err != nil {
				return err
			}
			if !info.Has(cpi.CapResizeDisk) {
				return fmt.Errorf("the CPI cannot resize disk %s (%d MB -> %d MB); keep the size or give the group a new disk type", dk.CID, dk.SizeMB, d.PersistentDiskMB)
			}
			if err := c.ResizeDisk(ctx, cpi.DiskCID(dk.CID), d.PersistentDiskMB); err != nil {
				return err
			}
			dk.SizeMB = d.PersistentDiskMB
			return r.e.State.SaveDisk(ctx, dk)
		}); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.disks[inst.UUID] = dk
	r.mu.Unlock()
	return r.e.step(stage, name, "attach_disk", func() error {
		hint, err := c.AttachDisk(ctx, vmCID, cpi.DiskCID(dk.CID))
		if err != nil {
			return err
		}
		if err := a.AddPersistentDisk(ctx, dk.CID, hint); err != nil {
			return err
		}
		return a.MountDisk(ctx, dk.CID)
	})
}

// detachDisk unmounts and detaches an instance's disk from its running VM.
func (r *run) detachDisk(ctx context.Context, stage, name string, c cpi.CPI, vm state.VM, a Agent, inst *plan.Instance) error {
	dk, ok := r.disk(inst.UUID)
	if !ok {
		return nil
	}
	return r.e.step(stage, name, "detach_disk", func() error {
		if err := a.UnmountDisk(ctx, dk.CID); err != nil {
			return err
		}
		return c.DetachDisk(ctx, cpi.VMCID(vm.CID), cpi.DiskCID(dk.CID))
	})
}

func agentIPs(got, asked cpi.Networks) []string {
	nets := got
	if len(nets) == 0 {
		nets = asked
	}
	names := nets.NetworkNames()
	var first, def string
	var all []string
	for _, n := range names {
		ip := nets[n].IP
		if ip == "" {
			continue
		}
		if first == "" {
			first = ip
		}
		if def == "" && slices.Contains(nets[n].Default, "gateway") {
			def = ip
		}
		all = append(all, ip)
	}
	if def == "" {
		def = first
	}
	out := []string{}
	if def != "" {
		out = append(out, def)
	}
	for _, ip := range all {
		if ip != def {
			out = append(out, ip)
		}
	}
	return out
}

func (r *run) waitAgent(ctx context.Context, a Agent) error {
	timeout := r.e.AgentTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := 20 * time.Millisecond
	for {
		err := a.Ping(ctx)
		if err == nil {
			return nil
		}
		var ce *agentclient.ConnectError
		if !errors.As(err, &ce) || ce.Phase != agentclient.PhaseTCP {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the agent did not answer within %s: %w", timeout, err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}

func (r *run) stemcellCID(g *plan.Group, cpiName string) (state.Stemcell, error) {
	var want state.Stemcell
	if g.Manifest != nil {
		want = r.prep.Stemcells[g.Manifest.Stemcell]
	}
	for _, s := range r.prep.AllStemcells {
		if s.Name == want.Name && s.Version == want.Version && (s.CPI == cpiName || s.CPI == "" && cpiName == "default") {
			return s, nil
		}
	}
	return state.Stemcell{}, fmt.Errorf("stemcell %s/%s is not uploaded to cpi %s: run `kpaas upload-stemcell` again", want.Name, want.Version, cpiName)
}

// applySpec builds the agent's apply spec and the blobs it needs.
func (r *run) applySpec(inst *plan.Instance) (protocol.ApplySpec, []agentclient.Blob, error) {
	ri := r.prep.Rendered[inst.UUID]
	if ri == nil {
		return protocol.ApplySpec{}, nil, fmt.Errorf("%s: nothing rendered", inst.Name())
	}
	idx := inst.Index
	spec := protocol.ApplySpec{Deployment: r.p.Deployment, Name: inst.Group, Index: &idx, ID: inst.UUID, AZ: inst.AZ,
		Job: protocol.Job{Name: inst.Group}, Networks: map[string]json.RawMessage{}, Packages: map[string]protocol.BlobRef{},
		ConfigurationHash: ri.ConfigurationHash, TemplateHashes: ri.TemplateHashes, PersistentDisk: inst.Desired.PersistentDiskMB, DNSDomainName: "bosh"}
	for _, j := range ri.Jobs {
		spec.Job.Templates = append(spec.Job.Templates, protocol.JobTemplate{Name: j.Name, Version: inst.Desired.Jobs[j.Name]})
	}
	for n, ns := range inst.Desired.Networks {
		b, _ := json.Marshal(ns)
		spec.Networks[n] = b
	}
	var blobs []agentclient.Blob
	r.mu.Lock()
	for _, pk := range r.prep.Packages[inst.Group] {
		c, ok := r.pkgs[pk.Name]
		if !ok {
			r.mu.Unlock()
			return spec, nil, fmt.Errorf("%s: package %s was not compiled", inst.Name(), pk.Name)
		}
		spec.Packages[pk.Name] = protocol.BlobRef{Name: pk.Name, Version: pk.Version, SHA1: "sha256:" + c.SHA256, BlobstoreID: c.SHA256}
		blobs = append(blobs, r.blob(c.SHA256))
	}
	r.mu.Unlock()
	id, _, err := r.e.Blobs.Put(strings.NewReader(string(ri.Archive)))
	if err != nil {
		return spec, nil, err
	}
	spec.RenderedTemplatesArchive = &protocol.BlobRef{SHA1: "sha256:" + id, BlobstoreID: id}
	blobs = append(blobs, r.blob(id))
	return spec, blobs, nil
}

func (r *run) blob(id string) agentclient.Blob {
	size, _ := r.e.Blobs.Size(id)
	return agentclient.Blob{SHA256: id, Size: size, Open: func() (io.ReadCloser, error) { return r.e.Blobs.Open(id) }}
}

// uploadBlobs finds the instance's agent and apply spec and sends the agent
// the blobs the spec needs that it lacks.
func (r *run) uploadBlobs(ctx context.Context, stage, name string, inst *plan.Instance) (Agent, protocol.ApplySpec, error) {
	vm, ok := r.vm(inst.UUID)
	if !ok {
		return nil, protocol.ApplySpec{}, fmt.Errorf("%s: no VM", name)
	}
	a := r.agentFor(inst, vm)
	spec, blobs, err := r.applySpec(inst)
	if err != nil {
		return nil, spec, err
	}
	err = r.e.step(stage, name, "upload_blobs", func() error { _, err := a.EnsureBlobs(ctx, blobs); return err })
	return a, spec, err
}

func (r *run) applyAndStart(ctx context.Context, stage, name string, g *plan.Group, inst *plan.Instance, canary bool) error {
	a, spec, err := r.uploadBlobs(ctx, stage, name, inst)
	if err != nil {
		return err
	}
	if err := r.e.step(stage, name, "apply", func() error { return a.Apply(ctx, spec) }); err != nil {
		return err
	}
	if inst.Existing == nil || !inst.Existing.Stopped {
		if err := r.e.step(stage, name, "start", func() error { return r.e.startJobs(ctx, a, name, watchTime(g, canary)) }); err != nil {
			return err
		}
	}
	return r.saveInstance(ctx, inst, inst.Desired)
}

func (r *run) postDeploy(ctx context.Context) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, inst := range r.order {
		if inst.Action == plan.ActionDelete {
			continue
		}
		vm, ok := r.vm(inst.UUID)
		if !ok {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := r.agentFor(inst, vm).RunScript(ctx, "post-deploy", nil)
			if err != nil {
				r.e.emit("post-deploy", inst.Name(), "", "failed", time.Time{}, err, "")
			}
		}()
	}
	wg.Wait()
}

// compileAll compiles (or finds cached) every package the plan's changed
// instances need, per stemcell.
func (r *run) compileAll(ctx context.Context) error {
	r.pkgs = map[string]compile.Compiled{}
	byStemcell := map[string][]PackageRef{}
	scOf := map[string]state.Stemcell{}
	for _, g := range r.p.Groups {
		if g.Manifest == nil {
			continue
		}
		sc := r.prep.Stemcells[g.Manifest.Stemcell]
		key := sc.OS + "/" + sc.Version
		scOf[key] = sc
		byStemcell[key] = append(byStemcell[key], r.prep.Packages[g.Name]...)
	}
	keys := make([]string, 0, len(byStemcell))
	for k := range byStemcell {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sc := scOf[k]
		var pkgs []compile.Package
		seen := map[string]bool{}
		for _, pk := range byStemcell[k] {
			if seen[pk.Name] {
				continue
			}
			seen[pk.Name] = true
			if pk.Compiled != nil { // from a compiled release: recorded at upload, never compiled
				c, err := r.precompiled(ctx, pk)
				if err != nil {
					return err
				}
				r.pkgs[pk.Name] = c
				continue
			}
			rel := r.prep.Releases[pk.Release]
			pkgs = append(pkgs, compile.Package{Name: pk.Name, Version: pk.Version, Fingerprint: pk.Fingerprint, Dependencies: pk.Dependencies,
				Source: func() (string, error) { return r.packageSource(rel, pk.Name) }})
		}
		if len(pkgs) == 0 {
			continue
		}
		comp := &compile.Compiler{State: r.e.State, Blobs: r.e.Blobs, Workers: &compileWorkers{r: r, sc: sc}, N: 1,
			Progress: func(pkg, status string) { r.e.emit("compiling", pkg, "", "info", time.Time{}, nil, status) }}
		if cc := r.prep.Cloud.Compilation; cc != nil {
			comp.N, comp.Reuse = cc.Workers, cc.ReuseCompilationVMs
		}
		done, err := comp.Compile(ctx, pkgs, compile.Stemcell{OS: sc.OS, Version: sc.Version})
		if err != nil {
			return err
		}
		for n, c := range done {
			r.pkgs[n] = c
		}
	}
	return nil
}

// precompiled finds a compiled release's package in the compiled-package
// cache, where upload-release recorded it.
func (r *run) precompiled(ctx context.Context, pk PackageRef) (compile.Compiled, error) {
	sc, err := compile.SplitStemcell(pk.Compiled.Stemcell)
	if err != nil {
		return compile.Compiled{}, err
	}
	row, err := r.e.State.CompiledPackage(ctx, pk.Fingerprint, sc.OS, sc.Version, pk.DepKey)
	if err == nil && !r.e.Blobs.Has(row.BlobSHA256) {
		err = state.ErrNotFound
	}
	if err != nil {
		return compile.Compiled{}, fmt.Errorf("release %s: compiled package %s/%s for stemcell %s is not in the compiled-package cache: %w (upload the release again)",
			pk.Release, pk.Name, pk.Version, pk.Compiled.Stemcell, err)
	}
	r.e.emit("compiling", pk.Name, "", "info", time.Time{}, nil, "compiled release: "+pk.Compiled.Stemcell)
	return compile.Compiled{Name: pk.Name, Version: pk.Version, Fingerprint: pk.Fingerprint, SHA256: row.BlobSHA256}, nil
}

// packageSource puts a release package's source archive in the blobstore.
func (r *run) packageSource(rel *ReleaseInfo, name string) (string, error) {
	return PackageSource(r.e.Blobs, rel.Tarball.Path, name)
}

// saveSharedLinks records what the deployment's shared providers expose, for
// consumers in other deployments (an empty list when it shares nothing).
func saveSharedLinks(ctx context.Context, st state.Writer, dep string, links []*render.Link) error {
	if links == nil {
		links = []*render.Link{}
	}
	data, err := json.Marshal(links)
	if err != nil {
		return fmt.Errorf("recording the shared links of deployment '%s': %w", dep, err)
	}
	return st.SaveSharedLinks(ctx, dep, string(data))
}
