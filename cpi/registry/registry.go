// Package registry maps driver names to constructors and a cpi-config (several
// named CPIs, BOSH's multi-CPI) to opened drivers, so that cloud-config AZs can
// choose their CPI by name. The command factory fills the registry with the
// concrete drivers; this package imports none of them (only cpi and cpi/external).
package registry

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/external"
)

// Factory opens a driver from its configuration (the cpi-config entry's
// properties, or the file given to `kpaas cpi NAME --config`).
type Factory func(config json.RawMessage, logger *slog.Logger) (cpi.CPI, error)

// Registry holds the built-in drivers by name.
type Registry struct {
	drivers map[string]Factory
}

// New returns a registry that knows "external" (any BOSH CPI executable).
func New() *Registry {
	r := &Registry{drivers: map[string]Factory{}}
	r.Register("external", openExternal)
	return r
}

// Register adds a driver.
func (r *Registry) Register(name string, f Factory) { r.drivers[name] = f }

// Names lists the drivers, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.drivers))
	for n := range r.drivers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Open opens the driver called name.
func (r *Registry) Open(name string, config json.RawMessage, logger *slog.Logger) (cpi.CPI, error) {
	f, ok := r.drivers[driverName(name)]
	if !ok {
		return nil, fmt.Errorf("unknown cpi %q; known: %s", name, strings.Join(r.Names(), ", "))
	}
	if len(config) == 0 {
		config = json.RawMessage("{}")
	}
	return f(config, logger)
}

// driverName accepts BOSH's job-style names ("openstack_cpi", "vsphere_cpi").
func driverName(t string) string { return strings.TrimSuffix(t, "_cpi") }

// ExternalConfig is the "external" driver's configuration.
type ExternalConfig struct {
	Command      string         `json:"command"`
	Args         []string       `json:"args,omitempty"`
	Env          []string       `json:"env,omitempty"`
	Timeout      string         `json:"timeout,omitempty"` // Go duration, default 10m
	DirectorUUID string         `json:"director_uuid,omitempty"`
	Properties   map[string]any `json:"properties,omitempty"` // sent in every request's context
}

func openExternal(config json.RawMessage, logger *slog.Logger) (cpi.CPI, error) {
	var c ExternalConfig
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("parsing external cpi config: %w", err)
	}
	if c.Command == "" {
		return nil, fmt.Errorf("external cpi config: command is required (the path of the CPI executable)")
	}
	var timeout time.Duration
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil {
			return nil, fmt.Errorf("external cpi config: timeout %q: %w", c.Timeout, err)
		}
		timeout = d
	}
	return external.New(external.Config{
		Command: c.Command, Args: c.Args, Env: c.Env, Timeout: timeout,
		DirectorUUID: c.DirectorUUID, Properties: c.Properties, Logger: logger,
	}), nil
}

// CPIConfig is BOSH's cpi-config: several named CPIs. `type` is a kpaas driver
// name (local, openstack, vsphere, external, fake; BOSH's "openstack_cpi" form
// works too); `properties` is that driver's configuration.
type CPIConfig struct {
	CPIs []CPIEntry `json:"cpis" yaml:"cpis"`
}

// CPIEntry is one CPI of a cpi-config.
type CPIEntry struct {
	Name         string         `json:"name" yaml:"name"`
	Type         string         `json:"type" yaml:"type"`
	Properties   map[string]any `json:"properties,omitempty" yaml:"properties,omitempty"`
	MigratedFrom []struct {
		Name string `json:"name" yaml:"name"`
	} `json:"migrated_from,omitempty" yaml:"migrated_from,omitempty"`
}

// Validate reports every problem at once.
func (c CPIConfig) Validate(r *Registry) error {
	var probs []string
	seen := map[string]bool{}
	for i, e := range c.CPIs {
		switch {
		case e.Name == "":
			probs = append(probs, fmt.Sprintf("cpis[%d]: name is required", i))
		case seen[e.Name]:
			probs = append(probs, fmt.Sprintf("cpis[%d]: name %q is used twice", i, e.Name))
		}
		seen[e.Name] = true
		if _, ok := r.drivers[driverName(e.Type)]; !ok {
			probs = append(probs, fmt.Sprintf("cpis[%d] (%s): unknown type %q; known: %s", i, e.Name, e.Type, strings.Join(r.Names(), ", ")))
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("invalid cpi-config:\n  %s", strings.Join(probs, "\n  "))
	}
	return nil
}

// Set is the CPIs of a cpi-config, opened.
type Set struct {
	byName  map[string]cpi.CPI
	aliases map[string]string // migrated_from name -> current name
	def     string
}

// OpenAll opens every CPI of cfg. With no CPIs, the set holds the default
// driver (defaultName, e.g. "local") under the name "default".
func (r *Registry) OpenAll(cfg CPIConfig, defaultName string, defaultConfig json.RawMessage, logger *slog.Logger) (*Set, error) {
	s := &Set{byName: map[string]cpi.CPI{}, aliases: map[string]string{}}
	if len(cfg.CPIs) == 0 {
		c, err := r.Open(defaultName, defaultConfig, logger)
		if err != nil {
			return nil, err
		}
		s.byName["default"], s.def = c, "default"
		return s, nil
	}
	if err := cfg.Validate(r); err != nil {
		return nil, err
	}
	for _, e := range cfg.CPIs {
		props, err := json.Marshal(e.Properties)
		if err != nil {
			return nil, fmt.Errorf("encoding properties of cpi %s: %w", e.Name, err)
		}
		c, err := r.Open(e.Type, props, logger.With("cpi", e.Name))
		if err != nil {
			return nil, fmt.Errorf("opening cpi %s (%s): %w", e.Name, e.Type, err)
		}
		s.byName[e.Name] = c
		for _, m := range e.MigratedFrom {
			s.aliases[m.Name] = e.Name
		}
	}
	if len(cfg.CPIs) == 1 {
		s.def = cfg.CPIs[0].Name
	}
	return s, nil
}

// ForAZ returns the CPI an availability zone names (cloud-config azs[].cpi).
// An AZ without a cpi gets the only CPI; with several CPIs it must name one.
func (s *Set) ForAZ(az, cpiName string) (cpi.CPI, string, error) {
	if cpiName == "" {
		if s.def == "" {
			return nil, "", fmt.Errorf("az %q names no cpi, and the cpi-config has several (%s): add `cpi: NAME` to the az", az, strings.Join(s.Names(), ", "))
		}
		return s.byName[s.def], s.def, nil
	}
	if n, ok := s.aliases[cpiName]; ok {
		cpiName = n
	}
	c, ok := s.byName[cpiName]
	if !ok {
		return nil, "", fmt.Errorf("az %q names cpi %q, which the cpi-config does not have (%s)", az, cpiName, strings.Join(s.Names(), ", "))
	}
	return c, cpiName, nil
}

// Names lists the CPI names, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.byName))
	for n := range s.byName {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
