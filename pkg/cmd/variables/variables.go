// Package variables implements `kpaas variables`: the names, IDs and types
// of a deployment's stored variables. Values are never shown.
package variables

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas variables`.
type Options struct {
	IO         *ui.IOStreams
	State      func(ctx context.Context) (state.Store, error)
	Now        func() time.Time
	Deployment string
	JSON       bool
}

// NewCmdVariables builds `kpaas variables`. runF replaces the run function in tests.
func NewCmdVariables(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	return &cobra.Command{
		Use:     "variables",
		Aliases: []string{"vars"},
		Short:   "List a deployment's variables (IDs, names and types; never values)",
		Long: `List the latest version of every variable stored for -d DEPLOYMENT: its ID (which
changes when the variable is regenerated), name, type and when it was made.
Values are encrypted in the state and never printed by this command.`,
		Example: "  kpaas variables -d cf\n  kpaas variables -d cf --json | jq -r '.[].name'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("a deployment is required: pass -d NAME")
			}
			if runF != nil {
				return runF(opts)
			}
			return variablesRun(cmd.Context(), opts)
		},
	}
}

type variableView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
}

func variablesRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Deployment(ctx, opts.Deployment); errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("deployment %s not found in %s: `kpaas deployments` lists them", opts.Deployment, s.Location())
	} else if err != nil {
		return fmt.Errorf("reading deployment %s: %w", opts.Deployment, err)
	}
	vs, err := s.Variables(ctx, opts.Deployment)
	if err != nil {
		return fmt.Errorf("listing the variables of %s: %w", opts.Deployment, err)
	}
	views := make([]variableView, 0, len(vs))
	for _, v := range vs {
		views = append(views, variableView{ID: strconv.FormatInt(v.ID, 10), Name: v.Name, Type: v.Type, CreatedAt: v.CreatedAt.UTC()})
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintf(opts.IO.ErrOut, "Deployment %s has no variables.\n", opts.Deployment)
		return nil
	}
	now := opts.Now()
	t := ui.NewTable(opts.IO, "id", "name", "type", "created")
	for _, v := range views {
		t.AddRow(v.ID, v.Name, v.Type, opts.IO.Time(v.CreatedAt, now))
	}
	return t.Render()
}
