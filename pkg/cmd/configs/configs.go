// Package configs implements `kpaas configs`: the cloud, runtime and CPI
// configs in the state store, with their versions.
package configs

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas configs`.
type Options struct {
	IO    *ui.IOStreams
	State func(ctx context.Context) (state.Store, error)
	Now   func() time.Time
	JSON  bool

	Type    string // --type
	Name    string // --name
	History bool   // --history: every version, not only the latest
}

// NewCmdConfigs builds `kpaas configs`. runF replaces the run function in tests.
func NewCmdConfigs(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "configs",
		Short: "List cloud, runtime and CPI configs and their versions",
		Long: `List the latest version of every config in the state store (cloud, runtime, cpi; each
named, "default" when unnamed). With --history, list every version of the configs
selected, newest first. Each deploy records which config IDs it used.`,
		Example: `  kpaas configs
  kpaas configs --type runtime
  kpaas configs --type cloud --name default --history
  kpaas configs --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if opts.Type != "" && !state.ConfigType(opts.Type).Valid() {
				return cmdutil.FlagErrorf("--type must be cloud, runtime or cpi, not %q", opts.Type)
			}
			if opts.History && opts.Type == "" {
				return cmdutil.FlagErrorf("--history needs --type (and --name, default %q)", state.DefaultConfigName)
			}
			if runF != nil {
				return runF(opts)
			}
			return configsRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Type, "type", "", "Only configs of this `type`: cloud, runtime or cpi")
	cmd.Flags().StringVar(&opts.Name, "name", "", "Only configs with this `name`")
	cmd.Flags().BoolVar(&opts.History, "history", false, "List every version, not only the latest")
	return cmd
}

type configView struct {
	ID        int64     `json:"id"`
	Type      string    `json:"type"`
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

func configsRun(ctx context.Context, opts *Options) error {
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	var cs []state.Config
	if opts.History {
		cs, err = s.ConfigVersions(ctx, state.ConfigType(opts.Type), opts.Name)
	} else {
		cs, err = s.Configs(ctx, state.ConfigType(opts.Type))
	}
	if err != nil {
		return err
	}
	views := make([]configView, 0, len(cs))
	for _, c := range cs {
		if opts.Name != "" && c.Name != opts.Name {
			continue
		}
		views = append(views, configView{ID: c.ID, Type: string(c.Type), Name: c.Name, Version: c.Version, CreatedAt: c.CreatedAt.UTC(), CreatedBy: c.CreatedBy})
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No configs. Save one with `kpaas update-cloud-config FILE` (or update-runtime-config, update-cpi-config).")
		return nil
	}
	now := opts.Now()
	t := ui.NewTable(opts.IO, "id", "type", "name", "version", "created", "by")
	for _, v := range views {
		t.AddRow(fmt.Sprint(v.ID), v.Type, v.Name, fmt.Sprint(v.Version), opts.IO.Time(v.CreatedAt, now), v.CreatedBy)
	}
	return t.Render()
}
