// Package disks implements `kpaas disks`: the persistent disks of
// deployments, or with --orphaned the disks no instance uses any more.
package disks

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas disks`.
type Options struct {
	IO         *ui.IOStreams
	State      func(ctx context.Context) (state.Store, error)
	Now        func() time.Time
	Deployment string
	Orphaned   bool
	JSON       bool
}

// NewCmdDisks builds `kpaas disks`. runF replaces the run function in tests.
func NewCmdDisks(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, State: f.OpenState, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "disks [--orphaned]",
		Short: "List persistent disks, or orphaned disks",
		Long: `List the persistent disks of every deployment (or of -d DEPLOYMENT): the instance
using each, its CID in the cloud, its name ("-" for the default disk), size and
whether it is attached and in use (active).

With --orphaned, list the disks that no instance uses any more (left by a scale
down, a disk type change or delete-deployment), kept until you delete them.`,
		Example: "  kpaas disks -d cf\n  kpaas disks --orphaned\n  kpaas disks --orphaned --json | jq -r '.[].cid'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if runF != nil {
				return runF(opts)
			}
			return disksRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Orphaned, "orphaned", false, "List orphaned disks instead")
	return cmd
}

type diskView struct {
	CID        string    `json:"cid"`
	Deployment string    `json:"deployment"`
	Instance   string    `json:"instance"`
	AZ         string    `json:"az"`
	Name       string    `json:"name"`
	SizeMB     int       `json:"size_mb"`
	Active     bool      `json:"active"`
	CreatedAt  time.Time `json:"created_at"`
}

type orphanView struct {
	CID        string    `json:"cid"`
	Deployment string    `json:"deployment"`
	Instance   string    `json:"instance"`
	AZ         string    `json:"az"`
	SizeMB     int       `json:"size_mb"`
	OrphanedAt time.Time `json:"orphaned_at"`
}

// Size says a disk size the way BOSH does: whole GiB when it is one, else MiB.
func Size(mb int) string {
	if mb >= 1024 && mb%1024 == 0 {
		return fmt.Sprintf("%d GiB", mb/1024)
	}
	return fmt.Sprintf("%d MiB", mb)
}

func disksRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s, err := opts.State(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if opts.Orphaned {
		return orphaned(ctx, opts, s)
	}
	names, err := cmdutil.DeploymentNames(ctx, s, opts.Deployment)
	if err != nil {
		return err
	}
	views := []diskView{}
	for _, name := range names {
		ds, err := cmdutil.LoadDeployment(ctx, s, s.Location(), name)
		if err != nil {
			return err
		}
		insts := map[string]state.Instance{}
		for _, i := range ds.Instances {
			insts[i.UUID] = i
		}
		var dv []diskView
		for _, d := range ds.Disks {
			i := insts[d.Instance]
			inst := "-"
			if i.UUID != "" {
				inst = i.ID()
			}
			dv = append(dv, diskView{CID: d.CID, Deployment: name, Instance: inst, AZ: i.AZ, Name: d.Name, SizeMB: d.SizeMB, Active: d.Active, CreatedAt: d.CreatedAt.UTC()})
		}
		sort.SliceStable(dv, func(a, b int) bool {
			if dv[a].Instance != dv[b].Instance {
				return dv[a].Instance < dv[b].Instance
			}
			return dv[a].Name < dv[b].Name
		})
		views = append(views, dv...)
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No persistent disks.")
		return nil
	}
	t := ui.NewTable(opts.IO, "deployment", "instance", "az", "disk cid", "name", "size", "active")
	for _, v := range views {
		t.AddRow(v.Deployment, v.Instance, dash(v.AZ), v.CID, dash(v.Name), Size(v.SizeMB), fmt.Sprint(v.Active))
	}
	return t.Render()
}

func orphaned(ctx context.Context, opts *Options, s state.Store) error {
	ods, err := s.OrphanedDisks(ctx)
	if err != nil {
		return fmt.Errorf("listing orphaned disks: %w", err)
	}
	views := []orphanView{}
	for _, d := range ods {
		if opts.Deployment != "" && d.Deployment != opts.Deployment {
			continue
		}
		views = append(views, orphanView{CID: d.CID, Deployment: d.Deployment, Instance: d.Instance, AZ: d.AZ, SizeMB: d.SizeMB, OrphanedAt: d.OrphanedAt.UTC()})
	}
	sort.SliceStable(views, func(a, b int) bool { return views[a].OrphanedAt.After(views[b].OrphanedAt) })
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No orphaned disks.")
		return nil
	}
	now := opts.Now()
	t := ui.NewTable(opts.IO, "disk cid", "size", "deployment", "instance", "az", "orphaned")
	for _, v := range views {
		t.AddRow(v.CID, Size(v.SizeMB), v.Deployment, dash(v.Instance), dash(v.AZ), opts.IO.Time(v.OrphanedAt, now))
	}
	return t.Render()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
