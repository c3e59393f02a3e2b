package release

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Dir is a release source directory, read and fingerprinted.
type Dir struct {
	Path     string
	Config   FinalConfig
	Blobs    map[string]BlobEntry // config/blobs.yml
	Jobs     []*Job               // sorted by name
	Packages []*Package           // sorted by name
	License  *License             // nil when the release root has no LICENSE* or NOTICE*
}

// Job is a job of a release directory.
type Job struct {
	Name        string
	Dir         string
	Spec        *JobSpec
	Files       []File // job.MF, monit, properties_schema.json, templates/<src>
	Fingerprint string
}

// Package is a package of a release directory.
type Package struct {
	Name         string
	Dir          string
	Spec         *PackageSpec
	Dependencies []string
	Files        []File // packaging and the files matched in src/ and blobs/
	Fingerprint  string
}

// License is the release's license: LICENSE* and NOTICE* at the release root.
type License struct {
	Files       []File
	Fingerprint string
}

// Name is the release name from config/final.yml (name, or legacy final_name).
func (d *Dir) Name() string { return d.Config.ReleaseName() }

// Job returns the job named name, or nil.
func (d *Dir) Job(name string) *Job {
	for _, j := range d.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// Package returns the package named name, or nil.
func (d *Dir) Package(name string) *Package {
	for _, p := range d.Packages {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// ReadDir reads a BOSH release directory: config/final.yml, config/blobs.yml,
// every job and package (with their fingerprints) and the license. Every problem
// found is returned at once.
func ReadDir(path string) (*Dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	info, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("reading release directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("reading release directory: %s is not a directory", abs)
	}
	d := &Dir{Path: abs, Blobs: map[string]BlobEntry{}}
	var errs []error
	fail := func(err error) { errs = append(errs, err) }

	if data, err := os.ReadFile(filepath.Join(abs, "config", "final.yml")); err == nil {
		if err := yaml.Unmarshal(data, &d.Config); err != nil {
			fail(fmt.Errorf("parsing %s: %w", filepath.Join(abs, "config", "final.yml"), err))
		} else if d.Config.Name != "" && d.Config.FinalName != "" {
			fail(fmt.Errorf("%s: give either name or final_name, not both", filepath.Join(abs, "config", "final.yml")))
		}
	} else if !os.IsNotExist(err) {
		fail(err)
	}
	if data, err := os.ReadFile(filepath.Join(abs, "config", "blobs.yml")); err == nil {
		if err := yaml.Unmarshal(data, &d.Blobs); err != nil {
			fail(fmt.Errorf("parsing %s: %w", filepath.Join(abs, "config", "blobs.yml"), err))
		}
		if d.Blobs == nil {
			d.Blobs = map[string]BlobEntry{}
		}
	} else if !os.IsNotExist(err) {
		fail(err)
	}
	if err := d.checkBlobs(); err != nil {
		fail(err)
	}

	for _, name := range subdirs(filepath.Join(abs, "jobs"), fail) {
		j, err := readJob(filepath.Join(abs, "jobs", name))
		if err != nil {
			fail(err)
			continue
		}
		d.Jobs = append(d.Jobs, j)
	}
	for _, name := range subdirs(filepath.Join(abs, "packages"), fail) {
		p, err := d.readPackage(filepath.Join(abs, "packages", name))
		if err != nil {
			fail(err)
			continue
		}
		d.Packages = append(d.Packages, p)
	}
	if lic, err := readLicense(abs); err != nil {
		fail(err)
	} else {
		d.License = lic
	}
	if len(errs) == 0 {
		errs = append(errs, d.checkReferences()...)
	}
	if len(errs) > 0 {
		return nil, &DirError{Path: abs, Errs: errs}
	}
	return d, nil
}

// DirError lists every problem of a release directory.
type DirError struct {
	Path string
	Errs []error
}

func (e *DirError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "release directory %s has %d problem(s):", e.Path, len(e.Errs))
	for _, err := range e.Errs {
		b.WriteString("\n  - ")
		b.WriteString(strings.ReplaceAll(err.Error(), "\n", "\n    "))
	}
	return b.String()
}
func (e *DirError) Unwrap() []error { return e.Errs }

func subdirs(dir string, fail func(error)) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			fail(err)
		}
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func readJob(dir string) (*Job, error) {
	name := filepath.Base(dir)
	specPath := filepath.Join(dir, "spec")
	data, err := os.ReadFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("job %s: reading spec: %w", name, err)
	}
	spec, err := ParseJobSpec(data, specPath)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", name, err)
	}
	if spec.Name != name {
		return nil, fmt.Errorf("job directory %q does not match job name %q in %s: rename one of them", name, spec.Name, specPath)
	}
	j := &Job{Name: name, Dir: dir, Spec: spec}
	j.Files = append(j.Files, File{Name: "job.MF", Path: specPath, FollowSymlinks: true})
	for _, extra := range []string{"monit", "properties_schema.json"} {
		if _, err := os.Lstat(filepath.Join(dir, extra)); err == nil {
			j.Files = append(j.Files, File{Name: extra, Path: filepath.Join(dir, extra), FollowSymlinks: true})
		}
	}
	var missing []string
	for _, src := range spec.TemplateSources() {
		p := filepath.Join(dir, "templates", filepath.FromSlash(src))
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, src)
			continue
		}
		j.Files = append(j.Files, File{Name: "templates/" + src, Path: p, FollowSymlinks: true})
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("job %s: templates listed in spec are missing from %s: %s", name, filepath.Join(dir, "templates"), strings.Join(missing, ", "))
	}
	if j.Fingerprint, err = Fingerprint(j.Files, nil); err != nil {
		return nil, fmt.Errorf("job %s: %w", name, err)
	}
	return j, nil
}

func (d *Dir) readPackage(dir string) (*Package, error) {
	name := filepath.Base(dir)
	specPath := filepath.Join(dir, "spec")
	data, err := os.ReadFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("package %s: reading spec: %w", name, err)
	}
	spec, err := ParsePackageSpec(data, specPath)
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", name, err)
	}
	if spec.Name != name {
		return nil, fmt.Errorf("package directory %q does not match package name %q in %s: rename one of them", name, spec.Name, specPath)
	}
	if _, err := os.Lstat(filepath.Join(dir, "spec.lock")); err == nil {
		return nil, fmt.Errorf("package %s is vendored (spec.lock): vendored packages need the .final_builds blobstore, which kpaas create-release does not read yet", name)
	}
	if _, err := os.Lstat(filepath.Join(dir, "pre_packaging")); err == nil {
		return nil, fmt.Errorf("package %s has a pre_packaging script: it is deprecated in BOSH and kpaas does not run it; move its work into packaging", name)
	}
	p := &Package{Name: name, Dir: dir, Spec: spec, Dependencies: spec.Dependencies}
	packaging := filepath.Join(dir, "packaging")
	if _, err := os.Lstat(packaging); err != nil {
		return nil, fmt.Errorf("package %s: expected to find %s", name, packaging)
	}
	p.Files = append(p.Files, File{Name: "packaging", Path: packaging, ExcludeMode: true})

	byName := map[string]File{}
	var errs []error
	for _, glob := range spec.Files {
		found := false
		for _, root := range []string{"src", "blobs"} {
			matches, err := globFiles(filepath.Join(d.Path, root), glob)
			if err != nil {
				return nil, fmt.Errorf("package %s: listing %s/%s: %w", name, root, glob, err)
			}
			for _, rel := range matches {
				if root == "blobs" {
					if _, listed := d.Blobs[rel]; !listed {
						continue // not in config/blobs.yml: bosh-cli removes such blobs
					}
				}
				found = true
				if _, dup := byName[rel]; !dup { // src/ wins over blobs/
					byName[rel] = File{Name: rel, Path: filepath.Join(d.Path, root, filepath.FromSlash(rel))}
				}
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("package %s: missing files for pattern %q (looked in src/ and blobs/ listed in config/blobs.yml)", name, glob))
		}
	}
	for _, glob := range spec.ExcludedFiles {
		for _, root := range []string{"src", "blobs"} {
			matches, err := globFiles(filepath.Join(d.Path, root), glob)
			if err != nil {
				return nil, fmt.Errorf("package %s: listing %s/%s: %w", name, root, glob, err)
			}
			for _, rel := range matches {
				delete(byName, rel)
			}
		}
	}
	for _, special := range []string{"packaging", "pre_packaging"} {
		if _, ok := byName[special]; ok {
			errs = append(errs, fmt.Errorf("package %s: the special file %q must not be matched by files", name, special))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, f := range byName {
		p.Files = append(p.Files, f)
	}
	sort.Slice(p.Files, func(i, j int) bool { return p.Files[i].Name < p.Files[j].Name })
	if p.Fingerprint, err = Fingerprint(p.Files, spec.Dependencies); err != nil {
		return nil, fmt.Errorf("package %s: %w", name, err)
	}
	return p, nil
}

func readLicense(root string) (*License, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, e := range entries {
		n := e.Name()
		if (strings.HasPrefix(n, "LICENSE") || strings.HasPrefix(n, "NOTICE")) && !e.IsDir() {
			files = append(files, File{Name: n, Path: filepath.Join(root, n), ExcludeMode: true, FollowSymlinks: true})
		}
	}
	if len(files) == 0 {
		return nil, nil
	}
	fp, err := Fingerprint(files, nil)
	if err != nil {
		return nil, fmt.Errorf("license: %w", err)
	}
	return &License{Files: files, Fingerprint: fp}, nil
}

// checkBlobs checks that every blob listed in config/blobs.yml is in blobs/
// with the listed size and digest.
func (d *Dir) checkBlobs() error {
	var errs []error
	names := make([]string, 0, len(d.Blobs))
	for n := range d.Blobs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := d.Blobs[n]
		p := filepath.Join(d.Path, "blobs", filepath.FromSlash(n))
		fh, err := os.Open(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("blob %s is listed in config/blobs.yml but cannot be read from blobs/ (%v): fetch it into %s", n, err, p))
			continue
		}
		if b.SHA != "" {
			dg, err := ParseDigest(b.SHA)
			if err == nil {
				err = dg.Verify(fh, "blob "+n)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("config/blobs.yml: %w", err))
			}
		}
		fh.Close()
	}
	return errors.Join(errs...)
}

// checkReferences checks that jobs name existing packages and that package
// dependencies exist and form no cycle.
func (d *Dir) checkReferences() []error {
	var errs []error
	for _, j := range d.Jobs {
		for _, p := range j.Spec.Packages {
			if d.Package(p) == nil {
				errs = append(errs, fmt.Errorf("job %s needs package %q, which is not in packages/", j.Name, p))
			}
		}
	}
	nodes := make([]PackageNode, len(d.Packages))
	for i, p := range d.Packages {
		nodes[i] = PackageNode{Name: p.Name, Dependencies: p.Dependencies}
	}
	if _, err := SortPackages(nodes); err != nil {
		errs = append(errs, err)
	}
	return errs
}
