package deploy

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/plan"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// LifecycleOptions of `kpaas start|stop|restart|recreate` and `run-errand`.
type LifecycleOptions struct {
	IO         *ui.IOStreams
	Factory    *cmdutil.Factory
	Verb       string
	Deployment string
	Selector   string
	Hard       bool
	SkipDrain  bool
	KeepAlive  bool
	JSON       bool
}

// NewCmdStart builds `kpaas start`.
func NewCmdStart(f *cmdutil.Factory, runF func(*LifecycleOptions) error) *cobra.Command {
	return newLifecycleCmd(f, "start", "Start the jobs of instances (creating the VMs of detached ones)", runF)
}

// NewCmdStop builds `kpaas stop`.
func NewCmdStop(f *cmdutil.Factory, runF func(*LifecycleOptions) error) *cobra.Command {
	return newLifecycleCmd(f, "stop", "Stop the jobs of instances (--hard also deletes their VMs, keeping disks and IPs)", runF)
}

// NewCmdRestart builds `kpaas restart`.
func NewCmdRestart(f *cmdutil.Factory, runF func(*LifecycleOptions) error) *cobra.Command {
	return newLifecycleCmd(f, "restart", "Stop then start the jobs of instances", runF)
}

// NewCmdRecreate builds `kpaas recreate`.
func NewCmdRecreate(f *cmdutil.Factory, runF func(*LifecycleOptions) error) *cobra.Command {
	return newLifecycleCmd(f, "recreate", "Recreate the VMs of instances with the last deployed manifest", runF)
}

func newLifecycleCmd(f *cmdutil.Factory, verb, short string, runF func(*LifecycleOptions) error) *cobra.Command {
	opts := &LifecycleOptions{IO: f.IO, Factory: f, Verb: verb}
	cmd := &cobra.Command{
		Use:   verb + " -d DEP [GROUP[/ID]]",
		Short: short,
		Long: short + `, with the last successfully deployed manifest.
Without GROUP, every instance of the deployment; GROUP/INDEX or GROUP/UUID names one.`,
		Example: fmt.Sprintf("  kpaas %[1]s -d hello\n  kpaas %[1]s -d hello web\n  kpaas %[1]s -d hello web/0", verb),
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("name the deployment with -d NAME")
			}
			if len(args) == 1 {
				opts.Selector = args[0]
			}
			if runF != nil {
				return runF(opts)
			}
			return lifecycleRun(cmd.Context(), opts)
		},
	}
	if verb == "stop" {
		cmd.Flags().BoolVar(&opts.Hard, "hard", false, "Delete the VMs too (disks and IPs are kept)")
	}
	if verb == "stop" || verb == "restart" || verb == "recreate" {
		cmd.Flags().BoolVar(&opts.SkipDrain, "skip-drain", false, "Do not run drain scripts")
	}
	return cmd
}

// NewCmdRunErrand builds `kpaas run-errand`.
func NewCmdRunErrand(f *cmdutil.Factory, runF func(*LifecycleOptions) error) *cobra.Command {
	opts := &LifecycleOptions{IO: f.IO, Factory: f, Verb: "run-errand"}
	cmd := &cobra.Command{
		Use:   "run-errand -d DEP NAME [--keep-alive]",
		Short: "Run an errand: an instance group with lifecycle errand (on new VMs), or a job's bin/run",
		Long: `Run errand NAME of the deployment: for an instance group with lifecycle: errand, create
its VMs, apply, run bin/run and delete them again (unless --keep-alive); for a job of a
service group, run its bin/run on that group's instances. Prints each instance's exit code,
stdout and stderr; exits 1 when an errand failed.`,
		Example: "  kpaas run-errand -d hello smoke-tests\n  kpaas run-errand -d hello smoke-tests --keep-alive --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON, opts.Selector = f.Globals.Deployment, f.Globals.JSON, args[0]
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("name the deployment with -d NAME")
			}
			if runF != nil {
				return runF(opts)
			}
			return lifecycleRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.KeepAlive, "keep-alive", false, "Keep the errand's VMs")
	return cmd
}

func lifecycleRun(ctx context.Context, opts *LifecycleOptions) error {
	env, err := OpenEnv(ctx, opts.Factory)
	if err != nil {
		return err
	}
	defer env.Close()
	lock, err := env.Lock(ctx, opts.Deployment, opts.Verb)
	if err != nil {
		return err
	}
	defer lock.Release(context.Background())
	dep, err := env.Store.Deployment(ctx, opts.Deployment)
	if errors.Is(err, state.ErrNotFound) || (err == nil && dep.Manifest == "") {
		return fmt.Errorf("deployment %s has never been deployed successfully: run `kpaas deploy` first", opts.Deployment)
	}
	if err != nil {
		return err
	}
	p, err := engine.Prepare(ctx, env.Store, env.Blobs, engine.PrepareInput{ManifestFile: "manifest of " + opts.Deployment, ManifestData: []byte(dep.Manifest), Deployment: opts.Deployment})
	if err != nil {
		return err
	}
	eng, err := env.Engine(ctx, p.Cloud, ui.ProgressSinkFor(opts.IO, opts.JSON))
	if err != nil {
		return err
	}
	eng.SkipDrain = opts.SkipDrain
	if opts.Verb == "run-errand" {
		res, err := eng.RunErrand(ctx, p, opts.Selector, opts.KeepAlive)
		if opts.JSON {
			if res == nil {
				res = []engine.ErrandResult{}
			}
			_ = ui.WriteJSON(opts.IO.Out, res)
		} else {
			for _, r := range res {
				fmt.Fprintf(opts.IO.Out, "Instance %s: exit code %d\n--- stdout ---\n%s--- stderr ---\n%s\n", r.Instance, r.ExitCode, r.Stdout, r.Stderr)
			}
		}
		if err != nil {
			return err
		}
		for _, r := range res {
			if r.ExitCode != 0 {
				return fmt.Errorf("errand %s failed on %s (exit code %d)", opts.Selector, r.Instance, r.ExitCode)
			}
		}
		return nil
	}
	insts, err := engine.Select(p.Plan, opts.Selector)
	if err != nil {
		return err
	}
	switch opts.Verb {
	case "stop":
		err = eng.Stop(ctx, p, insts, opts.Hard)
	case "start":
		err = eng.Start(ctx, p, insts)
	case "restart":
		if err = eng.Stop(ctx, p, insts, false); err == nil {
			err = eng.Start(ctx, p, insts)
		}
	case "recreate":
		for _, i := range p.Plan.Instances() {
			if i.Action != plan.ActionDelete {
				i.Action, i.Reasons = plan.ActionNone, nil
			}
		}
		for _, i := range insts {
			i.Action, i.Reasons = plan.ActionRecreate, []string{"recreate requested"}
		}
		err = eng.Apply(ctx, p)
	}
	if err != nil {
		return err
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, map[string]any{"deployment": opts.Deployment, "action": opts.Verb, "instances": len(insts)})
	}
	fmt.Fprintf(opts.IO.ErrOut, "%s: %d instance(s) of %s done.\n", opts.Verb, len(insts), opts.Deployment)
	return nil
}
