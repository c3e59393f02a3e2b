// Package manifests_test checks the deployment manifests and cloud-configs
// under manifests/ the way `kpaas interpolate` and `kpaas deploy` read them:
// every variable has a value (or is generated), the documents parse and
// validate, the deployment fits its cloud-config, and every job it names is in
// the release of that name under releases/.
package manifests_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/interpolate"
	"github.com/kpaas/kpaas/pkg/manifest"
)

// interpolateFile is `kpaas interpolate FILE -l VARS --vars-store STORE --var-errs`.
func interpolateFile(t *testing.T, file, vars, store string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	in := interpolate.Inputs{VarsFiles: []string{vars}, VarsStore: store}
	req := interpolate.Request{Manifest: interpolate.File{Name: file, Data: data}, ExpectAllKeys: true}
	req.OpsFiles, req.Vars, err = in.Load(os.ReadFile, os.Environ)
	require.NoError(t, err)
	res, err := interpolate.Evaluate(req)
	require.NoError(t, err, "kpaas interpolate %s -l %s", file, vars)
	out, err := res.YAML()
	require.NoError(t, err)
	return out
}

func check(t *testing.T, deployment, cloudConfig, vars string) {
	store := filepath.Join(t.TempDir(), "creds.yml")
	ccData := interpolateFile(t, cloudConfig, vars, store)
	cc, _, err := manifest.ParseCloudConfig(cloudConfig, ccData)
	require.NoError(t, err)
	require.NoError(t, cc.Validate(), cloudConfig)

	mData := interpolateFile(t, deployment, vars, store)
	m, _, err := manifest.ParseManifest(deployment, mData)
	require.NoError(t, err)
	require.NoError(t, m.Validate(), deployment)
	require.NoError(t, m.ValidateCloud(cc), "%s on %s", deployment, cloudConfig)

	for _, g := range m.InstanceGroups {
		for _, j := range g.Jobs {
			spec := filepath.Join("..", "releases", j.Release, "jobs", j.Name, "spec")
			assert.FileExists(t, spec, "instance group %s: job %s of release %s", g.Name, j.Name, j.Release)
		}
	}
}

func TestQuickstartManifests(t *testing.T) {
	check(t, "quickstart/kpaas-lite.yml", "quickstart/cloud-config.yml", "quickstart/vars.yml")
}

func TestKPaaSContainerPlatformOnOpenStack(t *testing.T) {
	check(t, "k-paas/container-platform.yml", "k-paas/openstack/cloud-config.yml", "k-paas/openstack/vars.yml")
}

func TestKPaaSContainerPlatformOnVSphere(t *testing.T) {
	check(t, "k-paas/container-platform.yml", "k-paas/vsphere/cloud-config.yml", "k-paas/vsphere/vars.yml")
}

func TestKPaaSContainerPlatformOnTheLocalCloud(t *testing.T) {
	check(t, "k-paas/container-platform.yml", "k-paas/local/cloud-config.yml", "k-paas/local/vars.yml")
}

// A static IP outside the cloud-config's static range must fail the same
// check: the test above can fail.
func TestAStaticIPOutsideTheRangeFails(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "creds.yml")
	cc, _, err := manifest.ParseCloudConfig("cloud-config.yml", interpolateFile(t, "quickstart/cloud-config.yml", "quickstart/vars.yml", store))
	require.NoError(t, err)
	m := "quickstart/kpaas-lite.yml"
	outside := filepath.Join(dir, "outside.yml")
	require.NoError(t, os.WriteFile(outside, []byte("haproxy_ip: 10.244.0.50\npostgres_ip: 10.244.0.11\nregistry_ip: 10.244.0.12\n"), 0o644))
	md, _, err := manifest.ParseManifest(m, interpolateFile(t, m, outside, store))
	require.NoError(t, err)
	require.NoError(t, md.Validate())
	err = md.ValidateCloud(cc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "10.244.0.50")
}

func TestKPaaSKubernetesOnTheLocalCloud(t *testing.T) {
	check(t, "k-paas/kubernetes/kubernetes.yml", "k-paas/kubernetes/local/cloud-config.yml", "k-paas/kubernetes/local/vars.yml")
}

func TestKPaaSKubernetesOnOpenStack(t *testing.T) {
	check(t, "k-paas/kubernetes/kubernetes.yml", "k-paas/kubernetes/openstack/cloud-config.yml", "k-paas/kubernetes/openstack/vars.yml")
}

func TestKPaaSKubernetesOnVSphere(t *testing.T) {
	check(t, "k-paas/kubernetes/kubernetes.yml", "k-paas/kubernetes/vsphere/cloud-config.yml", "k-paas/kubernetes/vsphere/vars.yml")
}
