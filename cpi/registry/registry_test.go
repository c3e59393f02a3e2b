package registry_test

import (
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/registry"
)

func newRegistry() *registry.Registry {
	r := registry.New()
	r.Register("fake", func(json.RawMessage, *slog.Logger) (cpi.CPI, error) { return cpitest.NewFake(), nil })
	r.Register("openstack", func(json.RawMessage, *slog.Logger) (cpi.CPI, error) { return cpitest.NewFake(), nil })
	return r
}

func TestMultiCPIAZsChooseTheirCPI(t *testing.T) {
	r := newRegistry()
	cfg := registry.CPIConfig{CPIs: []registry.CPIEntry{
		{Name: "os-1", Type: "openstack_cpi"},
		{Name: "lab", Type: "fake"},
	}}
	set, err := r.OpenAll(cfg, "fake", nil, slog.Default())
	require.NoError(t, err)
	assert.Equal(t, []string{"lab", "os-1"}, set.Names())

	c1, name, err := set.ForAZ("z1", "os-1")
	require.NoError(t, err)
	assert.Equal(t, "os-1", name)
	c2, _, err := set.ForAZ("z2", "lab")
	require.NoError(t, err)
	assert.NotSame(t, c1, c2)

	_, _, err = set.ForAZ("z3", "")
	assert.ErrorContains(t, err, "add `cpi: NAME` to the az")
	_, _, err = set.ForAZ("z4", "nope")
	assert.ErrorContains(t, err, `names cpi "nope"`)
}

func TestCPIConfigValidationListsEveryProblem(t *testing.T) {
	err := registry.CPIConfig{CPIs: []registry.CPIEntry{
		{Name: "a", Type: "fake"}, {Name: "a", Type: "fake"}, {Name: "", Type: "aws"},
	}}.Validate(newRegistry())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `name "a" is used twice`)
	assert.Contains(t, err.Error(), `cpis[2]: name is required`)
	assert.Contains(t, err.Error(), `unknown type "aws"`)
}

func TestDefaultAndMigratedFrom(t *testing.T) {
	r := newRegistry()
	set, err := r.OpenAll(registry.CPIConfig{}, "fake", nil, slog.Default())
	require.NoError(t, err)
	_, name, err := set.ForAZ("z1", "")
	require.NoError(t, err)
	assert.Equal(t, "default", name)

	var cfg registry.CPIConfig
	require.NoError(t, json.Unmarshal([]byte(`{"cpis":[{"name":"new","type":"fake","migrated_from":[{"name":"old"}]}]}`), &cfg))
	set, err = r.OpenAll(cfg, "fake", nil, slog.Default())
	require.NoError(t, err)
	_, name, err = set.ForAZ("z1", "old")
	require.NoError(t, err)
	assert.Equal(t, "new", name)
}

func TestExternalNeedsCommand(t *testing.T) {
	_, err := registry.New().Open("external", json.RawMessage(`{}`), slog.Default())
	assert.ErrorContains(t, err, "command is required")
}
