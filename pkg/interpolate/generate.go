package interpolate

import (
	"fmt"

	yaml "gopkg.in/yaml.v2"

	"github.com/kpaas/kpaas/pkg/vars"
)

// GenerateVar is the default Generator: pkg/vars, as the BOSH CLI's vars store generates.
func GenerateVar(def Definition, getCA func(name string) (any, bool)) (any, error) {
	opts := map[string]any{}
	switch o := def.Options.(type) {
	case nil:
	case map[any]any:
		for k, v := range o {
			opts[fmt.Sprint(k)] = v
		}
	case map[string]any:
		opts = o
	default:
		return nil, fmt.Errorf("the options of variable '%s' must be a map, not %s", def.Name, describe(o))
	}
	return vars.Generate(vars.Definition{Name: def.Name, Type: def.Type, Options: opts}, getCA)
}

// orderedValue renders a freshly generated value with its fields in the BOSH CLI's
// struct order (the last value it generates is written that way to the store).
func orderedValue(typ string, v any) any {
	order := vars.FieldOrder(typ)
	m, ok := v.(map[any]any)
	if len(order) == 0 || !ok || len(m) != len(order) {
		return v
	}
	out := make(yaml.MapSlice, 0, len(order))
	for _, k := range order {
		e, ok := m[k]
		if !ok {
			return v
		}
		out = append(out, yaml.MapItem{Key: k, Value: e})
	}
	return out
}
