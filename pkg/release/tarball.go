package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// JobContent is what rendering needs of a job, from a directory or a tarball:
// its spec, its monit file and its template sources.
type JobContent struct {
	Name             string
	Fingerprint      string
	Digest           string // digest string of jobs/<job>.tgz (empty for a directory job)
	Spec             *JobSpec
	Monit            []byte
	PropertiesSchema []byte            // nil when absent
	Templates        map[string][]byte // template source path (under templates/) -> content
}

// Content reads a directory job's spec, monit and templates.
func (j *Job) Content() (*JobContent, error) {
	c := &JobContent{Name: j.Name, Fingerprint: j.Fingerprint, Spec: j.Spec, Templates: map[string][]byte{}}
	for _, f := range j.Files {
		data, err := os.ReadFile(f.Path)
		if err != nil {
			return nil, fmt.Errorf("reading job %s: %w", j.Name, err)
		}
		switch {
		case f.Name == "monit":
			c.Monit = data
		case f.Name == "properties_schema.json":
			c.PropertiesSchema = data
		case strings.HasPrefix(f.Name, "templates/"):
			c.Templates[strings.TrimPrefix(f.Name, "templates/")] = data
		}
	}
	return c, nil
}

// Tarball is a release tarball that was read and verified.
type Tarball struct {
	Path     string
	Manifest *Manifest
	Jobs     []*JobContent // in release.MF order
	// Entries maps each verified inner archive (jobs/x.tgz, packages/y.tgz,
	// compiled_packages/z.tgz, license.tgz) to its digest string from release.MF.
	Entries map[string]string
	// SHA256 is the sha256: digest string of the whole tarball.
	SHA256 string
}

// Job returns the job named name, or nil.
func (t *Tarball) Job(name string) *JobContent {
	for _, j := range t.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// ReadOptions tune ReadTarball.
type ReadOptions struct {
	// ExtractDir, when set, receives every entry of the tarball at its path
	// (release.MF, jobs/x.tgz, packages/y.tgz, ...), for a blobstore to take.
	ExtractDir string
}

// ReadTarball reads a release tarball (gzipped or plain tar), parses release.MF,
// checks every job, package, compiled package and license archive it lists
// against its digest (bare SHA-1 or algo:hex, the strongest present is checked)
// and reads each job's spec, monit and templates.
func ReadTarball(file string, opts ReadOptions) (*Tarball, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading release tarball: %w", err)
	}
	defer fh.Close()
	whole := NewHash(AlgoSHA256)
	tr, err := openTar(io.TeeReader(fh, whole))
	if err != nil {
		return nil, fmt.Errorf("reading release tarball %s: %w", file, err)
	}
	t := &Tarball{Path: file, Entries: map[string]string{}}
	sums := map[string]map[string][]byte{} // entry -> algo -> sum
	jobBytes := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading release tarball %s: %w", file, err)
		}
		name := strings.TrimPrefix(path.Clean(hdr.Name), "./")
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "../") {
			return nil, fmt.Errorf("reading release tarball %s: entry %q points outside the archive", file, hdr.Name)
		}
		var sinks []io.Writer
		var out *os.File
		if opts.ExtractDir != "" {
			p := filepath.Join(opts.ExtractDir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
			if out, err = os.Create(p); err != nil {
				return nil, err
			}
			sinks = append(sinks, out)
		}
		var buf *bytes.Buffer
		isJob := strings.HasPrefix(name, "jobs/") && strings.HasSuffix(name, ".tgz")
		if name == "release.MF" || isJob {
			buf = &bytes.Buffer{}
			sinks = append(sinks, buf)
		}
		var hashes map[string]hash.Hash
		if isInnerArchive(name) {
			hashes = map[string]hash.Hash{}
			for _, algo := range wantedAlgos(t.Manifest, name) {
				hashes[algo] = NewHash(algo)
				sinks = append(sinks, hashes[algo])
			}
		}
		_, err = io.Copy(io.MultiWriter(append(sinks, io.Discard)...), tr)
		if out != nil {
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s from %s: %w", name, file, err)
		}
		if hashes != nil {
			sums[name] = map[string][]byte{}
			for algo, h := range hashes {
				sums[name][algo] = h.Sum(nil)
			}
		}
		switch {
		case name == "release.MF":
			if t.Manifest, err = ParseManifest(buf.Bytes()); err != nil {
				return nil, fmt.Errorf("reading release tarball %s: %w", file, err)
			}
		case isJob:
			jobBytes[name] = buf.Bytes()
		}
	}
	if t.Manifest == nil {
		return nil, fmt.Errorf("reading release tarball %s: no release.MF in it (is this a BOSH release tarball?)", file)
	}
	t.SHA256 = digestString(AlgoSHA256, whole.Sum(nil))

	m := t.Manifest
	var errs []error
	check := func(entry, what, digest string) {
		got, ok := sums[entry]
		if !ok {
			errs = append(errs, fmt.Errorf("%s is listed in release.MF but %s is not in the tarball", what, entry))
			return
		}
		d, err := ParseDigest(digest)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			return
		}
		p, ok := d.Strongest()
		if !ok {
			errs = append(errs, fmt.Errorf("%s: digest %q has no known algorithm", what, digest))
			return
		}
		if err := d.Check(p.Algo, got[p.Algo], entry); err != nil {
			errs = append(errs, err)
			return
		}
		t.Entries[entry] = digest
	}
	for _, j := range m.Jobs {
		check("jobs/"+j.Name+".tgz", "job "+j.Name, j.SHA1)
	}
	for _, p := range m.Packages {
		check("packages/"+p.Name+".tgz", "package "+p.Name, p.SHA1)
	}
	for _, p := range m.CompiledPackages {
		check("compiled_packages/"+p.Name+".tgz", "compiled package "+p.Name, p.SHA1)
	}
	if m.License != nil {
		check("license.tgz", "license", m.License.SHA1)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("release tarball %s (%s/%s) failed verification: %w", file, m.Name, m.Version, errors.Join(errs...))
	}
	for _, j := range m.Jobs {
		c, err := readJobArchive(jobBytes["jobs/"+j.Name+".tgz"])
		if err != nil {
			return nil, fmt.Errorf("reading job %s from %s: %w", j.Name, file, err)
		}
		if c.Spec.Name != j.Name {
			return nil, fmt.Errorf("reading job %s from %s: its job.MF names it %q", j.Name, file, c.Spec.Name)
		}
		c.Name, c.Fingerprint, c.Digest = j.Name, j.Fingerprint, j.SHA1
		t.Jobs = append(t.Jobs, c)
	}
	return t, nil
}

func isInnerArchive(name string) bool {
	if name == "license.tgz" {
		return true
	}
	for _, dir := range []string{"jobs/", "packages/", "compiled_packages/"} {
		if strings.HasPrefix(name, dir) && strings.HasSuffix(name, ".tgz") && !strings.Contains(strings.TrimPrefix(name, dir), "/") {
			return true
		}
	}
	return false
}

// wantedAlgos is the algorithm release.MF uses for entry when release.MF came
// first (as every CLI writes it), otherwise all known ones.
func wantedAlgos(m *Manifest, entry string) []string {
	all := []string{AlgoSHA1, AlgoSHA256, AlgoSHA512}
	if m == nil {
		return all
	}
	var digest string
	for _, j := range m.Jobs {
		if entry == "jobs/"+j.Name+".tgz" {
			digest = j.SHA1
		}
	}
	for _, p := range m.Packages {
		if entry == "packages/"+p.Name+".tgz" {
			digest = p.SHA1
		}
	}
	for _, p := range m.CompiledPackages {
		if entry == "compiled_packages/"+p.Name+".tgz" {
			digest = p.SHA1
		}
	}
	if m.License != nil && entry == "license.tgz" {
		digest = m.License.SHA1
	}
	d, err := ParseDigest(digest)
	if err != nil {
		return nil // not listed: nothing to verify
	}
	if p, ok := d.Strongest(); ok {
		return []string{p.Algo}
	}
	return nil
}

// openTar sniffs gzip (1f 8b) and returns a tar reader over the content.
func openTar(r io.Reader) (*tar.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err != nil {
		return nil, fmt.Errorf("reading archive header: %w", err)
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		return tar.NewReader(gz), nil
	}
	if head, err := br.Peek(262); err != nil || string(head[257:262]) != "ustar" {
		return nil, errors.New("not a gzip or tar archive")
	}
	return tar.NewReader(br), nil
}

func readJobArchive(data []byte) (*JobContent, error) {
	tr, err := openTar(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	c := &JobContent{Templates: map[string][]byte{}}
	var spec []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(path.Clean(hdr.Name), "./")
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		switch {
		case name == "job.MF":
			spec = b
		case name == "monit":
			c.Monit = b
		case name == "properties_schema.json":
			c.PropertiesSchema = b
		case strings.HasPrefix(name, "templates/"):
			c.Templates[strings.TrimPrefix(name, "templates/")] = b
		}
	}
	if spec == nil {
		return nil, errors.New("no job.MF in the job archive")
	}
	if c.Spec, err = ParseJobSpec(spec, "job.MF"); err != nil {
		return nil, err
	}
	for src := range c.Spec.Templates {
		if _, ok := c.Templates[src]; !ok {
			return nil, fmt.Errorf("template %q listed in job.MF is not in the job archive", src)
		}
	}
	return c, nil
}
