// Package updateconfig implements `kpaas update-cloud-config`,
// `update-runtime-config` and `update-cpi-config`: interpolate a config file
// with ops files and variables, show the difference with the current version,
// ask, and save it as a new version.
package updateconfig

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/interpolate"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas update-*-config`.
type Options struct {
	IO       *ui.IOStreams
	State    func(ctx context.Context) (state.Store, error)
	ReadFile func(string) ([]byte, error)
	Environ  func() []string
	JSON     bool

	NonInteractive bool
	Type           state.ConfigType
	Name           string
	File           string // path, or - for stdin
	Inputs         interpolate.Inputs
	NoRedact       bool
}

// NewCmdUpdateCloudConfig builds `kpaas update-cloud-config`.
func NewCmdUpdateCloudConfig(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, state.CloudConfig, runF)
}

// NewCmdUpdateRuntimeConfig builds `kpaas update-runtime-config`.
func NewCmdUpdateRuntimeConfig(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, state.RuntimeConfig, runF)
}

// NewCmdUpdateCPIConfig builds `kpaas update-cpi-config`.
func NewCmdUpdateCPIConfig(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, state.CPIConfig, runF)
}

func newCmd(f *cmdutil.Factory, typ state.ConfigType, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, ReadFile: os.ReadFile, Environ: os.Environ, Type: typ}
	verb := "update-" + string(typ) + "-config"
	cmd := &cobra.Command{
		Use:   verb + " FILE [flags]",
		Short: fmt.Sprintf("Save a new version of the %s config, after showing the difference", typ.Title()),
		Long: fmt.Sprintf(`Read the %[1]s config from FILE (- for standard input), apply ops files (-o) and
variables (-v, -l, --var-file, --vars-env, --vars-store) as `+"`kpaas interpolate`"+` does, show
the difference with the current version, ask, and save it as a new version in the state
store. Configs are named (--name, "default" when not given); every version is kept, and
each deploy records which versions it used. Values of keys that look like secrets
(password, secret, token, private_key, ...) are hidden in the difference unless --no-redact.

Takes the global lock while saving, so two updates cannot race.`, typ),
		Example: fmt.Sprintf(`  kpaas %[1]s %[2]s.yml
  kpaas %[1]s %[2]s.yml -o ops/add-az.yml -v az2_network=net-b -n
  kpaas %[1]s --name extra %[2]s-extra.yml -l vars.yml
  kpaas %[3]s`, verb, typ, string(typ)+"-config"),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cmdutil.FlagErrorf("expected one FILE argument (or - for stdin), got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			opts.JSON = f.Globals.JSON
			opts.NonInteractive = f.Globals.NonInteractive
			if runF != nil {
				return runF(opts)
			}
			return updateRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Name, "name", state.DefaultConfigName, "Config `name`")
	fl.BoolVar(&opts.NoRedact, "no-redact", false, "Show secret values in the difference")
	opts.Inputs.AddFlags(fl)
	return cmd
}

type resultView struct {
	ID      int64  `json:"id"`
	Type    string `json:"type"`
	Name    string `json:"name"`
	Version int    `json:"version"`
	Changed bool   `json:"changed"`
}

// render interpolates the config file with the ops files and variables.
func render(opts *Options) (string, error) {
	var data []byte
	var err error
	if opts.File == "-" {
		data, err = io.ReadAll(opts.IO.In)
	} else {
		data, err = opts.ReadFile(opts.File)
	}
	if err != nil {
		return "", fmt.Errorf("reading the %s config: %w", opts.Type, err)
	}
	req := interpolate.Request{Manifest: interpolate.File{Name: opts.File, Data: data}}
	req.OpsFiles, req.Vars, err = opts.Inputs.Load(opts.ReadFile, opts.Environ)
	if err != nil {
		return "", err
	}
	res, err := interpolate.Evaluate(req)
	if err != nil {
		return "", err
	}
	if _, ok := res.Document.(map[any]any); !ok {
		return "", fmt.Errorf("%s: a %s config must be a YAML map (with keys such as %s)", opts.File, opts.Type, exampleKeys(opts.Type))
	}
	out, err := res.YAML()
	if err != nil {
		return "", fmt.Errorf("rendering the %s config: %w", opts.Type, err)
	}
	return string(out), nil
}

func exampleKeys(t state.ConfigType) string {
	switch t {
	case state.CloudConfig:
		return "azs, networks, vm_types, disk_types, compilation"
	case state.RuntimeConfig:
		return "releases, addons"
	default:
		return "cpis"
	}
}

func updateRun(ctx context.Context, opts *Options) error {
	content, err := render(opts)
	if err != nil {
		return err
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()

	lock, err := s.Lock(ctx, state.LockRequest{Name: state.GlobalLock, Op: "update-" + string(opts.Type) + "-config"})
	if err != nil {
		return err
	}
	defer lock.Release(context.Background())

	cur, err := s.Config(ctx, opts.Type, opts.Name)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return err
	}
	if cur.Content == content {
		fmt.Fprintf(opts.IO.ErrOut, "No changes to the %s config %q (version %d).\n", opts.Type, cur.Name, cur.Version)
		if opts.JSON {
			return ui.WriteJSON(opts.IO.Out, resultView{ID: cur.ID, Type: string(cur.Type), Name: cur.Name, Version: cur.Version})
		}
		return nil
	}
	out := opts.IO.Out
	if opts.JSON {
		out = opts.IO.ErrOut // stdout stays JSON
	}
	before, after := cur.Content, content
	if !opts.NoRedact {
		before, after = state.RedactYAML(before), state.RedactYAML(after)
	}
	if lines := Diff(before, after, 3); len(lines) > 0 {
		printDiff(out, opts.IO.ColorEnabled(), lines)
	} else {
		fmt.Fprintln(out, "Only secret values change (shown with --no-redact).")
	}

	if !opts.NonInteractive {
		q := fmt.Sprintf("Save this as version %d of the %s config %q?", cur.Version+1, opts.Type, opts.Name)
		if !opts.IO.CanPrompt() {
			return fmt.Errorf("%s Not asking on a non-interactive terminal: run again with -n to save it", q)
		}
		fmt.Fprintf(opts.IO.ErrOut, "%s [y/N] ", q)
		ans, _ := bufio.NewReader(opts.IO.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(ans)); a != "y" && a != "yes" {
			return cmdutil.ErrCancelled
		}
	}
	var saved state.Config
	err = s.Update(ctx, func(tx state.Tx) error {
		c, _, err := tx.SaveConfig(ctx, state.Config{Type: opts.Type, Name: opts.Name, Content: content})
		if err != nil {
			return err
		}
		saved = c
		evCtx, _ := json.Marshal(map[string]any{"id": c.ID, "version": c.Version})
		_, err = tx.AppendEvents(ctx, state.Event{Action: "update", ObjectType: string(opts.Type) + "-config", ObjectName: opts.Name, Context: evCtx})
		return err
	})
	if err != nil {
		return err
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, resultView{ID: saved.ID, Type: string(saved.Type), Name: saved.Name, Version: saved.Version, Changed: true})
	}
	fmt.Fprintf(opts.IO.ErrOut, "Saved the %s config %q as version %d (id %d).\n", opts.Type, saved.Name, saved.Version, saved.ID)
	return nil
}

func printDiff(w io.Writer, color bool, lines []DiffLine) {
	for _, l := range lines {
		text := l.Text
		switch {
		case l.Op == '.':
			fmt.Fprintln(w, "  ...")
		case color && l.Op == '+':
			fmt.Fprintf(w, "\x1b[32m+ %s\x1b[0m\n", text)
		case color && l.Op == '-':
			fmt.Fprintf(w, "\x1b[31m- %s\x1b[0m\n", text)
		default:
			fmt.Fprintf(w, "%c %s\n", l.Op, text)
		}
	}
}
