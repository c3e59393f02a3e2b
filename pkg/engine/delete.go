package engine

import (
	"context"
	"errors"
	"sync"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/plan"
	"github.com/kpaas/kpaas/pkg/state"
)

// DeleteDeployment stops and deletes every VM of a deployment, orphans its
// disks, releases its IPs and forgets it. With force, errors on one instance
// do not stop the others (and the deployment is forgotten anyway).
func (e *Engine) DeleteDeployment(ctx context.Context, ds *state.DeploymentState, force bool) error {
	existing, err := ExistingFromState(ds)
	if err != nil && !force {
		return err
	}
	p := &plan.Plan{Deployment: ds.Deployment.Name}
	g := &plan.Group{Name: "all"}
	for k := range existing {
		ex := &existing[k]
		g.Instances = append(g.Instances, &plan.Instance{Group: ex.Group, Index: ex.Index, UUID: ex.UUID, AZ: ex.AZ, Existing: ex, Action: plan.ActionDelete})
	}
	p.Groups = []*plan.Group{g}
	r := &run{e: e, p: p, prep: &Prepared{Plan: p}, vms: map[string]state.VM{}, disks: map[string]state.Disk{}, results: map[string]*Result{}}
	var orphanVMs []state.VM
	for _, v := range ds.VMs {
		if v.Instance == "" || !v.Active {
			orphanVMs = append(orphanVMs, v) // compile VMs, or old VMs of a swap, left by an interrupted deploy
		} else if v.Active {
			r.vms[v.Instance] = v
		}
	}
	for _, d := range ds.Disks {
		if d.Active {
			r.disks[d.Instance] = d
		}
	}
	for _, inst := range g.Instances {
		r.order = append(r.order, inst)
		r.results[inst.UUID] = &Result{Instance: inst.Name(), ID: inst.UUID, Action: inst.Action, Status: "untouched"}
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, inst := range g.Instances {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := r.deleteInstance(context.WithoutCancel(ctx), "deleting", inst.Name(), inst, force)
			if err != nil {
				r.setResult(inst, "failed", err)
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			r.setResult(inst, "done", nil)
		}()
	}
	wg.Wait()
	for _, v := range orphanVMs {
		if c, _, err := e.CPIs(""); err == nil {
			if err := c.DeleteVM(ctx, cpi.VMCID(v.CID)); err != nil && !errors.Is(err, cpi.ErrVMNotFound) && !force {
				errs = append(errs, err)
				continue
			}
		}
		_ = e.State.DeleteVM(ctx, v.CID)
	}
	if len(errs) > 0 && !force {
		return r.fail(errors.Join(errs...))
	}
	// Whatever IPs are left (compile VMs) go with the deployment.
	for _, ip := range ds.IPs {
		_ = e.State.ReleaseIP(ctx, ip.Network, ip.IP)
	}
	if err := e.State.DeleteDeployment(ctx, ds.Deployment.Name); err != nil {
		return err
	}
	_, _ = e.State.AppendEvents(ctx, state.Event{Time: e.now(), Action: "delete", ObjectType: "deployment", ObjectName: ds.Deployment.Name, Deployment: ds.Deployment.Name})
	return nil
}
