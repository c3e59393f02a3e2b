// Package unlock implements `kpaas unlock ID`: break a lock whose holder is gone.
package unlock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas unlock`.
type Options struct {
	IO             *ui.IOStreams
	State          func(ctx context.Context) (state.Store, error)
	Now            func() time.Time
	JSON           bool
	NonInteractive bool
	ID             string
}

// NewCmdUnlock builds `kpaas unlock`. runF replaces the run function in tests.
func NewCmdUnlock(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	return &cobra.Command{
		Use:   "unlock ID",
		Short: "Break a lock whose holder is gone",
		Long: `Break a lock (see ` + "`kpaas locks`" + ` for IDs: global, deployment:NAME). Do this only when
the process holding it is gone: a live holder finds out at its next heartbeat and stops,
but what it was doing may be left half done. A lock whose holder crashed also expires on
its own a minute after its last heartbeat. Asks first unless -n.`,
		Example: "  kpaas unlock deployment:cf\n  kpaas unlock global -n\n  kpaas unlock deployment:cf -n --json",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cmdutil.FlagErrorf("expected one lock ID (see `kpaas locks`), got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			opts.JSON = f.Globals.JSON
			opts.NonInteractive = f.Globals.NonInteractive
			if runF != nil {
				return runF(opts)
			}
			return unlockRun(cmd.Context(), opts)
		},
	}
}

type unlockView struct {
	ID        string    `json:"id"`
	Holder    string    `json:"holder"`
	PID       int       `json:"pid"`
	Operation string    `json:"operation"`
	Since     time.Time `json:"since"`
	Broken    bool      `json:"broken"`
}

func unlockRun(ctx context.Context, opts *Options) error {
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	ls, err := s.Locks(ctx)
	if err != nil {
		return err
	}
	var held *state.LockInfo
	for i := range ls {
		if ls[i].Name == opts.ID {
			held = &ls[i]
		}
	}
	now := opts.Now()
	if held != nil && !opts.NonInteractive {
		q := fmt.Sprintf("Break lock %s held by %s (pid %d) running %q for %s?", held.Name, held.Holder, held.PID, held.Op, now.Sub(held.Since).Round(time.Second))
		if !opts.IO.CanPrompt() {
			return fmt.Errorf("%s Not asking on a non-interactive terminal: run again with -n to break it", q)
		}
		fmt.Fprintf(opts.IO.ErrOut, "%s [y/N] ", q)
		ans, _ := bufio.NewReader(opts.IO.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(ans)); a != "y" && a != "yes" {
			return cmdutil.ErrCancelled
		}
	}
	err = s.Unlock(ctx, opts.ID)
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("no lock %q is held (IDs are global or deployment:NAME; see `kpaas locks`)", opts.ID)
	}
	if err != nil {
		return err
	}
	v := unlockView{ID: opts.ID, Broken: true}
	ev := state.Event{Action: "break", ObjectType: "lock", ObjectName: opts.ID}
	if held != nil {
		v.Holder, v.PID, v.Operation, v.Since = held.Holder, held.PID, held.Op, held.Since.UTC()
		ev.Context, _ = json.Marshal(map[string]any{"holder": held.Holder, "pid": held.PID, "operation": held.Op})
	}
	if d, ok := strings.CutPrefix(opts.ID, "deployment:"); ok {
		ev.Deployment = d
	}
	if _, err := s.AppendEvents(ctx, ev); err != nil {
		fmt.Fprintf(opts.IO.ErrOut, "Warning: the lock is broken but the event was not recorded: %v\n", err)
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, v)
	}
	if held != nil {
		fmt.Fprintf(opts.IO.ErrOut, "Broke lock %s (was held by %s, pid %d, %s).\n", opts.ID, held.Holder, held.PID, held.Op)
	} else {
		fmt.Fprintf(opts.IO.ErrOut, "Broke expired lock %s.\n", opts.ID)
	}
	return nil
}
