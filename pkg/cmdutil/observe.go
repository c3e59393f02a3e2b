package cmdutil

import (
	"context"
	"sort"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/state"
)

// Unresponsive is the process state of an instance whose agent did not answer.
const Unresponsive = "unresponsive agent"

// Observed is one instance as recorded in the state and, when its agent
// answered, as the agent sees it.
type Observed struct {
	Instance state.Instance
	VM       *state.VM // the active VM; nil when the instance has none
	Disks    []state.Disk
	Spec     InstanceSpec
	State    *protocol.State // nil when not asked or the agent did not answer
	AgentErr error           // why the agent did not answer
}

// ProcessState is BOSH's process state column: the agent's job_state, or
// "unresponsive agent", or "-" for an instance without a VM.
func (o Observed) ProcessState() string {
	switch {
	case o.VM == nil:
		return "-"
	case o.AgentErr != nil || o.State == nil:
		return Unresponsive
	case o.State.JobState == "":
		return "unknown"
	default:
		return o.State.JobState
	}
}

// IPs are the instance's IPs on all its networks (by network name), else the VM's.
func (o Observed) IPs() []string {
	names := make([]string, 0, len(o.Spec.Networks))
	for n := range o.Spec.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	var ips []string
	for _, n := range names {
		if ip := o.Spec.Networks[n].IP; ip != "" {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 && o.VM != nil {
		ips = append(ips, o.VM.IPs...)
	}
	if ips == nil {
		ips = []string{}
	}
	return ips
}

// ObserveOptions say whether and how to ask the agents.
type ObserveOptions struct {
	Probe   bool // ask each agent for get_state
	Full    bool // with vitals
	Timeout time.Duration
	Key     *agentclient.Key // kpaas's client key; nil: every agent counts as unresponsive
	Pool    *agentclient.Pool
}

// ObserveDeployment lists a deployment's instances ordered by group and
// index, asking their agents for their state in parallel when o.Probe.
func ObserveDeployment(ctx context.Context, ds *state.DeploymentState, o ObserveOptions) []Observed {
	disks := ds.DisksByInstance()
	out := make([]Observed, 0, len(ds.Instances))
	for _, inst := range ds.Instances {
		ob := Observed{Instance: inst, Spec: ParseInstanceSpec(inst.Spec), Disks: disks[inst.UUID]}
		if vm, ok := ActiveVM(ds, inst.UUID); ok {
			ob.VM = &vm
		}
		out = append(out, ob)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Instance, out[j].Instance
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Index < b.Index
	})
	if !o.Probe {
		return out
	}
	var targets []agentclient.Target
	var which []int
	for i, ob := range out {
		if ob.VM == nil {
			continue
		}
		if o.Key == nil {
			out[i].AgentErr = ErrNoClientKey
			continue
		}
		addr := VMAddress(ob.Instance, *ob.VM)
		targets = append(targets, agentclient.Target{Name: ob.Instance.ID(), Group: ob.Instance.Group, ID: ob.Instance.UUID,
			Index: ob.Instance.Index, Address: addr, HostKey: ob.VM.SSHHostKey, Signer: o.Key.Signer})
		which = append(which, i)
	}
	for k, st := range ProbeAgents(ctx, o.Pool, targets, o.Full, o.Timeout) {
		out[which[k]].State, out[which[k]].AgentErr = st.State, st.Err
	}
	return out
}
