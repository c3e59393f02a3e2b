package manifest

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// blocker is implemented by link entries, which a null (or the word nil) blocks.
type blocker interface{ setBlocked() }

// rawKeeper is implemented by blocks that keep their whole map as written and
// accept keys they do not model (env: the CPI receives all of it).
type rawKeeper interface{ keepRaw(map[string]any) }

// scalarDecoder is implemented by value types written as one YAML scalar with
// their own syntax (CountOrPercent, WatchTime).
type scalarDecoder interface {
	decodeScalar(value string, tag string) error
}

type decoder struct {
	file string
	ps   *problems
}

var (
	metaType    = reflect.TypeOf(Meta{})
	anyMapType  = reflect.TypeOf(map[string]any{})
	scalarDecTy = reflect.TypeOf((*scalarDecoder)(nil)).Elem()
	blockerTy   = reflect.TypeOf((*blocker)(nil)).Elem()
	rawKeeperTy = reflect.TypeOf((*rawKeeper)(nil)).Elem()
	yamlLineRe  = regexp.MustCompile(`line (\d+)`)
)

// parseDocument reads data as one YAML document whose root must be a mapping and
// decodes it into out (a pointer to a struct with yaml tags).
func parseDocument(file string, data []byte, out any, what string) (Warnings, error) {
	ps := &problems{}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line := 0
		if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, fmt.Sprintf("line %d: ", line))
		ps.add(&Problem{File: file, Line: line, Message: "invalid YAML: " + msg})
		return nil, ps.err()
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		ps.add(&Problem{File: file, Line: 1, Message: fmt.Sprintf("the %s is empty", what)})
		return nil, ps.err()
	}
	doc := root.Content[0]
	if doc.Kind == yaml.AliasNode {
		doc = doc.Alias
	}
	if doc.Kind != yaml.MappingNode {
		ps.add(&Problem{File: file, Line: doc.Line, Column: doc.Column, Message: fmt.Sprintf("the %s must be a YAML map, got %s", what, kindName(doc))})
		return nil, ps.err()
	}
	d := &decoder{file: file, ps: ps}
	d.decodeStruct(doc, reflect.ValueOf(out).Elem(), "")
	return ps.warnings, ps.err()
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.ps.add(&Problem{File: d.file, Line: n.Line, Column: n.Column, Path: path, Message: fmt.Sprintf(format, args...)})
}

// placeholder returns the scalar's text if it is a string holding a ((var)).
func placeholder(n *yaml.Node) (string, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && HasVar(n.Value) {
		return n.Value, true
	}
	return "", false
}

type fieldInfo struct {
	index int
	name  string
}

var fieldCache sync.Map // reflect.Type -> map[string]fieldInfo

func fieldsOf(t reflect.Type) map[string]fieldInfo {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]fieldInfo)
	}
	f := map[string]fieldInfo{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		name := strings.Split(tag, ",")[0]
		f[name] = fieldInfo{index: i, name: name}
	}
	fieldCache.Store(t, f)
	return f
}

// mappingPairs returns key/value pairs of a mapping, resolving << merge keys
// (merged pairs first, so the mapping's own keys win).
func mappingPairs(n *yaml.Node) []pair {
	var out []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" || (k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Style == 0) {
			src := v
			if src.Kind == yaml.AliasNode {
				src = src.Alias
			}
			var srcs []*yaml.Node
			if src.Kind == yaml.SequenceNode {
				srcs = src.Content
			} else {
				srcs = []*yaml.Node{src}
			}
			for _, s := range srcs {
				if s.Kind == yaml.AliasNode {
					s = s.Alias
				}
				if s.Kind == yaml.MappingNode {
					for _, p := range mappingPairs(s) {
						p.merged = true
						out = append(out, p)
					}
				}
			}
			continue
		}
		out = append(out, pair{k: k, v: v})
	}
	return out
}

// pair is a mapping entry; merged entries come from a << merge key and may be
// overridden without a duplicate-key warning.
type pair struct {
	k, v   *yaml.Node
	merged bool
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	fields := fieldsOf(t)
	meta := Meta{File: d.file, Path: path, Line: n.Line, Column: n.Column, keys: map[string]pos{}}
	seen := map[string]int{}
	open := v.CanAddr() && v.Addr().Type().Implements(rawKeeperTy)
	for _, kv := range mappingPairs(n) {
		k, val := kv.k, kv.v
		key := k.Value
		sub := key
		if path != "" {
			sub = path + "." + key
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be strings, got %s", kindName(k))
			continue
		}
		if line, dup := seen[key]; dup && !kv.merged {
			d.ps.warn(&Problem{File: d.file, Line: k.Line, Column: k.Column, Path: sub, Message: fmt.Sprintf("duplicate key (also on line %d); the last value wins", line)})
		}
		if !kv.merged {
			seen[key] = k.Line
		}
		fi, ok := fields[key]
		if !ok && open {
			continue
		}
		if !ok {
			d.ps.warn(&Problem{File: d.file, Line: k.Line, Column: k.Column, Path: sub, Message: "unknown key, ignored"})
			continue
		}
		meta.keys[key] = pos{k.Line, k.Column}
		if seq := val; seq.Kind == yaml.SequenceNode || (seq.Kind == yaml.AliasNode && seq.Alias.Kind == yaml.SequenceNode) {
			if seq.Kind == yaml.AliasNode {
				seq = seq.Alias
			}
			if meta.items == nil {
				meta.items = map[string][]pos{}
			}
			lines := make([]pos, len(seq.Content))
			for i, it := range seq.Content {
				lines[i] = pos{it.Line, it.Column}
			}
			meta.items[key] = lines
		}
		fv := v.Field(fi.index)
		fv.Set(reflect.Zero(fv.Type()))
		if ph, isVar := d.decodeValue(val, fv, sub); isVar {
			if meta.vars == nil {
				meta.vars = map[string]string{}
			}
			meta.vars[key] = ph
		}
	}
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Type == metaType {
			v.Field(i).Set(reflect.ValueOf(meta))
		}
	}
}

// decodeValue decodes n into v. It returns the placeholder text and true when n
// is a ((placeholder)) standing for a non-string value (v is left zero).
func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, path string) (string, bool) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.CanAddr() && v.Addr().Type().Implements(blockerTy) &&
		(isNull(n) || (n.Kind == yaml.ScalarNode && n.Value == "nil")) {
		v.Addr().Interface().(blocker).setBlocked()
		return "", false
	}
	if isNull(n) {
		return "", false
	}
	t := v.Type()
	if t.Kind() != reflect.String && t.Kind() != reflect.Interface {
		if ph, ok := placeholder(n); ok {
			return ph, true
		}
	}
	if v.CanAddr() && v.Addr().Type().Implements(scalarDecTy) {
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "expected a single value, got %s", kindName(n))
			return "", false
		}
		if err := v.Addr().Interface().(scalarDecoder).decodeScalar(n.Value, n.Tag); err != nil {
			d.errorf(n, path, "%v", err)
		}
		return "", false
	}
	switch t.Kind() {
	case reflect.Pointer:
		elem := reflect.New(t.Elem())
		ph, isVar := d.decodeValue(n, elem.Elem(), path)
		if !isVar {
			v.Set(elem)
		}
		return ph, isVar
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "expected a string, got %s", kindName(n))
			return "", false
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			if n.Tag == "!!float" {
				if f, err := strconv.ParseFloat(n.Value, 64); err == nil && f == math.Trunc(f) {
					v.SetInt(int64(f))
					return "", false
				}
			}
			d.errorf(n, path, "expected an integer, got %s", kindName(n))
			return "", false
		}
		var i int
		if err := n.Decode(&i); err != nil {
			d.errorf(n, path, "expected an integer, got %s", kindName(n))
			return "", false
		}
		v.SetInt(int64(i))
	case reflect.Bool:
		b, ok := parseBool(n)
		if !ok {
			d.errorf(n, path, "expected true or false, got %s", kindName(n))
			return "", false
		}
		v.SetBool(b)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "expected a list, got %s", kindName(n))
			return "", false
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ip := itemPath(path, i, item)
			if ph, isVar := d.decodeValue(item, s.Index(i), ip); isVar {
				setWholeVar(s.Index(i), ph, Meta{File: d.file, Path: ip, Line: item.Line, Column: item.Column})
			}
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "expected a map, got %s", kindName(n))
			return "", false
		}
		if t == anyMapType {
			v.Set(reflect.ValueOf(d.toAny(n, path)))
			return "", false
		}
		m := reflect.MakeMap(t)
		for _, kv := range mappingPairs(n) {
			ev := reflect.New(t.Elem()).Elem()
			d.decodeValue(kv.v, ev, path+"."+kv.k.Value)
			m.SetMapIndex(reflect.ValueOf(kv.k.Value).Convert(t.Key()), ev)
		}
		v.Set(m)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "expected a map, got %s", kindName(n))
			return "", false
		}
		d.decodeStruct(n, v, path)
		if v.CanAddr() && v.Addr().Type().Implements(rawKeeperTy) {
			raw, _ := d.toAny(n, path).(map[string]any)
			v.Addr().Interface().(rawKeeper).keepRaw(raw)
		}
	case reflect.Interface:
		if x := d.toAny(n, path); x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		panic(fmt.Sprintf("manifest: unsupported field type %s", t))
	}
	return "", false
}

// itemPath names a list item, adding its name when it has one:
// instance_groups[2] (router).
func itemPath(path string, i int, item *yaml.Node) string {
	p := fmt.Sprintf("%s[%d]", path, i)
	if item.Kind == yaml.AliasNode {
		item = item.Alias
	}
	if item.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(item.Content); j += 2 {
			if item.Content[j].Value == "name" && item.Content[j+1].Kind == yaml.ScalarNode && item.Content[j+1].Value != "" {
				return p + " (" + item.Content[j+1].Value + ")"
			}
		}
	}
	return p
}

// parseBool accepts YAML 1.2 booleans and the YAML 1.1 words the director's
// Ruby parser also reads as booleans.
func parseBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode {
		return false, false
	}
	if n.Tag == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil {
			return b, true
		}
	}
	if n.Style != 0 { // a quoted "yes" is a string
		return false, false
	}
	switch strings.ToLower(n.Value) {
	case "yes", "on", "y":
		return true, true
	case "no", "off", "n":
		return false, true
	}
	return false, false
}

// setWholeVar marks a struct (or pointer to struct) list item whose whole value
// was a placeholder, so validators can skip it.
func setWholeVar(v reflect.Value, ph string, m Meta) {
	if v.Kind() == reflect.Pointer {
		return
	}
	if v.Kind() != reflect.Struct {
		return
	}
	m.vars = map[string]string{"": ph}
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Type == metaType {
			v.Field(i).Set(reflect.ValueOf(m))
		}
	}
}

// toAny converts a node to plain Go values (map[string]any, []any, string,
// int, float64, bool, nil) the way BOSH reads free-form blocks such as
// properties: duplicate keys are a warning and the last value wins (yaml.v2 and
// the director's Ruby parser both accept them), merge keys are applied, and
// plain yes/no/on/off are booleans (YAML 1.1).
func (d *decoder) toAny(n *yaml.Node, path string) any {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		seen := map[string]int{}
		for _, kv := range mappingPairs(n) {
			k := kv.k
			if k.Kind != yaml.ScalarNode {
				d.errorf(k, path, "keys must be strings, got %s", kindName(k))
				continue
			}
			if line, dup := seen[k.Value]; dup && !kv.merged {
				d.ps.warn(&Problem{File: d.file, Line: k.Line, Column: k.Column, Path: path + "." + k.Value, Message: fmt.Sprintf("duplicate key (also on line %d); the last value wins", line)})
			}
			if !kv.merged {
				seen[k.Value] = k.Line
			}
			m[k.Value] = d.toAny(kv.v, path+"."+k.Value)
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, item := range n.Content {
			l[i] = d.toAny(item, fmt.Sprintf("%s[%d]", path, i))
		}
		return l
	case yaml.ScalarNode:
		if n.Tag == "!!str" && n.Style == 0 {
			switch n.Value {
			case "yes", "Yes", "YES", "on", "On", "ON", "y", "Y":
				return true
			case "no", "No", "NO", "off", "Off", "OFF", "n", "N":
				return false
			}
		}
		var x any
		if err := n.Decode(&x); err != nil {
			d.errorf(n, path, "%v", err)
			return n.Value
		}
		return x
	}
	return nil
}
