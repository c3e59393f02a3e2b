package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/render"
	"github.com/kpaas/kpaas/pkg/state"
)

// providerManifest is deployment "hello" whose hello job provides its http
// link as "web" (shared or not).
func providerManifest(shared bool) string {
	return fmt.Sprintf(`name: hello
releases: [{name: kpaas-hello, version: latest}]
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: web
  azs: [z1, z2]
  instances: 2
  vm_type: small
  stemcell: default
  networks: [{name: net}]
  jobs:
  - name: hello
    release: kpaas-hello
    provides: {hello: {as: web, shared: %v}}
    properties: {hello: {port: 9090}}
`, shared)
}

const consumerManifest = `name: greet
releases: [{name: kpaas-hello, version: latest}]
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: client
  azs: [z1]
  instances: 1
  vm_type: small
  stemcell: default
  networks: [{name: net}]
  jobs:
  - name: greeter
    release: kpaas-hello
    consumes: {backend: {from: web, deployment: hello}}
`

func TestSharedLinkIsConsumedFromAnotherDeployment(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	require.NoError(t, w.deploy(providerManifest(true)))
	ds, err := w.st.LoadDeployment(ctx, "hello")
	require.NoError(t, err)
	var ips []string
	for _, r := range ds.IPs {
		if r.Instance != "" {
			ips = append(ips, r.IP)
		}
	}
	require.Len(t, ips, 2)

	p := w.prepare(consumerManifest, false)
	var ctl string
	for _, ri := range p.Rendered {
		if j := ri.Job("greeter"); j != nil {
			ctl = string(j.File("bin/ctl").Content)
		}
	}
	require.NotEmpty(t, ctl)
	for _, ip := range ips {
		assert.Contains(t, ctl, "http://"+ip+":9090/", "the consumer fetches every provider instance on the shared port")
	}
	require.NoError(t, w.engine().Apply(ctx, p))

	// Deleting the provider drops what it shared: consumers are refused.
	require.NoError(t, w.engine().DeleteDeployment(ctx, ds, false))
	_, err = Prepare(ctx, w.st, w.blobs, PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(consumerManifest)})
	require.ErrorIs(t, err, render.ErrLinkUnresolved)
	assert.ErrorContains(t, err, "job 'greeter' in instance group 'client' consumes link 'backend' (type http): the shared links of deployment 'hello' are not available: deployment 'hello' has not been deployed successfully")
}

func TestCrossDeploymentConsumerIsRefusedBeforeAnyChange(t *testing.T) {
	t.Run("provider not deployed", func(t *testing.T) {
		w := newWorld(t)
		_, err := Prepare(context.Background(), w.st, w.blobs, PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(consumerManifest)})
		require.ErrorIs(t, err, render.ErrLinkUnresolved)
		assert.ErrorContains(t, err, "job 'greeter' in instance group 'client' consumes link 'backend' (type http): the shared links of deployment 'hello' are not available: deployment 'hello' has not been deployed successfully: deploy it first")
		_, err = w.st.Deployment(context.Background(), "greet")
		assert.ErrorIs(t, err, state.ErrNotFound, "nothing was written")
		assert.Empty(t, w.cloud.VMs())
	})
	t.Run("provider not shared", func(t *testing.T) {
		w := newWorld(t)
		require.NoError(t, w.deploy(providerManifest(false)))
		vms := len(w.cloud.VMs())
		_, err := Prepare(context.Background(), w.st, w.blobs, PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(consumerManifest)})
		require.ErrorIs(t, err, render.ErrLinkUnresolved)
		assert.ErrorContains(t, err, "job 'greeter' in instance group 'client' consumes link 'backend' (type http): deployment 'hello' shares no provider of a link named 'web'")
		assert.Len(t, w.cloud.VMs(), vms)
	})
	t.Run("implicit links stay in their deployment", func(t *testing.T) {
		w := newWorld(t)
		require.NoError(t, w.deploy(providerManifest(true)))
		m := strings.Replace(consumerManifest, "    consumes: {backend: {from: web, deployment: hello}}\n", "", 1)
		_, err := Prepare(context.Background(), w.st, w.blobs, PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(m)})
		require.ErrorIs(t, err, render.ErrLinkUnresolved)
		assert.ErrorContains(t, err, "no job in deployment 'greet' provides a link of this type")
	})
}
