package release

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Manifest is release.MF (and dev_releases/<name>/<name>-<version>.yml).
type Manifest struct {
	Name               string               `yaml:"name" json:"name"`
	Version            string               `yaml:"version" json:"version"`
	CommitHash         string               `yaml:"commit_hash" json:"commit_hash"`
	UncommittedChanges bool                 `yaml:"uncommitted_changes" json:"uncommitted_changes"`
	Jobs               []JobRef             `yaml:"jobs" json:"jobs"`
	Packages           []PackageRef         `yaml:"packages" json:"packages"`
	CompiledPackages   []CompiledPackageRef `yaml:"compiled_packages,omitempty" json:"compiled_packages,omitempty"`
	License            *LicenseRef          `yaml:"license,omitempty" json:"license,omitempty"`
	NoCompression      bool                 `yaml:"no_compression,omitempty" json:"no_compression,omitempty"`
}

// JobRef is a job entry of release.MF. SHA1 holds a digest string (sha256:... today).
type JobRef struct {
	Name        string   `yaml:"name" json:"name"`
	Version     string   `yaml:"version" json:"version"`
	Fingerprint string   `yaml:"fingerprint" json:"fingerprint"`
	SHA1        string   `yaml:"sha1" json:"sha1"`
	Packages    []string `yaml:"packages" json:"packages"`
}

// PackageRef is a package entry of release.MF.
type PackageRef struct {
	Name         string   `yaml:"name" json:"name"`
	Version      string   `yaml:"version" json:"version"`
	Fingerprint  string   `yaml:"fingerprint" json:"fingerprint"`
	SHA1         string   `yaml:"sha1" json:"sha1"`
	Dependencies []string `yaml:"dependencies" json:"dependencies"`
}

// CompiledPackageRef is a compiled_packages entry (compiled releases).
type CompiledPackageRef struct {
	Name         string   `yaml:"name" json:"name"`
	Version      string   `yaml:"version" json:"version"`
	Fingerprint  string   `yaml:"fingerprint" json:"fingerprint"`
	SHA1         string   `yaml:"sha1" json:"sha1"`
	Stemcell     string   `yaml:"stemcell" json:"stemcell"` // "<os>/<version>"
	Dependencies []string `yaml:"dependencies" json:"dependencies"`
}

// LicenseRef is the license entry of release.MF.
type LicenseRef struct {
	Version     string `yaml:"version" json:"version"`
	Fingerprint string `yaml:"fingerprint" json:"fingerprint"`
	SHA1        string `yaml:"sha1" json:"sha1"`
}

// ParseManifest parses release.MF. Ruby-CLI manifests may carry `!binary` tags;
// they are rewritten to `!!binary` first, as bosh-cli does.
func ParseManifest(data []byte) (*Manifest, error) {
	data = bytes.ReplaceAll(data, []byte(" !binary "), []byte(" !!binary "))
	var m Manifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parsing release.MF: %w", err)
	}
	if m.Name == "" || m.Version == "" {
		return nil, fmt.Errorf("parsing release.MF: name and version are required (got name %q, version %q)", m.Name, m.Version)
	}
	return &m, nil
}

// Marshal renders m as YAML with a two-space indent.
func (m *Manifest) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// IsCompiled reports whether the release carries compiled packages.
func (m *Manifest) IsCompiled() bool { return len(m.CompiledPackages) > 0 }
