package release

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// EachEntry calls fn with every regular file of a release tarball (gzipped
// or plain tar), named without any "./" prefix, in archive order.
func EachEntry(file string, fn func(name string, r io.Reader) error) error {
	fh, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("reading release tarball: %w", err)
	}
	defer fh.Close()
	tr, err := openTar(fh)
	if err != nil {
		return fmt.Errorf("reading release tarball %s: %w", file, err)
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading release tarball %s: %w", file, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if err := fn(strings.TrimPrefix(path.Clean(hdr.Name), "./"), tr); err != nil {
			return err
		}
	}
}

// StemcellMatches reports whether packages compiled against the stemcell
// "os/version" named by compiledFor can run on stemcell os/version: the same
// os and the same version, or the same major version (the part before the
// first dot), as the BOSH director floats compiled packages across minor
// stemcell versions.
func StemcellMatches(compiledFor, os, version string) bool {
	cos, cver, ok := strings.Cut(compiledFor, "/")
	if !ok || cos != os {
		return false
	}
	if cver == version {
		return true
	}
	major := func(v string) string { m, _, _ := strings.Cut(v, "."); return m }
	return major(cver) == major(version)
}

// CompiledFor returns the compiled_packages entry for package name that runs
// on stemcell os/version: an exact stemcell match first, then one of the
// same major version.
func (m *Manifest) CompiledFor(name, os, version string) (CompiledPackageRef, bool) {
	for _, p := range m.CompiledPackages {
		if p.Name == name && p.Stemcell == os+"/"+version {
			return p, true
		}
	}
	for _, p := range m.CompiledPackages {
		if p.Name == name && StemcellMatches(p.Stemcell, os, version) {
			return p, true
		}
	}
	return CompiledPackageRef{}, false
}

// CompiledStemcells lists the distinct stemcells ("os/version") the release's
// compiled packages were compiled against, in release.MF order.
func (m *Manifest) CompiledStemcells() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range m.CompiledPackages {
		if !seen[p.Stemcell] {
			seen[p.Stemcell] = true
			out = append(out, p.Stemcell)
		}
	}
	return out
}

// CompiledInput is one compiled package to write into a compiled release.
type CompiledInput struct {
	Name string
	// Open opens the compiled package archive (the install directory's
	// contents, as the agent's compile_package produced it).
	Open func() (io.ReadCloser, error)
}

// ExportOptions say how WriteCompiledTarball writes.
type ExportOptions struct {
	Stemcell string // "os/version" the packages were compiled against
	// SHA1 writes bare SHA-1 digests for the compiled packages (as the
	// director's export-release does without --sha2); otherwise sha256:.
	SHA1 bool
}

// WriteCompiledTarball writes a compiled release at dest from the source
// release tarball src (its jobs and license are copied as they are) and the
// compiled packages of every package src lists: release.MF has no packages
// and one compiled_packages entry per package, for opts.Stemcell. It is
// written atomically (a temporary file, then rename).
func WriteCompiledTarball(dest string, src *Tarball, pkgs []CompiledInput, opts ExportOptions) (*Manifest, error) {
	byName := map[string]CompiledInput{}
	for _, p := range pkgs {
		byName[p.Name] = p
	}
	m := *src.Manifest
	m.Packages = []PackageRef{}
	m.CompiledPackages = nil
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".kpaas-export-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	gz := gzip.NewWriter(tmp)
	tw := tar.NewWriter(gz)
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: archiveTime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	// Compiled packages are spooled to know their size and digest before
	// release.MF, which comes first, is written.
	spool, err := os.MkdirTemp("", "kpaas-export-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(spool)
	type spooled struct{ entry, path string }
	var files []spooled
	for _, p := range src.Manifest.Packages {
		in, ok := byName[p.Name]
		if !ok {
			return nil, fmt.Errorf("exporting %s/%s: package %s is not compiled for stemcell %s", m.Name, m.Version, p.Name, opts.Stemcell)
		}
		rc, err := in.Open()
		if err != nil {
			return nil, fmt.Errorf("exporting package %s: %w", p.Name, err)
		}
		sp := filepath.Join(spool, p.Name+".tgz")
		out, err := os.Create(sp)
		if err != nil {
			rc.Close()
			return nil, err
		}
		h1, h256 := sha1.New(), sha256.New()
		_, err = io.Copy(io.MultiWriter(out, h1, h256), rc)
		rc.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("exporting package %s: %w", p.Name, err)
		}
		digest := digestString(AlgoSHA256, h256.Sum(nil))
		if opts.SHA1 {
			digest = digestString(AlgoSHA1, h1.Sum(nil))
		}
		deps := p.Dependencies
		if deps == nil {
			deps = []string{}
		}
		m.CompiledPackages = append(m.CompiledPackages, CompiledPackageRef{Name: p.Name, Version: p.Version, Fingerprint: p.Fingerprint,
			SHA1: digest, Stemcell: opts.Stemcell, Dependencies: deps})
		files = append(files, spooled{"compiled_packages/" + p.Name + ".tgz", sp})
	}
	mf, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if err := add("release.MF", int64(len(mf)), strings.NewReader(string(mf))); err != nil {
		return nil, err
	}
	err = EachEntry(src.Path, func(name string, r io.Reader) error {
		if strings.HasPrefix(name, "jobs/") || name == "license.tgz" || strings.HasPrefix(name, "LICENSE") || strings.HasPrefix(name, "NOTICE") {
			// The size comes from a second look: tar needs it up front.
			b, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			return add(name, int64(len(b)), strings.NewReader(string(b)))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		fh, err := os.Open(f.path)
		if err != nil {
			return nil, err
		}
		st, err := fh.Stat()
		if err == nil {
			err = add(f.entry, st.Size(), fh)
		}
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return nil, err
	}
	return &m, nil
}

// RewriteDigests copies the release tarball src to dest with every job,
// package, compiled package and license digest in release.MF written again
// as bare SHA-1 (sha1 true, as older CLIs and `bosh sha1ify-release` write
// them) or as sha256:. The archives themselves are copied unchanged.
func RewriteDigests(src, dest string, sha1Digests bool) (*Manifest, error) {
	tb, err := ReadTarball(src, ReadOptions{})
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	var names []string
	blobs := map[string][]byte{}
	err = EachEntry(src, func(name string, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if name == "release.MF" {
			return nil
		}
		names = append(names, name)
		blobs[name] = b
		if sha1Digests {
			s := sha1.Sum(b)
			sums[name] = digestString(AlgoSHA1, s[:])
		} else {
			s := sha256.Sum256(b)
			sums[name] = digestString(AlgoSHA256, s[:])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m := *tb.Manifest
	m.Jobs = append([]JobRef(nil), m.Jobs...)
	m.Packages = append([]PackageRef(nil), m.Packages...)
	m.CompiledPackages = append([]CompiledPackageRef(nil), m.CompiledPackages...)
	for i, j := range m.Jobs {
		m.Jobs[i].SHA1 = sums["jobs/"+j.Name+".tgz"]
	}
	for i, p := range m.Packages {
		m.Packages[i].SHA1 = sums["packages/"+p.Name+".tgz"]
	}
	for i, p := range m.CompiledPackages {
		m.CompiledPackages[i].SHA1 = sums["compiled_packages/"+p.Name+".tgz"]
	}
	if m.License != nil {
		l := *m.License
		l.SHA1 = sums["license.tgz"]
		m.License = &l
	}
	mf, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	out, err := os.Create(dest)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	gz := gzip.NewWriter(out)
	tw := tar.NewWriter(gz)
	write := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(b)), Mode: 0o644, ModTime: archiveTime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := write("release.MF", mf); err != nil {
		return nil, err
	}
	for _, n := range names {
		if err := write(n, blobs[n]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return &m, out.Close()
}
