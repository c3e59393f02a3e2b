// Package errands implements `kpaas errands`: the errands of a deployment's
// last successful manifest: instance groups with lifecycle: errand, and jobs
// with a bin/run template colocated on service groups (read from the
// uploaded release tarballs).
package errands

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas errands`.
type Options struct {
	IO         *ui.IOStreams
	State      func(ctx context.Context) (state.Store, error)
	Blobstore  func() (*blobstore.Store, error)
	Deployment string
	JSON       bool
}

// NewCmdErrands builds `kpaas errands`. runF replaces the run function in tests.
func NewCmdErrands(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Blobstore: func() (*blobstore.Store, error) {
		loc, err := state.ResolveLocation(f.Globals.State)
		if err != nil {
			return nil, err
		}
		return blobstore.Open(cmdutil.BlobstoreDir(loc))
	}}
	return &cobra.Command{
		Use:   "errands",
		Short: "List the errands of a deployment",
		Long: `List the errands of -d DEPLOYMENT's last successfully deployed manifest: every
instance group with lifecycle: errand (and the jobs it runs), and every job with
a bin/run template colocated on a service instance group (named after the job,
run on that group's instances). Run one with kpaas run-errand.`,
		Example: "  kpaas errands -d cf\n  kpaas errands -d cf --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("a deployment is required: pass -d NAME")
			}
			if runF != nil {
				return runF(opts)
			}
			return errandsRun(cmd.Context(), opts)
		},
	}
}

type errandView struct {
	Name           string   `json:"name"`
	Colocated      bool     `json:"colocated"`
	InstanceGroups []string `json:"instance_groups"`
	Jobs           []string `json:"jobs"`
}

func errandsRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := s.Deployment(ctx, opts.Deployment)
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("deployment %s not found in %s: `kpaas deployments` lists them", opts.Deployment, s.Location())
	}
	if err != nil {
		return fmt.Errorf("reading deployment %s: %w", opts.Deployment, err)
	}
	sum := cmdutil.SummarizeManifest(d.Manifest)
	views := []errandView{}
	for _, g := range sum.InstanceGroups {
		if g.Lifecycle != "errand" {
			continue
		}
		v := errandView{Name: g.Name, InstanceGroups: []string{g.Name}, Jobs: []string{}}
		for _, j := range g.Jobs {
			v.Jobs = append(v.Jobs, j.Name)
		}
		views = append(views, v)
	}
	colocated, warnings := colocatedErrands(ctx, opts, s, sum)
	views = append(views, colocated...)
	for _, w := range warnings {
		fmt.Fprintln(opts.IO.ErrOut, "Warning:", w)
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintf(opts.IO.ErrOut, "Deployment %s has no errands.\n", opts.Deployment)
		return nil
	}
	t := ui.NewTable(opts.IO, "name", "instance groups", "jobs")
	for _, v := range views {
		t.AddRow(v.Name, strings.Join(v.InstanceGroups, ", "), strings.Join(v.Jobs, ", "))
	}
	return t.Render()
}

// colocatedErrands finds the jobs of service groups that have a bin/run
// template, from the uploaded release tarballs the manifest names. A release
// that cannot be read is a warning: its jobs are left out.
func colocatedErrands(ctx context.Context, opts *Options, s state.Store, sum cmdutil.ManifestSummary) ([]errandView, []string) {
	rels, err := s.Releases(ctx)
	if err != nil {
		return nil, []string{fmt.Sprintf("listing releases, so colocated errands are not shown: %v", err)}
	}
	rows := map[string]state.Release{}
	for _, r := range rels {
		rows[r.Name+"/"+r.Version] = r
	}
	wanted := map[string]string{} // release name -> version in the manifest
	for _, r := range sum.Releases {
		wanted[r.Name] = r.Version
	}
	var warnings []string
	var bs *blobstore.Store
	bsTried := false
	tarballs := map[string]*release.Tarball{} // name/version -> tarball (nil: unreadable)
	isErrand := func(rel, job string) bool {
		row, ok := engine.MatchRelease(rels, manifest.Release{Name: rel, Version: wanted[rel]})
		if !ok {
			return false
		}
		key := rel + "/" + row.Version
		tb, seen := tarballs[key]
		if !seen {
			if !bsTried {
				bsTried = true
				if bs, err = opts.Blobstore(); err != nil {
					warnings = append(warnings, fmt.Sprintf("opening the blobstore, so colocated errands are not shown: %v", err))
					bs = nil
				}
			}
			if bs != nil {
				tb, err = release.ReadTarball(bs.Path(strings.TrimPrefix(rows[key].SHA256, "sha256:")), release.ReadOptions{})
				if err != nil {
					warnings = append(warnings, fmt.Sprintf("reading release %s, so its colocated errands are not shown: %v", key, err))
					tb = nil
				}
			}
			tarballs[key] = tb
		}
		if tb == nil {
			return false
		}
		jc := tb.Job(job)
		if jc == nil || jc.Spec == nil {
			return false
		}
		for _, dst := range jc.Spec.Templates {
			if dst == "bin/run" {
				return true
			}
		}
		return false
	}
	var out []errandView
	index := map[string]int{}
	for _, g := range sum.InstanceGroups {
		if g.Lifecycle == "errand" {
			continue
		}
		for _, j := range g.Jobs {
			if !isErrand(j.Release, j.Name) {
				continue
			}
			if i, ok := index[j.Name]; ok {
				out[i].InstanceGroups = append(out[i].InstanceGroups, g.Name)
				continue
			}
			index[j.Name] = len(out)
			out = append(out, errandView{Name: j.Name, Colocated: true, InstanceGroups: []string{g.Name}, Jobs: []string{j.Name}})
		}
	}
	return out, warnings
}
