package interpolate

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	yaml "gopkg.in/yaml.v2"
)

// KV is one named value: `-v name=value` or `--var-file name=path` (the file's contents).
type KV struct {
	Name  string
	Value any
}

// Sources are the variable sources of `bosh int`, with BOSH's precedence:
// KVs (-v) over VarFiles (--var-file) over Files (-l, later files win) over Env
// (--vars-env, later prefixes win); the Store is asked only for names none of them gives.
type Sources struct {
	KVs      []KV
	VarFiles []KV
	Files    []map[string]any
	Env      []map[string]any
	Store    *Store
}

// ParseVarKV parses `-v name=value`. The value is YAML (`x=true` is a bool, `x={a: 1}`
// a map); a value that YAML reads as a string is kept exactly as typed.
func ParseVarKV(arg string) (KV, error) {
	name, value, ok := strings.Cut(arg, "=")
	switch {
	case !ok:
		return KV{}, fmt.Errorf("variable %q must be name=value", arg)
	case name == "":
		return KV{}, fmt.Errorf("variable %q has an empty name", arg)
	case value == "":
		return KV{}, fmt.Errorf("variable %q has an empty value", arg)
	}
	var v any
	if err := yaml.Unmarshal([]byte(value), &v); err != nil {
		return KV{}, fmt.Errorf("variable %q: the value is not valid YAML: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if _, isString := v.(string); isString {
		return KV{Name: name, Value: value}, nil
	}
	return KV{Name: name, Value: v}, nil
}

// ReadVarFile reads `--var-file name=path` with read (os.ReadFile): the variable is the
// file's contents as a string.
func ReadVarFile(arg string, read func(string) ([]byte, error)) (KV, error) {
	name, path, ok := strings.Cut(arg, "=")
	switch {
	case !ok:
		return KV{}, fmt.Errorf("--var-file %q must be name=path", arg)
	case name == "":
		return KV{}, fmt.Errorf("--var-file %q has an empty name", arg)
	case path == "":
		return KV{}, fmt.Errorf("--var-file %q has an empty path", arg)
	}
	data, err := read(expandHome(path))
	if err != nil {
		return KV{}, fmt.Errorf("reading variable %s from file: %w", name, err)
	}
	return KV{Name: name, Value: string(data)}, nil
}

// ParseVarsFile parses a vars file (-l): a YAML map of variable names to values.
func ParseVarsFile(name string, data []byte) (map[string]any, error) {
	var vars map[string]any
	if err := yaml.Unmarshal(data, &vars); err != nil {
		return nil, yamlError(name, data, err, "a vars file must be a YAML map of variable names to values")
	}
	return vars, nil
}

// VarsFromEnv collects PREFIX_name=value from environ (os.Environ()), values parsed as YAML.
func VarsFromEnv(prefix string, environ []string) (map[string]any, error) {
	if prefix == "" {
		return nil, errors.New("--vars-env needs a non-empty prefix")
	}
	vars := map[string]any{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, prefix+"_") {
			continue
		}
		var val any
		if err := yaml.Unmarshal([]byte(v), &val); err != nil {
			return nil, fmt.Errorf("environment variable %s is not valid YAML: %s", k, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		vars[strings.TrimPrefix(k, prefix+"_")] = val
	}
	return vars, nil
}

// static merges the non-store sources by precedence and expands dotted names
// (`-v a.b=1` gives a: {b: 1}), as the BOSH CLI's StaticVariables do.
func (s Sources) static() map[string]any {
	raw := map[string]any{}
	for _, m := range s.Env {
		for k, v := range m {
			raw[k] = v
		}
	}
	for _, m := range s.Files {
		for k, v := range m {
			raw[k] = v
		}
	}
	for _, kv := range s.VarFiles {
		raw[kv.Name] = kv.Value
	}
	for _, kv := range s.KVs {
		raw[kv.Name] = kv.Value
	}
	return expandDotted(raw)
}

// expandDotted nests "a.b.c" names into maps. Plain names are placed first, so a
// dotted name adds to (rather than is replaced by) a map given under its first segment.
func expandDotted(raw map[string]any) map[string]any {
	out := make(map[string]any, len(raw))
	var dotted []string
	for k, v := range raw {
		if strings.Contains(k, ".") {
			dotted = append(dotted, k)
			continue
		}
		out[k] = v
	}
	sort.Strings(dotted)
	for _, k := range dotted {
		pieces := strings.Split(k, ".")
		first, ok := out[pieces[0]].(map[any]any)
		if !ok {
			first = map[any]any{}
			out[pieces[0]] = first
		}
		m := first
		for _, p := range pieces[1 : len(pieces)-1] {
			next, ok := m[p].(map[any]any)
			if !ok {
				next = map[any]any{}
				m[p] = next
			}
			m = next
		}
		m[pieces[len(pieces)-1]] = raw[k]
	}
	return out
}

func expandHome(path string) string {
	if path == "~" || strings.HasPrefix(path, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return home + path[1:]
		}
	}
	return path
}
