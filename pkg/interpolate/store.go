package interpolate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	yaml "gopkg.in/yaml.v2"
)

// Definition is one entry of a manifest's `variables:` section.
type Definition struct {
	Name    string `yaml:"name"`
	Type    string `yaml:"type"`
	Options any    `yaml:"options"`
}

// Generator makes a value for a declared variable (password, certificate, rsa, ssh).
// getCA returns another variable's current value (for a certificate's `ca` option).
type Generator func(def Definition, getCA func(name string) (any, bool)) (any, error)

// Store is a `--vars-store` file: read once, asked for names no other source gives,
// and filled with generated values for declared variables it lacks. Save writes it back.
type Store struct {
	Path     string
	Generate Generator

	vars  map[string]any // as stored (written back as is)
	view  map[string]any // with dotted names expanded, for lookups
	dirty bool
	mode  fs.FileMode

	lastName, lastType string   // the value generated last, written in generation field order
	generated          []string // names generated since the store was read
}

// OpenStore reads the store at path; a missing file is an empty store. gen makes
// declared variables the store lacks (nil: GenerateVar, i.e. pkg/vars).
func OpenStore(path string, gen Generator) (*Store, error) {
	if gen == nil {
		gen = GenerateVar
	}
	s := &Store{Path: expandHome(path), Generate: gen, vars: map[string]any{}, mode: 0o600}
	data, err := os.ReadFile(s.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading vars store: %w", err)
	default:
		if st, err := os.Stat(s.Path); err == nil {
			s.mode = st.Mode().Perm()
		}
		if err := yaml.Unmarshal(data, &s.vars); err != nil {
			return nil, yamlError(s.Path, data, err, "a vars store must be a YAML map of variable names to values")
		}
		if s.vars == nil {
			s.vars = map[string]any{}
		}
	}
	s.view = expandDotted(s.vars)
	return s, nil
}

// Get returns the stored value of name.
func (s *Store) Get(name string) (any, bool) {
	v, ok := s.view[name]
	return v, ok
}

// Names lists the stored variable names.
func (s *Store) Names() []string {
	names := make([]string, 0, len(s.view))
	for k := range s.view {
		names = append(names, k)
	}
	return names
}

// Generated lists the variables generated since the store was read, in order.
func (s *Store) Generated() []string { return s.generated }

func (s *Store) set(name, typ string, v any) {
	s.lastName, s.lastType = name, typ
	s.generated = append(s.generated, name)
	s.vars[name] = v
	s.view[name] = v
	s.dirty = true
}

// Save writes the store (atomically) when values were generated.
func (s *Store) Save() error {
	if !s.dirty {
		return nil
	}
	out := s.vars
	if s.lastName != "" {
		if v, ok := s.vars[s.lastName]; ok {
			out = make(map[string]any, len(s.vars))
			for k, e := range s.vars {
				out[k] = e
			}
			out[s.lastName] = orderedValue(s.lastType, v)
		}
	}
	data, err := yaml.Marshal(out)
	if err != nil {
		return fmt.Errorf("serializing vars store: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.Path), "."+filepath.Base(s.Path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing vars store %s: %w", s.Path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = tmp.Chmod(s.mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.Path)
	}
	if err != nil {
		return fmt.Errorf("writing vars store %s: %w", s.Path, err)
	}
	s.dirty = false
	return nil
}
