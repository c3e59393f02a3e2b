package deploy

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// DeleteOptions of `kpaas delete-deployment`.
type DeleteOptions struct {
	IO         *ui.IOStreams
	Factory    *cmdutil.Factory
	Deployment string
	Force      bool
	JSON       bool
}

// NewCmdDeleteDeployment builds `kpaas delete-deployment`.
func NewCmdDeleteDeployment(f *cmdutil.Factory, runF func(*DeleteOptions) error) *cobra.Command {
	opts := &DeleteOptions{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:   "delete-deployment -d NAME [--force]",
		Short: "Delete a deployment: its VMs are deleted, its disks orphaned, its IPs released",
		Long: `Stop every instance (drain, stop), delete its VM, orphan its persistent disks (kept
until ` + "`kpaas clean-up`" + `), release its IPs and forget the deployment and its variables.
--force carries on past errors (an unreachable agent, a VM already gone).`,
		Example: "  kpaas delete-deployment -d hello\n  kpaas delete-deployment -d hello --force -n",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("name the deployment with -d NAME")
			}
			if runF != nil {
				return runF(opts)
			}
			return deleteRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "Carry on past errors")
	return cmd
}

func deleteRun(ctx context.Context, opts *DeleteOptions) error {
	env, err := OpenEnv(ctx, opts.Factory)
	if err != nil {
		return err
	}
	defer env.Close()
	lock, err := env.Lock(ctx, opts.Deployment, "delete-deployment")
	if err != nil {
		return err
	}
	defer lock.Release(context.Background())
	ds, err := env.Store.LoadDeployment(ctx, opts.Deployment)
	if errors.Is(err, state.ErrNotFound) {
		fmt.Fprintf(opts.IO.ErrOut, "Deployment %s does not exist: nothing to delete.\n", opts.Deployment)
		return nil
	}
	if err != nil {
		return err
	}
	var cc *manifest.CloudConfig
	if c, err := env.Store.Config(ctx, state.CloudConfig, state.DefaultConfigName); err == nil {
		cc, _, _ = manifest.ParseCloudConfig("cloud-config", []byte(c.Content))
	}
	eng, err := env.Engine(ctx, cc, ui.ProgressSinkFor(opts.IO, opts.JSON))
	if err != nil {
		return err
	}
	if err := eng.DeleteDeployment(ctx, ds, opts.Force); err != nil {
		return err
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, map[string]any{"deployment": opts.Deployment, "deleted": true})
	}
	fmt.Fprintf(opts.IO.ErrOut, "Deleted deployment %s.\n", opts.Deployment)
	return nil
}
