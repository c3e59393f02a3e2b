package converge

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmd/deploy"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	conv "github.com/kpaas/kpaas/pkg/converge"
	"github.com/kpaas/kpaas/pkg/health"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas converge`.
type Options struct {
	IO         *ui.IOStreams
	Factory    *cmdutil.Factory
	Deployment string
	JSON       bool
	Policy     PolicyFlags
	// Sleep waits between observations (tests shorten it).
	Sleep func(context.Context, time.Duration) error
}

// NewCmdConverge builds `kpaas converge`.
func NewCmdConverge(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Factory: f, Sleep: sleep}
	cmd := &cobra.Command{
		Use:   "converge -d DEP",
		Short: "One reconcile pass: find unhealthy instances and restore them as last deployed, then exit",
		Long: `Observe every instance of the deployment (get_state through its agent; has_vm through
the CPI for agents that do not answer) until each is judged, then remediate the unhealthy
ones as ` + "`kpaas monitor`" + ` would, with the same gates: a deployment being deployed
(its lock held) is left alone; more than --max-unhealthy unhealthy instances remediates
nothing and records a meltdown event; resurrection rules (` + "`kpaas update-resurrection`" + `)
apply. A missing VM or an agent silent for --agent-timeout gets its VM recreated (same
IPs, persistent disk reattached); a job failing for --grace is restarted first, and its
VM recreated if that did not help (on a later pass).

Exits 0 when every instance is healthy or was remediated, 1 otherwise (for CI and cron).`,
		Example: `  kpaas converge -d hello
  kpaas converge -d hello --dry-run --json
  kpaas converge -d hello --agent-timeout 10s --max-unhealthy 50%`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("name the deployment with -d NAME")
			}
			if runF != nil {
				return runF(opts)
			}
			return convergeRun(cmd.Context(), opts)
		},
	}
	opts.Policy.add(cmd.Flags())
	return cmd
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

type instanceView struct {
	Instance string   `json:"instance"`
	ID       string   `json:"id"`
	Reasons  []string `json:"reasons"`
	Details  []string `json:"details"`
}

type outcomeView struct {
	conv.Outcome
	Unhealthy []instanceView `json:"unhealthy"`
	Reports   []conv.Report  `json:"reports"`
}

func viewOf(o conv.Outcome, reports []conv.Report) outcomeView {
	v := outcomeView{Outcome: o, Unhealthy: []instanceView{}, Reports: reports}
	for _, u := range o.Unhealthy {
		iv := instanceView{Instance: u.Target.Name(), ID: u.Target.UUID, Details: u.Details}
		for _, r := range u.Reasons {
			iv.Reasons = append(iv.Reasons, string(r))
		}
		v.Unhealthy = append(v.Unhealthy, iv)
	}
	if v.Reports == nil {
		v.Reports = []conv.Report{}
	}
	return v
}

func convergeRun(ctx context.Context, opts *Options) error {
	o, err := opts.Policy.options()
	if err != nil {
		return cmdutil.FlagErrorf("%v", err)
	}
	env, err := deploy.OpenEnv(ctx, opts.Factory)
	if err != nil {
		return err
	}
	defer env.Close()
	if _, err := env.Store.Deployment(ctx, opts.Deployment); err != nil {
		return fmt.Errorf("deployment %s: %w (see `kpaas deployments`)", opts.Deployment, err)
	}
	var reports []conv.Report
	report := func(r conv.Report) {
		reports = append(reports, r)
		if !opts.JSON {
			printReport(opts.IO.ErrOut, r)
		}
	}
	rec, err := newReconciler(ctx, env, o, opts.IO, opts.JSON, report, nil)
	if err != nil {
		return err
	}
	rules, err := loadRules(ctx, env.Store)
	if err != nil {
		return err
	}
	out, err := converge(ctx, rec, opts.Deployment, rules, o.Policy, opts.Sleep)
	if err != nil {
		return err
	}
	if opts.JSON {
		if err := ui.WriteJSON(opts.IO.Out, viewOf(out, reports)); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(opts.IO.Out, "Deployment %s: %d instance(s), %d healthy, %d unhealthy, %d remediated\n",
			out.Deployment, out.Total, out.Healthy, len(out.Unhealthy), len(out.Fixed))
		for _, msg := range []string{out.Gated, out.Locked, out.Error} {
			if msg != "" {
				fmt.Fprintln(opts.IO.Out, "  "+msg)
			}
		}
	}
	if left := len(out.Unhealthy) - len(out.Fixed); left > 0 && !o.DryRun || out.Error != "" {
		return fmt.Errorf("%d instance(s) of %s remain unhealthy: see the messages above, `kpaas events -d %s` and `kpaas cck -d %s`", left, dep(out), dep(out), dep(out))
	}
	return nil
}

func dep(o conv.Outcome) string { return o.Deployment }

// converge observes until every instance is judged (no suspect left, or
// the agent timeout plus the grace period has passed), then remediates once.
func converge(ctx context.Context, rec *conv.Reconciler, dep string, rules health.Resurrection, p health.Policy, sleepFn func(context.Context, time.Duration) error) (conv.Outcome, error) {
	p = p.Defaults()
	ws, err := rec.Load(ctx, dep)
	if err != nil {
		return conv.Outcome{Deployment: dep}, err
	}
	start := time.Now()
	for {
		rec.Observe(ctx, ws)
		out, err := rec.Evaluate(ctx, dep, ws, rules, false)
		if err != nil {
			return out, err
		}
		if out.Suspect == 0 || time.Since(start) > p.AgentTimeout+p.FailingGrace {
			break
		}
		wait := min(out.Next, 2*time.Second)
		if err := sleepFn(ctx, wait); err != nil {
			return out, err
		}
	}
	return rec.Evaluate(ctx, dep, ws, rules, true)
}
