package upload

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmd/deploy"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/compile"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// ExportOptions of `kpaas export-release`.
type ExportOptions struct {
	IO       *ui.IOStreams
	Factory  *cmdutil.Factory
	JSON     bool
	Release  string // name/version
	Stemcell string // os/version
	Out      string // directory or file
	SHA2     bool
}

type exportView struct {
	Name             string   `json:"name"`
	Version          string   `json:"version"`
	Stemcell         string   `json:"stemcell"`
	Path             string   `json:"path"`
	CompiledPackages []string `json:"compiled_packages"`
}

// NewCmdExportRelease builds `kpaas export-release`.
func NewCmdExportRelease(f *cmdutil.Factory, runF func(*ExportOptions) error) *cobra.Command {
	opts := &ExportOptions{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:   "export-release NAME/VERSION OS/VERSION",
		Short: "Write a compiled release from the compiled-package cache",
		Long: `Write a compiled release tarball of an uploaded release for a stemcell, as bosh
export-release does: its jobs as uploaded, and each package as it was compiled for that
stemcell by an earlier deploy (release.MF lists compiled_packages, no packages). Package
digests are bare SHA-1 unless --sha2. Upload the tarball elsewhere with
` + "`kpaas upload-release`" + ` and deploys on that stemcell create no compile VM.`,
		Example: "  kpaas export-release kpaas-hello/0+dev.1 busybox/1\n  kpaas export-release kpaas-hello/0+dev.1 busybox/1 -o /tmp --sha2 --json",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return cmdutil.FlagErrorf("expected NAME/VERSION OS/VERSION, got %d argument(s)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			opts.Release, opts.Stemcell = args[0], args[1]
			if runF != nil {
				return runF(opts)
			}
			return exportReleaseRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Out, "out", "o", ".", "Directory (or .tgz file) to write the compiled release to")
	cmd.Flags().BoolVar(&opts.SHA2, "sha2", false, "Write sha256: digests instead of bare SHA-1")
	return cmd
}

func exportReleaseRun(ctx context.Context, opts *ExportOptions) error {
	name, version, ok := strings.Cut(opts.Release, "/")
	if !ok || name == "" || version == "" {
		return cmdutil.FlagErrorf("name the release as NAME/VERSION (see `kpaas releases`), got %q", opts.Release)
	}
	sc, err := compile.SplitStemcell(opts.Stemcell)
	if err != nil {
		return cmdutil.FlagErrorf("name the stemcell as OS/VERSION (see `kpaas stemcells`): %v", err)
	}
	env, err := deploy.OpenEnv(ctx, opts.Factory)
	if err != nil {
		return err
	}
	defer env.Close()
	rels, err := env.Store.Releases(ctx)
	if err != nil {
		return err
	}
	var row *state.Release
	for i, r := range rels {
		if r.Name == name && r.Version == version {
			row = &rels[i]
		}
	}
	if row == nil {
		return fmt.Errorf("release %s/%s is not uploaded: %w", name, version, state.ErrNotFound)
	}
	tb, err := release.ReadTarball(env.Blobs.Path(strings.TrimPrefix(row.SHA256, "sha256:")), release.ReadOptions{})
	if err != nil {
		return fmt.Errorf("release %s/%s: reading the uploaded tarball: %w (upload it again)", name, version, err)
	}
	if tb.Manifest.IsCompiled() {
		return fmt.Errorf("release %s/%s is already a compiled release", name, version)
	}
	dest := opts.Out
	if !strings.HasSuffix(dest, ".tgz") {
		dest = filepath.Join(dest, fmt.Sprintf("%s-%s-%s-%s.tgz", name, version, sc.OS, sc.Version))
	}
	m, err := compile.Export(ctx, env.Store, env.Blobs, tb, sc, dest, !opts.SHA2)
	if err != nil {
		return err
	}
	v := exportView{Name: name, Version: version, Stemcell: opts.Stemcell, Path: dest, CompiledPackages: []string{}}
	for _, p := range m.CompiledPackages {
		v.CompiledPackages = append(v.CompiledPackages, p.Name+"/"+p.Version)
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, v)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Exported %s/%s compiled for %s (%d package(s)) to %s.\n", name, version, opts.Stemcell, len(v.CompiledPackages), dest)
	return nil
}
