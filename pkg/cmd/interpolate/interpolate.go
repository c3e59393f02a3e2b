// Package interpolate implements `kpaas interpolate` (alias `int`), which prints what
// `bosh int` prints for the same arguments. The engine lives in pkg/interpolate.
package interpolate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	engine "github.com/kpaas/kpaas/pkg/interpolate"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas interpolate`.
type Options struct {
	IO       *ui.IOStreams
	JSON     bool
	Environ  func() []string
	ReadFile func(string) ([]byte, error)

	Manifest      string // path, or - for stdin
	Inputs        engine.Inputs
	Path          string // --path
	VarErrs       bool   // --var-errs
	VarErrsUnused bool   // --var-errs-unused
}

// NewCmdInterpolate builds `kpaas interpolate`. runF replaces the run function in tests.
func NewCmdInterpolate(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Environ: os.Environ, ReadFile: os.ReadFile}
	cmd := &cobra.Command{
		Use:     "interpolate MANIFEST [flags]",
		Aliases: []string{"int"},
		Short:   "Apply ops files and variables to a YAML file and print it, as `bosh int` does",
		Long: `Apply go-patch ops files (-o, in order), then fill in ((variables)), then select
--path, and print the result as the BOSH CLI prints it (YAML, keys sorted).

Variables come from -v (values are YAML), --var-file (a file's contents), -l (YAML
files; later files win), --vars-env PREFIX (PREFIX_name=value) and --vars-store (read,
and written with generated values for the manifest's declared variables: password,
certificate, rsa, ssh). -v wins over --var-file, over -l, over --vars-env; the store
is used only for names none of them gives.

MANIFEST may be - to read standard input.`,
		Example: `  # cf-deployment with ops files and variables
  kpaas int cf-deployment.yml -o operations/use-postgres.yml -v system_domain=example.com

  # generate the credentials of a BOSH director into creds.yml and check nothing is missing
  kpaas int bosh.yml -o vsphere/cpi.yml -l vars.yml --vars-store creds.yml --var-errs

  # print one value (strings are printed raw, e.g. a PEM certificate)
  kpaas int bosh.yml --vars-store creds.yml --path /director_ssl/ca

  # fail if a variable has no value or a given one is unused
  kpaas int manifest.yml -l vars.yml --var-errs --var-errs-unused`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cmdutil.FlagErrorf("expected one MANIFEST argument (a file, or - for stdin), got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Manifest = args[0]
			opts.JSON = f.Globals.JSON
			if runF != nil {
				return runF(opts)
			}
			return interpolateRun(opts)
		},
	}
	fl := cmd.Flags()
	opts.Inputs.AddFlags(fl)
	fl.StringVar(&opts.Path, "path", "", "Print only the value at the go-patch `PATH` (e.g. /instance_groups/name=api/jobs)")
	fl.BoolVar(&opts.VarErrs, "var-errs", false, "Fail when variables have no value (lists them all)")
	fl.BoolVar(&opts.VarErrsUnused, "var-errs-unused", false, "Fail when given variables are not used (lists them all)")
	return cmd
}

// BuildRequest reads every file the flags name and returns the engine request.
func BuildRequest(opts *Options) (engine.Request, error) {
	req := engine.Request{Path: opts.Path, ExpectAllKeys: opts.VarErrs, ExpectAllUsed: opts.VarErrsUnused}
	data, err := readInput(opts, opts.Manifest)
	if err != nil {
		return req, fmt.Errorf("reading manifest: %w", err)
	}
	req.Manifest = engine.File{Name: opts.Manifest, Data: data}
	req.OpsFiles, req.Vars, err = opts.Inputs.Load(opts.ReadFile, opts.Environ)
	return req, err
}

func readInput(opts *Options, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(opts.IO.In)
	}
	return opts.ReadFile(name)
}

// resultView is the --json form.
type resultView struct {
	Document  any      `json:"document"`
	Missing   []string `json:"missing_variables"`
	Unused    []string `json:"unused_variables"`
	Generated []string `json:"generated_variables"`
}

func interpolateRun(opts *Options) error {
	req, err := BuildRequest(opts)
	if err != nil {
		return err
	}
	res, err := engine.Evaluate(req)
	if err != nil {
		var verr *engine.VarsError
		if opts.JSON && errors.As(err, &verr) && res != nil {
			_ = ui.WriteJSON(opts.IO.Out, view(res))
		}
		return err
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, view(res))
	}
	out, err := res.YAML()
	if err != nil {
		return fmt.Errorf("rendering YAML: %w", err)
	}
	_, err = opts.IO.Out.Write(out)
	return err
}

func view(res *engine.Result) resultView {
	v := resultView{Document: jsonValue(res.Document), Missing: res.Missing, Unused: res.Unused, Generated: res.Generated}
	if v.Generated == nil {
		v.Generated = []string{}
	}
	if v.Missing == nil {
		v.Missing = []string{}
	}
	if v.Unused == nil {
		v.Unused = []string{}
	}
	return v
}

// jsonValue converts YAML maps (any keys) into JSON objects (string keys).
func jsonValue(v any) any {
	switch t := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(t))
		keys := make([]string, 0, len(t))
		for k, e := range t {
			ks := fmt.Sprint(k)
			keys = append(keys, ks)
			out[ks] = jsonValue(e)
		}
		sort.Strings(keys)
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonValue(e)
		}
		return out
	}
	return v
}
