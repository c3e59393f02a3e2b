package render

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1" //nolint:gosec // the director's hashes are SHA-1
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kpaas/kpaas/pkg/release"
)

// JobInput is one job of an instance, ready to render.
type JobInput struct {
	Content    *release.JobContent
	Release    ReleaseRef
	Properties map[string]any   // BindProperties
	Links      map[string]*Link // Resolution.Consumed[key]
	Provides   []ProvidedLink   // Resolution.Provided[key]
}

// RenderedFile is one rendered template (or .bosh/links.json).
type RenderedFile struct {
	Src     string // template source (under templates/), ".bosh/links.json" for the links file
	Dst     string // path under /var/vcap/jobs/<job>/
	Content []byte
}

// Executable reports whether the agent makes the file executable (bin/*).
func (f RenderedFile) Executable() bool { return strings.HasPrefix(f.Dst, "bin/") }

// RenderedJob is one job's rendered monit and templates, sorted by source.
type RenderedJob struct {
	Name         string
	Monit        []byte
	Files        []RenderedFile
	TemplateHash string // SHA-1 of monit and the contents sorted by source (4.4)
}

// File returns the rendered file with destination dst, or nil.
func (j *RenderedJob) File(dst string) *RenderedFile {
	for i := range j.Files {
		if j.Files[i].Dst == dst {
			return &j.Files[i]
		}
	}
	return nil
}

// RenderedInstance is everything rendered for one instance: what the agent's
// apply spec carries as rendered_templates_archive, configuration_hash and
// template_hashes.
type RenderedInstance struct {
	Jobs              []*RenderedJob // sorted by name
	Archive           []byte         // tar.gz: <job>/monit, <job>/<dst>, <job>/.bosh/links.json
	ArchiveSHA1       string
	ConfigurationHash string
	TemplateHashes    map[string]string
}

// Job returns the rendered job named name, or nil.
func (r *RenderedInstance) Job(name string) *RenderedJob {
	for _, j := range r.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// TemplateError is a template of a job on an instance that failed to render.
type TemplateError struct {
	Group    string
	Instance string // group/index
	Job      string
	Template string
	Line     int
	Err      error
	Others   int // further instances of the group that failed the same way
}

func (e *TemplateError) Error() string {
	loc := ""
	if e.Line > 0 {
		loc = fmt.Sprintf(" line %d", e.Line)
	}
	inst := e.Instance
	if e.Others > 0 {
		inst = fmt.Sprintf("%s and %d more", inst, e.Others)
	}
	return fmt.Sprintf("rendering job '%s' in instance group '%s' (%s): template '%s'%s: %s", e.Job, e.Group, inst, e.Template, loc, e.Err)
}
func (e *TemplateError) Unwrap() error { return e.Err }

var tmplLoc = regexp.MustCompile(`^template: [^:]*:(\d+)(?::\d+)?: (?:executing "[^"]*" at <[^>]*>: )?(?:error calling \w+: )?`)

// newTemplateError keeps the typed cause (a *PropertyError, *LinkMissingError)
// and the line from text/template's message.
func newTemplateError(in Instance, job, src string, err error) *TemplateError {
	te := &TemplateError{Group: in.Group, Instance: fmt.Sprintf("%s/%d", in.Group, in.Index), Job: job, Template: src, Err: err}
	var lined interface{ TemplateLine() int }
	if errors.As(err, &lined) { // an engine's own error (ERB) knows its line
		te.Line = lined.TemplateLine()
	}
	msg := err.Error()
	if m := tmplLoc.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &te.Line)
		var pe *PropertyError
		var le *LinkMissingError
		switch {
		case errors.As(err, &pe):
			te.Err = pe
		case errors.As(err, &le):
			te.Err = le
		default:
			te.Err = errors.New(strings.TrimPrefix(msg, m[0]))
		}
	}
	return te
}

// RenderInstance renders every job of one instance, builds the rendered
// templates archive and the hashes. Every template error is returned at once.
func (r *Renderer) RenderInstance(in Instance, jobs []JobInput) (*RenderedInstance, error) {
	refs := make([]JobTemplateRef, len(jobs))
	for i, j := range jobs {
		refs[i] = JobTemplateRef{Name: j.Content.Name, Version: j.Content.Fingerprint, SHA1: j.Content.Digest}
	}
	out := &RenderedInstance{TemplateHashes: map[string]string{}}
	var errs []error
	for _, j := range jobs {
		rj, err := r.renderJob(in, j, refs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Jobs = append(out.Jobs, rj)
		out.TemplateHashes[rj.Name] = rj.TemplateHash
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Slice(out.Jobs, func(a, b int) bool { return out.Jobs[a].Name < out.Jobs[b].Name })
	out.ConfigurationHash = configurationHash(out.Jobs)
	archive, err := archiveJobs(out.Jobs)
	if err != nil {
		return nil, fmt.Errorf("archiving rendered templates of %s/%d: %w", in.Group, in.Index, err)
	}
	out.Archive = archive
	out.ArchiveSHA1 = release.SHA1Hex(archive)
	return out, nil
}

func (r *Renderer) renderJob(in Instance, j JobInput, refs []JobTemplateRef) (*RenderedJob, error) {
	c := j.Content
	ctx := &Context{Instance: in, Job: c.Name, Release: j.Release, Properties: j.Properties, Links: j.Links, JobTemplates: refs}
	if ctx.Properties == nil {
		ctx.Properties = map[string]any{}
	}
	rj := &RenderedJob{Name: c.Name}
	var errs []error
	if len(c.Monit) > 0 {
		monit, err := r.monitEngine(c.Monit).Render("monit", c.Monit, ctx)
		if err != nil {
			errs = append(errs, newTemplateError(in, c.Name, "monit", err))
		}
		rj.Monit = monit
	}
	for _, src := range c.Spec.TemplateSources() {
		source, ok := c.Templates[src]
		if !ok {
			errs = append(errs, &TemplateError{Group: in.Group, Instance: fmt.Sprintf("%s/%d", in.Group, in.Index), Job: c.Name, Template: src, Err: errors.New("listed in the job spec but missing from the job")})
			continue
		}
		content, err := r.EngineFor(src).Render(src, source, ctx)
		if err != nil {
			errs = append(errs, newTemplateError(in, c.Name, src, err))
			continue
		}
		rj.Files = append(rj.Files, RenderedFile{Src: src, Dst: c.Spec.Templates[src], Content: content})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	provides := j.Provides
	if provides == nil {
		provides = []ProvidedLink{}
	}
	linksJSON, err := json.MarshalIndent(provides, "", "  ")
	if err != nil {
		return nil, err
	}
	rj.Files = append(rj.Files, RenderedFile{Src: ".bosh/links.json", Dst: ".bosh/links.json", Content: append(linksJSON, '\n')})
	sort.Slice(rj.Files, func(a, b int) bool { return rj.Files[a].Src < rj.Files[b].Src })
	h := sha1.New() //nolint:gosec
	h.Write(rj.Monit)
	for _, f := range rj.Files {
		h.Write(f.Content)
	}
	rj.TemplateHash = hex.EncodeToString(h.Sum(nil))
	return rj, nil
}

// configurationHash is the director's: SHA-1 over the jobs sorted by name of
// monit, job name, then for each template sorted by source its content and
// destination.
func configurationHash(jobs []*RenderedJob) string {
	h := sha1.New() //nolint:gosec
	for _, j := range jobs {
		h.Write(j.Monit)
		h.Write([]byte(j.Name))
		for _, f := range j.Files {
			h.Write(f.Content)
			h.Write([]byte(f.Dst))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

var epoch = time.Unix(0, 0).UTC()

// gzipPool reuses compressors: each holds about 800 KB of tables, which would
// otherwise dominate rendering many instances.
var gzipPool = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// archiveJobs writes the rendered templates archive: <job>/monit and
// <job>/<dst> for every file, mode 0644 (the agent sets bin/* executable), a
// fixed time, so that the same rendering always has the same SHA-1.
func archiveJobs(jobs []*RenderedJob) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzipPool.Get().(*gzip.Writer)
	defer gzipPool.Put(gz)
	gz.Reset(&buf)
	tw := tar.NewWriter(gz)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, j := range jobs {
		if err := add(j.Name+"/monit", j.Monit); err != nil {
			return nil, err
		}
		for _, f := range j.Files {
			if err := add(j.Name+"/"+f.Dst, f.Content); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
