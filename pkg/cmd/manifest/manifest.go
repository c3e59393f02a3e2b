// Package manifest implements `kpaas manifest`: the last successfully
// deployed manifest of a deployment, exactly as it was stored.
package manifest

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas manifest`.
type Options struct {
	IO         *ui.IOStreams
	State      func(ctx context.Context) (state.Store, error)
	Deployment string
	JSON       bool
}

// NewCmdManifest builds `kpaas manifest`. runF replaces the run function in tests.
func NewCmdManifest(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState}
	return &cobra.Command{
		Use:   "manifest",
		Short: "Print the last successfully deployed manifest of a deployment",
		Long: `Print the manifest of the last successful deploy of -d DEPLOYMENT, byte for byte
as it was stored (ops files applied, variables as they were given).`,
		Example: "  kpaas manifest -d cf > cf.yml\n  kpaas manifest -d cf --json | jq -r .manifest",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("a deployment is required: pass -d NAME")
			}
			if runF != nil {
				return runF(opts)
			}
			return manifestRun(cmd.Context(), opts)
		},
	}
}

type manifestView struct {
	Deployment string `json:"deployment"`
	Manifest   string `json:"manifest"`
}

func manifestRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := s.Deployment(ctx, opts.Deployment)
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("deployment %s not found in %s: `kpaas deployments` lists them", opts.Deployment, s.Location())
	}
	if err != nil {
		return fmt.Errorf("reading deployment %s: %w", opts.Deployment, err)
	}
	if d.Manifest == "" {
		return fmt.Errorf("deployment %s has not been deployed successfully yet, so it has no manifest to show", opts.Deployment)
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, manifestView{Deployment: d.Name, Manifest: d.Manifest})
	}
	_, err = fmt.Fprint(opts.IO.Out, d.Manifest)
	return err
}
