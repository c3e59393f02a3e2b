// Package createrelease implements `kpaas create-release`: build a BOSH release
// directory into a release tarball with release.MF and bosh-cli fingerprints.
package createrelease

import (
	"fmt"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas create-release`.
type Options struct {
	IO   *ui.IOStreams
	Now  func() time.Time
	JSON bool

	Dir              string
	Tarball          string
	Name             string
	Version          string
	Force            bool
	Final            bool
	TimestampVersion bool
}

// NewCmdCreateRelease builds `kpaas create-release`. runF replaces the run function in tests.
func NewCmdCreateRelease(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "create-release [DIR]",
		Short: "Build a BOSH release directory into a release tarball",
		Long: `Build a BOSH release directory (jobs/, packages/, src/, blobs/, config/) into a
release tarball: release.MF plus one archive per job and package and the license,
with the same fingerprints bosh-cli computes and sha256 digests.

Without --version, a dev release gets the next dev version (0+dev.1, 0+dev.2, ...,
3+dev.1 after final 3) and --final the next final version (1, 2, ...). The release
manifest is recorded under dev_releases/<name>/ (or releases/<name>/ with --final).
Without --tarball, the tarball is written beside it as <name>-<version>.tgz.

A release directory in git must have no uncommitted changes, unless --force.`,
		Example: `  kpaas create-release
  kpaas create-release releases/kpaas-hello --tarball /tmp/hello.tgz
  kpaas create-release --final --version 1.2.0 --force
  kpaas create-release ./my-release --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			opts.Dir = "."
			if len(args) == 1 {
				opts.Dir = args[0]
			}
			if opts.TimestampVersion && opts.Version != "" {
				return cmdutil.FlagErrorf("--timestamp-version and --version cannot be used together")
			}
			if opts.TimestampVersion && opts.Final {
				return cmdutil.FlagErrorf("--timestamp-version is for dev releases; it cannot be used with --final")
			}
			if opts.Version != "" {
				if _, err := release.ParseVersion(opts.Version); err != nil {
					return cmdutil.FlagErrorf("--version: %v", err)
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return createReleaseRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Tarball, "tarball", "", "Write the release tarball to `file` (default dev_releases/<name>/<name>-<version>.tgz)")
	fl.StringVar(&opts.Name, "name", "", "Release `name` (default: name in config/final.yml)")
	fl.StringVar(&opts.Version, "version", "", "Release `version` (default: the next dev or final version)")
	fl.BoolVar(&opts.Force, "force", false, "Build even when the release directory has uncommitted git changes")
	fl.BoolVar(&opts.Final, "final", false, "Make a final release (recorded under releases/<name>/)")
	fl.BoolVar(&opts.TimestampVersion, "timestamp-version", false, "Give the dev release the version <last>+dev.<unix seconds>")
	return cmd
}

type artifactView struct {
	Name        string   `json:"name"`
	Fingerprint string   `json:"fingerprint"`
	SHA1        string   `json:"sha1"`
	Packages    []string `json:"packages,omitempty"`
	Deps        []string `json:"dependencies,omitempty"`
}

type releaseView struct {
	Name               string         `json:"name"`
	Version            string         `json:"version"`
	CommitHash         string         `json:"commit_hash"`
	UncommittedChanges bool           `json:"uncommitted_changes"`
	Final              bool           `json:"final"`
	Tarball            string         `json:"tarball"`
	Manifest           string         `json:"manifest"`
	Jobs               []artifactView `json:"jobs"`
	Packages           []artifactView `json:"packages"`
	License            *artifactView  `json:"license,omitempty"`
}

func createReleaseRun(opts *Options) error {
	d, err := release.ReadDir(opts.Dir)
	if err != nil {
		return err
	}
	name := opts.Name
	if name == "" {
		name = d.Name()
	}
	if name == "" {
		return fmt.Errorf("no release name: set name in %s or give --name", filepath.Join(d.Path, "config", "final.yml"))
	}
	commit, dirty := release.GitState(d.Path)
	if dirty && !opts.Force {
		return fmt.Errorf("release directory %s has uncommitted changes (git status --porcelain): commit them, or use --force to build anyway", d.Path)
	}
	version, err := chooseVersion(opts, d.Path, name)
	if err != nil {
		return err
	}
	existing, err := release.Versions(d.Path, name, opts.Final)
	if err != nil {
		return err
	}
	for _, v := range existing {
		if v.String() == version {
			return &release.ErrVersionExists{Name: name, Version: version}
		}
	}
	kind := "dev_releases"
	if opts.Final {
		kind = "releases"
	}
	tarball := opts.Tarball
	if tarball == "" {
		tarball = filepath.Join(d.Path, kind, name, name+"-"+version+".tgz")
	}
	if tarball, err = filepath.Abs(tarball); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Building release %s/%s from %s\n", name, version, d.Path)
	m, err := d.WriteTarball(tarball, release.CreateOptions{
		Name: name, Version: version, CommitHash: commit, UncommittedChanges: dirty,
		Progress: func(kind, n, fp string) { fmt.Fprintf(opts.IO.ErrOut, "  Added %s '%s/%s'\n", kind, n, fp) },
	})
	if err != nil {
		return err
	}
	if err := release.RecordRelease(d.Path, m, opts.Final); err != nil {
		return fmt.Errorf("recording release %s/%s in %s: %w", name, version, filepath.Join(d.Path, kind, name), err)
	}
	v := releaseView{Name: m.Name, Version: m.Version, CommitHash: m.CommitHash, UncommittedChanges: m.UncommittedChanges, Final: opts.Final,
		Tarball: tarball, Manifest: filepath.Join(d.Path, kind, name, name+"-"+version+".yml"), Jobs: []artifactView{}, Packages: []artifactView{}}
	for _, j := range m.Jobs {
		v.Jobs = append(v.Jobs, artifactView{Name: j.Name, Fingerprint: j.Fingerprint, SHA1: j.SHA1, Packages: j.Packages})
	}
	for _, p := range m.Packages {
		v.Packages = append(v.Packages, artifactView{Name: p.Name, Fingerprint: p.Fingerprint, SHA1: p.SHA1, Deps: p.Dependencies})
	}
	if m.License != nil {
		v.License = &artifactView{Name: "license", Fingerprint: m.License.Fingerprint, SHA1: m.License.SHA1}
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, v)
	}
	return printRelease(opts.IO, v)
}

func chooseVersion(opts *Options, dir, name string) (string, error) {
	switch {
	case opts.Version != "":
		return opts.Version, nil
	case opts.Final:
		v, err := release.NextFinalVersion(dir, name)
		return v.String(), err
	case opts.TimestampVersion:
		v, err := release.NextDevVersion(dir, name)
		if err != nil {
			return "", err
		}
		v.Post = []string{"dev", strconv.FormatInt(opts.Now().Unix(), 10)}
		return release.Version{Release: v.Release, Pre: v.Pre, Post: v.Post}.String(), nil
	default:
		v, err := release.NextDevVersion(dir, name)
		return v.String(), err
	}
}

func printRelease(io *ui.IOStreams, v releaseView) error {
	w := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Name\t%s\n", v.Name)
	fmt.Fprintf(w, "Version\t%s\n", v.Version)
	commit := v.CommitHash
	if v.UncommittedChanges {
		commit += "+"
	}
	fmt.Fprintf(w, "Commit Hash\t%s\n", commit)
	fmt.Fprintf(w, "Archive\t%s\n", v.Tarball)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "JOB\tDIGEST\tPACKAGES")
	for _, j := range v.Jobs {
		fmt.Fprintf(w, "%s/%s\t%s\t%s\n", j.Name, short(j.Fingerprint), j.SHA1, joinOrDash(j.Packages))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "PACKAGE\tDIGEST\tDEPENDENCIES")
	for _, p := range v.Packages {
		fmt.Fprintf(w, "%s/%s\t%s\t%s\n", p.Name, short(p.Fingerprint), p.SHA1, joinOrDash(p.Deps))
	}
	if v.License != nil {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "License\t%s/%s\t%s\n", "license", short(v.License.Fingerprint), v.License.SHA1)
	}
	fmt.Fprintf(w, "\n%d job(s), %d package(s)\n", len(v.Jobs), len(v.Packages))
	return w.Flush()
}

func short(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}

func joinOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}
