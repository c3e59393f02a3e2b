// Package instances implements `kpaas instances`: every instance of
// deployments with its process state from its agent, and optionally its
// processes (--ps), its recorded details (--details), or only the failing
// ones (--failing).
package instances

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/cmd/vms"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// DefaultAgentTimeout bounds how long kpaas waits for one agent's answer.
const DefaultAgentTimeout = 5 * time.Second

// Options of `kpaas instances`.
type Options struct {
	IO           *ui.IOStreams
	State        func(ctx context.Context) (state.Store, error)
	Now          func() time.Time
	Deployment   string
	Ps           bool
	Details      bool
	Failing      bool
	Vitals       bool
	AgentTimeout time.Duration
	JSON         bool
}

// NewCmdInstances builds `kpaas instances`. runF replaces the run function in tests.
func NewCmdInstances(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	cmd := &cobra.Command{
		Use:     "instances [--ps] [--details] [--failing]",
		Aliases: []string{"is"},
		Short:   "List instances with their process state",
		Long: `List every instance of -d DEPLOYMENT (or of every deployment), including those
without a VM, with its process state as its agent reports it ("unresponsive
agent" when it does not answer within --agent-timeout; "-" without a VM), AZ
and IPs. All agents are asked at once.

--ps adds a row per process (job/process and its state); --details adds the
desired state, VM CID, VM type, persistent disk CIDs, agent ID, index,
bootstrap and ignore flags; --vitals adds each VM's age, uptime, load, CPU,
memory, swap and disk use; --failing shows only instances (and with --ps,
processes) that are not running. --json always carries details and processes.`,
		Example: "  kpaas instances -d cf\n  kpaas instances -d cf --ps --failing\n  kpaas instances -d cf --vitals\n  kpaas instances --details --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.AgentTimeout <= 0 {
				return cmdutil.FlagErrorf("--agent-timeout must be positive, not %s", opts.AgentTimeout)
			}
			if runF != nil {
				return runF(opts)
			}
			return instancesRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&opts.Ps, "ps", "p", false, "Show each instance's processes")
	fl.BoolVarP(&opts.Details, "details", "i", false, "Show desired state, VM, disks, agent ID, index, bootstrap and ignore")
	fl.BoolVarP(&opts.Failing, "failing", "f", false, "Show only instances (and processes) that are not running")
	fl.BoolVar(&opts.Vitals, "vitals", false, "Show each VM's load, CPU, memory, swap and disk use")
	fl.DurationVar(&opts.AgentTimeout, "agent-timeout", DefaultAgentTimeout, "How long to wait for each agent's answer")
	return cmd
}

type instanceView struct {
	Deployment   string          `json:"deployment"`
	Instance     string          `json:"instance"`
	Group        string          `json:"group"`
	Index        int             `json:"index"`
	ID           string          `json:"id"`
	ProcessState string          `json:"process_state"`
	AZ           string          `json:"az"`
	IPs          []string        `json:"ips"`
	DesiredState string          `json:"desired_state"`
	VMCID        string          `json:"vm_cid"`
	VMType       string          `json:"vm_type"`
	DiskCIDs     []string        `json:"disk_cids"`
	AgentID      string          `json:"agent_id"`
	Bootstrap    bool            `json:"bootstrap"`
	Ignore       bool            `json:"ignore"`
	AgentError   string          `json:"agent_error,omitempty"`
	Processes    []processView   `json:"processes"`
	VMCreatedAt  *time.Time      `json:"vm_created_at"`
	Vitals       *vms.VitalsView `json:"vitals,omitempty"`
}

type processView struct {
	Name       string  `json:"name"`
	Job        string  `json:"job"`
	State      string  `json:"state"`
	PID        int     `json:"pid"`
	Restarts   int     `json:"restarts"`
	Reloads    int     `json:"reloads"`
	UptimeSecs int64   `json:"uptime_secs"`
	CPUTotal   float64 `json:"cpu_total_percent"`
	MemKB      int64   `json:"mem_kb"`
	Error      string  `json:"error,omitempty"`
}

func newProcess(p protocol.Process) processView {
	return processView{Name: p.Name, Job: p.Job, State: p.State, PID: p.PID, Restarts: p.Restarts, Reloads: p.Reloads, UptimeSecs: p.Uptime.Secs,
		CPUTotal: p.CPU.Total, MemKB: p.Mem.KB, Error: p.Error}
}

func instancesRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	names, err := cmdutil.DeploymentNames(ctx, s, opts.Deployment)
	if err != nil {
		return err
	}
	key, err := cmdutil.OptionalClientKey(ctx, s)
	if err != nil {
		return err
	}
	pool := agentclient.NewPool(agentclient.Options{DialTimeout: opts.AgentTimeout})
	defer pool.Close()
	views := []instanceView{}
	for _, name := range names {
		ds, err := cmdutil.LoadDeployment(ctx, s, s.Location(), name)
		if err != nil {
			return err
		}
		for _, o := range cmdutil.ObserveDeployment(ctx, ds, cmdutil.ObserveOptions{Probe: true, Full: opts.Vitals, Timeout: opts.AgentTimeout, Key: key, Pool: pool}) {
			v := instanceView{Deployment: name, Instance: o.Instance.ID(), Group: o.Instance.Group, Index: o.Instance.Index, ID: o.Instance.UUID,
				ProcessState: o.ProcessState(), AZ: o.Instance.AZ, IPs: o.IPs(), DesiredState: string(o.Instance.DesiredState),
				VMType: o.Spec.VMType, DiskCIDs: []string{}, Bootstrap: o.Instance.Bootstrap, Ignore: o.Instance.Ignore, Processes: []processView{}}
			if o.VM != nil {
				v.VMCID, v.AgentID = o.VM.CID, o.VM.AgentID
				at := o.VM.CreatedAt.UTC()
				v.VMCreatedAt = &at
			}
			if opts.Vitals && o.State != nil {
				v.Vitals = vms.NewVitals(o.State.Vitals)
			}
			for _, d := range o.Disks {
				v.DiskCIDs = append(v.DiskCIDs, d.CID)
			}
			if o.AgentErr != nil {
				v.AgentError = o.AgentErr.Error()
			}
			if o.State != nil {
				for _, p := range o.State.Processes {
					v.Processes = append(v.Processes, newProcess(p))
				}
				sort.SliceStable(v.Processes, func(i, j int) bool {
					a, b := v.Processes[i], v.Processes[j]
					return a.Job < b.Job || a.Job == b.Job && a.Name < b.Name
				})
			}
			if opts.Failing && v.ProcessState == protocol.JobRunning {
				continue
			}
			views = append(views, v)
		}
	}
	if ctx.Err() != nil {
		return cmdutil.ErrCancelled
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		if opts.Failing {
			fmt.Fprintln(opts.IO.ErrOut, "No failing instances.")
		} else {
			fmt.Fprintln(opts.IO.ErrOut, "No instances.")
		}
		return nil
	}
	if err := render(opts, views); err != nil {
		return err
	}
	for _, v := range views {
		if v.AgentError != "" {
			fmt.Fprintf(opts.IO.ErrOut, "%s/%s: %s\n", v.Deployment, v.Instance, v.AgentError)
		}
	}
	return nil
}

func render(opts *Options, views []instanceView) error {
	all := opts.Deployment == ""
	headers := []string{"instance"}
	if opts.Ps {
		headers = append(headers, "process")
	}
	headers = append(headers, "process state", "az", "ips")
	if opts.Details {
		headers = append(headers, "state", "vm cid", "vm type", "disk cids", "agent id", "index", "bootstrap", "ignore")
	}
	if opts.Vitals {
		headers = append(append(headers, "vm created at"), vms.VitalsHeaders...)
	}
	now := opts.Now()
	if all {
		headers = append([]string{"deployment"}, headers...)
	}
	t := ui.NewTable(opts.IO, headers...)
	for _, v := range views {
		row := []string{v.Instance}
		if opts.Ps {
			row = append(row, "")
		}
		row = append(row, v.ProcessState, dash(v.AZ), dash(strings.Join(v.IPs, ", ")))
		if opts.Details {
			row = append(row, v.DesiredState, dash(v.VMCID), dash(v.VMType), dash(strings.Join(v.DiskCIDs, ", ")), dash(v.AgentID),
				strconv.Itoa(v.Index), yesNo(v.Bootstrap), yesNo(v.Ignore))
		}
		if opts.Vitals {
			var at time.Time
			if v.VMCreatedAt != nil {
				at = *v.VMCreatedAt
			}
			row = append(append(row, opts.IO.Time(at, now)), vms.VitalsCells(v.Vitals)...)
		}
		if all {
			row = append([]string{v.Deployment}, row...)
		}
		t.AddRow(row...)
		if !opts.Ps {
			continue
		}
		for _, p := range v.Processes {
			if opts.Failing && p.State == protocol.JobRunning {
				continue
			}
			prow := []string{"", p.Job + "/" + p.Name, p.State, "", ""}
			if opts.Details {
				prow = append(prow, "", "", "", "", "", "", "", "")
			}
			if opts.Vitals {
				prow = append(prow, make([]string, 1+len(vms.VitalsHeaders))...)
			}
			if all {
				prow = append([]string{""}, prow...)
			}
			t.AddRow(prow...)
		}
	}
	return t.Render()
}

func yesNo(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
