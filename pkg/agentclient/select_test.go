package agentclient

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSelect(t *testing.T) {
	all := []Target{
		{Name: "api/0", Group: "api", ID: "6f1e2a3b-0000", Index: 0},
		{Name: "api/1", Group: "api", ID: "6f1e9999-1111", Index: 1},
		{Name: "router/0", Group: "router", ID: "aaaa1111", Index: 0},
	}
	names := func(ts []Target) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Name)
		}
		return out
	}
	tests := []struct {
		sel     string
		want    []string
		wantErr string
	}{
		{"", []string{"api/0", "api/1", "router/0"}, ""},
		{"api", []string{"api/0", "api/1"}, ""},
		{"api/1", []string{"api/1"}, ""},
		{"api/6f1e9999-1111", []string{"api/1"}, ""},
		{"api/6f1e2", []string{"api/0"}, ""},
		{"api/6f1e", nil, `"api/6f1e" is ambiguous: it matches api/0, api/1`},
		{"api/6f", nil, `no instance matches "api/6f"`},
		{"db", nil, `no instance matches "db"; instances: api/0, api/1, router/0`},
	}
	for _, tt := range tests {
		got, err := Select(all, tt.sel)
		if tt.wantErr != "" {
			assert.ErrorContains(t, err, tt.wantErr, tt.sel)
			continue
		}
		require.NoError(t, err, tt.sel)
		assert.Equal(t, tt.want, names(got), tt.sel)
	}
}
