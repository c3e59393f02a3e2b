package render

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/manifest"
)

func TestCrossDeploymentLinks(t *testing.T) {
	pgSpec := mustSpec(t, "name: postgres\nproperties: {port: {default: 5432}, password: {}}\nprovides: [{name: db, type: database, properties: [port]}, {name: admin, type: database}]\n")
	apiSpec := mustSpec(t, "name: api\nconsumes: [{name: database, type: database}, {name: cache, type: redis, optional: true}]\n")
	pgProps, err := BindProperties(pgSpec, PropertySources{Job: map[string]any{"password": "secret", "port": 6432}})
	require.NoError(t, err)
	yes := true
	provider := LinkDeployment{Name: "data", Groups: []LinkGroup{{
		Name: "pg", DefaultNetwork: "default",
		Instances: []Instance{
			{Group: "pg", Index: 0, ID: "p0", AZ: "z1", Bootstrap: true, Address: "10.0.1.10", Networks: map[string]Network{"default": {IP: "10.0.1.10"}, "backend": {IP: "10.9.0.10"}}},
			{Group: "pg", Index: 1, ID: "p1", AZ: "z2", Address: "10.0.1.11", Networks: map[string]Network{"default": {IP: "10.0.1.11"}, "backend": {IP: "10.9.0.11"}}},
		},
		Jobs: []LinkJob{{Name: "postgres", Spec: pgSpec, Properties: pgProps,
			Manifest: manifest.Job{Provides: map[string]manifest.ProvideLink{"db": {As: "primary", Shared: &yes}}}}},
	}}}
	pres, err := ResolveLinks(provider)
	require.NoError(t, err)
	require.Len(t, pres.Shared, 1, "only the provider marked shared: true is shared (admin is not)")
	// What the state keeps is JSON: consumers see it after a round trip.
	data, err := json.Marshal(pres.Shared)
	require.NoError(t, err)
	remote := func(dep string) ([]*Link, error) {
		if dep != "data" {
			return nil, errors.New("deployment '" + dep + "' has not been deployed successfully: deploy it first")
		}
		var links []*Link
		return links, json.Unmarshal(data, &links)
	}
	consumer := func(c manifest.ConsumeLink) LinkDeployment {
		return LinkDeployment{Name: "apps", Remote: remote, Groups: []LinkGroup{{Name: "api", DefaultNetwork: "default",
			Jobs: []LinkJob{{Name: "api", Spec: apiSpec, Manifest: manifest.Job{Consumes: map[string]manifest.ConsumeLink{"database": c}}}}}}}
	}

	t.Run("from and deployment", func(t *testing.T) {
		res, err := ResolveLinks(consumer(manifest.ConsumeLink{From: "primary", Deployment: "data"}))
		require.NoError(t, err)
		l := res.Consumed[JobKey{"api", "api"}]["database"]
		require.NotNil(t, l)
		assert.Equal(t, map[string]any{"port": float64(6432)}, l.Properties, "the exposed property only, never the password")
		assert.Equal(t, "data", l.Deployment)
		assert.Equal(t, "pg", l.InstanceGroup)
		assert.Equal(t, "q-s0.pg.default.data.bosh", l.Address)
		require.Len(t, l.Instances, 2)
		assert.Equal(t, LinkInstance{Name: "pg", ID: "p0", Index: 0, AZ: "z1", Address: "10.0.1.10", Bootstrap: true,
			Addresses: map[string]string{"default": "10.0.1.10", "backend": "10.9.0.10"}}, l.Instances[0])
		assert.Equal(t, "z2", l.Instances[1].AZ)
		assert.False(t, l.Instances[1].Bootstrap)
	})
	t.Run("other network of the provider", func(t *testing.T) {
		res, err := ResolveLinks(consumer(manifest.ConsumeLink{From: "primary", Deployment: "data", Network: "backend"}))
		require.NoError(t, err)
		l := res.Consumed[JobKey{"api", "api"}]["database"]
		assert.Equal(t, "10.9.0.11", l.Instances[1].Address)
		assert.Equal(t, "q-s0.pg.backend.data.bosh", l.Address)
	})
	t.Run("by type without from", func(t *testing.T) {
		res, err := ResolveLinks(consumer(manifest.ConsumeLink{Deployment: "data"}))
		require.NoError(t, err)
		assert.Equal(t, "primary", res.Consumed[JobKey{"api", "api"}]["database"].Name)
	})
	t.Run("provider not shared", func(t *testing.T) {
		_, err := ResolveLinks(consumer(manifest.ConsumeLink{From: "admin", Deployment: "data"}))
		require.ErrorIs(t, err, ErrLinkUnresolved)
		assert.EqualError(t, err, "job 'api' in instance group 'api' consumes link 'database' (type database): deployment 'data' shares no provider of a link named 'admin': mark the provider `shared: true` in that deployment's manifest (check `from` and its `as`) and deploy it")
	})
	t.Run("deployment not deployed", func(t *testing.T) {
		_, err := ResolveLinks(consumer(manifest.ConsumeLink{From: "primary", Deployment: "nope"}))
		require.ErrorIs(t, err, ErrLinkUnresolved)
		assert.ErrorContains(t, err, "job 'api' in instance group 'api' consumes link 'database' (type database): the shared links of deployment 'nope' are not available: deployment 'nope' has not been deployed successfully")
	})
	t.Run("implicit links never cross deployments", func(t *testing.T) {
		_, err := ResolveLinks(consumer(manifest.ConsumeLink{}))
		require.ErrorIs(t, err, ErrLinkUnresolved)
		assert.ErrorContains(t, err, "no job in deployment 'apps' provides a link of this type")
	})
}
