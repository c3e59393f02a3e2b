package compile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
)

// CompiledDependencyKey is the cache key of a compiled release package's
// dependencies: the same key DependencyKey gives the package when it is
// compiled from source, computed over the release's compiled packages for
// the same stemcell.
func CompiledDependencyKey(m *release.Manifest, ref release.CompiledPackageRef) string {
	pkgs := map[string]Package{}
	for _, p := range m.CompiledPackages {
		if p.Stemcell == ref.Stemcell {
			pkgs[p.Name] = Package{Name: p.Name, Fingerprint: p.Fingerprint, Dependencies: p.Dependencies}
		}
	}
	return DependencyKey(pkgs, ref.Name)
}

// SplitStemcell splits a compiled_packages stemcell "os/version".
func SplitStemcell(s string) (Stemcell, error) {
	os, v, ok := strings.Cut(s, "/")
	if !ok || os == "" || v == "" {
		return Stemcell{}, fmt.Errorf("stemcell %q is not os/version", s)
	}
	return Stemcell{OS: os, Version: v}, nil
}

// ImportCompiled stores every compiled package of a compiled release (read
// and verified by release.ReadTarball) in the blobstore and records it in the
// compiled-package cache for the stemcell it was compiled against, so a
// deploy on that stemcell never compiles it.
func ImportCompiled(ctx context.Context, st state.Writer, blobs *blobstore.Store, tb *release.Tarball) ([]state.CompiledPackage, error) {
	m := tb.Manifest
	ids := map[string]string{}
	err := release.EachEntry(tb.Path, func(name string, r io.Reader) error {
		pkg, ok := strings.CutPrefix(name, "compiled_packages/")
		if !ok || !strings.HasSuffix(pkg, ".tgz") {
			return nil
		}
		id, _, err := blobs.Put(r)
		if err != nil {
			return fmt.Errorf("storing compiled package %s: %w", strings.TrimSuffix(pkg, ".tgz"), err)
		}
		ids[strings.TrimSuffix(pkg, ".tgz")] = id
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []state.CompiledPackage
	for _, p := range m.CompiledPackages {
		sc, err := SplitStemcell(p.Stemcell)
		if err != nil {
			return nil, fmt.Errorf("release %s/%s compiled package %s: %w", m.Name, m.Version, p.Name, err)
		}
		id, ok := ids[p.Name]
		if !ok {
			return nil, fmt.Errorf("release %s/%s: compiled_packages/%s.tgz is not in the tarball", m.Name, m.Version, p.Name)
		}
		row := state.CompiledPackage{Name: p.Name, Version: p.Version, Fingerprint: p.Fingerprint, StemcellOS: sc.OS, StemcellVersion: sc.Version,
			DependencyKey: CompiledDependencyKey(m, p), BlobSHA256: id}
		if err := st.SaveCompiledPackage(ctx, row); err != nil {
			return nil, fmt.Errorf("recording compiled package %s: %w", p.Name, err)
		}
		out = append(out, row)
	}
	return out, nil
}

// Export writes a compiled release of src at dest from the compiled-package
// cache for stemcell sc, as `bosh export-release` does: every package of src
// must have been compiled for sc (by a deploy) already.
func Export(ctx context.Context, st state.Reader, blobs *blobstore.Store, src *release.Tarball, sc Stemcell, dest string, sha1 bool) (*release.Manifest, error) {
	pkgs := map[string]Package{}
	for _, p := range src.Manifest.Packages {
		pkgs[p.Name] = Package{Name: p.Name, Fingerprint: p.Fingerprint, Dependencies: p.Dependencies}
	}
	var in []release.CompiledInput
	var missing []string
	for _, p := range src.Manifest.Packages {
		row, err := st.CompiledPackage(ctx, p.Fingerprint, sc.OS, sc.Version, DependencyKey(pkgs, p.Name))
		if errors.Is(err, state.ErrNotFound) || err == nil && !blobs.Has(row.BlobSHA256) {
			missing = append(missing, fmt.Sprintf(" - '%s/%s'", p.Name, p.Version))
			continue
		}
		if err != nil {
			return nil, err
		}
		id := row.BlobSHA256
		in = append(in, release.CompiledInput{Name: p.Name, Open: func() (io.ReadCloser, error) { return blobs.Open(id) }})
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("can't export release '%s/%s'. It references packages that are not compiled against stemcell '%s/%s':\n%s\n(deploy it on that stemcell first)",
			src.Manifest.Name, src.Manifest.Version, sc.OS, sc.Version, strings.Join(missing, "\n"))
	}
	return release.WriteCompiledTarball(dest, src, in, release.ExportOptions{Stemcell: sc.OS + "/" + sc.Version, SHA1: sha1})
}
