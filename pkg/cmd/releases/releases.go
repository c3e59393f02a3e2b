// Package releases implements `kpaas releases`: the uploaded releases and
// which deployments use each version.
package releases

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas releases`.
type Options struct {
	IO    *ui.IOStreams
	State func(ctx context.Context) (state.Store, error)
	Now   func() time.Time
	JSON  bool
}

// NewCmdReleases builds `kpaas releases`. runF replaces the run function in tests.
func NewCmdReleases(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	return &cobra.Command{
		Use:   "releases",
		Short: "List uploaded releases and the deployments using them",
		Long: `List every uploaded release version, newest first within a name: its commit hash,
the deployments whose last successful manifest uses it ("latest" is what deploy takes:
the highest version, or the last uploaded of the 0+dev.<hash> versions upload-release
gives a release directory), and when it was uploaded. Upload with kpaas upload-release.`,
		Example: "  kpaas releases\n  kpaas releases --json | jq -r '.[] | select(.deployments == []) | .name + \"/\" + .version'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if runF != nil {
				return runF(opts)
			}
			return releasesRun(cmd.Context(), opts)
		},
	}
}

type releaseView struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	CommitHash  string    `json:"commit_hash"`
	SHA256      string    `json:"sha256"`
	Deployments []string  `json:"deployments"`
	UploadedAt  time.Time `json:"uploaded_at"`
}

func releasesRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	rels, err := s.Releases(ctx)
	if err != nil {
		return fmt.Errorf("listing releases: %w", err)
	}
	deps, err := s.Deployments(ctx)
	if err != nil {
		return fmt.Errorf("listing deployments: %w", err)
	}
	// "latest" means what deploy takes (engine.MatchRelease): the highest
	// version, or for content-named dev versions the last uploaded.
	used := map[string][]string{} // name/version -> deployments
	for _, d := range deps {
		for _, r := range cmdutil.SummarizeManifest(d.Manifest).Releases {
			if row, ok := engine.MatchRelease(rels, manifest.Release{Name: r.Name, Version: r.Version}); ok {
				used[row.Name+"/"+row.Version] = append(used[row.Name+"/"+row.Version], d.Name)
			}
		}
	}
	sort.SliceStable(rels, func(i, j int) bool {
		if rels[i].Name != rels[j].Name {
			return rels[i].Name < rels[j].Name
		}
		return engine.NewerRelease(rels[i], rels[j])
	})
	views := make([]releaseView, 0, len(rels))
	for _, r := range rels {
		ds := used[r.Name+"/"+r.Version]
		if ds == nil {
			ds = []string{}
		}
		sort.Strings(ds)
		views = append(views, releaseView{Name: r.Name, Version: r.Version, CommitHash: r.CommitHash, SHA256: r.SHA256, Deployments: ds, UploadedAt: r.UploadedAt.UTC()})
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No releases. Upload one with: kpaas upload-release RELEASE.tgz")
		return nil
	}
	now := opts.Now()
	t := ui.NewTable(opts.IO, "name", "version", "commit hash", "deployments", "uploaded")
	for _, v := range views {
		commit := v.CommitHash
		if commit == "" {
			commit = "-"
		}
		deps := strings.Join(v.Deployments, ", ")
		if deps == "" {
			deps = "-"
		}
		t.AddRow(v.Name, v.Version, commit, deps, opts.IO.Time(v.UploadedAt, now))
	}
	return t.Render()
}
