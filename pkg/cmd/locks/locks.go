// Package locks implements `kpaas locks`: who holds which lock, doing what, since when.
package locks

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas locks`.
type Options struct {
	IO    *ui.IOStreams
	State func(ctx context.Context) (state.Store, error)
	Now   func() time.Time
	JSON  bool
}

// NewCmdLocks builds `kpaas locks`. runF replaces the run function in tests.
func NewCmdLocks(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	return &cobra.Command{
		Use:   "locks",
		Short: "List the locks held on deployments and on the global lock",
		Long: `List the locks held now: the deployment (or the global lock, taken for configs,
stemcells and releases), who holds it (user@host and pid), the operation and its age.
A lock whose holder stops refreshing it expires on its own; ` + "`kpaas unlock ID`" + ` breaks one.`,
		Example: "  kpaas locks\n  kpaas locks --json\n  kpaas locks --state postgres://kpaas@db/kpaas",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if runF != nil {
				return runF(opts)
			}
			return locksRun(cmd.Context(), opts)
		},
	}
}

type lockView struct {
	ID        string    `json:"id"`
	Holder    string    `json:"holder"`
	PID       int       `json:"pid"`
	Operation string    `json:"operation"`
	Since     time.Time `json:"since"`
	Expires   time.Time `json:"expires"`
}

func locksRun(ctx context.Context, opts *Options) error {
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	ls, err := s.Locks(ctx)
	if err != nil {
		return err
	}
	if opts.JSON {
		views := make([]lockView, 0, len(ls))
		for _, l := range ls {
			views = append(views, lockView{ID: l.Name, Holder: l.Holder, PID: l.PID, Operation: l.Op, Since: l.Since.UTC(), Expires: l.Expires.UTC()})
		}
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(ls) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No locks held.")
		return nil
	}
	now := opts.Now()
	t := ui.NewTable(opts.IO, "id", "holder", "pid", "operation", "since", "expires")
	for _, l := range ls {
		t.AddRow(l.Name, l.Holder, fmt.Sprint(l.PID), l.Op, opts.IO.Time(l.Since, now), opts.IO.Time(l.Expires, now))
	}
	return t.Render()
}
