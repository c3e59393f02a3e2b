// Package version implements `kpaas version`.
package version

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas version`.
type Options struct {
	IO      *ui.IOStreams
	JSON    bool
	Version string
}

// NewCmdVersion builds `kpaas version`. runF replaces the run function in tests.
func NewCmdVersion(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Version: f.Version}
	return &cobra.Command{
		Use:     "version",
		Short:   "Print kpaas's version",
		Example: "  kpaas version\n  kpaas version --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if runF != nil {
				return runF(opts)
			}
			return versionRun(opts)
		},
	}
}

type versionView struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func versionRun(opts *Options) error {
	v := versionView{Version: opts.Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, v)
	}
	_, err := fmt.Fprintf(opts.IO.Out, "kpaas version %s (%s, %s)\n", v.Version, v.GoVersion, v.Platform)
	return err
}
