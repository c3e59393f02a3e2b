// Package export implements `kpaas state export`: the whole state store as JSON.
package export

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas state export`.
type Options struct {
	IO             *ui.IOStreams
	State          func(ctx context.Context) (state.Store, error)
	IncludeSecrets bool
	Output         string // -o FILE; stdout when empty or -
}

// NewCmdExport builds `kpaas state export`. runF replaces the run function in tests.
func NewCmdExport(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState}
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the whole state store as JSON (secrets redacted unless asked for)",
		Long: `Write the whole state store as one JSON document: configs, deployments with their
manifests, instances, VMs, disks, orphaned disks, IP reservations, stemcells, releases,
compiled packages, variables, events and tasks.

Variable values and VM host private keys are redacted unless --include-secrets is given;
a redacted export is for reading, not for ` + "`kpaas state import`" + `. With --include-secrets the
output file is created readable by its owner only.`,
		Example: `  kpaas state export > state.json
  kpaas state export --include-secrets -o backup.json
  kpaas state export --state postgres://kpaas@db/kpaas | jq '.deployments[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return exportRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.IncludeSecrets, "include-secrets", false, "Include variable values and host private keys in clear text")
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "Write to `FILE` (atomically) instead of standard output")
	return cmd
}

func exportRun(ctx context.Context, opts *Options) error {
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := s.Export(ctx, state.ExportOptions{IncludeSecrets: opts.IncludeSecrets})
	if err != nil {
		return fmt.Errorf("exporting %s: %w", s.Location(), err)
	}
	if opts.Output == "" || opts.Output == "-" {
		return ui.WriteJSON(opts.IO.Out, d)
	}
	var buf bytes.Buffer
	if err := ui.WriteJSON(&buf, d); err != nil {
		return err
	}
	if err := writeAtomic(opts.Output, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", opts.Output, err)
	}
	what := "secrets redacted"
	if opts.IncludeSecrets {
		what = "secrets included: keep the file safe"
	}
	fmt.Fprintf(opts.IO.ErrOut, "Exported %s to %s (%d deployments, %d instances, %d events; %s).\n",
		s.Location(), opts.Output, len(d.Deployments), len(d.Instances), len(d.Events), what)
	return nil
}

// writeAtomic writes through a temp file, fsync and rename.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
