// Package deploy implements `kpaas deploy`, `kpaas plan` and
// `kpaas delete-deployment`: resolve a manifest against the state, show what
// will change, and carry it out through the CPIs and the agents.
package deploy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/interpolate"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/plan"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas deploy` and `kpaas plan`.
type Options struct {
	IO       *ui.IOStreams
	Factory  *cmdutil.Factory
	ReadFile func(string) ([]byte, error)
	Environ  func() []string

	JSON             bool
	NonInteractive   bool
	Deployment       string
	File             string
	Inputs           interpolate.Inputs
	DryRun           bool
	DetailedExitCode bool
	Recreate         bool
	Fix              bool
	SkipDrain        bool
	Canaries         string
	MaxInFlight      string
	NoRedact         bool
}

// NewCmdDeploy builds `kpaas deploy`.
func NewCmdDeploy(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Factory: f, ReadFile: os.ReadFile, Environ: os.Environ}
	cmd := &cobra.Command{
		Use:   "deploy MANIFEST [flags]",
		Short: "Create or update a deployment from a manifest",
		Long: `Interpolate MANIFEST with ops files and variables (as ` + "`kpaas interpolate`" + `; variables the
manifest declares are generated and kept in the state, encrypted), check it against the
cloud-config and runtime-config, show what will change per instance and why, then roll it
out: packages compiled (once per stemcell, cached), instance groups in order, canaries then
max_in_flight at a time, AZ by AZ. The first failure stops the deploy and leaves the rest
untouched; Ctrl-C finishes what is in flight, saves and exits 2. A release the manifest
names with a url that is not uploaded yet is downloaded (its sha1 checked) and uploaded
first, as bosh deploy does.

--dry-run (or ` + "`kpaas plan`" + `) writes nothing and calls no CPI.`,
		Example: `  kpaas deploy -d hello hello.yml
  kpaas deploy hello.yml -o ops/scale.yml -v instances=3 -n
  kpaas deploy hello.yml --dry-run --json
  kpaas deploy hello.yml --recreate --max-in-flight 50%`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cmdutil.FlagErrorf("expected one MANIFEST argument, got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			opts.JSON, opts.NonInteractive, opts.Deployment = f.Globals.JSON, f.Globals.NonInteractive, f.Globals.Deployment
			if runF != nil {
				return runF(opts)
			}
			return deployRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	opts.Inputs.AddFlags(fl)
	fl.BoolVar(&opts.DryRun, "dry-run", false, "Show what would change, change nothing")
	fl.BoolVar(&opts.DetailedExitCode, "detailed-exitcode", false, "With --dry-run: exit 4 when there are changes")
	fl.BoolVar(&opts.Recreate, "recreate", false, "Recreate every VM")
	fl.BoolVar(&opts.Fix, "fix", false, "Recreate instances whose VM or agent is gone")
	fl.BoolVar(&opts.SkipDrain, "skip-drain", false, "Do not run drain scripts")
	fl.StringVar(&opts.Canaries, "canaries", "", "Override update.canaries (`N` or N%)")
	fl.StringVar(&opts.MaxInFlight, "max-in-flight", "", "Override update.max_in_flight (`N` or N%)")
	fl.BoolVar(&opts.NoRedact, "no-redact", false, "Show secret values in the manifest difference")
	return cmd
}

// NewCmdPlan builds `kpaas plan`: deploy --dry-run.
func NewCmdPlan(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	cmd := NewCmdDeploy(f, runF)
	cmd.Use = "plan MANIFEST [flags]"
	cmd.Short = "Show what `kpaas deploy` would change, per instance and why, without changing anything"
	cmd.Long = `Resolve MANIFEST exactly as ` + "`kpaas deploy`" + ` does and print the redacted manifest difference
and, per instance, the action (create, update, recreate, delete, none) with its reasons.
Nothing is written: no state, no variables, no CPI call. --detailed-exitcode exits 4 when
something would change (for CI).`
	cmd.Example = `  kpaas plan hello.yml
  kpaas plan hello.yml -v greeting=hi --json
  kpaas plan hello.yml --detailed-exitcode || echo "changes pending"`
	inner := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		_ = c.Flags().Set("dry-run", "true")
		return inner(c, args)
	}
	return cmd
}

type instanceView struct {
	Instance string   `json:"instance"`
	ID       string   `json:"id"`
	AZ       string   `json:"az"`
	Action   string   `json:"action"`
	Reasons  []string `json:"reasons"`
	IPs      []string `json:"ips"`
}

type planView struct {
	Deployment   string         `json:"deployment"`
	Changes      int            `json:"changes"`
	ManifestDiff []string       `json:"manifest_diff"`
	Instances    []instanceView `json:"instances"`
}

type resultView struct {
	Deployment string          `json:"deployment"`
	Changes    int             `json:"changes"`
	Status     string          `json:"status"`
	Instances  []engine.Result `json:"instances"`
	Error      string          `json:"error,omitempty"`
}

func viewOf(p *engine.Prepared, noRedact bool) planView {
	v := planView{Deployment: p.Plan.Deployment, Changes: p.Plan.Changes(), ManifestDiff: []string{}, Instances: []instanceView{}}
	old, cur := p.Previous, p.ManifestText
	if !noRedact {
		old, cur = state.RedactYAML(p.Redact(old)), state.RedactYAML(p.Redact(cur))
	}
	v.ManifestDiff = Diff(old, cur)
	for _, i := range p.Plan.Instances() {
		iv := instanceView{Instance: i.Name(), ID: i.UUID, AZ: i.AZ, Action: string(i.Action), Reasons: i.Reasons, IPs: []string{}}
		if iv.Reasons == nil {
			iv.Reasons = []string{}
		}
		spec := i.Desired
		if spec == nil && i.Existing != nil {
			spec = i.Existing.Spec
		}
		if spec != nil {
			for _, n := range sortedKeys(spec.Networks) {
				if ip := spec.Networks[n].IP; ip != "" {
					iv.IPs = append(iv.IPs, ip)
				}
			}
		}
		v.Instances = append(v.Instances, iv)
	}
	return v
}

func printPlan(w io.Writer, v planView) {
	if len(v.ManifestDiff) > 0 {
		fmt.Fprintln(w, "Manifest changes:")
		for _, l := range v.ManifestDiff {
			fmt.Fprintln(w, "  "+l)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Deployment %s: %d instance(s) to change\n", v.Deployment, v.Changes)
	for _, i := range v.Instances {
		if i.Action == string(plan.ActionNone) {
			continue
		}
		fmt.Fprintf(w, "  %-10s %s (%s) az=%s %s", i.Action, i.Instance, i.ID, i.AZ, strings.Join(i.IPs, ","))
		if len(i.Reasons) > 0 {
			fmt.Fprintf(w, ": %s", strings.Join(i.Reasons, "; "))
		}
		fmt.Fprintln(w)
	}
	if unchanged := len(v.Instances) - v.Changes; unchanged > 0 {
		fmt.Fprintf(w, "  %d instance(s) unchanged\n", unchanged)
	}
}

func deployRun(ctx context.Context, opts *Options) error {
	data, err := opts.ReadFile(opts.File)
	if err != nil {
		return fmt.Errorf("reading the manifest: %w", err)
	}
	ops, vars, err := opts.Inputs.Load(opts.ReadFile, opts.Environ)
	if err != nil {
		return err
	}
	var canaries, maxIF *manifest.CountOrPercent
	for _, x := range []struct {
		s   string
		dst **manifest.CountOrPercent
		n   string
	}{{opts.Canaries, &canaries, "--canaries"}, {opts.MaxInFlight, &maxIF, "--max-in-flight"}} {
		if x.s == "" {
			continue
		}
		c, err := manifest.ParseCountOrPercent(x.s)
		if err != nil {
			return cmdutil.FlagErrorf("%s: %v", x.n, err)
		}
		*x.dst = &c
	}
	open := OpenEnv
	if opts.DryRun {
		open = OpenEnvReadOnly
	}
	env, err := open(ctx, opts.Factory)
	if err != nil {
		return err
	}
	defer env.Close()

	in := engine.PrepareInput{ManifestFile: opts.File, ManifestData: data, OpsFiles: ops, Vars: vars, Deployment: opts.Deployment, Recreate: opts.Recreate}
	if opts.DryRun {
		p, err := engine.Prepare(ctx, env.Store, env.Blobs, in)
		if err != nil {
			return err
		}
		v := viewOf(p, opts.NoRedact)
		if opts.JSON {
			err = ui.WriteJSON(opts.IO.Out, v)
		} else {
			printPlan(opts.IO.Out, v)
		}
		if err == nil && opts.DetailedExitCode && v.Changes > 0 {
			return &cmdutil.ExitCodeError{Code: cmdutil.ExitChangesPending}
		}
		return err
	}

	name, err := engine.DeploymentName(in)
	if err != nil {
		return err
	}
	lock, err := env.Lock(ctx, name, "deploy")
	if err != nil {
		return err
	}
	defer lock.Release(context.Background())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lock.Lost():
			cancel()
		case <-ctx.Done():
		}
	}()

	p, err := engine.Prepare(ctx, env.Store, env.Blobs, in)
	if err != nil {
		uploaded, uerr := uploadFromURLs(ctx, env, err, opts.Factory.Now, opts.IO.ErrOut)
		if uerr != nil {
			return uerr
		}
		if !uploaded {
			return err
		}
		if p, err = engine.Prepare(ctx, env.Store, env.Blobs, in); err != nil {
			return err
		}
	}
	if opts.Fix {
		if err := markUnresponsive(ctx, env, p); err != nil {
			return err
		}
	}
	v := viewOf(p, opts.NoRedact)
	printPlan(opts.IO.ErrOut, v)
	if v.Changes > 0 && !opts.NonInteractive && opts.IO.CanPrompt() {
		fmt.Fprint(opts.IO.ErrOut, "\nContinue? [yN]: ")
		line, _ := bufio.NewReader(opts.IO.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return cmdutil.ErrCancelled
		}
	}
	eng, err := env.Engine(ctx, p.Cloud, ui.ProgressSinkFor(opts.IO, opts.JSON))
	if err != nil {
		return err
	}
	eng.SkipDrain, eng.Canaries, eng.MaxInFlight = opts.SkipDrain, canaries, maxIF
	task, _ := env.Store.CreateTask(ctx, state.Task{Description: "deploy", Deployment: p.Plan.Deployment, State: state.TaskProcessing, StartedAt: time.Now()})
	err = eng.Apply(ctx, p)
	if task != 0 {
		st, msg := state.TaskDone, ""
		if err != nil {
			st, msg = state.TaskError, err.Error()
			if errors.Is(err, context.Canceled) {
				st = state.TaskCancelled
			}
		}
		_ = env.Store.FinishTask(context.WithoutCancel(ctx), task, st, fmt.Sprintf("%d instance(s) changed", p.Plan.Changes()), msg)
	}
	return report(opts, p, err, lock)
}

func report(opts *Options, p *engine.Prepared, err error, lock *state.Lock) error {
	rv := resultView{Deployment: p.Plan.Deployment, Changes: p.Plan.Changes(), Status: "done", Instances: []engine.Result{}}
	var ee *engine.Error
	if errors.As(err, &ee) {
		rv.Instances = ee.Results
	}
	if err != nil {
		rv.Status, rv.Error = "failed", err.Error()
		if errors.Is(err, context.Canceled) {
			rv.Status = "cancelled"
			if lerr := lock.Err(); lerr != nil {
				rv.Error = lerr.Error()
			}
		}
	}
	if opts.JSON {
		if werr := ui.WriteJSON(opts.IO.Out, rv); werr != nil {
			return werr
		}
	} else if ee != nil {
		fmt.Fprintln(opts.IO.ErrOut, "\nInstances:")
		for _, r := range ee.Results {
			if r.Action == plan.ActionNone {
				continue
			}
			line := fmt.Sprintf("  %-9s %-8s %s (%s)", r.Status, r.Action, r.Instance, r.ID)
			if r.Error != "" {
				line += ": " + r.Error + " (logs: " + r.Logs + ")"
			}
			fmt.Fprintln(opts.IO.ErrOut, line)
		}
	}
	if err == nil {
		if !opts.JSON {
			fmt.Fprintf(opts.IO.ErrOut, "Deployment %s is up to date (%d instance(s) changed).\n", p.Plan.Deployment, p.Plan.Changes())
		}
		return nil
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(opts.IO.ErrOut, "Stopped: instances in flight were finished and saved; run the deploy again to continue.")
		return cmdutil.ErrCancelled
	}
	return err
}

// markUnresponsive turns instances whose VM is gone or whose agent does not
// answer into recreates (--fix).
func markUnresponsive(ctx context.Context, env *Env, p *engine.Prepared) error {
	set, err := env.CPIs(ctx)
	if err != nil {
		return err
	}
	eng, err := env.Engine(ctx, p.Cloud, nil)
	if err != nil {
		return err
	}
	vms := p.State.VMsByInstance()
	for _, i := range p.Plan.Instances() {
		if i.Action != plan.ActionNone || i.Existing == nil || i.Existing.VMCID == "" {
			continue
		}
		name := ""
		if z := p.Cloud.AZ(i.AZ); z != nil {
			name = z.CPI
		}
		c, _, err := set.ForAZ(i.AZ, name)
		if err != nil {
			return err
		}
		if ok, err := c.HasVM(ctx, cpiVM(i.Existing.VMCID)); err == nil && !ok {
			i.Action, i.Reasons = plan.ActionRecreate, []string{"VM is gone (--fix)"}
			continue
		}
		v := vms[i.UUID]
		if len(v) == 0 || len(v[0].IPs) == 0 {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = eng.Dial(agentclient.Target{Name: i.Name(), Address: net.JoinHostPort(v[0].IPs[0], "6868"), HostKey: v[0].SSHHostKey, Signer: eng.ClientKey.Signer}).Ping(pctx)
		cancel()
		if err != nil {
			i.Action, i.Reasons = plan.ActionRecreate, []string{"agent does not answer (--fix): " + err.Error()}
		}
	}
	return nil
}
