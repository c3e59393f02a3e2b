package interpolate

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
)

// MissingKeyError: a path named a map key the document does not have.
type MissingKeyError struct {
	Key   string
	Path  string   // the path up to and including the missing key
	Found []string // the map's string keys, sorted
}

func (e *MissingKeyError) Error() string {
	if len(e.Found) == 0 {
		return fmt.Sprintf("Expected to find a map key '%s' for path '%s' (found no other map keys)", e.Key, e.Path)
	}
	return fmt.Sprintf("Expected to find a map key '%s' for path '%s' (found map keys: '%s')", e.Key, e.Path, strings.Join(e.Found, "', '"))
}

// MissingIndexError: a path named an array index past either end of the array.
type MissingIndexError struct {
	Index, Len int
	Path       string
}

func (e *MissingIndexError) Error() string {
	return fmt.Sprintf("Expected to find array index '%d' but found array of length '%d' for path '%s'", e.Index, e.Len, e.Path)
}

// MatchError: a name=value path token matched zero or several array items.
type MatchError struct {
	Path    string
	Matches int
}

func (e *MatchError) Error() string {
	return fmt.Sprintf("Expected to find exactly one matching array item for path '%s' but found %d", e.Path, e.Matches)
}

// TypeError: a path went through a value of the wrong kind.
type TypeError struct {
	Want  string // "a map" or "an array"
	Path  string
	Found any
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("Expected to find %s at path '%s' but found %s", e.Want, e.Path, describe(e.Found))
}

// describe names a YAML value's kind for error messages, with a short preview.
func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case map[any]any:
		return fmt.Sprintf("a map (keys: %s)", strings.Join(mapKeys(t), ", "))
	case []any:
		return fmt.Sprintf("an array of %d items", len(t))
	case string:
		if len(t) > 40 {
			t = t[:40] + "..."
		}
		return fmt.Sprintf("a string (%q)", t)
	default:
		return fmt.Sprintf("a %T (%v)", v, v)
	}
}

func mapKeys(m map[any]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if s, ok := k.(string); ok {
			keys = append(keys, s)
		}
	}
	sort.Strings(keys)
	return keys
}

func missingKey(key string, toks []token, m map[any]any) error {
	return &MissingKeyError{Key: key, Path: pointerString(toks), Found: mapKeys(m)}
}

// arrayIndex resolves an index token with :prev/:next against an array of length n.
func arrayIndex(index int, mods []modifier, n int, toks []token) (int, error) {
	result := index
	for _, m := range mods {
		switch m {
		case modPrev:
			result--
		case modNext:
			result++
		default:
			return 0, fmt.Errorf("path '%s': modifier ':%s' is only allowed last, where an item is inserted", pointerString(toks), m)
		}
	}
	if result >= n || -result-1 >= n {
		return 0, &MissingIndexError{Index: result, Len: n, Path: pointerString(toks)}
	}
	if result < 0 {
		result += n
	}
	return result, nil
}

// arrayInsert places v at index (with modifiers) in arr: :before/:after insert, otherwise replace.
func arrayInsert(arr []any, index int, mods []modifier, v any, toks []token) ([]any, error) {
	var plain []modifier
	before, after := false, false
	for _, m := range mods {
		if before || after {
			return nil, fmt.Errorf("path '%s': nothing may follow a ':before' or ':after' modifier", pointerString(toks))
		}
		switch m {
		case modBefore:
			before = true
		case modAfter:
			after = true
		default:
			plain = append(plain, m)
		}
	}
	num, err := arrayIndex(index, plain, len(arr), toks)
	if err != nil {
		return nil, err
	}
	if after && num != len(arr) {
		num++
	}
	if before || after {
		out := make([]any, 0, len(arr)+1)
		out = append(out, arr[:num]...)
		out = append(out, v)
		return append(out, arr[num:]...), nil
	}
	arr[num] = v
	return arr, nil
}

func matchingIndexes(arr []any, key, value string) []int {
	var idxs []int
	for i, item := range arr {
		if m, ok := item.(map[any]any); ok {
			if s, ok := m[key].(string); ok && s == value {
				idxs = append(idxs, i)
			}
		}
	}
	return idxs
}

// Replace sets the value at path p in doc (creating optional parents) and returns the new document.
func Replace(doc any, p Pointer, value any) (any, error) {
	v := cloneValue(value)
	toks := p.tokens
	if len(toks) == 0 {
		return v, nil
	}
	err := replaceAt(doc, toks, 0, v, func(n any) { doc = n })
	if err != nil {
		return nil, err
	}
	return doc, nil
}

func replaceAt(obj any, toks []token, i int, v any, set func(any)) error {
	t := toks[i]
	isLast := i == len(toks)-1
	here := toks[:i+1]
	switch t.kind {
	case tokIndex:
		arr, ok := obj.([]any)
		if !ok {
			return &TypeError{Want: "an array", Path: pointerString(here), Found: obj}
		}
		if isLast {
			out, err := arrayInsert(arr, t.index, t.modifiers, v, here)
			if err != nil {
				return err
			}
			set(out)
			return nil
		}
		idx, err := arrayIndex(t.index, t.modifiers, len(arr), here)
		if err != nil {
			return err
		}
		return replaceAt(arr[idx], toks, i+1, v, func(n any) { arr[idx] = n })
	case tokAfterLastIndex:
		arr, ok := obj.([]any)
		if !ok {
			return &TypeError{Want: "an array", Path: pointerString(here), Found: obj}
		}
		if !isLast {
			return fmt.Errorf("path '%s': '-' (after the last item) must be the last token", pointerString(toks))
		}
		set(append(arr, v))
		return nil
	case tokMatchingIndex:
		arr, ok := obj.([]any)
		if !ok {
			return &TypeError{Want: "an array", Path: pointerString(here), Found: obj}
		}
		idxs := matchingIndexes(arr, t.key, t.value)
		if t.optional && len(idxs) == 0 {
			if isLast {
				set(append(arr, v))
				return nil
			}
			o := map[any]any{t.key: t.value}
			set(append(arr, o))
			return replaceAt(o, toks, i+1, v, func(any) {}) // o is a map: changed in place
		}
		if len(idxs) != 1 {
			return &MatchError{Path: pointerString(here), Matches: len(idxs)}
		}
		if isLast {
			out, err := arrayInsert(arr, idxs[0], t.modifiers, v, here)
			if err != nil {
				return err
			}
			set(out)
			return nil
		}
		idx, err := arrayIndex(idxs[0], t.modifiers, len(arr), here)
		if err != nil {
			return err
		}
		return replaceAt(arr[idx], toks, i+1, v, func(n any) { arr[idx] = n })
	case tokKey:
		m, ok := obj.(map[any]any)
		if !ok {
			return &TypeError{Want: "a map", Path: pointerString(here), Found: obj}
		}
		o, found := m[t.key]
		if !found && !t.optional {
			return missingKey(t.key, here, m)
		}
		if isLast {
			m[t.key] = v
			return nil
		}
		if !found {
			switch toks[i+1].kind {
			case tokAfterLastIndex, tokMatchingIndex:
				o = []any{}
			case tokKey:
				o = map[any]any{}
			default:
				return fmt.Errorf("path '%s': an index cannot follow the missing optional key '%s' (use a key, name=value or '-')", pointerString(toks[:i+2]), t.key)
			}
			m[t.key] = o
		}
		return replaceAt(o, toks, i+1, v, func(n any) { m[t.key] = n })
	}
	return fmt.Errorf("path '%s': unexpected token", pointerString(here))
}

// Remove deletes the value at path p. Optional tokens that do not match leave doc unchanged.
func Remove(doc any, p Pointer) (any, error) {
	toks := p.tokens
	if len(toks) == 0 {
		return nil, fmt.Errorf("cannot remove the entire document")
	}
	obj := doc
	set := func(n any) { doc = n }
	for i, t := range toks {
		isLast := i == len(toks)-1
		here := toks[:i+1]
		switch t.kind {
		case tokIndex, tokMatchingIndex:
			arr, ok := obj.([]any)
			if !ok {
				return nil, &TypeError{Want: "an array", Path: pointerString(here), Found: obj}
			}
			index := t.index
			if t.kind == tokMatchingIndex {
				idxs := matchingIndexes(arr, t.key, t.value)
				if t.optional && len(idxs) == 0 {
					return doc, nil
				}
				if len(idxs) != 1 {
					return nil, &MatchError{Path: pointerString(here), Matches: len(idxs)}
				}
				index = idxs[0]
			}
			idx, err := arrayIndex(index, t.modifiers, len(arr), here)
			if err != nil {
				return nil, err
			}
			if isLast {
				out := make([]any, 0, len(arr)-1)
				out = append(out, arr[:idx]...)
				set(append(out, arr[idx+1:]...))
			} else {
				obj = arr[idx]
				set = func(n any) { arr[idx] = n }
			}
		case tokKey:
			m, ok := obj.(map[any]any)
			if !ok {
				return nil, &TypeError{Want: "a map", Path: pointerString(here), Found: obj}
			}
			o, found := m[t.key]
			if !found {
				if t.optional {
					return doc, nil
				}
				return nil, missingKey(t.key, here, m)
			}
			if isLast {
				delete(m, t.key)
			} else {
				obj = o
				key := t.key
				set = func(n any) { m[key] = n }
			}
		default:
			return nil, fmt.Errorf("path '%s': '-' (after the last item) cannot be removed", pointerString(here))
		}
	}
	return doc, nil
}

// Find returns the value at path p. A missing optional key gives nil; a missing optional
// name=value item gives {name: value}.
func Find(doc any, p Pointer) (any, error) {
	toks := p.tokens
	obj := doc
	for i, t := range toks {
		isLast := i == len(toks)-1
		here := toks[:i+1]
		switch t.kind {
		case tokIndex:
			arr, ok := obj.([]any)
			if !ok {
				return nil, &TypeError{Want: "an array", Path: pointerString(here), Found: obj}
			}
			idx, err := arrayIndex(t.index, t.modifiers, len(arr), here)
			if err != nil {
				return nil, err
			}
			obj = arr[idx]
		case tokAfterLastIndex:
			return nil, fmt.Errorf("path '%s': '-' (after the last item) names no value to find", pointerString(toks))
		case tokMatchingIndex:
			arr, ok := obj.([]any)
			if !ok {
				return nil, &TypeError{Want: "an array", Path: pointerString(here), Found: obj}
			}
			idxs := matchingIndexes(arr, t.key, t.value)
			if t.optional && len(idxs) == 0 {
				obj = map[any]any{t.key: t.value}
				continue
			}
			if len(idxs) != 1 {
				return nil, &MatchError{Path: pointerString(here), Matches: len(idxs)}
			}
			idx, err := arrayIndex(idxs[0], t.modifiers, len(arr), here)
			if err != nil {
				return nil, err
			}
			obj = arr[idx]
		case tokKey:
			m, ok := obj.(map[any]any)
			if !ok {
				return nil, &TypeError{Want: "a map", Path: pointerString(here), Found: obj}
			}
			o, found := m[t.key]
			if !found && !t.optional {
				return nil, missingKey(t.key, here, m)
			}
			if !found && !isLast {
				switch toks[i+1].kind {
				case tokMatchingIndex:
					o = []any{}
				case tokKey:
					o = map[any]any{}
				default:
					return nil, fmt.Errorf("path '%s': an index cannot follow the missing optional key '%s'", pointerString(toks[:i+2]), t.key)
				}
			}
			obj = o
		}
	}
	return obj, nil
}

// Test checks that the value at p equals value (absent=false) or that p does not exist (absent=true).
func Test(doc any, p Pointer, value any, absent bool) error {
	found, err := Find(doc, p)
	if absent {
		if err == nil {
			return fmt.Errorf("expected '%s' to be absent but found %s", p, describe(found))
		}
		var path string
		switch e := err.(type) {
		case *MissingKeyError:
			path = e.Path
		case *MissingIndexError:
			path = e.Path
		}
		if path != "" && path == p.String() {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(found, value) {
		return fmt.Errorf("found value at '%s' does not match the expected value: found %s, expected %s", p, describe(found), describe(value))
	}
	return nil
}

// cloneValue deep-copies a YAML value the way a gopkg.in/yaml.v2 Marshal+Unmarshal
// round trip would (as go-patch does): whole floats below 1e6 become ints.
func cloneValue(v any) any {
	switch t := v.(type) {
	case map[any]any:
		out := make(map[any]any, len(t))
		for k, e := range t {
			out[cloneValue(k)] = cloneValue(e)
		}
		return out
	case map[string]any:
		out := make(map[any]any, len(t))
		for k, e := range t {
			out[k] = cloneValue(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = cloneValue(e)
		}
		return out
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1e6 {
			return int(t)
		}
		return t
	default:
		return v
	}
}
