package interpolate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	yaml "gopkg.in/yaml.v2"
)

func evalString(t *testing.T, manifest string, src Sources, mod ...func(*Request)) (string, error) {
	t.Helper()
	req := Request{Manifest: File{Name: "m.yml", Data: []byte(manifest)}, Vars: src}
	for _, m := range mod {
		m(&req)
	}
	res, err := Evaluate(req)
	if err != nil {
		return "", err
	}
	b, err := res.YAML()
	require.NoError(t, err)
	return string(b), nil
}

func kvs(pairs ...any) []KV {
	var out []KV
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, KV{Name: pairs[i].(string), Value: pairs[i+1]})
	}
	return out
}

func TestInterpolatePlaceholders(t *testing.T) {
	vars := Sources{KVs: kvs(
		"str", "hello",
		"num", 42,
		"flt", 2.5,
		"yes", true,
		"map", map[any]any{"k": map[any]any{"sub": "deep"}, "list": []any{"zero", "one"}, "7": "seven"},
		"list", []any{"a", "b"},
		"/director/dep/abs", "absolute",
		"nothing", nil,
		"multi", "line1\nline2",
	)}
	tests := []struct {
		name, manifest, want string
	}{
		{"whole value keeps type (int)", "a: ((num))", "a: 42\n"},
		{"whole value keeps type (map)", "a: ((map.k))", "a:\n  sub: deep\n"},
		{"whole value keeps type (array)", "a: ((list))", "a:\n- a\n- b\n"},
		{"whole value keeps type (bool)", "a: ((yes))", "a: true\n"},
		{"whole value null", "a: ((nothing))", "a: null\n"},
		{"whole value float", "a: ((flt))", "a: 2.5\n"},
		{"bang form", "a: ((!str))", "a: hello\n"},
		{"bang form inside string", "a: x-((!str))-((str))", "a: x-hello-hello\n"},
		{"string in string", "a: https://((str)).example.com", "a: https://hello.example.com\n"},
		{"int in string", "a: host:((num))", "a: host:42\n"},
		{"same var twice", "a: ((str))/((str))", "a: hello/hello\n"},
		{"dot path into map", "a: ((map.k.sub))", "a: deep\n"},
		{"dot path array index", "a: ((map.list.1))", "a: one\n"},
		{"dot path integer retried as map key", "a: ((map.7))", "a: seven\n"},
		{"dot path inside string", "a: x-((map.k.sub))", "a: x-deep\n"},
		{"absolute name is a literal name", "a: ((/director/dep/abs))", "a: absolute\n"},
		{"inner spaces: not a placeholder", "a: (( str ))", "a: (( str ))\n"},
		{"missing var left as is", "a: ((unknown))", "a: ((unknown))\n"},
		{"missing var in string left as is", "a: x-((unknown))-((str))", "a: x-((unknown))-hello\n"},
		{"map keys interpolated", "((str)): v\n((str))_suffix: w", "hello: v\nhello_suffix: w\n"},
		{"nested in arrays", "a: [((str)), {b: ((num))}]", "a:\n- hello\n- b: 42\n"},
		{"root is a placeholder", "((map.k))", "sub: deep\n"},
		{"multiline value", "a: ((multi))", "a: |-\n  line1\n  line2\n"},
		{"value text is not re-interpolated", "a: ((str))", "a: hello\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := evalString(t, tt.manifest, vars)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestInterpolateErrors(t *testing.T) {
	vars := Sources{KVs: kvs("flt", 2.5, "yes", true, "map", map[any]any{"k": "v"}, "list", []any{1}, "nothing", nil)}
	tests := []struct {
		name, manifest, want string
	}{
		{"float in string", "a: x((flt))", "variable 'flt' is a float64 (2.5)"},
		{"bool in string", "a: x((yes))", "variable 'yes' is a bool"},
		{"map in string", "a: x((map))", "variable 'map' is a map"},
		{"array in string", "a: ((list))x", "variable 'list' is an array"},
		{"null in string", "a: ((nothing))x", "variable 'nothing' is null"},
		{"missing sub key even without var-errs", "a: ((map.nope))", "Expected to find a map key 'nope' for path '/nope' (found map keys: 'k')"},
		{"sub key of a string", "a: ((map.k.deeper))", "Expected to find a map at path '/k/deeper'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := evalString(t, tt.manifest, vars)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestPrecedence(t *testing.T) {
	// each source gives x; the winner is -v, then --var-file, then -l (last file), then env
	env1 := map[string]any{"x": "env1", "e": "env1"}
	env2 := map[string]any{"x": "env2", "e": "env2"}
	file1 := map[string]any{"x": "file1", "f": "file1", "l": "file1"}
	file2 := map[string]any{"x": "file2", "l": "file2"}
	tests := []struct {
		name string
		src  Sources
		want string
	}{
		{"-v wins", Sources{KVs: kvs("x", "kv"), VarFiles: kvs("x", "varfile"), Files: []map[string]any{file1}, Env: []map[string]any{env1}}, "kv"},
		{"last -v wins", Sources{KVs: kvs("x", "kv1", "x", "kv2")}, "kv2"},
		{"--var-file over -l", Sources{VarFiles: kvs("x", "varfile"), Files: []map[string]any{file1}, Env: []map[string]any{env1}}, "varfile"},
		{"later -l wins", Sources{Files: []map[string]any{file1, file2}, Env: []map[string]any{env1}}, "file2"},
		{"-l over env", Sources{Files: []map[string]any{file1}, Env: []map[string]any{env1}}, "file1"},
		{"later env wins", Sources{Env: []map[string]any{env1, env2}}, "env2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := evalString(t, "x: ((x))", tt.src)
			require.NoError(t, err)
			assert.Equal(t, "x: "+tt.want+"\n", got)
		})
	}
	// other names still come from the lower sources
	got, err := evalString(t, "a: ((f))\nb: ((l))\nc: ((e))", Sources{Files: []map[string]any{file1, file2}, Env: []map[string]any{env1}})
	require.NoError(t, err)
	assert.Equal(t, "a: file1\nb: file2\nc: env1\n", got)
}

func TestStoreIsAskedLast(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "creds.yml")
	require.NoError(t, os.WriteFile(path, []byte("x: store\nw: store\n"), 0o600))
	st, err := OpenStore(path, nil)
	require.NoError(t, err)
	got, err := evalString(t, "x: ((x))\nw: ((w))", Sources{KVs: kvs("x", "kv"), Store: st})
	require.NoError(t, err)
	assert.Equal(t, "w: store\nx: kv\n", got)
	assert.Empty(t, st.Generated(), "nothing generated, nothing written")
}

func TestDottedNames(t *testing.T) {
	// -v a.b=1 / --var-file a.c=... give a: {b: 1, c: ...}; they merge into a map given by -l
	src := Sources{KVs: kvs("cert.ca", "CA"), VarFiles: kvs("cert.key", "KEY"), Files: []map[string]any{{"cert": map[any]any{"crt": "CRT"}}}}
	got, err := evalString(t, "c: ((cert))\nk: ((cert.key))", src)
	require.NoError(t, err)
	assert.Equal(t, "c:\n  ca: CA\n  crt: CRT\n  key: KEY\nk: KEY\n", got)
}

func TestParseVarKV(t *testing.T) {
	tests := []struct {
		arg  string
		want any
	}{
		{"x=y", true}, // YAML 1.1: y is a bool
		{"x=word", "word"},
		{"x=true", true},
		{"x=12", 12},
		{"x=1.5", 1.5},
		{"x=~", nil},
		{"x=a=b", "a=b"},
		{"x={a: 1}", map[any]any{"a": 1}},
		{"x=[1, 2]", []any{1, 2}},
		{"x='quoted'", "'quoted'"}, // strings are kept exactly as typed
		{"x=VM Network", "VM Network"},
	}
	for _, tt := range tests {
		kv, err := ParseVarKV(tt.arg)
		require.NoError(t, err, tt.arg)
		assert.Equal(t, "x", kv.Name)
		assert.Equal(t, tt.want, kv.Value, tt.arg)
	}
	for _, bad := range []string{"novalue", "=v", "x=", "x=[unclosed"} {
		_, err := ParseVarKV(bad)
		assert.Error(t, err, bad)
	}
}

func TestVarsFromEnv(t *testing.T) {
	env := []string{"KP_a=1", "KP_b=\"quoted\"", "KP_c=plain", "KPX_d=no", "OTHER=no", "KP_e=[p, q]"}
	m, err := VarsFromEnv("KP", env)
	require.NoError(t, err)
	// values are YAML: quotes are removed (unlike -v)
	assert.Equal(t, map[string]any{"a": 1, "b": "quoted", "c": "plain", "e": []any{"p", "q"}}, m)
	_, err = VarsFromEnv("", env)
	assert.Error(t, err)
	_, err = VarsFromEnv("KP", []string{"KP_bad=[x"})
	assert.Error(t, err)
}

func TestVarErrs(t *testing.T) {
	manifest := "a: ((one))\nb: ((two.sub))\nc: x-((three))\n((four)): v\nd: ((given))\n"
	src := Sources{KVs: kvs("given", "g", "spare", "s"), Files: []map[string]any{{"spare2": 1}}}
	_, err := evalString(t, manifest, src, func(r *Request) { r.ExpectAllKeys = true })
	var ve *VarsError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []string{"four", "one", "three", "two"}, ve.Missing, "every missing base name, sorted")
	assert.Empty(t, ve.Unused)

	_, err = evalString(t, manifest, src, func(r *Request) { r.ExpectAllUsed = true })
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []string{"spare", "spare2"}, ve.Unused)
	assert.Empty(t, ve.Missing)

	_, err = evalString(t, manifest, src, func(r *Request) { r.ExpectAllKeys, r.ExpectAllUsed = true, true })
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Missing, 4)
	assert.Len(t, ve.Unused, 2)

	// without the flags, missing variables are not an error
	_, err = evalString(t, manifest, src)
	assert.NoError(t, err)
}

func TestVariablesSection(t *testing.T) {
	manifest := `a: ((pw))
variables:
- name: pw
  type: password
- name: given
- name: other
  type: password
`
	// found variables (any source) leave the section; the others stay
	got, err := evalString(t, manifest, Sources{KVs: kvs("pw", "p", "given", "g")})
	require.NoError(t, err)
	assert.Equal(t, "a: p\nvariables:\n- name: other\n  type: password\n", got)

	// a declared variable counts as missing for --var-errs even when nothing refers to it
	_, err = evalString(t, manifest, Sources{KVs: kvs("pw", "p")}, func(r *Request) { r.ExpectAllKeys = true })
	var ve *VarsError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []string{"given", "other"}, ve.Missing)

	// and it counts as used for --var-errs-unused
	_, err = evalString(t, manifest, Sources{KVs: kvs("pw", "p", "given", "g", "other", "o")}, func(r *Request) { r.ExpectAllUsed = true })
	assert.NoError(t, err)
}

func TestDefinitionOptions(t *testing.T) {
	manifest := `c: ((cert))
variables:
- name: cert
  type: certificate
  options: {common_name: ((cn))}
`
	// an option without a value makes the option's variable missing, not the certificate
	_, err := evalString(t, manifest, Sources{}, func(r *Request) { r.ExpectAllKeys = true })
	var ve *VarsError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []string{"cn"}, ve.Missing)

	// options are interpolated before the generator sees them; options' variables count as used
	var seen []Definition
	st := &Store{vars: map[string]any{}, view: map[string]any{}, Path: filepath.Join(t.TempDir(), "s.yml"),
		Generate: func(d Definition, _ func(string) (any, bool)) (any, error) {
			seen = append(seen, d)
			return "generated-" + d.Name, nil
		}}
	got, err := evalString(t, manifest, Sources{KVs: kvs("cn", "example.com"), Store: st}, func(r *Request) { r.ExpectAllUsed = true })
	require.NoError(t, err)
	assert.Equal(t, "c: generated-cert\nvariables: []\n", got)
	require.Len(t, seen, 1, "generated once, then read from the store")
	assert.Equal(t, map[any]any{"common_name": "example.com"}, seen[0].Options)

	// definitions that refer to each other are refused
	loop := "variables:\n- {name: a, type: password, options: {x: ((b))}}\n- {name: b, type: password, options: {x: ((a))}}\n"
	_, err = evalString(t, loop, Sources{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "loop")
}

func TestGenerationOrderAndCA(t *testing.T) {
	// typed definitions are generated in section order before interpolation, so a CA
	// declared first is available to the certificate it signs
	manifest := `s: ((server.certificate))
variables:
- {name: ca, type: certificate, options: {is_ca: true, common_name: ca}}
- {name: server, type: certificate, options: {ca: ca, common_name: s}}
- {name: plain}
`
	var order []string
	st, err := OpenStore(filepath.Join(t.TempDir(), "creds.yml"), func(d Definition, getCA func(string) (any, bool)) (any, error) {
		order = append(order, d.Name)
		if d.Name == "server" {
			ca, ok := getCA("ca")
			if !ok {
				return nil, errors.New("no ca")
			}
			return map[string]any{"certificate": "signed by " + ca.(map[any]any)["certificate"].(string), "private_key": "k", "ca": "c"}, nil
		}
		return map[string]any{"certificate": "CA-CERT", "private_key": "k", "ca": "c"}, nil
	})
	require.NoError(t, err)
	got, err := evalString(t, manifest, Sources{Store: st})
	require.NoError(t, err)
	assert.Equal(t, []string{"ca", "server"}, order)
	assert.Equal(t, []string{"ca", "server"}, st.Generated())
	assert.Equal(t, "s: signed by CA-CERT\nvariables:\n- name: plain\n", got)

	// the store file is written sorted, except the value generated last, which keeps
	// the generator's field order (as the BOSH CLI writes it)
	data, err := os.ReadFile(st.Path)
	require.NoError(t, err)
	assert.Equal(t, "ca:\n  ca: c\n  certificate: CA-CERT\n  private_key: k\nserver:\n  certificate: signed by CA-CERT\n  private_key: k\n  ca: c\n", string(data))

	// a second run reads what the first wrote and generates nothing
	st2, err := OpenStore(st.Path, func(Definition, func(string) (any, bool)) (any, error) {
		t.Fatal("must not generate again")
		return nil, nil
	})
	require.NoError(t, err)
	got2, err := evalString(t, manifest, Sources{Store: st2})
	require.NoError(t, err)
	assert.Equal(t, got, got2)
}

func TestStoreWithRealGenerator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "creds.yml")
	st, err := OpenStore(path, nil)
	require.NoError(t, err)
	got, err := evalString(t, "p: ((pw))\nvariables:\n- {name: pw, type: password}\n- {name: bad, type: user}\n", Sources{Store: st})
	require.Error(t, err, "user cannot be generated")
	assert.Empty(t, got)
	assert.Contains(t, err.Error(), "bad")

	st, err = OpenStore(path, nil)
	require.NoError(t, err)
	_, err = evalString(t, "p: ((pw))\nvariables:\n- {name: pw, type: password}\n", Sources{Store: st})
	require.NoError(t, err)
	var stored map[string]string
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &stored))
	assert.Regexp(t, `^[a-z0-9]{20}$`, stored["pw"])
}

func TestPath(t *testing.T) {
	manifest := "a:\n  pem: ((pem))\n  list: [p, q]\n"
	src := Sources{KVs: kvs("pem", "-----BEGIN-----\nabc\n-----END-----\n")}
	got, err := evalString(t, manifest, src, func(r *Request) { r.Path = "/a/pem" })
	require.NoError(t, err)
	assert.Equal(t, "-----BEGIN-----\nabc\n-----END-----\n\n", got, "strings are printed raw")
	got, err = evalString(t, manifest, src, func(r *Request) { r.Path = "/a/list" })
	require.NoError(t, err)
	assert.Equal(t, "- p\n- q\n", got)
	got, err = evalString(t, manifest, src, func(r *Request) { r.Path = "/a/nope?" })
	require.NoError(t, err)
	assert.Equal(t, "null\n", got)
	_, err = evalString(t, manifest, src, func(r *Request) { r.Path = "/b" })
	assert.ErrorContains(t, err, "--path /b")
}

func TestOpsBeforeVarsBeforePath(t *testing.T) {
	ops, err := ParseOpsFile("o.yml", []byte("- type: replace\n  path: /a?\n  value: ((v))\n"))
	require.NoError(t, err)
	got, err := evalString(t, "b: 1\n", Sources{KVs: kvs("v", map[any]any{"k": "from-var"})}, func(r *Request) {
		r.OpsFiles = []*OpsFile{ops}
		r.Path = "/a/k"
	})
	require.NoError(t, err)
	assert.Equal(t, "from-var\n", got)

	// an ops file's path cannot see values that only variables add
	ops2, err := ParseOpsFile("o2.yml", []byte("- type: replace\n  path: /a/k\n  value: x\n"))
	require.NoError(t, err)
	_, err = evalString(t, "a: ((v))\n", Sources{KVs: kvs("v", map[any]any{"k": "y"})}, func(r *Request) { r.OpsFiles = []*OpsFile{ops2} })
	var oe *OpError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "o2.yml", oe.File)
}

func TestManifestYAMLErrors(t *testing.T) {
	_, err := evalString(t, "a: [1,\nb: 2\n", Sources{})
	var ye *YAMLError
	require.ErrorAs(t, err, &ye)
	assert.Equal(t, "m.yml", ye.File)
	assert.Positive(t, ye.Line)
	assert.True(t, strings.HasPrefix(err.Error(), "m.yml:"))

	_, err = ParseVarsFile("v.yml", []byte("- a\n- b\n"))
	require.ErrorAs(t, err, &ye)
	assert.Equal(t, 1, ye.Line)
	assert.Contains(t, err.Error(), "must be a YAML map")
}

func TestOutputIsBoshYAML(t *testing.T) {
	// yaml.v2 output: sorted keys, YAML 1.1 quoting of strings that would read as other types
	got, err := evalString(t, "z: 1\na: ((s))\nm: {b: 2, a: 1}\n", Sources{KVs: kvs("s", "yes")})
	require.NoError(t, err)
	assert.Equal(t, "a: \"yes\"\nm:\n  a: 1\n  b: 2\nz: 1\n", got)
	got, err = evalString(t, "", Sources{})
	require.NoError(t, err)
	assert.Equal(t, "null\n", got)
}

func TestInputsLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(data), 0o600))
		return p
	}
	in := Inputs{
		OpsFiles:  []string{write("o.yml", "- {type: remove, path: /x}\n")},
		Vars:      []string{"a=1"},
		VarFiles:  []string{"b=" + write("b.txt", "text\n")},
		VarsFiles: []string{write("v.yml", "c: 3\n")},
		VarsEnv:   []string{"P"},
		VarsStore: filepath.Join(dir, "store.yml"),
	}
	ops, src, err := in.Load(os.ReadFile, func() []string { return []string{"P_d=4"} })
	require.NoError(t, err)
	require.Len(t, ops, 1)
	assert.Equal(t, "remove", ops[0].Ops[0].Type)
	assert.Equal(t, kvs("a", 1), src.KVs)
	assert.Equal(t, kvs("b", "text\n"), src.VarFiles)
	assert.Equal(t, []map[string]any{{"c": 3}}, src.Files)
	assert.Equal(t, []map[string]any{{"d": 4}}, src.Env)
	require.NotNil(t, src.Store)

	_, _, err = Inputs{VarsFiles: []string{filepath.Join(dir, "none.yml")}}.Load(os.ReadFile, os.Environ)
	assert.ErrorContains(t, err, "reading vars file")
	_, _, err = Inputs{VarFiles: []string{"x=" + filepath.Join(dir, "none")}}.Load(os.ReadFile, os.Environ)
	assert.ErrorContains(t, err, "reading variable x")
}

func TestMissingVariablesSayWhere(t *testing.T) {
	manifest := `instance_groups:
- name: api
  jobs:
  - name: cc
    properties: {domain: ((domain)), url: "https://((domain))"}
- name: router
  props: [((domain)), ((domain))]
plain: [((other))]
variables:
- name: cert
  type: certificate
  options: {common_name: ((cn))}
- name: declared
`
	_, err := evalString(t, manifest, Sources{}, func(r *Request) { r.ExpectAllKeys = true })
	var ve *VarsError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []string{"cn", "declared", "domain", "other"}, ve.Missing)
	// places in walk order (keys sorted), array items named by their name: field
	assert.Equal(t, []string{
		"/instance_groups/name=api/jobs/name=cc/properties/domain",
		"/instance_groups/name=api/jobs/name=cc/properties/url",
		"/instance_groups/name=router/props/0",
	}, ve.Where["domain"])
	assert.Equal(t, 4, ve.Uses["domain"])
	assert.Equal(t, []string{"/plain/0"}, ve.Where["other"])
	assert.Equal(t, []string{"/variables/name=cert/options/common_name"}, ve.Where["cn"])
	assert.Equal(t, []string{"/variables/name=declared"}, ve.Where["declared"])
	assert.Contains(t, err.Error(), "  - domain (at /instance_groups/name=api/jobs/name=cc/properties/domain and 3 more)\n")

	_, err = evalString(t, "a: {b: [x-((f))]}", Sources{KVs: kvs("f", 1.5)})
	assert.ErrorContains(t, err, "at /a/b/0: variable 'f' is a float64")
}
