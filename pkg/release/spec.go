package release

import (
	"errors"
	"fmt"
	"sort"

	"gopkg.in/yaml.v3"
)

// JobSpec is jobs/<job>/spec (in a tarball: job.MF inside jobs/<job>.tgz).
type JobSpec struct {
	Name        string                 `yaml:"name" json:"name"`
	Description string                 `yaml:"description,omitempty" json:"description,omitempty"`
	Templates   map[string]string      `yaml:"templates" json:"templates"` // src under templates/ -> dst under /var/vcap/jobs/<job>/
	Packages    []string               `yaml:"packages" json:"packages"`
	Properties  map[string]PropertyDef `yaml:"properties" json:"properties"`
	Consumes    []LinkDef              `yaml:"consumes,omitempty" json:"consumes,omitempty"`
	Provides    []LinkDef              `yaml:"provides,omitempty" json:"provides,omitempty"`
	Logs        any                    `yaml:"logs,omitempty" json:"logs,omitempty"`
}

// PropertyDef is a declared job property. Only Default affects rendering.
type PropertyDef struct {
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	Default     any    `yaml:"default,omitempty" json:"default,omitempty"`
	Example     any    `yaml:"example,omitempty" json:"example,omitempty"`
	Type        string `yaml:"type,omitempty" json:"type,omitempty"`
}

// LinkDef is a consumes or provides entry of a job spec.
type LinkDef struct {
	Name       string   `yaml:"name" json:"name"`
	Type       string   `yaml:"type" json:"type"`
	Optional   bool     `yaml:"optional,omitempty" json:"optional,omitempty"`
	Properties []string `yaml:"properties,omitempty" json:"properties,omitempty"`
}

// ParseJobSpec parses a job spec and checks what the director checks: a name,
// consumes/provides entries with name and type, no duplicate consumes names, no
// optional provides. where names the file in errors.
func ParseJobSpec(data []byte, where string) (*JobSpec, error) {
	var s JobSpec
	if err := yaml.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parsing job spec %s: %w", where, err)
	}
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("name is missing"))
	}
	seen := map[string]bool{}
	for i, c := range s.Consumes {
		if c.Name == "" || c.Type == "" {
			errs = append(errs, fmt.Errorf("consumes[%d] needs both name and type", i))
		}
		if seen[c.Name] {
			errs = append(errs, fmt.Errorf("consumes[%d]: link name %q is declared twice", i, c.Name))
		}
		seen[c.Name] = true
	}
	seen = map[string]bool{}
	for i, p := range s.Provides {
		if p.Name == "" || p.Type == "" {
			errs = append(errs, fmt.Errorf("provides[%d] needs both name and type", i))
		}
		if p.Optional {
			errs = append(errs, fmt.Errorf("provides[%d] (%s): optional is only allowed on consumes", i, p.Name))
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("provides[%d]: link name %q is declared twice", i, p.Name))
		}
		seen[p.Name] = true
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid job spec %s: %w", where, errors.Join(errs...))
	}
	return &s, nil
}

// TemplateSources are the spec's template sources, sorted.
func (s *JobSpec) TemplateSources() []string {
	out := make([]string, 0, len(s.Templates))
	for src := range s.Templates {
		out = append(out, src)
	}
	sort.Strings(out)
	return out
}

// PackageSpec is packages/<pkg>/spec.
type PackageSpec struct {
	Name          string   `yaml:"name"`
	Dependencies  []string `yaml:"dependencies"`
	Files         []string `yaml:"files"`
	ExcludedFiles []string `yaml:"excluded_files"`
	NoCompression bool     `yaml:"no_compression"`
}

// ParsePackageSpec parses a package spec.
func ParsePackageSpec(data []byte, where string) (*PackageSpec, error) {
	var s PackageSpec
	if err := yaml.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parsing package spec %s: %w", where, err)
	}
	if s.Name == "" {
		return nil, fmt.Errorf("invalid package spec %s: name is missing", where)
	}
	return &s, nil
}

// FinalConfig is config/final.yml.
type FinalConfig struct {
	Name          string          `yaml:"name"`
	FinalName     string          `yaml:"final_name"` // legacy alias of name
	Blobstore     BlobstoreConfig `yaml:"blobstore"`
	NoCompression bool            `yaml:"no_compression"`
}

// BlobstoreConfig is the blobstore block of config/final.yml.
type BlobstoreConfig struct {
	Provider string         `yaml:"provider"`
	Options  map[string]any `yaml:"options"`
}

// ReleaseName is name, or the legacy final_name.
func (c *FinalConfig) ReleaseName() string {
	if c.Name != "" {
		return c.Name
	}
	return c.FinalName
}

// BlobEntry is an entry of config/blobs.yml, keyed by the path under blobs/.
type BlobEntry struct {
	Size     int64  `yaml:"size"`
	ObjectID string `yaml:"object_id,omitempty"`
	SHA      string `yaml:"sha"`
}
