package interpolate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePointer(t *testing.T) {
	tests := []struct {
		path string
		want []token
	}{
		{"", []token{}},
		{"/a", []token{{kind: tokKey, key: "a"}}},
		{"/a?/b", []token{{kind: tokKey, key: "a", optional: true}, {kind: tokKey, key: "b", optional: true}}}, // ? carries right
		{"/0", []token{{kind: tokIndex, index: 0}}},
		{"/-1", []token{{kind: tokIndex, index: -1}}},
		{"/a/-", []token{{kind: tokKey, key: "a"}, {kind: tokAfterLastIndex}}},
		{"/-/a", []token{{kind: tokKey, key: "-"}, {kind: tokKey, key: "a"}}}, // '-' only means append when last
		{"/name=x", []token{{kind: tokMatchingIndex, key: "name", value: "x"}}},
		{"/name=x?/k", []token{{kind: tokMatchingIndex, key: "name", value: "x", optional: true}, {kind: tokKey, key: "k", optional: true}}},
		{"/name=a=b", []token{{kind: tokMatchingIndex, key: "name", value: "a=b"}}},
		{"/a~1b/c~0d/e~7f", []token{{kind: tokKey, key: "a/b"}, {kind: tokKey, key: "c~d"}, {kind: tokKey, key: "e:f"}}},
		{"/0:prev", []token{{kind: tokIndex, index: 0, modifiers: []modifier{modPrev}}}},
		{"/name=x:next:before", []token{{kind: tokMatchingIndex, key: "name", value: "x", modifiers: []modifier{modNext, modBefore}}}},
		{"/1?", []token{{kind: tokKey, key: "1", optional: true}}}, // not an index once it has '?'
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p, err := ParsePointer(tt.path)
			require.NoError(t, err)
			if len(tt.want) == 0 {
				assert.Empty(t, p.tokens)
				return
			}
			assert.Equal(t, tt.want, p.tokens)
		})
	}
}

func TestParsePointerErrors(t *testing.T) {
	for _, path := range []string{"a", "/a:prev", "/0:sideways", "/a/-:after"} {
		_, err := ParsePointer(path)
		assert.Error(t, err, path)
	}
}

func TestPointerString(t *testing.T) {
	// String writes the '?' once, on the first optional token, and re-escapes.
	for in, want := range map[string]string{
		"/a?/b":            "/a?/b",
		"/a/b?/c/name=x":   "/a/b?/c/name=x",
		"/name=x?/k":       "/name=x?/k",
		"/a~1b/c~0d":       "/a~1b/c~0d",
		"/0:prev/-":        "/0:prev/-",
		"/x=y:next:before": "/x=y:next:before",
	} {
		assert.Equal(t, want, MustParsePointer(in).String(), in)
	}
}
