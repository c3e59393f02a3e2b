// Package errands implements `kpaas errands`: the errands a deployment's
// last successful manifest declares (instance groups with lifecycle: errand).
package errands

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas errands`.
type Options struct {
	IO         *ui.IOStreams
	State      func(ctx context.Context) (state.Store, error)
	Deployment string
	JSON       bool
}

// NewCmdErrands builds `kpaas errands`. runF replaces the run function in tests.
func NewCmdErrands(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState}
	return &cobra.Command{
		Use:   "errands",
		Short: "List the errands of a deployment",
		Long: `List the errands of -d DEPLOYMENT's last successfully deployed manifest: every
instance group with lifecycle: errand, and the jobs it runs.`,
		Example: "  kpaas errands -d cf\n  kpaas errands -d cf --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("a deployment is required: pass -d NAME")
			}
			if runF != nil {
				return runF(opts)
			}
			return errandsRun(cmd.Context(), opts)
		},
	}
}

type errandView struct {
	Name string   `json:"name"`
	Jobs []string `json:"jobs"`
}

func errandsRun(ctx context.Context, opts *Options) error {
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
	views := []errandView{}
	for _, g := range cmdutil.SummarizeManifest(d.Manifest).InstanceGroups {
		if g.Lifecycle != "errand" {
			continue
		}
		v := errandView{Name: g.Name, Jobs: []string{}}
		for _, j := range g.Jobs {
			v.Jobs = append(v.Jobs, j.Name)
		}
		views = append(views, v)
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintf(opts.IO.ErrOut, "Deployment %s has no errands.\n", opts.Deployment)
		return nil
	}
	t := ui.NewTable(opts.IO, "name", "jobs")
	for _, v := range views {
		t.AddRow(v.Name, strings.Join(v.Jobs, ", "))
	}
	return t.Render()
}
