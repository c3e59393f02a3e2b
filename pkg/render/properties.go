package render

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/release"
)

// PropertySources are where a job's property values come from. When the
// manifest gives the job a properties block (Job non-nil, even empty) only that
// block counts; otherwise the instance group's properties over the deployment's
// global properties, as the director merges them.
type PropertySources struct {
	Job    map[string]any // instance_groups[].jobs[].properties; nil when not given
	Group  map[string]any // instance_groups[].properties (deprecated in BOSH, still honoured)
	Global map[string]any // the manifest's top-level properties (deprecated in BOSH, still honoured)
}

// Values returns the manifest values the job's properties are looked up in.
func (s PropertySources) Values() map[string]any {
	if s.Job != nil {
		return s.Job
	}
	if s.Group == nil {
		return s.Global
	}
	if s.Global == nil {
		return s.Group
	}
	return deepMerge(s.Global, s.Group)
}

func deepMerge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := asMap(out[k]); ok {
			if om, ok := asMap(v); ok {
				out[k] = deepMerge(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// asMap accepts both map[string]any (yaml.v3, JSON) and map[any]any (yaml.v2).
func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	return nil, false
}

// lookup walks a dotted name through nested maps. found is false when a level
// is missing; an intermediate value that is not a map is an error, as the
// director reports it.
func lookup(values map[string]any, name string) (v any, found bool, err error) {
	var cur any = values
	parts := strings.Split(name, ".")
	for i, part := range parts {
		m, ok := asMap(cur)
		if !ok {
			if cur == nil {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("property '%s' expects a hash, but received '%s'", strings.Join(parts[:i], "."), rubyClass(cur))
		}
		cur, ok = m[part]
		if !ok {
			return nil, false, nil
		}
	}
	return cur, true, nil
}

func rubyClass(v any) string {
	switch v.(type) {
	case string:
		return "String"
	case int, int64, uint64, int32:
		return "Integer"
	case float64, float32:
		return "Float"
	case bool:
		return "Boolean"
	case []any:
		return "Array"
	}
	return fmt.Sprintf("%T", v)
}

// setPath stores v at a dotted name in nested maps.
func setPath(out map[string]any, name string, v any) error {
	parts := strings.Split(name, ".")
	cur := out
	for i, part := range parts[:len(parts)-1] {
		next, ok := cur[part]
		if !ok || next == nil {
			m := map[string]any{}
			cur[part] = m
			cur = m
			continue
		}
		m, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("property '%s' expects a hash, but received '%s'", strings.Join(parts[:i+1], "."), rubyClass(next))
		}
		cur = m
	}
	last := parts[len(parts)-1]
	cur[last] = v
	return nil
}

// BindProperties binds a job's declared properties as the director does: for
// each property in the job spec, the manifest value at its dotted name when it
// is not null, else the spec default (possibly nil). Undeclared manifest
// properties are dropped. The result is nested ("a.b" -> {a: {b: ...}}).
func BindProperties(spec *release.JobSpec, sources PropertySources) (map[string]any, error) {
	values := sources.Values()
	names := make([]string, 0, len(spec.Properties))
	for n := range spec.Properties {
		names = append(names, n)
	}
	sort.Strings(names) // parents before children
	out := map[string]any{}
	var errs []error
	for _, n := range names {
		v, found, err := lookup(values, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !found || v == nil {
			v = copyValue(spec.Properties[n].Default)
		}
		if err := setPath(out, n, v); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("binding properties of job %s: %w", spec.Name, errors.Join(errs...))
	}
	return out, nil
}

// copyValue deep-copies maps and lists so that rendering never shares mutable
// values between instances.
func copyValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, v := range t {
			out[k] = copyValue(v)
		}
		return out
	case map[any]any:
		m, _ := asMap(t)
		return copyValue(m)
	case []any:
		out := make([]any, len(t))
		for i, v := range t {
			out[i] = copyValue(v)
		}
		return out
	}
	return v
}

// SourcesFor gathers the property sources of job j of instance group g in
// manifest m (the manifest after interpolation).
func SourcesFor(m *manifest.Manifest, g *manifest.InstanceGroup, j *manifest.Job) PropertySources {
	s := PropertySources{Job: j.Properties, Group: g.Properties}
	if m != nil {
		s.Global = m.Properties
	}
	return s
}
