// Package events implements `kpaas events`: what happened, who did it, when.
package events

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas events`.
type Options struct {
	IO    *ui.IOStreams
	State func(ctx context.Context) (state.Store, error)
	Now   func() time.Time
	JSON  bool

	Deployment string // -d (global flag)
	Instance   string
	Action     string
	Before     string
	After      string
	BeforeID   int64
	Limit      int
}

// NewCmdEvents builds `kpaas events`. runF replaces the run function in tests.
func NewCmdEvents(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List recorded events, newest first",
		Long: `List the events kpaas recorded: who (user@host), when, the action, the object, the
deployment and instance, the task and any error. --before and --after take a time
(RFC3339, e.g. 2026-01-02T15:04:05Z, or a date 2026-01-02) or an age (30m, 2h, 7d).`,
		Example: `  kpaas events -d cf
  kpaas events -d cf --instance api/0b1c --action recreate
  kpaas events --after 2h --json
  kpaas events --before 2026-01-02 --limit 500`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			opts.Deployment = f.Globals.Deployment
			for _, v := range []struct{ flag, val string }{{"--before", opts.Before}, {"--after", opts.After}} {
				if _, err := ParseTime(v.val, time.Now()); err != nil {
					return cmdutil.FlagErrorf("%s: %v", v.flag, err)
				}
			}
			if opts.Limit < 0 {
				return cmdutil.FlagErrorf("--limit must be 0 (no limit) or more")
			}
			if runF != nil {
				return runF(opts)
			}
			return eventsRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Instance, "instance", "", "Only events of this instance (`group/uuid` or uuid)")
	fl.StringVar(&opts.Action, "action", "", "Only events with this `action` (create, update, delete, recreate, break, ...)")
	fl.StringVar(&opts.Before, "before", "", "Only events before this `time` (RFC3339, a date, or an age like 2h)")
	fl.StringVar(&opts.After, "after", "", "Only events after this `time` (RFC3339, a date, or an age like 2h)")
	fl.Int64Var(&opts.BeforeID, "before-id", 0, "Only events with an ID below this `id` (paging)")
	fl.IntVar(&opts.Limit, "limit", 200, "Show at most `n` events (0: all)")
	return cmd
}

// ParseTime reads RFC3339, a date (YYYY-MM-DD, UTC) or an age (30m, 2h, 7d:
// that long before now). "" is the zero time.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && fmt.Sprint(n) == d && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or an age (30m, 2h, 7d)", s)
}

type eventView struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	User       string    `json:"user"`
	Action     string    `json:"action"`
	ObjectType string    `json:"object_type"`
	ObjectName string    `json:"object_name"`
	Deployment string    `json:"deployment"`
	Instance   string    `json:"instance"`
	TaskID     int64     `json:"task_id,omitempty"`
	Error      string    `json:"error,omitempty"`
	Context    any       `json:"context,omitempty"`
}

func eventsRun(ctx context.Context, opts *Options) error {
	now := opts.Now()
	before, _ := ParseTime(opts.Before, now)
	after, _ := ParseTime(opts.After, now)
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	evs, err := s.Events(ctx, state.EventFilter{Deployment: opts.Deployment, Instance: opts.Instance, Action: opts.Action,
		Before: before, After: after, BeforeID: opts.BeforeID, Limit: opts.Limit})
	if err != nil {
		return err
	}
	if opts.JSON {
		views := make([]eventView, 0, len(evs))
		for _, e := range evs {
			v := eventView{ID: e.ID, Time: e.Time.UTC(), User: e.User, Action: e.Action, ObjectType: e.ObjectType, ObjectName: e.ObjectName,
				Deployment: e.Deployment, Instance: e.Instance, TaskID: e.TaskID, Error: e.Error}
			if len(e.Context) > 0 {
				v.Context = e.Context
			}
			views = append(views, v)
		}
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(evs) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No events.")
		return nil
	}
	t := ui.NewTable(opts.IO, "id", "time", "user", "action", "object", "deployment", "instance", "task", "error")
	for _, e := range evs {
		obj := e.ObjectType
		if e.ObjectName != "" {
			obj += " " + e.ObjectName
		}
		task := "-"
		if e.TaskID != 0 {
			task = fmt.Sprint(e.TaskID)
		}
		t.AddRow(fmt.Sprint(e.ID), opts.IO.Time(e.Time, now), e.User, e.Action, obj, dash(e.Deployment), dash(e.Instance), task, dash(e.Error))
	}
	if err := t.Render(); err != nil {
		return err
	}
	if opts.Limit > 0 && len(evs) == opts.Limit {
		fmt.Fprintf(opts.IO.ErrOut, "Showing the newest %d; see older ones with --before-id %d.\n", opts.Limit, evs[len(evs)-1].ID)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
