package converge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/cmd/deploy"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	conv "github.com/kpaas/kpaas/pkg/converge"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Problem types, as BOSH's cloud check names them.
const (
	MissingVM         = "missing_vm"
	UnresponsiveAgent = "unresponsive_agent"
	MissingDisk       = "missing_disk"
	InactiveDisk      = "inactive_disk"
	MountInfoMismatch = "mount_info_mismatch"
)

// Resolutions.
const (
	Ignore              = "ignore"
	RecreateVM          = "recreate_vm"
	RebootVM            = "reboot_vm"
	DeleteVMReference   = "delete_vm_reference"
	DeleteDiskReference = "delete_disk_reference"
	ActivateDisk        = "activate_disk"
	ReattachDisk        = "reattach_disk"
)

// resolutions per problem type; the first is the --auto choice.
var resolutions = map[string][]string{
	MissingVM:         {RecreateVM, Ignore, DeleteVMReference},
	UnresponsiveAgent: {RecreateVM, RebootVM, Ignore, DeleteVMReference},
	MissingDisk:       {Ignore, DeleteDiskReference},
	InactiveDisk:      {Ignore, ActivateDisk, DeleteDiskReference},
	MountInfoMismatch: {Ignore, ReattachDisk},
}

var resolutionText = map[string]string{
	Ignore:              "Skip for now",
	RecreateVM:          "Recreate VM (same IPs, persistent disk reattached) and wait for its jobs",
	RebootVM:            "Reboot VM (same VM and disks; its agent mounts the disk and restarts the jobs)",
	DeleteVMReference:   "Delete VM reference (forget the VM; the next deploy or cck creates one)",
	DeleteDiskReference: "Delete disk reference (DANGEROUS: the instance loses its persistent disk)",
	ActivateDisk:        "Activate disk",
	ReattachDisk:        "Reattach disk (recreates the VM with the disk attached)",
}

// Problem is one thing cck found.
type Problem struct {
	ID          int      `json:"id"`
	Type        string   `json:"type"`
	Instance    string   `json:"instance"` // group/index
	InstanceID  string   `json:"instance_id"`
	Group       string   `json:"-"`
	VMCID       string   `json:"vm_cid,omitempty"`
	DiskCID     string   `json:"disk_cid,omitempty"`
	Description string   `json:"description"`
	Resolutions []string `json:"resolutions"`
	Resolution  string   `json:"resolution,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// CCKOptions of `kpaas cck`.
type CCKOptions struct {
	IO             *ui.IOStreams
	Factory        *cmdutil.Factory
	Deployment     string
	JSON           bool
	Auto           bool
	Report         bool
	Resolutions    []string
	NonInteractive bool
}

// NewCmdCCK builds `kpaas cck` (cloud-check).
func NewCmdCCK(f *cmdutil.Factory, runF func(*CCKOptions) error) *cobra.Command {
	opts := &CCKOptions{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:     "cck -d DEP [--auto | --resolution NAME... | --report]",
		Aliases: []string{"cloud-check"},
		Short:   "Scan a deployment for cloud problems and resolve them (BOSH cloud check)",
		Long: `Scan the deployment as BOSH's cloud check does and list the problems:
  missing_vm           the state has a VM the CPI does not (or an instance has none)
  unresponsive_agent   the VM exists but its agent does not answer
  missing_disk         the CPI does not have a persistent disk the state has
  inactive_disk        a persistent disk is recorded as inactive
  mount_info_mismatch  the agent has not mounted the disk the state says it has

Then resolve each: interactively (a numbered choice per problem), with --auto (recreate
missing VMs and, unlike BOSH, unresponsive agents; ignore the rest), or with
--resolution NAME (repeatable: every problem that offers NAME gets it, others are
ignored). --report only lists them and exits 1 when there are any.
Resolutions: ignore, recreate_vm, reboot_vm, delete_vm_reference, delete_disk_reference,
activate_disk, reattach_disk.`,
		Example: `  kpaas cck -d hello
  kpaas cck -d hello --report --json
  kpaas cck -d hello --auto
  kpaas cck -d hello --resolution recreate_vm --resolution activate_disk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON, opts.NonInteractive = f.Globals.Deployment, f.Globals.JSON, f.Globals.NonInteractive
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("name the deployment with -d NAME")
			}
			n := 0
			for _, b := range []bool{opts.Auto, opts.Report, len(opts.Resolutions) > 0} {
				if b {
					n++
				}
			}
			if n > 1 {
				return cmdutil.FlagErrorf("--auto, --resolution and --report exclude each other")
			}
			for _, r := range opts.Resolutions {
				if _, ok := resolutionText[r]; !ok {
					return cmdutil.FlagErrorf("--resolution %q: want one of ignore, recreate_vm, reboot_vm, delete_vm_reference, delete_disk_reference, activate_disk, reattach_disk", r)
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return cckRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&opts.Auto, "auto", "a", false, "Resolve every problem with its default (recreate missing VMs and unresponsive agents)")
	fl.BoolVarP(&opts.Report, "report", "r", false, "Only report the problems (exit 1 when there are any)")
	fl.StringArrayVar(&opts.Resolutions, "resolution", nil, "Resolve the problems that offer `NAME` with it (repeatable)")
	return cmd
}

// caller is the part of the agent client cck uses.
type caller interface {
	Call(ctx context.Context, method string, req, resp any) error
}

// Scan finds the deployment's problems.
func Scan(ctx context.Context, env *deploy.Env, dep string) ([]Problem, error) {
	ds, err := env.Store.LoadDeployment(ctx, dep)
	if err != nil {
		return nil, err
	}
	dial, err := agentDialer(ctx, env)
	if err != nil {
		return nil, err
	}
	cpiFor, err := cpisOf(ctx, env, dep)
	if err != nil {
		return nil, err
	}
	vms, disks := ds.VMsByInstance(), ds.DisksByInstance()
	var out []Problem
	add := func(p Problem) {
		p.ID = len(out) + 1
		p.Resolutions = resolutions[p.Type]
		out = append(out, p)
	}
	for _, i := range ds.Instances {
		c, err := cpiFor(i.AZ)
		if err != nil {
			return nil, err
		}
		base := Problem{Instance: i.Name(), InstanceID: i.UUID, Group: i.Group}
		v := vms[i.UUID]
		mounted := map[string]bool{}
		agentOK := false
		switch {
		case len(v) == 0 || !v[0].Active:
			if i.DesiredState == state.Started && len(i.Spec) > 0 {
				p := base
				p.Type, p.Description = MissingVM, fmt.Sprintf("Instance %s (%s) has no VM", i.Name(), i.UUID)
				add(p)
			}
		default:
			vm := v[0]
			p := base
			p.VMCID = vm.CID
			ok, herr := c.HasVM(ctx, cpi.VMCID(vm.CID))
			if herr == nil && !ok {
				p.Type, p.Description = MissingVM, fmt.Sprintf("VM %s of %s is missing", vm.CID, i.Name())
				add(p)
				continue
			}
			if len(vm.IPs) == 0 {
				break
			}
			a := dial(i.Name(), vm)
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := a.Ping(pctx)
			if err == nil {
				if cl, ok := a.(caller); ok {
					var r protocol.ListDiskResponse
					if cl.Call(pctx, protocol.MethodListDisk, nil, &r) == nil {
						for _, d := range r.CIDs {
							mounted[d] = true
						}
						agentOK = true
						// The agent may still see a disk the cloud has detached
						// behind kpaas's back: count as mounted only what the
						// CPI also has attached to this VM (BOSH's mount info
						// mismatch compares both sides too).
						if attached, gerr := c.GetDisks(pctx, cpi.VMCID(vm.CID)); gerr == nil {
							for d := range mounted {
								if !slices.Contains(attached, cpi.DiskCID(d)) {
									delete(mounted, d)
								}
							}
						}
					}
				}
			}
			cancel()
			if err != nil {
				p.Type, p.Description = UnresponsiveAgent, fmt.Sprintf("VM %s of %s is not responding: %v", vm.CID, i.Name(), err)
				add(p)
			}
		}
		for _, d := range disks[i.UUID] {
			p := base
			p.DiskCID = d.CID
			if ok, herr := c.HasDisk(ctx, cpi.DiskCID(d.CID)); herr == nil && !ok {
				p.Type, p.Description = MissingDisk, fmt.Sprintf("Disk %s (%s, %d MiB) is missing", d.CID, i.Name(), d.SizeMB)
				add(p)
				continue
			}
			if !d.Active {
				p.Type, p.Description = InactiveDisk, fmt.Sprintf("Disk %s (%s, %d MiB) is inactive", d.CID, i.Name(), d.SizeMB)
				add(p)
				continue
			}
			if agentOK && !mounted[d.CID] {
				p.Type, p.Description = MountInfoMismatch, fmt.Sprintf("Disk %s (%s) is not mounted by the agent", d.CID, i.Name())
				if len(v) > 0 {
					p.VMCID = v[0].CID
				}
				add(p)
			}
		}
	}
	return out, nil
}

type cckView struct {
	Deployment string    `json:"deployment"`
	Problems   []Problem `json:"problems"`
	Resolved   bool      `json:"resolved"`
}

func cckRun(ctx context.Context, opts *CCKOptions) error {
	env, err := deploy.OpenEnv(ctx, opts.Factory)
	if err != nil {
		return err
	}
	defer env.Close()
	if _, err := env.Store.Deployment(ctx, opts.Deployment); err != nil {
		return fmt.Errorf("deployment %s: %w (see `kpaas deployments`)", opts.Deployment, err)
	}
	lock, err := env.Lock(ctx, opts.Deployment, "cck")
	if err != nil {
		return err
	}
	defer lock.Release(context.Background())
	w := opts.IO.ErrOut
	if !opts.JSON {
		fmt.Fprintf(w, "Scanning deployment %s...\n", opts.Deployment)
	}
	probs, err := Scan(ctx, env, opts.Deployment)
	if err != nil {
		return err
	}
	view := cckView{Deployment: opts.Deployment, Problems: probs}
	if view.Problems == nil {
		view.Problems = []Problem{}
	}
	if !opts.JSON {
		counts := map[string]int{}
		for _, p := range probs {
			counts[p.Type]++
		}
		fmt.Fprintf(w, "VMs: %d missing, %d unresponsive\nDisks: %d missing, %d inactive, %d mount-info mismatch\n",
			counts[MissingVM], counts[UnresponsiveAgent], counts[MissingDisk], counts[InactiveDisk], counts[MountInfoMismatch])
		for _, p := range probs {
			fmt.Fprintf(opts.IO.Out, "%d  %-20s %s\n", p.ID, p.Type, p.Description)
		}
	}
	if len(probs) == 0 {
		if opts.JSON {
			return ui.WriteJSON(opts.IO.Out, view)
		}
		fmt.Fprintln(w, "No problems found.")
		return nil
	}
	if opts.Report {
		if opts.JSON {
			if err := ui.WriteJSON(opts.IO.Out, view); err != nil {
				return err
			}
		}
		return fmt.Errorf("%d problem(s) in deployment %s: resolve them with `kpaas cck -d %s` (interactive) or --auto", len(probs), opts.Deployment, opts.Deployment)
	}
	// Choose.
	var in *bufio.Reader
	for i := range probs {
		p := &probs[i]
		switch {
		case opts.Auto:
			p.Resolution = p.Resolutions[0]
		case len(opts.Resolutions) > 0:
			p.Resolution = Ignore
			for _, r := range opts.Resolutions {
				if slices.Contains(p.Resolutions, r) {
					p.Resolution = r
					break
				}
			}
		default:
			if opts.NonInteractive || !opts.IO.CanPrompt() {
				return cmdutil.FlagErrorf("cck needs a terminal to ask; use --auto, --resolution NAME or --report")
			}
			if in == nil {
				in = bufio.NewReader(opts.IO.In)
			}
			fmt.Fprintf(w, "\nProblem %d: %s\n", p.ID, p.Description)
			for j, r := range p.Resolutions {
				fmt.Fprintf(w, "  %d. %s\n", j+1, resolutionText[r])
			}
			for p.Resolution == "" {
				fmt.Fprintf(w, "Choose [1-%d] (1): ", len(p.Resolutions))
				line, rerr := in.ReadString('\n')
				line = strings.TrimSpace(line)
				n := 1
				if line != "" {
					n, _ = strconv.Atoi(line)
				}
				if n >= 1 && n <= len(p.Resolutions) {
					p.Resolution = p.Resolutions[n-1]
				} else if rerr != nil {
					return cmdutil.ErrCancelled
				}
			}
		}
	}
	err = resolve(ctx, env, opts, probs)
	view.Problems, view.Resolved = probs, err == nil
	if opts.JSON {
		if werr := ui.WriteJSON(opts.IO.Out, view); werr != nil {
			return werr
		}
	} else {
		for _, p := range probs {
			line := fmt.Sprintf("  %-22s %s %s", p.Resolution, p.Type, p.Instance)
			if p.Error != "" {
				line += ": " + p.Error
			}
			fmt.Fprintln(w, line)
		}
	}
	return err
}

func resolve(ctx context.Context, env *deploy.Env, opts *CCKOptions, probs []Problem) error {
	var fixes []conv.Fix
	var errs []error
	seen := map[string]bool{}
	ev := func(p *Problem, err error) {
		e := state.Event{Time: time.Now(), Action: "cck-" + p.Resolution, ObjectType: "instance", ObjectName: p.Group + "/" + p.InstanceID, Deployment: opts.Deployment, Instance: p.Instance}
		if err != nil {
			e.Error, p.Error = err.Error(), err.Error()
			errs = append(errs, fmt.Errorf("%s %s: %w", p.Resolution, p.Instance, err))
		}
		_, _ = env.Store.AppendEvents(context.WithoutCancel(ctx), e)
	}
	for i := range probs {
		p := &probs[i]
		switch p.Resolution {
		case RecreateVM, ReattachDisk:
			if !seen[p.InstanceID] {
				seen[p.InstanceID] = true
				fixes = append(fixes, conv.Fix{UUID: p.InstanceID, Name: p.Instance, Group: p.Group, Action: conv.ActionRecreate, Reasons: []string{p.Type + " (cck)"},
					AgentDead: p.Type == MissingVM || p.Type == UnresponsiveAgent})
			}
		case RebootVM:
			ev(p, reboot(ctx, env, opts, p))
		case DeleteVMReference:
			ev(p, env.Store.DeleteVM(ctx, p.VMCID))
		case DeleteDiskReference:
			ev(p, env.Store.DeleteDisk(ctx, p.DiskCID))
		case ActivateDisk:
			ds, err := env.Store.LoadDeployment(ctx, opts.Deployment)
			if err == nil {
				err = errors.New("disk not found in the state")
				for _, d := range ds.Disks {
					if d.CID == p.DiskCID {
						d.Active = true
						err = env.Store.SaveDisk(ctx, d)
					}
				}
			}
			ev(p, err)
		}
	}
	if len(fixes) > 0 {
		r := &remediator{env: env, sink: ui.ProgressSinkFor(opts.IO, opts.JSON)}
		err := r.Remediate(ctx, opts.Deployment, fixes)
		for i := range probs {
			if p := &probs[i]; p.Resolution == RecreateVM || p.Resolution == ReattachDisk {
				ev(p, err)
			}
		}
	}
	return errors.Join(errs...)
}

// cpisOf finds the CPI of an AZ of deployment dep (the cloud-config's cpi).
func cpisOf(ctx context.Context, env *deploy.Env, dep string) (func(az string) (cpi.CPI, error), error) {
	set, err := env.CPIs(ctx)
	if err != nil {
		return nil, err
	}
	cc, _ := cloudOf(ctx, env.Store, dep)
	return func(az string) (cpi.CPI, error) {
		name := ""
		if cc != nil && az != "" {
			if z := cc.AZ(az); z != nil {
				name = z.CPI
			}
		}
		c, _, err := set.ForAZ(az, name)
		return c, err
	}, nil
}

// agentDialer talks to a VM's agent (its first IP, pinned host key) with
// kpaas's client key.
func agentDialer(ctx context.Context, env *deploy.Env) (func(name string, vm state.VM) engine.Agent, error) {
	key, err := engine.ClientKey(ctx, env.Store)
	if err != nil {
		return nil, err
	}
	eng, err := env.Engine(ctx, nil, nil)
	if err != nil {
		return nil, err
	}
	return func(name string, vm state.VM) engine.Agent {
		return eng.Dial(agentclient.Target{Name: name, Address: net.JoinHostPort(vm.IPs[0], "6868"), HostKey: vm.SSHHostKey, Signer: key.Signer})
	}, nil
}

// rebootAgentTimeout bounds the wait for a rebooted VM's agent.
var rebootAgentTimeout = 5 * time.Minute

// reboot reboots the problem's VM through its CPI (reboot_vm) and waits until
// its agent answers again with its jobs running: the same VM and disks, no
// new IPs (BOSH cck's "Reboot VM").
func reboot(ctx context.Context, env *deploy.Env, opts *CCKOptions, p *Problem) error {
	ds, err := env.Store.LoadDeployment(ctx, opts.Deployment)
	if err != nil {
		return err
	}
	var inst *state.Instance
	for k := range ds.Instances {
		if ds.Instances[k].UUID == p.InstanceID {
			inst = &ds.Instances[k]
		}
	}
	vms := ds.VMsByInstance()[p.InstanceID]
	if inst == nil || len(vms) == 0 || len(vms[0].IPs) == 0 {
		return fmt.Errorf("%s has no VM with an address in the state: recreate it instead", p.Instance)
	}
	vm := vms[0]
	cpiFor, err := cpisOf(ctx, env, opts.Deployment)
	if err != nil {
		return err
	}
	c, err := cpiFor(inst.AZ)
	if err != nil {
		return err
	}
	w := opts.IO.ErrOut
	if !opts.JSON {
		fmt.Fprintf(w, "Rebooting VM %s of %s...\n", vm.CID, p.Instance)
	}
	start := time.Now()
	if err := c.RebootVM(ctx, cpi.VMCID(vm.CID)); err != nil {
		return fmt.Errorf("reboot_vm %s: %w", vm.CID, err)
	}
	dial, err := agentDialer(ctx, env)
	if err != nil {
		return err
	}
	a := dial(p.Instance, vm)
	deadline := time.Now().Add(rebootAgentTimeout)
	var last error
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := a.GetState(pctx, false)
		cancel()
		switch {
		case err != nil:
			last = err
		case st.JobState == "running":
			if !opts.JSON {
				fmt.Fprintf(w, "%s is back, jobs running, %s after the reboot.\n", p.Instance, time.Since(start).Round(100*time.Millisecond))
			}
			return nil
		default:
			last = fmt.Errorf("jobs are %s", st.JobState)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come back within %s of the reboot (%v): try `kpaas cck -d %s --resolution recreate_vm`", p.Instance, rebootAgentTimeout, last, opts.Deployment)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
