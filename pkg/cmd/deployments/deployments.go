// Package deployments implements `kpaas deployments`: every deployment in
// the state with the releases and stemcells of its last successful manifest.
package deployments

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas deployments`.
type Options struct {
	IO    *ui.IOStreams
	State func(ctx context.Context) (state.Store, error)
	Now   func() time.Time
	JSON  bool
}

// NewCmdDeployments builds `kpaas deployments`. runF replaces the run function in tests.
func NewCmdDeployments(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	return &cobra.Command{
		Use:     "deployments",
		Aliases: []string{"ds"},
		Short:   "List deployments with their releases, stemcells and instances",
		Long: `List the deployments recorded in the state: the releases and stemcells of each
one's last successful manifest ("latest" shown as the version it means now), how many instances it has, and when it was last
deployed ("-" if it never deployed successfully).`,
		Example: "  kpaas deployments\n  kpaas deployments --json | jq -r '.[].name'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if runF != nil {
				return runF(opts)
			}
			return deploymentsRun(cmd.Context(), opts)
		},
	}
}

type deploymentView struct {
	Name           string     `json:"name"`
	Releases       []string   `json:"releases"`
	Stemcells      []string   `json:"stemcells"`
	Instances      int        `json:"instances"`
	Serial         int64      `json:"serial"`
	LastDeployedAt *time.Time `json:"last_deployed_at"`
}

func deploymentsRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	deps, err := s.Deployments(ctx)
	if err != nil {
		return fmt.Errorf("listing deployments: %w", err)
	}
	// "latest" in a manifest means what deploy takes (the highest uploaded
	// version; for releases, engine.MatchRelease): show that.
	rels, err := s.Releases(ctx)
	if err != nil {
		return fmt.Errorf("listing releases: %w", err)
	}
	scs, err := s.Stemcells(ctx)
	if err != nil {
		return fmt.Errorf("listing stemcells: %w", err)
	}
	scVersions := map[string][]string{}
	for _, sc := range scs {
		scVersions[sc.OS] = append(scVersions[sc.OS], sc.Version)
		if sc.Name != sc.OS {
			scVersions[sc.Name] = append(scVersions[sc.Name], sc.Version)
		}
	}
	resolve := func(want string, have []string) string {
		if v, ok := cmdutil.ResolveVersion(want, have); ok {
			return v
		}
		return want
	}
	views := make([]deploymentView, 0, len(deps))
	for _, d := range deps {
		ds, err := s.LoadDeployment(ctx, d.Name)
		if err != nil {
			return fmt.Errorf("loading deployment %s: %w", d.Name, err)
		}
		sum := cmdutil.SummarizeManifest(d.Manifest)
		v := deploymentView{Name: d.Name, Releases: []string{}, Stemcells: []string{}, Instances: len(ds.Instances), Serial: d.Serial}
		for _, r := range sum.Releases {
			version := r.Version
			if row, ok := engine.MatchRelease(rels, manifest.Release{Name: r.Name, Version: r.Version}); ok {
				version = row.Version
			}
			v.Releases = append(v.Releases, r.Name+"/"+version)
		}
		for _, sc := range sum.Stemcells {
			name := sc.OS
			if name == "" {
				name = sc.Name
			}
			v.Stemcells = append(v.Stemcells, name+"/"+resolve(sc.Version, scVersions[name]))
		}
		if !d.LastDeployedAt.IsZero() {
			at := d.LastDeployedAt.UTC()
			v.LastDeployedAt = &at
		}
		views = append(views, v)
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No deployments. Deploy one with: kpaas deploy -d NAME manifest.yml")
		return nil
	}
	now := opts.Now()
	t := ui.NewTable(opts.IO, "name", "releases", "stemcells", "instances", "last deployed")
	for _, v := range views {
		var last time.Time
		if v.LastDeployedAt != nil {
			last = *v.LastDeployedAt
		}
		t.AddRow(v.Name, orDash(strings.Join(v.Releases, ", ")), orDash(strings.Join(v.Stemcells, ", ")), strconv.Itoa(v.Instances), opts.IO.Time(last, now))
	}
	return t.Render()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
