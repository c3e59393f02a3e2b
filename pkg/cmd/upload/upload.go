// Package upload implements `kpaas upload-release`, `upload-stemcell`,
// `delete-release` and `delete-stemcell`: releases go into the blobstore
// under the state directory, stemcells into every CPI in use; both are
// recorded in the state, and uploading the same thing again does nothing.
package upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/cmd/deploy"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
	"github.com/kpaas/kpaas/stemcells"
)

// Options of the upload and delete commands.
type Options struct {
	IO      *ui.IOStreams
	Factory *cmdutil.Factory
	JSON    bool
	Path    string
	Name    string
	Version string
	Force   bool
	SHA1    string // --sha1: digest of a URL download (bare SHA-1 or sha256:)
}

type uploadView struct {
	Type            string   `json:"type"` // release, stemcell
	Name            string   `json:"name"`
	Version         string   `json:"version"`
	AlreadyUploaded bool     `json:"already_uploaded"`
	SHA256          string   `json:"sha256,omitempty"`
	CPIs            []string `json:"cpis,omitempty"`
	// CompiledPackages are the packages of a compiled release, recorded in
	// the compiled-package cache.
	CompiledPackages []compiledView `json:"compiled_packages,omitempty"`
}

type compiledView struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Stemcell string `json:"stemcell"`
	SHA256   string `json:"sha256"`
}

func newCmd(f *cmdutil.Factory, use, short, long, example string, nargs int, runF func(*Options) error, run func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != nargs {
				return cmdutil.FlagErrorf("expected %d argument(s), got %d", nargs, len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if len(args) > 0 {
				opts.Path = args[0]
				if n, v, ok := strings.Cut(args[0], "/"); ok && strings.HasPrefix(use, "delete") {
					opts.Name, opts.Version = n, v
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	if strings.HasPrefix(use, "upload") {
		cmd.Flags().StringVar(&opts.SHA1, "sha1", "", "Digest a URL download must have: bare SHA-1 or sha256:HEX")
	}
	if strings.HasPrefix(use, "delete") {
		cmd.Flags().BoolVar(&opts.Force, "force", false, "Delete even if a deployment still uses it")
	}
	return cmd
}

// NewCmdUploadRelease builds `kpaas upload-release`.
func NewCmdUploadRelease(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, "upload-release TARBALL|DIR|URL", "Upload a release tarball (or a release directory, built first) to the blobstore",
		`Verify a release tarball (every job and package digest), keep it in the content-addressed
blobstore beside the state, and record it. A release directory is built into a dev tarball
first (as `+"`kpaas create-release`"+`). Uploading a release already there does nothing.
Job and package digests may be bare SHA-1 (older CLIs) or sha256:. A compiled release
(release.MF compiled_packages, e.g. from `+"`kpaas export-release`"+`) has each compiled package
stored and recorded for the stemcell it was compiled against: deploys on that stemcell (or
one of the same major version) install it without compiling.`,
		"  kpaas upload-release https://example.com/kpaas-hello-1.tgz --sha1 sha256:3b1f...\n  kpaas upload-release releases/kpaas-hello\n  kpaas upload-release kpaas-hello-1.tgz --json", 1, runF, uploadReleaseRun)
}

// NewCmdUploadStemcell builds `kpaas upload-stemcell`.
func NewCmdUploadStemcell(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, "upload-stemcell TARBALL|URL", "Upload a stemcell to every CPI in use",
		`Read the stemcell's stemcell.MF, then create it (create_stemcell) in every CPI of the
cpi-config (the local cloud by default) that does not have it yet, and record each.`,
		"  kpaas upload-stemcell https://example.com/stemcell.tgz --sha1 0c6d...\n  kpaas upload-stemcell kpaas-tiny-stemcell.tgz\n  kpaas upload-stemcell stemcell.tgz --json", 1, runF, uploadStemcellRun)
}

// NewCmdDeleteRelease builds `kpaas delete-release`.
func NewCmdDeleteRelease(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, "delete-release NAME/VERSION", "Delete an uploaded release",
		"Forget an uploaded release version and remove its tarball from the blobstore.",
		"  kpaas delete-release kpaas-hello/0+dev.1", 1, runF, deleteReleaseRun)
}

// NewCmdDeleteStemcell builds `kpaas delete-stemcell`.
func NewCmdDeleteStemcell(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	return newCmd(f, "delete-stemcell NAME/VERSION", "Delete an uploaded stemcell from every CPI",
		"Delete the stemcell in every CPI it was uploaded to (delete_stemcell) and forget it.",
		"  kpaas delete-stemcell kpaas-tiny/1", 1, runF, deleteStemcellRun)
}

func print(opts *Options, v uploadView) error {
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, v)
	}
	if v.AlreadyUploaded {
		fmt.Fprintf(opts.IO.ErrOut, "%s %s/%s already uploaded.\n", v.Type, v.Name, v.Version)
		return nil
	}
	fmt.Fprintf(opts.IO.ErrOut, "Uploaded %s %s/%s.\n", v.Type, v.Name, v.Version)
	return nil
}

// openLocked opens the environment and takes the global lock (releases and
// stemcells are shared by every deployment) for op; done releases both.
func openLocked(ctx context.Context, opts *Options, op string) (*deploy.Env, func(), error) {
	env, err := deploy.OpenEnv(ctx, opts.Factory)
	if err != nil {
		return nil, nil, err
	}
	lock, err := env.Store.Lock(ctx, state.LockRequest{Name: state.GlobalLock, Op: op})
	if err != nil {
		env.Close()
		return nil, nil, err
	}
	return env, func() {
		lock.Release(context.Background())
		env.Close()
	}, nil
}

func uploadReleaseRun(ctx context.Context, opts *Options) error {
	cleanup, err := download(ctx, opts)
	if err != nil {
		return err
	}
	defer cleanup()
	env, done, err := openLocked(ctx, opts, "upload-release")
	if err != nil {
		return err
	}
	defer done()
	path := opts.Path
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("reading the release: %w", err)
	}
	if fi.IsDir() {
		fmt.Fprintf(opts.IO.ErrOut, "Building the release in %s...\n", path)
		dir, err := release.ReadDir(path)
		if err != nil {
			return err
		}
		tmp, err := os.MkdirTemp("", "kpaas-release-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		path = filepath.Join(tmp, "release.tgz")
		if _, err := dir.WriteTarball(path, release.CreateOptions{Version: contentVersion(dir)}); err != nil {
			return fmt.Errorf("building the release in %s: %w", opts.Path, err)
		}
	}
	r, err := env.StoreRelease(ctx, path, opts.IO.ErrOut)
	if err != nil {
		return err
	}
	v := uploadView{Type: "release", Name: r.Name, Version: r.Version, SHA256: r.SHA256, AlreadyUploaded: r.AlreadyUploaded}
	for _, c := range r.Compiled {
		v.CompiledPackages = append(v.CompiledPackages, compiledView{Name: c.Name, Version: c.Version, Stemcell: c.StemcellOS + "/" + c.StemcellVersion, SHA256: c.BlobSHA256})
	}
	if len(r.Compiled) > 0 && !opts.JSON {
		fmt.Fprintf(opts.IO.ErrOut, "Recorded %d compiled package(s) for stemcell %s.\n", len(r.Compiled), strings.Join(r.Tarball.Manifest.CompiledStemcells(), ", "))
	}
	return print(opts, v)
}

func uploadStemcellRun(ctx context.Context, opts *Options) error {
	cleanup, err := download(ctx, opts)
	if err != nil {
		return err
	}
	defer cleanup()
	env, done, err := openLocked(ctx, opts, "upload-stemcell")
	if err != nil {
		return err
	}
	defer done()
	tmp, err := os.MkdirTemp("", "kpaas-stemcell-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(opts.IO.ErrOut, "Reading %s...\n", opts.Path)
	tb, err := stemcells.Open(opts.Path, tmp)
	if err != nil {
		return err
	}
	os.Remove(tb.ImagePath)
	mf := tb.Manifest
	v := uploadView{Type: "stemcell", Name: mf.Name, Version: mf.Version, CPIs: []string{}}
	set, err := env.CPIs(ctx)
	if err != nil {
		return err
	}
	have, err := env.Store.Stemcells(ctx)
	if err != nil {
		return err
	}
	uploaded := 0
	for _, name := range set.Names() {
		known := false
		for _, s := range have {
			if s.Name == mf.Name && s.Version == mf.Version && s.CPI == name {
				known = true
			}
		}
		if known {
			continue
		}
		c, _, err := set.ForAZ("", name)
		if err != nil {
			return err
		}
		fmt.Fprintf(opts.IO.ErrOut, "Creating stemcell %s/%s in cpi %s...\n", mf.Name, mf.Version, name)
		cid, err := c.CreateStemcell(ctx, opts.Path, cpi.Props(mf.CloudProperties))
		if err != nil {
			return fmt.Errorf("creating stemcell in cpi %s: %w", name, err)
		}
		if err := env.Store.SaveStemcell(ctx, state.Stemcell{Name: mf.Name, Version: mf.Version, OS: mf.OperatingSystem, CID: string(cid), CPI: name, APIVersion: mf.APIVersion}); err != nil {
			_ = c.DeleteStemcell(context.WithoutCancel(ctx), cid)
			return err
		}
		v.CPIs = append(v.CPIs, name)
		uploaded++
	}
	v.AlreadyUploaded = uploaded == 0
	return print(opts, v)
}

func deleteReleaseRun(ctx context.Context, opts *Options) error {
	if opts.Name == "" || opts.Version == "" {
		return cmdutil.FlagErrorf("name the release as NAME/VERSION (see `kpaas releases`)")
	}
	env, done, err := openLocked(ctx, opts, "delete-release")
	if err != nil {
		return err
	}
	defer done()
	rels, err := env.Store.Releases(ctx)
	if err != nil {
		return err
	}
	for _, r := range rels {
		if r.Name == opts.Name && r.Version == opts.Version {
			if err := env.Store.DeleteRelease(ctx, r.Name, r.Version); err != nil {
				return err
			}
			_ = env.Blobs.Delete(strings.TrimPrefix(r.SHA256, "sha256:"))
			fmt.Fprintf(opts.IO.ErrOut, "Deleted release %s/%s.\n", r.Name, r.Version)
			return nil
		}
	}
	return fmt.Errorf("release %s/%s is not uploaded: %w", opts.Name, opts.Version, state.ErrNotFound)
}

func deleteStemcellRun(ctx context.Context, opts *Options) error {
	if opts.Name == "" || opts.Version == "" {
		return cmdutil.FlagErrorf("name the stemcell as NAME/VERSION (see `kpaas stemcells`)")
	}
	env, done, err := openLocked(ctx, opts, "delete-stemcell")
	if err != nil {
		return err
	}
	defer done()
	have, err := env.Store.Stemcells(ctx)
	if err != nil {
		return err
	}
	var errs []error
	found := false
	for _, s := range have {
		if s.Name != opts.Name || s.Version != opts.Version {
			continue
		}
		found = true
		set, err := env.CPIs(ctx)
		if err != nil {
			return err
		}
		c, _, err := set.ForAZ("", s.CPI)
		if err == nil {
			err = c.DeleteStemcell(ctx, cpi.StemcellCID(s.CID))
		}
		if err != nil && !opts.Force {
			errs = append(errs, fmt.Errorf("deleting stemcell from cpi %s: %w", s.CPI, err))
			continue
		}
		if err := env.Store.DeleteStemcell(ctx, s.Name, s.Version, s.CPI); err != nil {
			errs = append(errs, err)
		}
	}
	if !found {
		return fmt.Errorf("stemcell %s/%s is not uploaded: %w", opts.Name, opts.Version, state.ErrNotFound)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Deleted stemcell %s/%s.\n", opts.Name, opts.Version)
	return nil
}

// contentVersion names a directory's release by its content: the same jobs
// and packages give the same version, so uploading it again does nothing.
func contentVersion(d *release.Dir) string {
	h := sha256.New()
	for _, j := range d.Jobs {
		fmt.Fprintf(h, "job %s %s\n", j.Name, j.Fingerprint)
	}
	for _, p := range d.Packages {
		fmt.Fprintf(h, "package %s %s\n", p.Name, p.Fingerprint)
	}
	return "0+dev." + hex.EncodeToString(h.Sum(nil))[:12]
}

// download fetches opts.Path when it is a URL and points opts.Path at the
// temporary file; --sha1 without a URL is a usage error.
func download(ctx context.Context, opts *Options) (func(), error) {
	if !deploy.IsURL(opts.Path) {
		if opts.SHA1 != "" {
			return func() {}, cmdutil.FlagErrorf("--sha1 checks a download: give an http(s) URL, not %q", opts.Path)
		}
		return func() {}, nil
	}
	var now func() time.Time
	if opts.Factory != nil && opts.Factory.Now != nil {
		now = opts.Factory.Now
	}
	path, cleanup, err := deploy.Fetch(ctx, opts.Path, opts.SHA1, ".tgz", opts.IO.ErrOut, now)
	if err != nil {
		return func() {}, err
	}
	opts.Path = path
	return cleanup, nil
}
