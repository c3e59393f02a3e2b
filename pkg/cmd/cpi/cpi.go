// Package cpi implements `kpaas cpi NAME`: it serves one of kpaas's built-in
// CPI drivers as a BOSH CPI executable (one JSON request on stdin, one JSON
// response on stdout, debug logs on stderr), so a BOSH director or bosh
// create-env can use kpaas's drivers, and cpi/external can be tested against
// them. This package is where the concrete drivers are wired in.
package cpi

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/registry"
	"github.com/kpaas/kpaas/cpi/rpc"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas cpi`.
type Options struct {
	IO         *ui.IOStreams
	Driver     string
	ConfigPath string
	Registry   *registry.Registry
	Factory    *cmdutil.Factory
}

// NewCmdCPI builds `kpaas cpi NAME`. runF replaces the run function in tests.
func NewCmdCPI(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:   "cpi NAME [--config FILE]",
		Short: "Serve a built-in CPI driver as a BOSH CPI executable (JSON on stdin/stdout)",
		Long: `Serve one of kpaas's CPI drivers the way BOSH runs a CPI: read one JSON request
({"method","arguments","context","api_version"}) on stdin, write one JSON response
({"result","error","log"}) on stdout, write debug logs on stderr, and exit.

Drivers: ` + strings.Join(Drivers().Names(), ", ") + `. The driver's configuration is a JSON file
given with --config (or $KPAAS_CPI_CONFIG), as a BOSH CPI job passes its cpi.json.`,
		Example: `  echo '{"method":"info","arguments":[],"context":{}}' | kpaas cpi local --config local.json
  # in a BOSH CPI job's bin/cpi:
  exec kpaas cpi local --config /var/vcap/jobs/local_cpi/config/cpi.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Driver = args[0]
			if opts.ConfigPath == "" {
				opts.ConfigPath = os.Getenv("KPAAS_CPI_CONFIG")
			}
			opts.Registry = Drivers()
			if runF != nil {
				return runF(opts)
			}
			return cpiRun(cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.ConfigPath, "config", "", "Driver configuration `file` (JSON)")
	cmd.AddCommand(newCmdLocalVMInit())
	return cmd
}

func cpiRun(cmd *cobra.Command, opts *Options) error {
	var config json.RawMessage
	if opts.ConfigPath != "" {
		b, err := os.ReadFile(opts.ConfigPath)
		if err != nil {
			return fmt.Errorf("reading cpi config: %w", err)
		}
		if !json.Valid(b) {
			return fmt.Errorf("cpi config %s is not JSON", opts.ConfigPath)
		}
		config = b
	}
	if !contains(opts.Registry.Names(), opts.Driver) {
		return cmdutil.FlagErrorf("unknown cpi %q; known: %s", opts.Driver, strings.Join(opts.Registry.Names(), ", "))
	}
	logger := opts.Factory.Logger().With("cpi", opts.Driver)
	open := func(cc rpc.CallContext) (cpi.CPI, error) {
		cfg, err := withContextProperties(config, cc.Properties)
		if err != nil {
			return nil, err
		}
		return opts.Registry.Open(opts.Driver, cfg, logger.With("request_id", cc.RequestID))
	}
	return rpc.Serve(cmd.Context(), open, opts.IO.In, opts.IO.Out)
}

// withContextProperties overlays the properties a director sends in the
// request context (a multi-CPI cpi-config's properties, e.g. credentials) on
// the configuration file's top-level keys.
func withContextProperties(config json.RawMessage, props map[string]any) (json.RawMessage, error) {
	if len(props) == 0 {
		return config, nil
	}
	m := map[string]any{}
	if len(config) > 0 {
		if err := json.Unmarshal(config, &m); err != nil {
			return nil, fmt.Errorf("cpi config must be a JSON object to take the context's properties: %w", err)
		}
	}
	for k, v := range props {
		m[k] = v
	}
	return json.Marshal(m)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
