package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/interpolate"
)

// A manifest whose name is a variable (`name: ((deployment_name))`, as the
// K-PaaS manifests have) finds the variables it generated at its last deploy
// when deployed again without -d: they belong to the interpolated name, so
// the second deploy generates nothing and changes no instance.
func TestGeneratedVariablesAreKeptWhenTheManifestNameIsAVariable(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	m := strings.Replace(manifestOf(1, "((greeting))"), "name: hello", "name: ((deployment_name))", 1) +
		"variables:\n- {name: greeting, type: password}\n"
	in := PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(m),
		Vars: interpolate.Sources{KVs: []interpolate.KV{{Name: "deployment_name", Value: "hello"}}}}

	p, err := Prepare(ctx, w.st, w.blobs, in)
	require.NoError(t, err)
	require.Contains(t, p.Generated, "greeting", "the first deploy generates the password")
	require.NoError(t, w.engine().Apply(ctx, p))
	first, err := w.st.Variable(ctx, "hello", "greeting")
	require.NoError(t, err)

	p, err = Prepare(ctx, w.st, w.blobs, in)
	require.NoError(t, err)
	assert.Empty(t, p.Generated, "the stored variables of deployment hello are used")
	assert.Empty(t, p.Plan.Changes(), "nothing changes")
	require.NoError(t, w.engine().Apply(ctx, p))
	again, err := w.st.Variable(ctx, "hello", "greeting")
	require.NoError(t, err)
	assert.Equal(t, first.ID, again.ID, "not regenerated")
}
