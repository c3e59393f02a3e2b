// Package vms implements `kpaas vms`: each instance's VM as recorded in the
// state, with the process state its agent reports (asked over SSH in
// parallel, with a short timeout) and, with --vitals, its load, CPU, memory,
// swap and disk use.
package vms

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// DefaultAgentTimeout bounds how long kpaas waits for one agent's answer.
const DefaultAgentTimeout = 5 * time.Second

// Options of `kpaas vms`.
type Options struct {
	IO           *ui.IOStreams
	State        func(ctx context.Context) (state.Store, error)
	Now          func() time.Time
	Deployment   string
	Vitals       bool
	AgentTimeout time.Duration
	JSON         bool
}

// NewCmdVMs builds `kpaas vms`. runF replaces the run function in tests.
func NewCmdVMs(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "vms [--vitals]",
		Short: "List the VMs of deployments with their agents' process state",
		Long: `List the VM of every instance of -d DEPLOYMENT (or of every deployment): its
process state as the agent reports it (running, starting, failing, stopped;
"unresponsive agent" when the agent does not answer within --agent-timeout),
AZ, IPs, VM CID and VM type. All agents are asked at once.

With --vitals, add the VM's age, uptime, load, CPU, memory, swap and the use of
its system, ephemeral and persistent disks (inodes in brackets).`,
		Example: "  kpaas vms -d cf\n  kpaas vms --vitals\n  kpaas vms -d cf --json | jq -r '.[] | select(.process_state != \"running\") | .instance'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.AgentTimeout <= 0 {
				return cmdutil.FlagErrorf("--agent-timeout must be positive, not %s", opts.AgentTimeout)
			}
			if runF != nil {
				return runF(opts)
			}
			return vmsRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Vitals, "vitals", false, "Show load, CPU, memory, swap and disk use")
	cmd.Flags().DurationVar(&opts.AgentTimeout, "agent-timeout", DefaultAgentTimeout, "How long to wait for each agent's answer")
	return cmd
}

type vmView struct {
	Deployment   string      `json:"deployment"`
	Instance     string      `json:"instance"`
	Group        string      `json:"group"`
	Index        int         `json:"index"`
	ID           string      `json:"id"`
	ProcessState string      `json:"process_state"`
	AZ           string      `json:"az"`
	IPs          []string    `json:"ips"`
	VMCID        string      `json:"vm_cid"`
	VMType       string      `json:"vm_type"`
	AgentID      string      `json:"agent_id"`
	VMCreatedAt  time.Time   `json:"vm_created_at"`
	AgentError   string      `json:"agent_error,omitempty"`
	Vitals       *VitalsView `json:"vitals,omitempty"`
}

// VitalsView is a VM's vitals as numbers (the --json contract of vms and instances --vitals).
type VitalsView struct {
	UptimeSecs  int64                     `json:"uptime_secs"`
	Load        []float64                 `json:"load"`
	CPUUser     float64                   `json:"cpu_user_percent"`
	CPUSys      float64                   `json:"cpu_sys_percent"`
	CPUWait     float64                   `json:"cpu_wait_percent"`
	MemPercent  float64                   `json:"mem_percent"`
	MemKB       int64                     `json:"mem_kb"`
	SwapPercent float64                   `json:"swap_percent"`
	SwapKB      int64                     `json:"swap_kb"`
	Disks       map[string]DiskVitalsView `json:"disks"`
}

// DiskVitalsView is one disk's use in percent.
type DiskVitalsView struct {
	Percent      float64 `json:"percent"`
	InodePercent float64 `json:"inode_percent"`
}

func num(s string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f
}

// NewVitals turns the agent's vitals (strings, as BOSH's agent sends them) into numbers.
func NewVitals(v *protocol.Vitals) *VitalsView {
	if v == nil {
		return nil
	}
	out := &VitalsView{UptimeSecs: v.Uptime.Secs, Load: []float64{}, CPUUser: num(v.CPU.User), CPUSys: num(v.CPU.Sys), CPUWait: num(v.CPU.Wait),
		MemPercent: num(v.Mem.Percent), MemKB: int64(num(v.Mem.KB)), SwapPercent: num(v.Swap.Percent), SwapKB: int64(num(v.Swap.KB)),
		Disks: map[string]DiskVitalsView{}}
	for _, l := range v.Load {
		out.Load = append(out.Load, num(l))
	}
	for name, d := range v.Disk {
		out.Disks[name] = DiskVitalsView{Percent: num(d.Percent), InodePercent: num(d.InodePercent)}
	}
	return out
}

func vmsRun(ctx context.Context, opts *Options) error {
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
	views := []vmView{}
	for _, name := range names {
		ds, err := cmdutil.LoadDeployment(ctx, s, s.Location(), name)
		if err != nil {
			return err
		}
		obs := cmdutil.ObserveDeployment(ctx, ds, cmdutil.ObserveOptions{Probe: true, Full: opts.Vitals, Timeout: opts.AgentTimeout, Key: key, Pool: pool})
		for _, o := range obs {
			if o.VM == nil {
				continue
			}
			v := vmView{Deployment: name, Instance: o.Instance.ID(), Group: o.Instance.Group, Index: o.Instance.Index, ID: o.Instance.UUID,
				ProcessState: o.ProcessState(), AZ: o.Instance.AZ, IPs: o.IPs(), VMCID: o.VM.CID, VMType: o.Spec.VMType, AgentID: o.VM.AgentID,
				VMCreatedAt: o.VM.CreatedAt.UTC()}
			if o.AgentErr != nil {
				v.AgentError = o.AgentErr.Error()
			}
			if opts.Vitals && o.State != nil {
				v.Vitals = NewVitals(o.State.Vitals)
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
		fmt.Fprintln(opts.IO.ErrOut, "No VMs.")
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

func render(opts *Options, views []vmView) error {
	headers := []string{"instance", "process state", "az", "ips", "vm cid", "vm type"}
	if opts.Deployment == "" {
		headers = append([]string{"deployment"}, headers...)
	}
	if opts.Vitals {
		headers = append(append(headers, "vm created at"), VitalsHeaders...)
	}
	now := opts.Now()
	t := ui.NewTable(opts.IO, headers...)
	for _, v := range views {
		row := []string{v.Instance, v.ProcessState, dash(v.AZ), dash(strings.Join(v.IPs, ", ")), v.VMCID, dash(v.VMType)}
		if opts.Deployment == "" {
			row = append([]string{v.Deployment}, row...)
		}
		if opts.Vitals {
			row = append(row, opts.IO.Time(v.VMCreatedAt, now))
			row = append(row, VitalsCells(v.Vitals)...)
		}
		t.AddRow(row...)
	}
	return t.Render()
}

// VitalsHeaders are the table columns VitalsCells fills, after "vm created at".
var VitalsHeaders = []string{"uptime", "load (1m, 5m, 15m)", "cpu user", "cpu sys", "cpu wait",
	"memory usage", "swap usage", "system disk usage", "ephemeral disk usage", "persistent disk usage"}

// VitalsCells renders vitals as BOSH's table does ("-" for each cell when there are none).
func VitalsCells(v *VitalsView) []string {
	if v == nil {
		return []string{"-", "-", "-", "-", "-", "-", "-", "-", "-", "-"}
	}
	loads := make([]string, len(v.Load))
	for i, l := range v.Load {
		loads[i] = strconv.FormatFloat(l, 'f', 2, 64)
	}
	disk := func(name string) string {
		d, ok := v.Disks[name]
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%s%% (%si%%)", pct(d.Percent), pct(d.InodePercent))
	}
	return []string{
		Uptime(v.UptimeSecs), dash(strings.Join(loads, ", ")),
		pct(v.CPUUser) + "%", pct(v.CPUSys) + "%", pct(v.CPUWait) + "%",
		fmt.Sprintf("%s%% (%s)", pct(v.MemPercent), Bytes(v.MemKB*1024)),
		fmt.Sprintf("%s%% (%s)", pct(v.SwapPercent), Bytes(v.SwapKB*1024)),
		disk("system"), disk("ephemeral"), disk("persistent"),
	}
}

func pct(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Uptime says a duration in seconds as BOSH does: "2d 3h 4m 5s".
func Uptime(secs int64) string {
	return fmt.Sprintf("%dd %dh %dm %ds", secs/86400, secs%86400/3600, secs%3600/60, secs%60)
}

// Bytes says a size with a binary unit and one decimal: "512 B", "1.5 MiB".
func Bytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
