// Package stemcells implements `kpaas stemcells`: the uploaded stemcells,
// per CPI, and which deployments use each one.
package stemcells

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas stemcells`.
type Options struct {
	IO    *ui.IOStreams
	State func(ctx context.Context) (state.Store, error)
	Now   func() time.Time
	JSON  bool
}

// NewCmdStemcells builds `kpaas stemcells`. runF replaces the run function in tests.
func NewCmdStemcells(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	return &cobra.Command{
		Use:   "stemcells",
		Short: "List uploaded stemcells and the deployments using them",
		Long: `List every uploaded stemcell, newest first within a name: its OS, the CPI it was
uploaded to ("default" for the default CPI), its CID in that cloud, the
deployments whose last successful manifest uses it ("latest" counts for the
highest version) and when it was uploaded. Upload with kpaas upload-stemcell.`,
		Example: "  kpaas stemcells\n  kpaas stemcells --json | jq -r '.[].cid'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if runF != nil {
				return runF(opts)
			}
			return stemcellsRun(cmd.Context(), opts)
		},
	}
}

type stemcellView struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	OS          string    `json:"os"`
	CPI         string    `json:"cpi"`
	CID         string    `json:"cid"`
	Deployments []string  `json:"deployments"`
	UploadedAt  time.Time `json:"uploaded_at"`
}

func stemcellsRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	scs, err := s.Stemcells(ctx)
	if err != nil {
		return fmt.Errorf("listing stemcells: %w", err)
	}
	deps, err := s.Deployments(ctx)
	if err != nil {
		return fmt.Errorf("listing deployments: %w", err)
	}
	// A manifest names a stemcell by os or by name.
	byOS, byName := map[string][]string{}, map[string][]string{}
	for _, sc := range scs {
		byOS[sc.OS] = append(byOS[sc.OS], sc.Version)
		byName[sc.Name] = append(byName[sc.Name], sc.Version)
	}
	used := map[string][]string{} // "os\x00version" or "name\x01version" -> deployments
	for _, d := range deps {
		for _, m := range cmdutil.SummarizeManifest(d.Manifest).Stemcells {
			if m.OS != "" {
				if v, ok := cmdutil.ResolveVersion(m.Version, byOS[m.OS]); ok {
					used[m.OS+"\x00"+v] = append(used[m.OS+"\x00"+v], d.Name)
				}
			} else if v, ok := cmdutil.ResolveVersion(m.Version, byName[m.Name]); ok {
				used[m.Name+"\x01"+v] = append(used[m.Name+"\x01"+v], d.Name)
			}
		}
	}
	sort.SliceStable(scs, func(i, j int) bool {
		if scs[i].Name != scs[j].Name {
			return scs[i].Name < scs[j].Name
		}
		if c := cmdutil.CompareVersions(scs[i].Version, scs[j].Version); c != 0 {
			return c > 0
		}
		return scs[i].CPI < scs[j].CPI
	})
	views := make([]stemcellView, 0, len(scs))
	for _, sc := range scs {
		seen := map[string]bool{}
		ds := []string{}
		for _, d := range append(used[sc.OS+"\x00"+sc.Version], used[sc.Name+"\x01"+sc.Version]...) {
			if !seen[d] {
				seen[d] = true
				ds = append(ds, d)
			}
		}
		sort.Strings(ds)
		cpi := sc.CPI
		if cpi == "" {
			cpi = "default"
		}
		views = append(views, stemcellView{Name: sc.Name, Version: sc.Version, OS: sc.OS, CPI: cpi, CID: sc.CID, Deployments: ds, UploadedAt: sc.UploadedAt.UTC()})
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No stemcells. Upload one with: kpaas upload-stemcell STEMCELL.tgz")
		return nil
	}
	now := opts.Now()
	t := ui.NewTable(opts.IO, "name", "version", "os", "cpi", "cid", "deployments", "uploaded")
	for _, v := range views {
		deps := strings.Join(v.Deployments, ", ")
		if deps == "" {
			deps = "-"
		}
		t.AddRow(v.Name, v.Version, v.OS, v.CPI, v.CID, deps, opts.IO.Time(v.UploadedAt, now))
	}
	return t.Render()
}
