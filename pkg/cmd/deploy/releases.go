package deploy

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kpaas/kpaas/pkg/compile"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
)

// StoredRelease is what StoreRelease did with a release tarball.
type StoredRelease struct {
	Name, Version, SHA256 string
	AlreadyUploaded       bool
	Tarball               *release.Tarball
	// Compiled are the compiled packages recorded (a compiled release only).
	Compiled []state.CompiledPackage
}

// StoreRelease verifies the release tarball at path, puts it in the
// blobstore and records it in the state (and a compiled release's packages in
// the compile cache). A release already stored is left alone, but its
// compiled packages are still recorded. The caller holds the global lock.
func (e *Env) StoreRelease(ctx context.Context, path string, progress io.Writer) (*StoredRelease, error) {
	fmt.Fprintf(progress, "Verifying %s...\n", path)
	tb, err := release.ReadTarball(path, release.ReadOptions{})
	if err != nil {
		return nil, err
	}
	r := &StoredRelease{Name: tb.Manifest.Name, Version: tb.Manifest.Version, Tarball: tb}
	rels, err := e.Store.Releases(ctx)
	if err != nil {
		return nil, err
	}
	for _, row := range rels {
		if row.Name == r.Name && row.Version == r.Version && e.Blobs.Has(strings.TrimPrefix(row.SHA256, "sha256:")) {
			r.AlreadyUploaded, r.SHA256 = true, row.SHA256
			// A compiled release of a version already there (from source, or
			// compiled for another stemcell) still adds its compiled packages.
			return r, e.importCompiled(ctx, r)
		}
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	pr := &ProgressReader{R: fh, Total: fi.Size(), W: progress, What: "Storing " + r.Name + "/" + r.Version, Start: time.Now()}
	id, _, err := e.Blobs.Put(pr)
	pr.Finish()
	if err != nil {
		return nil, err
	}
	r.SHA256 = id
	if err := e.importCompiled(ctx, r); err != nil {
		return nil, err
	}
	if err := e.Store.SaveRelease(ctx, state.Release{Name: r.Name, Version: r.Version, CommitHash: tb.Manifest.CommitHash, SHA256: id}); err != nil {
		return nil, err
	}
	_, _ = e.Store.AppendEvents(ctx, state.Event{Action: "create", ObjectType: "release", ObjectName: r.Name + "/" + r.Version})
	return r, nil
}

func (e *Env) importCompiled(ctx context.Context, r *StoredRelease) error {
	if !r.Tarball.Manifest.IsCompiled() {
		return nil
	}
	rows, err := compile.ImportCompiled(ctx, e.Store, e.Blobs, r.Tarball)
	r.Compiled = rows
	return err
}

// uploadFromURLs uploads, as `bosh deploy` does, the manifest's releases that
// are not uploaded yet but name a url (checked against their sha1), found in
// Prepare's error. It reports whether it uploaded any; an error says which
// release could not be fetched.
func uploadFromURLs(ctx context.Context, env *Env, prepErr error, now func() time.Time, progress io.Writer) (bool, error) {
	// Prepare joins one error per problem: collect every missing release.
	var missing []*engine.ReleaseNotUploadedError
	var walk func(error)
	walk = func(err error) {
		if m, ok := err.(*engine.ReleaseNotUploadedError); ok {
			missing = append(missing, m)
		} else if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(prepErr)
	any := false
	for _, m := range missing {
		if m.URL == "" {
			continue
		}
		if err := uploadFromURL(ctx, env, m, now, progress); err != nil {
			return any, fmt.Errorf("release %s/%s: %w", m.Name, m.Version, err)
		}
		any = true
	}
	return any, nil
}

func uploadFromURL(ctx context.Context, env *Env, m *engine.ReleaseNotUploadedError, now func() time.Time, progress io.Writer) error {
	if !IsURL(m.URL) {
		return fmt.Errorf("url %q is not an http(s) URL: upload the release with `kpaas upload-release` first", m.URL)
	}
	fmt.Fprintf(progress, "Release %s/%s is not uploaded: uploading it from %s\n", m.Name, m.Version, m.URL)
	path, cleanup, err := Fetch(ctx, m.URL, m.SHA1, ".tgz", progress, now)
	defer cleanup()
	if err != nil {
		return err
	}
	lock, err := env.Store.Lock(ctx, state.LockRequest{Name: state.GlobalLock, Op: "upload-release"})
	if err != nil {
		return err
	}
	defer lock.Release(context.Background())
	r, err := env.StoreRelease(ctx, path, progress)
	if err != nil {
		return err
	}
	if r.Name != m.Name || r.Version != m.Version {
		return fmt.Errorf("%s holds release %s/%s, not %s/%s: fix the manifest's releases entry", m.URL, r.Name, r.Version, m.Name, m.Version)
	}
	return nil
}

// ProgressReader reports bytes and rate on W while a blob is stored.
type ProgressReader struct {
	R     io.Reader
	W     io.Writer
	What  string
	Total int64
	Start time.Time
	n     int64
	last  time.Time
}

func (p *ProgressReader) Read(b []byte) (int, error) {
	n, err := p.R.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) > 500*time.Millisecond {
		p.last = now
		p.print("")
	}
	return n, err
}

func (p *ProgressReader) print(end string) {
	secs := time.Since(p.Start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.n) / secs / (1 << 20)
	}
	fmt.Fprintf(p.W, "\r%s: %.1f/%.1f MiB (%.1f MiB/s)%s", p.What, float64(p.n)/(1<<20), float64(p.Total)/(1<<20), rate, end)
}

// Finish prints the final line.
func (p *ProgressReader) Finish() { p.print("\n") }
