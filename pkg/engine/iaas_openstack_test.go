package engine

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	ostack "github.com/kpaas/kpaas/cpi/openstack"
	"github.com/kpaas/kpaas/cpi/openstack/openstacktest"
)

// openstackEnv finds the OpenStack as cpi/openstack's integration tests do:
// OS_* in the environment, else the rc file named by $KPAAS_OPENSTACK_RC or
// recorded by .ci/setup-openstack.sh in /tmp/kpaas-ci/openstack-rc.
func openstackEnv(t *testing.T) map[string]string {
	t.Helper()
	if testing.Short() {
		t.Skip("deploy against a real OpenStack; skipped with -short")
	}
	openstacktest.Use(t) // one test package at a time on the shared OpenStack project
	env := map[string]string{}
	if os.Getenv("OS_AUTH_URL") != "" {
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OS_") {
				env[k] = v
			}
		}
		return env
	}
	rc := os.Getenv("KPAAS_OPENSTACK_RC")
	if rc == "" {
		if b, err := os.ReadFile("/tmp/kpaas-ci/openstack-rc"); err == nil {
			rc = strings.TrimSpace(string(b))
		}
	}
	if rc == "" {
		t.Skip("no OpenStack: set OS_AUTH_URL or KPAAS_OPENSTACK_RC (bash .ci/setup-openstack.sh makes one)")
	}
	f, err := os.Open(rc)
	require.NoError(t, err, "reading the OpenStack rc file %s", rc)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "OS_") {
			env[k] = strings.Trim(v, `"'`)
		}
	}
	require.NoError(t, sc.Err())
	return env
}

// openstackCloudConfig has the shapes of K-PaaS's OpenStack cloud-config
// (../shared/compat/corpus/K-PaaS_ap-deployment/cloud-config/
// openstack-cloud-config.yml): AZs naming a Nova availability_zone,
// vm_types naming flavors, networks by net_id. Addresses start at .210 so
// they stay clear of the ones cpi/openstack's tests use.
const openstackCloudConfig = `
azs:
- {name: z1, cloud_properties: {availability_zone: nova}}
- {name: z2, cloud_properties: {availability_zone: nova}}
vm_types:
- {name: default, cloud_properties: {instance_type: m1.tiny}}
- {name: large, cloud_properties: {instance_type: m1.small}}
disk_types:
- {name: default, disk_size: 1024}
networks:
- name: default
  type: manual
  subnets:
  - range: 10.0.0.0/24
    gateway: 10.0.0.1
    dns: [8.8.8.8]
    reserved: [10.0.0.2-10.0.0.209, 10.0.0.240-10.0.0.254]
    azs: [z1, z2]
    cloud_properties: {net_id: %s, security_groups: [default]}
- name: second
  type: manual
  subnets:
  - range: 10.8.0.0/24
    gateway: 10.8.0.1
    reserved: [10.8.0.2-10.8.0.9]
    azs: [z1, z2]
    cloud_properties: {net_id: %s}
compilation: {workers: 2, reuse_compilation_vms: true, az: z1, vm_type: default, network: default}
`

// osClients are plain gophercloud clients, to look at what the deploy made.
type osClients struct {
	compute, network, volume, image *gophercloud.ServiceClient
}

func newOSClients(t *testing.T, env map[string]string) *osClients {
	ctx := context.Background()
	ao := gophercloud.AuthOptions{IdentityEndpoint: env["OS_AUTH_URL"], Username: env["OS_USERNAME"], Password: env["OS_PASSWORD"],
		DomainID: env["OS_USER_DOMAIN_ID"], DomainName: env["OS_USER_DOMAIN_NAME"],
		Scope: &gophercloud.AuthScope{ProjectID: env["OS_PROJECT_ID"], ProjectName: env["OS_PROJECT_NAME"], DomainID: env["OS_PROJECT_DOMAIN_ID"], DomainName: env["OS_PROJECT_DOMAIN_NAME"]}}
	if ao.Scope.ProjectID != "" {
		ao.Scope.ProjectName, ao.Scope.DomainID, ao.Scope.DomainName = "", "", ""
	}
	pc, err := openstack.AuthenticatedClient(ctx, ao)
	require.NoError(t, err, "authenticating to %s", env["OS_AUTH_URL"])
	eo := gophercloud.EndpointOpts{Region: env["OS_REGION_NAME"]}
	c := &osClients{}
	c.compute, err = openstack.NewComputeV2(pc, eo)
	require.NoError(t, err)
	c.compute.Microversion = "2.47" // flavor original_name in server details
	c.network, err = openstack.NewNetworkV2(pc, eo)
	require.NoError(t, err)
	c.volume, err = openstack.NewBlockStorageV3(pc, eo)
	require.NoError(t, err)
	c.image, err = openstack.NewImageV2(pc, eo)
	require.NoError(t, err)
	return c
}

func (c *osClients) networkID(t *testing.T, name string) string {
	pages, err := networks.List(c.network, networks.ListOpts{Name: name}).AllPages(context.Background())
	require.NoError(t, err)
	ns, err := networks.ExtractNetworks(pages)
	require.NoError(t, err)
	require.NotEmpty(t, ns, "network %q (seeded by ../shared/openstack/setup.sh) not found", name)
	return ns[0].ID
}

// serverIPs lists a server's fixed addresses.
func serverIPs(s *servers.Server) []string {
	var out []string
	for _, list := range s.Addresses {
		for _, a := range list.([]any) {
			if m, ok := a.(map[string]any); ok {
				out = append(out, fmt.Sprint(m["addr"]))
			}
		}
	}
	return out
}

func TestDeployThroughOpenStack(t *testing.T) {
	env := openstackEnv(t)
	ctx := context.Background()
	oc := newOSClients(t, env)

	// The second network is this test's own.
	second, err := networks.Create(ctx, oc.network, networks.CreateOpts{Name: "kpaas-engine-second"}).Extract()
	require.NoError(t, err)
	t.Cleanup(func() { _ = networks.Delete(context.Background(), oc.network, second.ID).ExtractErr() })
	_, err = subnets.Create(ctx, oc.network, subnets.CreateOpts{NetworkID: second.ID, CIDR: "10.8.0.0/24", IPVersion: 4}).Extract()
	require.NoError(t, err)

	o := ostack.OpenStackConfig{
		AuthURL: env["OS_AUTH_URL"], Username: env["OS_USERNAME"], APIKey: env["OS_PASSWORD"],
		Project: env["OS_PROJECT_NAME"], ProjectID: env["OS_PROJECT_ID"],
		UserDomainID: env["OS_USER_DOMAIN_ID"], UserDomainName: env["OS_USER_DOMAIN_NAME"],
		ProjectDomainID: env["OS_PROJECT_DOMAIN_ID"], ProjectDomainName: env["OS_PROJECT_DOMAIN_NAME"],
		Region: env["OS_REGION_NAME"], StateTimeout: 120, WaitResourcePollInterval: 1,
	}
	if o.ProjectID != "" {
		o.Project = ""
	}
	c, err := ostack.New(ctx, ostack.Config{OpenStack: o}, ostack.Deps{}, nil)
	require.NoError(t, err)

	// A light stemcell: the image setup.sh seeded.
	pages, err := images.List(oc.image, images.ListOpts{Name: "fake-image"}).AllPages(ctx)
	require.NoError(t, err)
	imgs, err := images.ExtractImages(pages)
	require.NoError(t, err)
	require.NotEmpty(t, imgs, "image fake-image (seeded by setup.sh) not found")
	sc, err := c.CreateStemcell(ctx, "", cpi.Props{"image_id": imgs[0].ID})
	require.NoError(t, err)

	w := newIaaSWorld(t, c, sc, fmt.Sprintf(openstackCloudConfig, oc.networkID(t, "private"), second.ID))
	// Whatever the test ends with, nothing it made stays in the demo project.
	t.Cleanup(func() {
		ctx := context.Background()
		if ds, err := w.st.LoadDeployment(ctx, "iaas"); err == nil {
			_ = w.engine().DeleteDeployment(ctx, ds, true)
		}
		if orphans, err := w.st.OrphanedDisks(ctx); err == nil {
			for _, d := range orphans {
				_ = c.DeleteDisk(ctx, cpi.DiskCID(d.CID))
			}
		}
	})

	start := time.Now()
	w.apply(iaasManifest, false)
	t.Logf("first deploy: %s", time.Since(start).Round(time.Millisecond))
	ds := w.load()
	vms := instanceVMs(ds)
	require.Equal(t, []string{"data/0", "web/0", "web/1"}, sortedKeys(vms))
	flavors := map[string]string{"web/0": "m1.tiny", "web/1": "m1.tiny", "data/0": "m1.small"}
	for name, v := range vms {
		s, err := servers.Get(ctx, oc.compute, v.CID).Extract()
		require.NoError(t, err, "server %s of %s", v.CID, name)
		assert.Equal(t, "ACTIVE", s.Status, name)
		assert.Equal(t, flavors[name], s.Flavor["original_name"], name)
		assert.Equal(t, "nova", s.AvailabilityZone, "%s: the AZ's availability_zone", name)
		assert.ElementsMatch(t, v.IPs, serverIPs(s), "%s: the state records the server's addresses", name)
	}
	assert.Len(t, vms["web/0"].IPs, 1)
	require.Len(t, vms["data/0"].IPs, 2)
	assert.True(t, strings.HasPrefix(vms["data/0"].IPs[0], "10.0.0.2") || strings.HasPrefix(vms["data/0"].IPs[1], "10.0.0.2"))

	disks := activeDisks(ds)
	require.Len(t, disks, 1, "only data has a persistent disk")
	diskCID := disks[vms["data/0"].Instance]
	require.NotEmpty(t, diskCID, "the disk belongs to data/0")
	vol, err := volumes.Get(ctx, oc.volume, diskCID).Extract()
	require.NoError(t, err)
	assert.Equal(t, 1, vol.Size, "1024 MiB is 1 GiB")
	require.Len(t, vol.Attachments, 1)
	assert.Equal(t, vms["data/0"].CID, vol.Attachments[0].ServerID)
	assert.Contains(t, w.agents.calls("add_persistent_disk "+diskCID), "data/0")

	// Every create_vm, compile VMs included, had its AZ's availability_zone.
	require.NotEmpty(t, w.cloud.vmProps)
	for _, p := range w.cloud.vmProps {
		assert.Equal(t, "nova", p["availability_zone"], "create_vm props %v", p)
	}

	// A redeploy with no change touches nothing in the cloud.
	assert.Contains(t, w.cloud.mutations(), "attach_disk", "the first deploy was recorded")
	p := w.apply(iaasManifest, false)
	assert.Equal(t, 0, p.Plan.Changes())
	assert.Empty(t, w.cloud.mutations(), "a no-op deploy makes no CPI call that changes the cloud")

	// Recreate: new servers, the same volume, attached to data's new server.
	start = time.Now()
	w.apply(iaasManifest, true)
	t.Logf("recreate: %s", time.Since(start).Round(time.Millisecond))
	after := instanceVMs(w.load())
	for name, v := range vms {
		assert.NotEqual(t, v.CID, after[name].CID, "%s got a new server", name)
		_, err := servers.Get(ctx, oc.compute, v.CID).Extract()
		assert.True(t, gophercloud.ResponseCodeIs(err, 404), "old server of %s deleted: %v", name, err)
	}
	assert.Equal(t, disks, activeDisks(w.load()), "recreate keeps the persistent disk")
	vol, err = volumes.Get(ctx, oc.volume, diskCID).Extract()
	require.NoError(t, err)
	require.Len(t, vol.Attachments, 1)
	assert.Equal(t, after["data/0"].CID, vol.Attachments[0].ServerID)

	// delete-deployment: the servers gone, the volume orphaned and kept.
	start = time.Now()
	require.NoError(t, w.engine().DeleteDeployment(ctx, w.load(), false))
	t.Logf("delete-deployment: %s", time.Since(start).Round(time.Millisecond))
	for name, v := range after {
		_, err := servers.Get(ctx, oc.compute, v.CID).Extract()
		assert.True(t, gophercloud.ResponseCodeIs(err, 404), "server of %s deleted: %v", name, err)
	}
	orphans, err := w.st.OrphanedDisks(ctx)
	require.NoError(t, err)
	require.Len(t, orphans, 1)
	assert.Equal(t, diskCID, orphans[0].CID)
	vol, err = volumes.Get(ctx, oc.volume, diskCID).Extract()
	require.NoError(t, err, "an orphaned disk keeps its volume")
	assert.Equal(t, "available", vol.Status)
	assert.Empty(t, vol.Attachments)
}
