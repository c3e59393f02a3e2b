// Package showconfig implements `kpaas cloud-config`, `runtime-config` and
// `cpi-config`: print the current (or a given) version of a config.
package showconfig

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas *-config`.
type Options struct {
	IO    *ui.IOStreams
	State func(ctx context.Context) (state.Store, error)
	JSON  bool

	Type state.ConfigType
	Name string
	ID   int64 // --id: a given version
}

// NewCmdCloudConfig builds `kpaas cloud-config`.
func NewCmdCloudConfig(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, state.CloudConfig, runF)
}

// NewCmdRuntimeConfig builds `kpaas runtime-config`.
func NewCmdRuntimeConfig(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, state.RuntimeConfig, runF)
}

// NewCmdCPIConfig builds `kpaas cpi-config`.
func NewCmdCPIConfig(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, state.CPIConfig, runF)
}

func newCmd(f *cmdutil.Factory, typ state.ConfigType, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Type: typ}
	use := string(typ) + "-config"
	cmd := &cobra.Command{
		Use:   use,
		Short: fmt.Sprintf("Print the %s config (latest version, or --id)", typ.Title()),
		Long: fmt.Sprintf(`Print the latest version of the %[1]s config named --name ("default" when not
given) as YAML, or the version with --id (see `+"`kpaas configs --type %[1]s --history`"+`).
Save a new version with `+"`kpaas update-%[1]s-config`"+`.`, typ),
		Example: fmt.Sprintf("  kpaas %[1]s\n  kpaas %[1]s --name extra\n  kpaas %[1]s --id 12 --json", use),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if opts.ID < 0 {
				return cmdutil.FlagErrorf("--id must be a config id from `kpaas configs`")
			}
			if runF != nil {
				return runF(opts)
			}
			return showRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Name, "name", state.DefaultConfigName, "Config `name`")
	cmd.Flags().Int64Var(&opts.ID, "id", 0, "Print the version with this `id` instead of the latest")
	return cmd
}

type configView struct {
	ID        int64     `json:"id"`
	Type      string    `json:"type"`
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	Content   string    `json:"content"`
}

func showRun(ctx context.Context, opts *Options) error {
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	var c state.Config
	if opts.ID > 0 {
		c, err = s.ConfigByID(ctx, opts.ID)
		if err == nil && c.Type != opts.Type {
			return fmt.Errorf("config id %d is a %s config, not a %s config", opts.ID, c.Type, opts.Type)
		}
	} else {
		c, err = s.Config(ctx, opts.Type, opts.Name)
	}
	if err != nil {
		if opts.ID == 0 {
			return fmt.Errorf("%w: save one with `kpaas update-%s-config FILE`", err, opts.Type)
		}
		return err
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, configView{ID: c.ID, Type: string(c.Type), Name: c.Name, Version: c.Version, CreatedAt: c.CreatedAt.UTC(), CreatedBy: c.CreatedBy, Content: c.Content})
	}
	fmt.Fprintf(opts.IO.ErrOut, "Using %s config %q version %d (id %d), saved %s by %s\n\n", c.Type, c.Name, c.Version, c.ID, c.CreatedAt.UTC().Format(time.RFC3339), c.CreatedBy)
	content := c.Content
	if !strings.HasSuffix(content, "\n") {
		content += "\n"
	}
	_, err = io.WriteString(opts.IO.Out, content)
	return err
}
