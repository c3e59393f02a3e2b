package release

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// archiveTime is the modification time of every entry kpaas writes, so that the
// same content always gives the same archive bytes and digest.
var archiveTime = time.Unix(0, 0).UTC()

// writeArchive writes files as a tar (gzipped when compress) of ".": entries are
// "./"-prefixed, directories included, modes 0755 when the owner may execute the
// file and 0644 otherwise, owner root, a fixed time.
func writeArchive(w io.Writer, files []File, compress bool) error {
	var gz *gzip.Writer
	if compress {
		gz = gzip.NewWriter(w)
		w = gz
	}
	tw := tar.NewWriter(w)
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	dirs := map[string]bool{}
	var dirList []string
	for _, f := range sorted {
		for d := path.Dir(f.Name); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			dirList = append(dirList, d)
		}
	}
	sort.Strings(dirList)
	if err := writeDir(tw, "./"); err != nil {
		return err
	}
	// Directories first, then files: tar readers create parents on demand, and this
	// keeps the layout obvious when listing.
	for _, d := range dirList {
		if err := writeDir(tw, "./"+d+"/"); err != nil {
			return err
		}
	}
	for _, f := range sorted {
		if err := writeFileEntry(tw, "./"+f.Name, f.Path, f.FollowSymlinks); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if gz != nil {
		return gz.Close()
	}
	return nil
}

func writeDir(tw *tar.Writer, name string) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: archiveTime, Format: tar.FormatPAX})
}

func writeFileEntry(tw *tar.Writer, name, src string, follow bool) error {
	info, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if info.Mode()&os.ModeSymlink != 0 && !follow {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: archiveTime, Format: tar.FormatPAX})
	}
	fh, err := os.Open(src)
	if err != nil {
		return err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory, expected a file", src)
	}
	mode := int64(0o644)
	if st.Mode()&0o100 != 0 {
		mode = 0o755
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: st.Size(), Mode: mode, ModTime: archiveTime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, fh)
	if err != nil {
		return err
	}
	if n != st.Size() {
		return fmt.Errorf("%s changed size while it was archived", src)
	}
	return nil
}

// builtArchive is an inner archive written to a temporary file.
type builtArchive struct {
	entry  string // name in the release tarball: jobs/x.tgz
	path   string
	digest string
}

func buildArchive(tmp, entry string, files []File, compress bool) (builtArchive, error) {
	p := filepath.Join(tmp, strings.ReplaceAll(entry, "/", "_"))
	fh, err := os.Create(p)
	if err != nil {
		return builtArchive{}, err
	}
	h := sha256.New()
	err = writeArchive(io.MultiWriter(fh, h), files, compress)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return builtArchive{}, fmt.Errorf("writing %s: %w", entry, err)
	}
	return builtArchive{entry: entry, path: p, digest: digestString(AlgoSHA256, h.Sum(nil))}, nil
}

// CreateOptions say what release a tarball is built as.
type CreateOptions struct {
	Name               string
	Version            string
	CommitHash         string // "non-git" when empty
	UncommittedChanges bool
	// Progress, when set, is told of every job, package and license added.
	Progress func(kind, name, fingerprint string)
}

// WriteTarball builds the release tarball at path (written atomically: a
// temporary file, fsync, rename) and returns its release.MF.
func (d *Dir) WriteTarball(dest string, opts CreateOptions) (*Manifest, error) {
	if opts.Name == "" {
		opts.Name = d.Name()
	}
	if opts.Name == "" {
		return nil, fmt.Errorf("building release from %s: no release name: give --name or set name in config/final.yml", d.Path)
	}
	if opts.Version == "" {
		return nil, fmt.Errorf("building release %s: no version", opts.Name)
	}
	if opts.CommitHash == "" {
		opts.CommitHash = "non-git"
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string, string, string) {}
	}
	tmp, err := os.MkdirTemp("", "kpaas-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	m := &Manifest{Name: opts.Name, Version: opts.Version, CommitHash: opts.CommitHash, UncommittedChanges: opts.UncommittedChanges,
		Jobs: []JobRef{}, Packages: []PackageRef{}, NoCompression: d.Config.NoCompression}
	var archives []builtArchive
	for _, j := range d.Jobs {
		a, err := buildArchive(tmp, "jobs/"+j.Name+".tgz", j.Files, true)
		if err != nil {
			return nil, fmt.Errorf("building job %s: %w", j.Name, err)
		}
		archives = append(archives, a)
		pkgs := j.Spec.Packages
		if pkgs == nil {
			pkgs = []string{}
		}
		m.Jobs = append(m.Jobs, JobRef{Name: j.Name, Version: j.Fingerprint, Fingerprint: j.Fingerprint, SHA1: a.digest, Packages: pkgs})
		progress("job", j.Name, j.Fingerprint)
	}
	for _, p := range d.Packages {
		a, err := buildArchive(tmp, "packages/"+p.Name+".tgz", p.Files, !p.Spec.NoCompression)
		if err != nil {
			return nil, fmt.Errorf("building package %s: %w", p.Name, err)
		}
		archives = append(archives, a)
		deps := p.Dependencies
		if deps == nil {
			deps = []string{}
		}
		m.Packages = append(m.Packages, PackageRef{Name: p.Name, Version: p.Fingerprint, Fingerprint: p.Fingerprint, SHA1: a.digest, Dependencies: deps})
		progress("package", p.Name, p.Fingerprint)
	}
	if d.License != nil {
		a, err := buildArchive(tmp, "license.tgz", d.License.Files, true)
		if err != nil {
			return nil, fmt.Errorf("building license: %w", err)
		}
		archives = append(archives, a)
		m.License = &LicenseRef{Version: d.License.Fingerprint, Fingerprint: d.License.Fingerprint, SHA1: a.digest}
		progress("license", "license", d.License.Fingerprint)
	}
	mf, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	err = writeAtomic(dest, func(w io.Writer) error {
		var gz *gzip.Writer
		if !d.Config.NoCompression {
			gz = gzip.NewWriter(w)
			w = gz
		}
		tw := tar.NewWriter(w)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "release.MF", Size: int64(len(mf)), Mode: 0o644, ModTime: archiveTime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(mf); err != nil {
			return err
		}
		wroteDir := map[string]bool{}
		for _, a := range archives {
			if dir := path.Dir(a.entry); dir != "." && !wroteDir[dir] {
				wroteDir[dir] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: archiveTime, Format: tar.FormatPAX}); err != nil {
					return err
				}
			}
			if err := writeFileEntry(tw, a.entry, a.path, true); err != nil {
				return err
			}
		}
		if d.License != nil {
			for _, f := range d.License.Files {
				if err := writeFileEntry(tw, f.Name, f.Path, true); err != nil {
					return err
				}
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		if gz != nil {
			return gz.Close()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("writing release tarball %s: %w", dest, err)
	}
	return m, nil
}

// writeAtomic writes path through a temporary file in the same directory,
// fsyncs it and renames it into place.
func writeAtomic(path string, write func(io.Writer) error) error {
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		return fmt.Errorf("%s is a directory: give a file path", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fh, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := fh.Name()
	defer os.Remove(tmp)
	if err := write(fh); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
