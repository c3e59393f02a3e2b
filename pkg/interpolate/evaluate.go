package interpolate

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	yaml "gopkg.in/yaml.v2"
)

// File is a named YAML document (the name is used in errors).
type File struct {
	Name string
	Data []byte
}

// Request is one `bosh int`: a manifest, ops files applied in order, variable
// sources, and what to check and return.
type Request struct {
	Manifest File
	OpsFiles []*OpsFile
	Vars     Sources
	// Path, when set, selects part of the result (after ops and variables), as --path.
	Path string
	// ExpectAllKeys fails when a variable has no value (--var-errs).
	ExpectAllKeys bool
	// ExpectAllUsed fails when a given variable is not used (--var-errs-unused).
	ExpectAllUsed bool
}

// Result is the evaluated document.
type Result struct {
	Document any
	// Missing are the variables without a value; Unused the given ones never used
	// (both are base names, sorted; filled whether or not they are errors).
	Missing []string
	Unused  []string
	// Generated are the variables generated into the store, in generation order.
	Generated []string
	path      bool
}

// YAML renders the document as `bosh int` prints it: gopkg.in/yaml.v2 with sorted keys,
// except that a string selected with --path is printed raw.
func (r *Result) YAML() ([]byte, error) {
	if s, ok := r.Document.(string); ok && r.path {
		return []byte(s + "\n"), nil
	}
	return yaml.Marshal(r.Document)
}

// VarsError lists every missing (--var-errs) and unused (--var-errs-unused) variable at once.
type VarsError struct {
	Missing []string
	Unused  []string
	// Where lists the first places (go-patch paths) each missing variable is used;
	// Uses counts them.
	Where map[string][]string
	Uses  map[string]int
}

func (e *VarsError) Error() string {
	var b strings.Builder
	if len(e.Missing) > 0 {
		fmt.Fprintf(&b, "%d variable(s) have no value (give them with -v, -l, --var-file, --vars-env or --vars-store):\n", len(e.Missing))
		for _, n := range e.Missing {
			fmt.Fprintf(&b, "  - %s", n)
			if places := e.Where[n]; len(places) > 0 {
				fmt.Fprintf(&b, " (at %s", places[0])
				if more := e.Uses[n] - 1; more > 0 {
					fmt.Fprintf(&b, " and %d more", more)
				}
				b.WriteString(")")
			}
			b.WriteString("\n")
		}
	}
	if len(e.Unused) > 0 {
		fmt.Fprintf(&b, "%d variable(s) were given but not used by the manifest:\n", len(e.Unused))
		for _, n := range e.Unused {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// ParseManifest parses a YAML document; errors name the file and line.
func ParseManifest(f File) (any, error) {
	var doc any
	if err := yaml.Unmarshal(f.Data, &doc); err != nil {
		return nil, yamlError(f.Name, f.Data, err, "")
	}
	return doc, nil
}

// Evaluate does what `bosh int` does: parse the manifest, apply the ops files, interpolate
// ((variables)) (generating declared ones into the store), then select Path.
// A store that gained values is saved, even when evaluation fails later (as BOSH does).
func Evaluate(req Request) (res *Result, err error) {
	doc, err := ParseManifest(req.Manifest)
	if err != nil {
		return nil, err
	}
	for _, f := range req.OpsFiles {
		if doc, err = f.Apply(doc); err != nil {
			return nil, err
		}
	}
	var path Pointer
	if req.Path != "" {
		if path, err = ParsePointer(req.Path); err != nil {
			return nil, fmt.Errorf("--path: %w", err)
		}
	}
	if st := req.Vars.Store; st != nil {
		defer func() {
			if serr := st.Save(); serr != nil && err == nil {
				err = serr
			}
		}()
	}
	e := newEvaluator(req.Vars)
	doc, err = e.run(doc)
	if err != nil {
		return nil, err
	}
	res = &Result{Document: doc, Missing: sortedNames(e.missing), Unused: e.unused(), path: req.Path != ""}
	if req.Vars.Store != nil {
		res.Generated = req.Vars.Store.Generated()
	}
	for name, loc := range e.declared {
		if len(e.where[name]) == 0 {
			e.where[name], e.count[name] = []string{loc}, 1
		}
	}
	verr := VarsError{Where: e.where, Uses: e.count}
	if req.ExpectAllKeys {
		verr.Missing = res.Missing
	}
	if req.ExpectAllUsed {
		verr.Unused = res.Unused
	}
	if len(verr.Missing) > 0 || len(verr.Unused) > 0 {
		return res, &verr
	}
	if req.Path != "" {
		if res.Document, err = Find(doc, path); err != nil {
			return nil, fmt.Errorf("--path %s: %w", req.Path, err)
		}
	}
	return res, nil
}

var (
	placeholderRe         = regexp.MustCompile(`\(\((!?[-/\.\w\pL]+)\)\)`)
	placeholderAnchoredRe = regexp.MustCompile(`\A` + placeholderRe.String() + `\z`)
)

// PlaceholderNames lists the variable names ((x)) and ((!x)) in s (without the '!').
func PlaceholderNames(s string) []string {
	if !strings.Contains(s, "((") {
		return nil
	}
	var names []string
	for _, m := range placeholderRe.FindAllStringSubmatch(s, -1) {
		names = append(names, strings.TrimPrefix(m[1], "!"))
	}
	return names
}

// evaluator is the BOSH CLI's varsTracker: it remembers which variables were asked
// for (visited) and which had no value (missing).
type evaluator struct {
	static  map[string]any
	store   *Store
	defs    []Definition
	missing map[string]struct{}
	visited map[string]struct{}

	// where the walk is, to say where a missing variable is used
	base     string
	at       []step
	where    map[string][]string // missing name -> distinct places of use (first few)
	count    map[string]int      // missing name -> number of distinct places of use
	declared map[string]string   // missing name -> its entry in the variables section
}

// step is one level of the walk: a map key, or an array item.
type step struct {
	key any
	arr []any
	idx int
}

func newEvaluator(src Sources) *evaluator {
	return &evaluator{static: src.static(), store: src.Store, missing: map[string]struct{}{}, visited: map[string]struct{}{},
		where: map[string][]string{}, count: map[string]int{}, declared: map[string]string{}}
}

// location renders where the walk is as a go-patch path (array items by name when they have one).
func (e *evaluator) location() string {
	var b strings.Builder
	b.WriteString(e.base)
	for _, st := range e.at {
		b.WriteByte('/')
		if st.arr == nil {
			b.WriteString(pointerEncoder.Replace(fmt.Sprint(st.key)))
			continue
		}
		if m, ok := st.arr[st.idx].(map[any]any); ok {
			if name, ok := m["name"].(string); ok {
				b.WriteString("name=" + pointerEncoder.Replace(name))
				continue
			}
		}
		b.WriteString(strconv.Itoa(st.idx))
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

const maxPlaces = 3

func (e *evaluator) recordMissing(name string) {
	loc := e.location()
	if len(e.at) == 0 && strings.HasPrefix(e.base, "/variables/") && !strings.HasSuffix(e.base, "/options") {
		e.declared[name] = loc // the declaration: shown only when nothing uses the variable
		return
	}
	for _, l := range e.where[name] {
		if l == loc {
			return
		}
	}
	e.count[name]++
	if len(e.where[name]) < maxPlaces {
		e.where[name] = append(e.where[name], loc)
	}
}

// run: read the definitions, get every typed one in order (so CAs are generated before
// the certificates they sign), interpolate, then drop found variables from `variables:`.
func (e *evaluator) run(doc any) (any, error) {
	if err := e.extractDefinitions(doc); err != nil {
		return nil, err
	}
	for _, d := range e.defs {
		if d.Type == "" {
			continue
		}
		e.base = "/variables/name=" + pointerEncoder.Replace(d.Name)
		if _, _, err := e.get(d.Name, nil, e.missing); err != nil {
			return nil, fmt.Errorf("getting the variables declared in the variables section: %w", err)
		}
	}
	e.base = ""
	doc, err := e.interpolate(doc, nil, e.missing)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, d := range e.defs {
		e.base = "/variables/name=" + pointerEncoder.Replace(d.Name)
		_, ok, err := e.get(d.Name, nil, e.missing)
		if err != nil {
			return nil, fmt.Errorf("getting the variables declared in the variables section: %w", err)
		}
		if ok {
			found = append(found, d.Name)
		}
	}
	for _, name := range found {
		p := Pointer{tokens: []token{{kind: tokKey, key: "variables"}, {kind: tokMatchingIndex, key: "name", value: name}}}
		if doc, err = Remove(doc, p); err != nil {
			return nil, fmt.Errorf("removing the found variable %q from the variables section: %w", name, err)
		}
	}
	return doc, nil
}

func (e *evaluator) extractDefinitions(doc any) error {
	root, ok := doc.(map[any]any)
	if !ok {
		return nil
	}
	section, ok := root["variables"]
	if !ok {
		return nil
	}
	// Round-trip through YAML, as BOSH does, so the section's shape is checked the same way.
	data, err := yaml.Marshal(map[string]any{"variables": section})
	if err != nil {
		return fmt.Errorf("reading the variables section: %w", err)
	}
	var defs struct {
		Definitions []Definition `yaml:"variables"`
	}
	if err := yaml.Unmarshal(data, &defs); err != nil {
		return fmt.Errorf("reading the variables section: %s (each entry needs name, and optionally type and options)", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	e.defs = defs.Definitions
	return nil
}

func (e *evaluator) definition(name string) Definition {
	for _, d := range e.defs {
		if d.Name == name {
			return d
		}
	}
	return Definition{Name: name}
}

// get looks a base variable name up: its definition's options are interpolated first
// (chain guards against recursion); a variable whose options lack values is not looked up.
func (e *evaluator) get(name string, chain []string, missing map[string]struct{}) (any, bool, error) {
	e.visited[name] = struct{}{}
	for _, c := range chain {
		if c == name {
			return nil, false, fmt.Errorf("variable definitions refer to each other in a loop: %s -> %s", strings.Join(chain, " -> "), name)
		}
	}
	def := e.definition(name)
	if def.Options != nil {
		sub := map[string]struct{}{}
		savedBase, savedAt := e.base, e.at
		e.base, e.at = "/variables/name="+pointerEncoder.Replace(name)+"/options", nil
		opts, err := e.interpolate(deepCopy(def.Options), append(chain[:len(chain):len(chain)], name), sub)
		e.base, e.at = savedBase, savedAt
		if err != nil {
			return nil, false, fmt.Errorf("interpolating the options of variable '%s': %w", name, err)
		}
		if len(sub) > 0 {
			for n := range sub {
				missing[n] = struct{}{}
			}
			return nil, false, nil
		}
		def.Options = opts
	}
	v, ok, err := e.lookup(def)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		missing[name] = struct{}{}
		e.recordMissing(name)
	}
	return v, ok, nil
}

// lookup asks the sources in precedence order; the store generates declared variables it lacks.
func (e *evaluator) lookup(def Definition) (any, bool, error) {
	if v, ok := e.static[def.Name]; ok {
		return v, true, nil
	}
	if e.store == nil {
		return nil, false, nil
	}
	if v, ok := e.store.Get(def.Name); ok {
		return v, true, nil
	}
	if def.Type == "" {
		return nil, false, nil
	}
	if e.store.Generate == nil {
		return nil, false, fmt.Errorf("generating variable '%s' of type %q: no generator configured", def.Name, def.Type)
	}
	v, err := e.store.Generate(def, e.current)
	if err != nil {
		return nil, false, fmt.Errorf("generating variable '%s' (type %s): %w", def.Name, def.Type, err)
	}
	v = cloneValue(v)
	e.store.set(def.Name, def.Type, v)
	return v, true, nil
}

// current is a variable's value from any source, without generating it.
func (e *evaluator) current(name string) (any, bool) {
	if v, ok := e.static[name]; ok {
		return v, true
	}
	if e.store != nil {
		return e.store.Get(name)
	}
	return nil, false
}

// getPath looks up ((name.key.sub)): the base variable, then the keys inside its value.
func (e *evaluator) getPath(name string, chain []string, missing map[string]struct{}) (any, bool, error) {
	segs := strings.Split(name, ".")
	v, ok, err := e.get(segs[0], chain, missing)
	if err != nil || !ok || len(segs) == 1 {
		return v, ok, err
	}
	toks := make([]token, len(segs)-1)
	numeric := false
	for i, s := range segs[1:] {
		if n, err := strconv.Atoi(s); err == nil {
			toks[i] = token{kind: tokIndex, index: n}
			numeric = true
		} else {
			toks[i] = token{kind: tokKey, key: s}
		}
	}
	found, err := Find(v, Pointer{tokens: toks})
	if err != nil && numeric {
		// an integer segment may be a map key rather than an array index
		for i, s := range segs[1:] {
			toks[i] = token{kind: tokKey, key: s}
		}
		if f2, err2 := Find(v, Pointer{tokens: toks}); err2 == nil {
			found, err = f2, nil
		}
	}
	if err != nil {
		return nil, false, err
	}
	return found, true, nil
}

// interpolate replaces placeholders in node (maps and arrays in place; map keys too).
func (e *evaluator) interpolate(node any, chain []string, missing map[string]struct{}) (any, error) {
	switch t := node.(type) {
	case map[any]any:
		for _, k := range sortedKeys(t) {
			v := t[k]
			e.at = append(e.at, step{key: k})
			nv, err := e.interpolate(v, chain, missing)
			if err != nil {
				return nil, err
			}
			nk := k
			if ks, ok := k.(string); ok && strings.Contains(ks, "((") {
				if nk, err = e.interpolate(ks, chain, missing); err != nil {
					return nil, err
				}
			}
			if !sameKey(nk, k) {
				delete(t, k)
			}
			if !isHashable(nk) {
				return nil, fmt.Errorf("at %s: the variable gives the map key %s, which cannot be a map key", e.location(), describe(nk))
			}
			e.at = e.at[:len(e.at)-1]
			t[nk] = nv
		}
		return t, nil
	case []any:
		for i, v := range t {
			e.at = append(e.at, step{arr: t, idx: i})
			nv, err := e.interpolate(v, chain, missing)
			if err != nil {
				return nil, err
			}
			e.at = e.at[:len(e.at)-1]
			t[i] = nv
		}
		return t, nil
	case string:
		return e.interpolateString(t, chain, missing)
	}
	return node, nil
}

func (e *evaluator) interpolateString(s string, chain []string, missing map[string]struct{}) (any, error) {
	for _, name := range PlaceholderNames(s) {
		v, ok, err := e.getPath(name, chain, missing)
		if err != nil {
			return nil, fmt.Errorf("at %s: finding variable '%s': %w", e.location(), name, err)
		}
		if !ok {
			continue
		}
		if placeholderAnchoredRe.MatchString(s) {
			return v, nil
		}
		var str string
		switch x := v.(type) {
		case string:
			str = x
		case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
			str = fmt.Sprintf("%v", x)
		default:
			return nil, fmt.Errorf("at %s: variable '%s' is %s, which cannot be placed inside the string %q (only strings and integers can; use the placeholder as the whole value instead)", e.location(), name, describe(v), s)
		}
		s = strings.ReplaceAll(s, "(("+name+"))", str)
		s = strings.ReplaceAll(s, "((!"+name+"))", str)
	}
	return s, nil
}

func sameKey(a, b any) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

func isHashable(v any) bool {
	switch v.(type) {
	case map[any]any, []any, map[string]any:
		return false
	}
	return true
}

// sortedKeys gives a deterministic visiting order (string keys sorted, then the others).
func sortedKeys(m map[any]any) []any {
	keys := make([]any, 0, len(m))
	var others []any
	var strs []string
	for k := range m {
		if s, ok := k.(string); ok {
			strs = append(strs, s)
		} else {
			others = append(others, k)
		}
	}
	sort.Strings(strs)
	for _, s := range strs {
		keys = append(keys, s)
	}
	sort.Slice(others, func(i, j int) bool { return fmt.Sprint(others[i]) < fmt.Sprint(others[j]) })
	return append(keys, others...)
}

func sortedNames(set map[string]struct{}) []string {
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// unused lists the given variable names (every source, the store included) never asked for.
func (e *evaluator) unused() []string {
	set := map[string]struct{}{}
	for n := range e.static {
		if _, ok := e.visited[n]; !ok {
			set[n] = struct{}{}
		}
	}
	if e.store != nil {
		for _, n := range e.store.Names() {
			if _, ok := e.visited[n]; !ok {
				set[n] = struct{}{}
			}
		}
	}
	return sortedNames(set)
}

// deepCopy copies maps and arrays (variable options are interpolated on a copy).
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[any]any:
		out := make(map[any]any, len(t))
		for k, e := range t {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}
