package interpolate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const patchDoc = `
name: dep
list: [a, b, c]
groups:
- name: api
  jobs:
  - name: cc
    props: {x: 1}
- name: router
  instances: 2
`

func TestReplace(t *testing.T) {
	tests := []struct {
		name, path, value, want string
	}{
		{"root", "", `{new: doc}`, `{new: doc}`},
		{"existing key", "/name", `other`, "name: other\nlist: [a, b, c]"},
		{"index", "/list/1", `B`, "list: [a, B, c]"},
		{"negative index", "/list/-1", `C`, "list: [a, b, C]"},
		{"append", "/list/-", `d`, "list: [a, b, c, d]"},
		{"before", "/list/0:before", `z`, "list: [z, a, b, c]"},
		{"after", "/list/0:after", `z`, "list: [a, z, b, c]"},
		{"after last", "/list/2:after", `z`, "list: [a, b, c, z]"},
		{"prev", "/list/1:prev", `A`, "list: [A, b, c]"},
		{"next", "/list/1:next", `C`, "list: [a, b, C]"},
		{"matching", "/groups/name=router/instances", `5`, "groups: [{name: api, jobs: [{name: cc, props: {x: 1}}]}, {name: router, instances: 5}]"},
		{"matching before", "/groups/name=router:before", `{name: mid}`, "groups: [{name: api, jobs: [{name: cc, props: {x: 1}}]}, {name: mid}, {name: router, instances: 2}]"},
		{"nested matching", "/groups/name=api/jobs/name=cc/props/x", `2`, "groups: [{name: api, jobs: [{name: cc, props: {x: 2}}]}, {name: router, instances: 2}]"},
		{"optional key creates maps", "/a?/b/c", `v`, "a: {b: {c: v}}"},
		{"optional key creates array for -", "/arr?/-", `v`, "arr: [v]"},
		{"optional key creates array for match", "/arr?/name=web/k", `v`, "arr: [{name: web, k: v}]"},
		{"optional match appends item", "/groups/name=db?/instances", `1`, "groups: [{name: api, jobs: [{name: cc, props: {x: 1}}]}, {name: router, instances: 2}, {name: db, instances: 1}]"},
		{"optional match last appends value", "/groups/name=db?", `{name: db, x: 1}`, "groups: [{name: api, jobs: [{name: cc, props: {x: 1}}]}, {name: router, instances: 2}, {name: db, x: 1}]"},
		{"optional match existing", "/groups/name=router?/instances", `3`, "groups: [{name: api, jobs: [{name: cc, props: {x: 1}}]}, {name: router, instances: 3}]"},
		{"optional key existing", "/name?", `n2`, "name: n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := y(t, patchDoc)
			got, err := Replace(doc, MustParsePointer(tt.path), y(t, tt.value))
			require.NoError(t, err)
			want := y(t, tt.want)
			if wm, ok := want.(map[any]any); ok && tt.path != "" {
				base := y(t, patchDoc).(map[any]any)
				for k, v := range wm {
					base[k] = v
				}
				want = base
			}
			assert.Equal(t, out(t, want), out(t, got))
		})
	}
}

func TestReplaceErrors(t *testing.T) {
	tests := []struct {
		path    string
		wantErr string
	}{
		{"/nope/x", "Expected to find a map key 'nope' for path '/nope' (found map keys: 'groups', 'list', 'name')"},
		{"/list/3", "Expected to find array index '3' but found array of length '3' for path '/list/3'"},
		{"/list/-4", "Expected to find array index '-4' but found array of length '3' for path '/list/-4'"},
		{"/list/2:next", "Expected to find array index '3' but found array of length '3' for path '/list/2:next'"},
		{"/groups/name=db/x", "Expected to find exactly one matching array item for path '/groups/name=db' but found 0"},
		{"/name/x", "Expected to find a map at path '/name/x' but found a string (\"dep\")"},
		{"/name/0", "Expected to find an array at path '/name/0' but found a string (\"dep\")"},
		{"/list/-/x", "Expected to find a map at path '/list/-' but found an array"}, // '-' is a key unless last
		{"/a?/0", "an index cannot follow the missing optional key 'a'"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := Replace(y(t, patchDoc), MustParsePointer(tt.path), "v")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
	// two items with the same name: ambiguous
	_, err := Replace(y(t, "l: [{name: a}, {name: a}]"), MustParsePointer("/l/name=a/x"), 1)
	assert.EqualError(t, err, "Expected to find exactly one matching array item for path '/l/name=a' but found 2")
}

func TestReplaceClonesValue(t *testing.T) {
	// the value is copied (YAML round trip): later changes to the document do not alias it,
	// and whole floats become ints as yaml.v2 re-reads them
	val := map[any]any{"k": []any{1.0, 2.5}}
	doc, err := Replace(map[any]any{}, MustParsePointer("/a?"), val)
	require.NoError(t, err)
	doc, err = Replace(doc, MustParsePointer("/a/k/0"), "changed")
	require.NoError(t, err)
	assert.Equal(t, 1.0, val["k"].([]any)[0])
	assert.Equal(t, map[any]any{"a": map[any]any{"k": []any{"changed", 2.5}}}, doc)
	got, err := Replace(map[any]any{}, MustParsePointer("/n?"), 3.0)
	require.NoError(t, err)
	assert.Equal(t, map[any]any{"n": 3}, got)
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name, path, want string
	}{
		{"key", "/name", "list: [a, b, c]\ngroups: [{name: api, jobs: [{name: cc, props: {x: 1}}]}, {name: router, instances: 2}]"},
		{"index", "/list/0", "name: dep\nlist: [b, c]\ngroups: [{name: api, jobs: [{name: cc, props: {x: 1}}]}, {name: router, instances: 2}]"},
		{"negative index", "/list/-1", "name: dep\nlist: [a, b]\ngroups: [{name: api, jobs: [{name: cc, props: {x: 1}}]}, {name: router, instances: 2}]"},
		{"matching", "/groups/name=api", "name: dep\nlist: [a, b, c]\ngroups: [{name: router, instances: 2}]"},
		{"matching next", "/groups/name=api:next", "name: dep\nlist: [a, b, c]\ngroups: [{name: api, jobs: [{name: cc, props: {x: 1}}]}]"},
		{"nested", "/groups/name=api/jobs/name=cc/props/x", "name: dep\nlist: [a, b, c]\ngroups: [{name: api, jobs: [{name: cc, props: {}}]}, {name: router, instances: 2}]"},
		{"optional key missing: no change", "/nope?/x", patchDoc},
		{"optional match missing: no change", "/groups/name=db?/x", patchDoc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Remove(y(t, patchDoc), MustParsePointer(tt.path))
			require.NoError(t, err)
			assert.Equal(t, out(t, y(t, tt.want)), out(t, got))
		})
	}
	_, err := Remove(y(t, patchDoc), MustParsePointer("/nope"))
	assert.EqualError(t, err, "Expected to find a map key 'nope' for path '/nope' (found map keys: 'groups', 'list', 'name')")
	_, err = Remove(y(t, patchDoc), MustParsePointer(""))
	assert.Error(t, err)
	_, err = Remove(y(t, patchDoc), MustParsePointer("/list/-"))
	assert.Error(t, err)
}

func TestFind(t *testing.T) {
	tests := []struct {
		path, want string
	}{
		{"", patchDoc},
		{"/name", "dep"},
		{"/list/-1", "c"},
		{"/list/1:prev", "a"},
		{"/groups/name=api/jobs/0/props", "{x: 1}"},
		{"/nope?", "null"},
		{"/nope?/deeper", "null"},
		{"/groups/name=db?", "{name: db}"},
		{"/groups/name=db?/jobs", "null"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := Find(y(t, patchDoc), MustParsePointer(tt.path))
			require.NoError(t, err)
			assert.Equal(t, y(t, tt.want), got)
		})
	}
	_, err := Find(y(t, patchDoc), MustParsePointer("/list/-"))
	assert.Error(t, err)
}

func TestTestOp(t *testing.T) {
	doc := y(t, patchDoc)
	assert.NoError(t, Test(doc, MustParsePointer("/name"), "dep", false))
	assert.NoError(t, Test(doc, MustParsePointer("/groups/name=api/jobs/0/props"), map[any]any{"x": 1}, false))
	assert.Error(t, Test(doc, MustParsePointer("/name"), "other", false))
	assert.Error(t, Test(doc, MustParsePointer("/groups/0/instances"), 1, false), "missing key is a failure for value tests")
	// absent: true passes only when the last token is what is missing
	assert.NoError(t, Test(doc, MustParsePointer("/nope"), nil, true))
	assert.NoError(t, Test(doc, MustParsePointer("/list/7"), nil, true))
	assert.Error(t, Test(doc, MustParsePointer("/name"), nil, true))
	assert.Error(t, Test(doc, MustParsePointer("/nope/deeper"), nil, true), "a missing parent is an error, not absence")
}

func TestOpsFile(t *testing.T) {
	f, err := ParseOpsFile("ops.yml", []byte(`
- type: test
  path: /name
  value: dep
- type: replace
  path: /name
  value: renamed
- type: remove
  path: /list
- type: test
  path: /list
  absent: true
`))
	require.NoError(t, err)
	got, err := f.Apply(y(t, patchDoc))
	require.NoError(t, err)
	assert.Equal(t, "renamed", got.(map[any]any)["name"])
	assert.NotContains(t, got.(map[any]any), "list")

	f, err = ParseOpsFile("ops.yml", []byte("- type: replace\n  path: /a?\n  value: 1\n- type: replace\n  path: /missing/x\n  value: 1\n  error: custom words\n"))
	require.NoError(t, err)
	_, err = f.Apply(y(t, patchDoc))
	var oe *OpError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "ops.yml", oe.File)
	assert.Equal(t, 1, oe.Index)
	assert.Equal(t, "/missing/x", oe.Path)
	assert.Contains(t, err.Error(), "custom words")
	assert.Contains(t, err.Error(), "found map keys: 'a', 'groups', 'list', 'name'")
}

func TestParseOpsFileErrors(t *testing.T) {
	tests := map[string]string{
		"- type: replace\n  path: /a\n":                        "missing value",
		"- type: replace\n  value: 1\n":                        "missing path",
		"- type: replace\n  path: /a\n  value: ~\n":            "missing value", // null is no value, as in go-patch
		"- type: remove\n  path: /a\n  value: 1\n":             "takes no value",
		"- type: copy\n  path: /a\n":                           "unknown operation type",
		"- type: test\n  path: /a\n":                           "missing value or absent",
		"- type: test\n  path: /a\n  value: 1\n  absent: true": "not both",
		"- type: replace\n  path: a\n  value: 1\n":             "must start with '/'",
	}
	for in, want := range tests {
		_, err := ParseOpsFile("o.yml", []byte(in))
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), want, in)
		assert.Contains(t, err.Error(), "o.yml: operation [0]", in)
	}
	_, err := ParseOpsFile("o.yml", []byte("type: replace\n"))
	var ye *YAMLError
	require.ErrorAs(t, err, &ye)
	assert.Equal(t, 1, ye.Line)
	assert.Equal(t, 1, ye.Col)
	_, err = ParseOpsFile("o.yml", []byte("- type: replace\n  path: /x\n  value: [a\n"))
	require.ErrorAs(t, err, &ye)
	assert.Equal(t, "o.yml", ye.File)
	assert.Equal(t, 3, ye.Line)
	empty, err := ParseOpsFile("o.yml", nil)
	require.NoError(t, err)
	assert.Empty(t, empty.Ops)
}

func TestReplaceMissingKeyNeedsOptional(t *testing.T) {
	// go-patch: a new map key needs '?'; without it the path must exist
	_, err := Replace(map[any]any{"b": 1}, MustParsePointer("/a"), 1)
	assert.EqualError(t, err, "Expected to find a map key 'a' for path '/a' (found map keys: 'b')")
	_, err = Replace(map[any]any{}, MustParsePointer("/a"), 1)
	assert.EqualError(t, err, "Expected to find a map key 'a' for path '/a' (found no other map keys)")
}

func TestTestOpAbsentFalseTestsNull(t *testing.T) {
	f, err := ParseOpsFile("o.yml", []byte("- type: test\n  path: /a?\n  absent: false\n"))
	require.NoError(t, err)
	_, err = f.Apply(map[any]any{"b": 1})
	assert.NoError(t, err, "a missing optional key finds null")
	_, err = f.Apply(map[any]any{"a": 1})
	assert.Error(t, err)
}
