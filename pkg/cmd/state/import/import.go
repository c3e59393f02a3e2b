// Package importcmd implements `kpaas state import`: load an export (or copy
// another store) into an empty state store, to move an environment between
// backends.
package importcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas state import`.
type Options struct {
	IO    *ui.IOStreams
	State func(ctx context.Context) (state.Store, error)
	// OpenFrom opens the store named by --from.
	OpenFrom func(ctx context.Context, location string) (state.Store, error)
	JSON     bool

	File string // FILE or - (stdin)
	From string // --from LOCATION
}

// NewCmdImport builds `kpaas state import`. runF replaces the run function in tests.
func NewCmdImport(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, OpenFrom: func(ctx context.Context, loc string) (state.Store, error) {
		return state.Open(ctx, loc, state.Options{Now: f.Now, Version: f.Version})
	}}
	cmd := &cobra.Command{
		Use:   "import {FILE | --from LOCATION}",
		Short: "Load an export, or copy another store, into an empty state store",
		Long: `Load a JSON export made with ` + "`kpaas state export --include-secrets`" + ` (FILE, or - for
standard input), or copy the store at --from LOCATION directly, into the store named by
--state (or KPAAS_STATE). The target must be empty: nothing is overwritten. The import is
one transaction: all of it, or nothing.

Secrets are re-encrypted with the target's key: KPAAS_STATE_KEY for a PostgreSQL target,
the key file of an embedded one. With --from, the source is read with its own key file
(embedded) or the same KPAAS_STATE_KEY.`,
		Example: `  # move the embedded store to PostgreSQL
  export KPAAS_STATE_KEY=$(cat ~/.kpaas/state.key)
  kpaas state import --state postgres://kpaas@db/kpaas --from ~/.kpaas

  # restore a backup into a new directory
  kpaas state import --state /srv/kpaas-restored backup.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > 1:
				return cmdutil.FlagErrorf("expected one FILE, got %d", len(args))
			case len(args) == 1 && opts.From != "":
				return cmdutil.FlagErrorf("give FILE or --from, not both")
			case len(args) == 0 && opts.From == "":
				return cmdutil.FlagErrorf("expected a FILE to import (or - for stdin), or --from LOCATION")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.File = args[0]
			}
			opts.JSON = f.Globals.JSON
			if runF != nil {
				return runF(opts)
			}
			return importRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.From, "from", "", "Copy the store at `LOCATION` (a directory or postgres://...)")
	return cmd
}

type importView struct {
	Target        string `json:"target"`
	Source        string `json:"source"`
	Configs       int    `json:"configs"`
	Deployments   int    `json:"deployments"`
	Instances     int    `json:"instances"`
	VMs           int    `json:"vms"`
	Disks         int    `json:"disks"`
	OrphanedDisks int    `json:"orphaned_disks"`
	Variables     int    `json:"variables"`
	Events        int    `json:"events"`
}

func importRun(ctx context.Context, opts *Options) error {
	d, err := loadDump(ctx, opts)
	if err != nil {
		return err
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Import(ctx, d); err != nil {
		return err
	}
	v := importView{Target: s.Location(), Source: d.Source, Configs: len(d.Configs), Deployments: len(d.Deployments), Instances: len(d.Instances),
		VMs: len(d.VMs), Disks: len(d.Disks), OrphanedDisks: len(d.OrphanedDisks), Variables: len(d.Variables), Events: len(d.Events)}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, v)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Imported %s into %s: %d configs, %d deployments, %d instances, %d VMs, %d disks, %d variables, %d events.\n",
		v.Source, v.Target, v.Configs, v.Deployments, v.Instances, v.VMs, v.Disks, v.Variables, v.Events)
	return nil
}

func loadDump(ctx context.Context, opts *Options) (*state.Dump, error) {
	if opts.From != "" {
		src, err := opts.OpenFrom(ctx, opts.From)
		if err != nil {
			return nil, fmt.Errorf("opening the source store: %w", err)
		}
		defer src.Close()
		d, err := src.Export(ctx, state.ExportOptions{IncludeSecrets: true})
		if err != nil {
			return nil, fmt.Errorf("reading the source store %s: %w", src.Location(), err)
		}
		return d, nil
	}
	var r io.Reader = opts.IO.In
	if opts.File != "-" {
		fh, err := os.Open(opts.File)
		if err != nil {
			return nil, fmt.Errorf("reading the export: %w", err)
		}
		defer fh.Close()
		r = fh
	}
	var d state.Dump
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("reading the export %s: not a kpaas state export (%v)", opts.File, err)
	}
	if d.Format == 0 {
		return nil, fmt.Errorf("reading the export %s: no \"format\" field; is it the output of `kpaas state export`?", opts.File)
	}
	return &d, nil
}
