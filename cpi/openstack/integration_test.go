package openstack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	gos "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servergroups"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/kpaas/kpaas/cpi"
)

// stemcell uploads a tiny raw image for one test and deletes it after.
func (tc *testCloud) stemcell(t *testing.T) cpi.StemcellCID {
	t.Helper()
	p := filepath.Join(t.TempDir(), "root.img")
	require.NoError(t, os.WriteFile(p, bytes.Repeat([]byte{0}, 4096), 0o644))
	sc, err := tc.cpi.CreateStemcell(context.Background(), p, cpi.Props{"disk_format": "raw"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tc.cpi.DeleteStemcell(context.Background(), sc) })
	return sc
}

func (tc *testCloud) inv(t *testing.T) []string {
	t.Helper()
	inv, err := tc.inventory()
	require.NoError(t, err)
	return inv
}

// assertCPIError checks the BOSH error type, ok_to_retry and message parts.
func assertCPIError(t *testing.T, err error, typ string, retry bool, parts ...string) {
	t.Helper()
	require.Error(t, err)
	var ce *cpi.Error
	require.True(t, errors.As(err, &ce), "error %v must be a *cpi.Error", err)
	assert.Equal(t, typ, ce.Type, "error type of %v", err)
	assert.Equal(t, retry, ce.OkToRetry, "ok_to_retry of %v", err)
	for _, p := range parts {
		assert.Contains(t, err.Error(), p)
	}
}

// TestCreateVMFailures: each failure is reported clearly, typed, and leaves
// nothing behind (server, ports, floating IP).
func TestCreateVMFailures(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	tiny := cpi.Props{"instance_type": "m1.tiny"}
	cases := []struct {
		name  string
		props cpi.Props
		nets  cpi.Networks
		retry bool
		is    []error
		parts []string
	}{
		{name: "flavor not found", props: cpi.Props{"instance_type": "m9.huge"}, nets: tc.manual("10.0.0.60"),
			parts: []string{`flavor "m9.huge" not found`, "m1.tiny"}},
		{name: "no flavor fits cpu/ram", props: cpi.Props{"cpu": 64, "ram": 1 << 20}, nets: tc.manual("10.0.0.60"),
			parts: []string{"no flavor has at least 64 vCPUs"}},
		{name: "security group not found", props: cpi.Props{"instance_type": "m1.tiny", "security_groups": []string{"no-such-sg"}}, nets: tc.manual("10.0.0.60"),
			parts: []string{`security group "no-such-sg" not found`}},
		{name: "network not found", props: tiny, is: []error{cpi.ErrNetworkNotFound},
			nets:  cpi.Networks{"private": {Type: "manual", IP: "10.0.0.60", CloudProperties: cpi.Props{"net_id": "6a3e1c62-0000-4000-8000-000000000000"}}},
			parts: []string{"6a3e1c62-0000-4000-8000-000000000000 not found", "not a subnet ID"}},
		{name: "ip outside the subnet", props: tiny, nets: tc.manual("192.168.77.5"),
			parts: []string{"192.168.77.5", "subnet"}},
		{name: "key pair not found", props: cpi.Props{"instance_type": "m1.tiny", "key_name": "no-such-key"}, nets: tc.manual("10.0.0.60"),
			parts: []string{`key pair "no-such-key" does not exist`}},
		{name: "vip without ip or pool", props: tiny,
			nets: func() cpi.Networks {
				n := tc.manual("10.0.0.61")
				n["public"] = cpi.Network{Type: "vip"}
				return n
			}(),
			parts: []string{"vip network public has no ip"}},
		{name: "stemcell not found", props: tiny, nets: tc.manual("10.0.0.60"), is: []error{cpi.ErrStemcellNotFound}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := tc.inv(t)
			stemcell := sc
			if c.name == "stemcell not found" {
				stemcell = "d0d0d0d0-0000-4000-8000-000000000000"
			}
			_, _, err := tc.cpi.CreateVM(ctx, "agent-fail", stemcell, c.props, c.nets, nil, cpi.Env{})
			typ := cpi.TypeVMCreationFail
			if c.name == "stemcell not found" {
				typ = cpi.TypeCloudError
			}
			assertCPIError(t, err, typ, c.retry, c.parts...)
			for _, s := range c.is {
				assert.ErrorIs(t, err, s)
			}
			assert.Equal(t, before, tc.inv(t), "a failed create_vm leaves nothing behind")
		})
	}
}

// TestIPInUse: a static IP that a VM holds is refused for the next VM, naming
// the port that holds it, and the failed create leaves nothing.
func TestIPInUse(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	vm, _, err := tc.cpi.CreateVM(ctx, "agent-a", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.70"), nil, cpi.Env{})
	require.NoError(t, err)
	defer func() { require.NoError(t, tc.cpi.DeleteVM(ctx, vm)) }()
	before := tc.inv(t)
	_, _, err = tc.cpi.CreateVM(ctx, "agent-b", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.70"), nil, cpi.Env{})
	assertCPIError(t, err, cpi.TypeVMCreationFail, false, "IP 10.0.0.70 is already in use by port", string(vm))
	assert.Equal(t, before, tc.inv(t))
}

// TestDynamicNetworkFloatingIPAndOptions: a dynamic network gets Neutron's IP
// with the subnet's mask and gateway, a vip network with a pool gets a fresh
// floating IP bound to the VM's port and released by delete_vm; key pair,
// availability zone, server group hint, metadata and human-readable names
// reach Nova.
func TestDynamicNetworkFloatingIPAndOptions(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	kp, err := keypairs.Create(ctx, tc.cpi.c.compute, keypairs.CreateOpts{Name: "kpaas-test-" + newUUID()[:8],
		PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBn6Zs5e9aU9kAh1fKQXf2y0o0dQ2qC2r2fE3b1cNqK4 test"}).Extract()
	require.NoError(t, err)
	defer keypairs.Delete(ctx, tc.cpi.c.compute, kp.Name, nil)
	sg, err := servergroups.Create(ctx, tc.cpi.c.compute, servergroups.CreateOpts{Name: "kpaas-test", Policy: "soft-anti-affinity"}).Extract()
	require.NoError(t, err)
	defer servergroups.Delete(ctx, tc.cpi.c.compute, sg.ID)

	before := tc.inv(t)
	nets := cpi.Networks{
		"private": {Type: "dynamic", Default: []string{"dns", "gateway"}, CloudProperties: cpi.Props{"net_id": tc.privNet}},
		"public":  {Type: "vip", CloudProperties: cpi.Props{"floating_network_id": tc.pubNet}},
	}
	props := cpi.Props{"cpu": 1, "ram": 512, "key_name": kp.Name, "availability_zone": "nova",
		"scheduler_hints": map[string]any{"group": sg.ID}, "metadata": map[string]any{"purpose": "test"}}
	human := *tc.cpi
	human.cfg.OpenStack.HumanReadableVMNames = true
	vm, got, err := human.CreateVM(ctx, "agent-dyn", sc, props, nets, nil, cpi.Env{})
	require.NoError(t, err)

	ip := net.ParseIP(got["private"].IP)
	require.NotNil(t, ip, "dynamic IP assigned: %+v", got["private"])
	assert.True(t, (&net.IPNet{IP: net.IPv4(10, 0, 0, 0), Mask: net.CIDRMask(24, 32)}).Contains(ip))
	assert.Equal(t, "255.255.255.0", got["private"].Netmask)
	assert.Equal(t, "10.0.0.1", got["private"].Gateway)
	assert.NotEmpty(t, got["private"].MAC)
	fip := net.ParseIP(got["public"].IP)
	require.NotNil(t, fip, "floating IP allocated: %+v", got["public"])
	assert.True(t, (&net.IPNet{IP: net.IPv4(172, 24, 4, 0), Mask: net.CIDRMask(24, 32)}).Contains(fip))

	s, err := servers.Get(ctx, tc.cpi.c.compute, string(vm)).Extract()
	require.NoError(t, err)
	assert.Equal(t, kp.Name, s.KeyName)
	assert.Equal(t, "test", s.Metadata["purpose"])
	assert.Equal(t, "agent-dyn", s.Metadata["agent_id"])
	assert.Equal(t, "m1.tiny", s.Flavor["original_name"], "smallest flavor with 1 vCPU and 512 MiB")
	grp, err := servergroups.Get(ctx, tc.cpi.c.compute, sg.ID).Extract()
	require.NoError(t, err)
	assert.Contains(t, grp.Members, string(vm), "scheduler hint group places the VM in the server group")

	require.NoError(t, human.SetVMMetadata(ctx, vm, cpi.Metadata{"name": "router/0", "deployment": "cf"}))
	s, err = servers.Get(ctx, tc.cpi.c.compute, string(vm)).Extract()
	require.NoError(t, err)
	assert.Equal(t, "router/0", s.Name)
	assert.Equal(t, "cf", s.Metadata["deployment"])

	require.NoError(t, tc.cpi.DeleteVM(ctx, vm))
	assert.Equal(t, before, tc.inv(t), "delete_vm releases the ports and the floating IP it allocated")
}

// TestOperatorFloatingIP: a vip IP the operator allocated is bound to the VM
// and, after delete_vm, stays allocated to the project, unbound.
func TestOperatorFloatingIP(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	f, err := floatingips.Create(ctx, tc.cpi.c.network, floatingips.CreateOpts{FloatingNetworkID: tc.pubNet}).Extract()
	require.NoError(t, err)
	defer floatingips.Delete(ctx, tc.cpi.c.network, f.ID)
	nets := tc.manual("10.0.0.80")
	nets["public"] = cpi.Network{Type: "vip", IP: f.FloatingIP}
	drive := *tc.cpi
	drive.cfg.OpenStack.ConfigDrive = "disk"
	vm, got, err := drive.CreateVM(ctx, "agent-fip", sc, cpi.Props{"instance_type": "m1.tiny"}, nets, nil, cpi.Env{})
	require.NoError(t, err)
	assert.Equal(t, f.FloatingIP, got["public"].IP)

	// The settings travel in user_data and on the config drive, with
	// bosh-openstack-cpi's additions.
	var srv struct {
		Name        string `json:"name"`
		ConfigDrive string `json:"config_drive"`
		UserData    string `json:"OS-EXT-SRV-ATTR:user_data"`
	}
	client := tc.cpi.c.compute
	if tc.admin != nil {
		client = tc.admin.c.compute
	}
	require.NoError(t, servers.Get(ctx, client, string(vm)).ExtractIntoStructPtr(&srv, "server"))
	assert.Equal(t, "True", srv.ConfigDrive, "openstack.config_drive asks Nova for a config drive")
	if tc.admin != nil {
		raw, err := base64.StdEncoding.DecodeString(srv.UserData)
		require.NoError(t, err)
		var ud struct {
			Server   struct{ Name string }         `json:"server"`
			DNS      struct{ Nameserver []string } `json:"dns"`
			Networks map[string]struct {
				Type    string `json:"type"`
				IP      string `json:"ip"`
				MAC     string `json:"mac"`
				UseDHCP bool   `json:"use_dhcp"`
			} `json:"networks"`
			Disks struct {
				System string `json:"system"`
			} `json:"disks"`
		}
		require.NoError(t, json.Unmarshal(raw, &ud), "%s", raw)
		assert.Equal(t, srv.Name, ud.Server.Name)
		assert.Equal(t, []string{"8.8.8.8"}, ud.DNS.Nameserver)
		assert.Equal(t, got["private"].MAC, ud.Networks["private"].MAC)
		assert.True(t, ud.Networks["private"].UseDHCP, "openstack.use_dhcp defaults to true")
		assert.Equal(t, "vip", ud.Networks["public"].Type)
		assert.Equal(t, f.FloatingIP, ud.Networks["public"].IP)
		assert.Equal(t, "/dev/sda", ud.Disks.System)
	}
	bound, err := floatingips.Get(ctx, tc.cpi.c.network, f.ID).Extract()
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.80", bound.FixedIP)
	require.NoError(t, tc.cpi.DeleteVM(ctx, vm))
	after, err := floatingips.Get(ctx, tc.cpi.c.network, f.ID).Extract()
	require.NoError(t, err, "the operator's floating IP stays allocated")
	assert.Empty(t, after.PortID)
}

// TestBootFromVolume: the root disk is a Cinder volume made from the image,
// not listed by get_disks, and deleted with the VM.
func TestBootFromVolume(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	// disk locality: a VM made for an existing disk lands in the disk's zone
	disk, err := tc.cpi.CreateDisk(ctx, 1024, nil, "")
	require.NoError(t, err)
	defer func() { require.NoError(t, tc.cpi.DeleteDisk(ctx, disk)) }()
	_, _, err = tc.cpi.CreateVM(ctx, "agent-az", sc, cpi.Props{"instance_type": "m1.tiny", "availability_zone": "elsewhere"}, tc.manual("10.0.0.90"), []cpi.DiskCID{disk}, cpi.Env{})
	assertCPIError(t, err, cpi.TypeVMCreationFail, false, "differs from its persistent disks' zone nova")

	before := tc.inv(t)
	vm, _, err := tc.cpi.CreateVM(ctx, "agent-bfv", sc, cpi.Props{"instance_type": "m1.tiny", "boot_from_volume": true, "root_disk": map[string]any{"size": 2}}, tc.manual("10.0.0.90"), []cpi.DiskCID{disk}, cpi.Env{})
	require.NoError(t, err)
	s, err := servers.Get(ctx, tc.cpi.c.compute, string(vm)).Extract()
	require.NoError(t, err)
	require.Len(t, s.AttachedVolumes, 1, "the boot volume")
	v, err := volumes.Get(ctx, tc.cpi.c.volume, s.AttachedVolumes[0].ID).Extract()
	require.NoError(t, err)
	assert.Equal(t, 2, v.Size, "root_disk.size in GiB")
	assert.Equal(t, "true", v.Bootable)
	disks, err := tc.cpi.GetDisks(ctx, vm)
	require.NoError(t, err)
	assert.Empty(t, disks, "get_disks lists persistent disks only")
	require.NoError(t, tc.cpi.DeleteVM(ctx, vm))
	assert.Equal(t, before, tc.inv(t), "the boot volume goes with the VM")
}

// TestServerError: a server that goes to ERROR (here: its boot volume exceeds
// the Cinder quota) fails create_vm with Nova's fault, ok_to_retry, and the
// server and ports are deleted.
func TestServerError(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	before := tc.inv(t)
	_, _, err := tc.cpi.CreateVM(ctx, "agent-err", sc, cpi.Props{"instance_type": "m1.tiny", "boot_from_volume": true, "root_disk": map[string]any{"size": 2000000}}, tc.manual("10.0.0.91"), nil, cpi.Env{})
	require.Error(t, err)
	var ce *cpi.Error
	require.True(t, errors.As(err, &ce))
	assert.Equal(t, cpi.TypeVMCreationFail, ce.Type)
	t.Logf("create_vm error: %v (ok_to_retry=%v)", err, ce.OkToRetry)
	assert.Equal(t, before, tc.inv(t), "server, boot volume and ports cleaned up")
}

// TestDiskQuotaExceeded: a disk beyond the project's Cinder quota is refused
// with a message that says so, not retryable.
func TestDiskQuotaExceeded(t *testing.T) {
	tc := newTestCloud(t)
	before := tc.inv(t)
	_, err := tc.cpi.CreateDisk(context.Background(), 2000000*1024, nil, "")
	assertCPIError(t, err, cpi.TypeCloudError, false, "quota")
	assert.Equal(t, before, tc.inv(t))
}

// TestStemcells: the stemcell's image tarball (root.img inside a gzipped tar)
// reaches Glance byte for byte; a light stemcell names an existing image and
// delete_stemcell leaves that image alone.
func TestStemcells(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	root := bytes.Repeat([]byte("kpaas-root-img-"), 70000) // ~1 MiB
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "./root.img", Mode: 0o644, Size: int64(len(root))}))
	_, err := tw.Write(root)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	p := filepath.Join(t.TempDir(), "image")
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	var progress []int64
	c := *tc.cpi
	c.deps.Progress = func(sent, total int64) { progress = append(progress, sent) }
	sc, err := c.CreateStemcell(ctx, p, cpi.Props{"disk_format": "raw", "name": "bosh-openstack-kvm-ubuntu-jammy-go_agent", "version": "1.8", "os_distro": "ubuntu"})
	require.NoError(t, err)
	img, err := images.Get(ctx, tc.cpi.c.image, string(sc)).Extract()
	require.NoError(t, err)
	assert.Equal(t, int64(len(root)), img.SizeBytes, "Glance holds root.img, not the tarball")
	assert.Equal(t, "bosh-openstack-kvm-ubuntu-jammy-go_agent/1.8", img.Name)
	assert.Equal(t, "ubuntu", img.Properties["os_distro"])
	require.NotEmpty(t, progress)
	assert.Equal(t, int64(len(root)), progress[len(progress)-1], "progress reaches the total")
	require.NoError(t, tc.cpi.DeleteStemcell(ctx, sc))

	pages, err := images.List(tc.cpi.c.image, images.ListOpts{Name: "fake-image"}).AllPages(ctx)
	require.NoError(t, err)
	is, err := images.ExtractImages(pages)
	require.NoError(t, err)
	require.NotEmpty(t, is, "setup.sh seeds fake-image")
	light, err := tc.cpi.CreateStemcell(ctx, "", cpi.Props{"image_id": is[0].ID})
	require.NoError(t, err)
	assert.Equal(t, cpi.StemcellCID(is[0].ID+" light"), light)
	require.NoError(t, tc.cpi.DeleteStemcell(ctx, light))
	_, err = images.Get(ctx, tc.cpi.c.image, is[0].ID).Extract()
	assert.NoError(t, err, "delete_stemcell of a light stemcell keeps the image")
	_, err = tc.cpi.CreateStemcell(ctx, "", cpi.Props{"image_id": "d0d0d0d0-0000-4000-8000-000000000000"})
	assertCPIError(t, err, cpi.TypeCloudError, false, "does not exist")
}

// TestAuth: project and domains by name, application credentials, and a
// wrong password told apart from an unreachable Keystone.
func TestAuth(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	base := configFromEnv(tc.userEnv)

	byName := base
	byName.OpenStack.ProjectID, byName.OpenStack.Project = "", tc.userEnv["OS_PROJECT_NAME"]
	byName.OpenStack.UserDomainID, byName.OpenStack.ProjectDomainID, byName.OpenStack.Domain = "", "", "Default"
	_, err := New(ctx, byName, Deps{}, nil)
	require.NoError(t, err, "project and domain by name")

	wrong := base
	wrong.OpenStack.APIKey = "not-the-password"
	_, err = New(ctx, wrong, Deps{}, nil)
	assertCPIError(t, err, cpi.TypeCloudError, false, "Keystone refused the credentials")

	down := base
	down.OpenStack.AuthURL = "http://127.0.0.1:9/v3"
	zero := 0
	down.OpenStack.MaxRetries = &zero
	_, err = New(ctx, down, Deps{}, nil)
	assertCPIError(t, err, cpi.TypeCloudError, true, "127.0.0.1:9")

	// Application credential of the demo user, made for this test.
	user, err := tokens.Get(ctx, mustIdentity(t, tc), tc.cpi.c.provider.Token()).ExtractUser()
	require.NoError(t, err)
	ac, err := applicationcredentials.Create(ctx, mustIdentity(t, tc), user.ID, applicationcredentials.CreateOpts{Name: "kpaas-test-" + newUUID()[:8]}).Extract()
	require.NoError(t, err)
	defer applicationcredentials.Delete(ctx, mustIdentity(t, tc), user.ID, ac.ID)
	app := Config{OpenStack: OpenStackConfig{AuthURL: base.OpenStack.AuthURL, Region: base.OpenStack.Region,
		ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: ac.Secret}}
	c, err := New(ctx, app, Deps{}, nil)
	require.NoError(t, err, "application credential by id")
	ok, err := c.HasVM(ctx, "d0d0d0d0-0000-4000-8000-000000000000")
	require.NoError(t, err)
	assert.False(t, ok)
	byACName := app
	byACName.OpenStack.ApplicationCredentialID, byACName.OpenStack.ApplicationCredentialName = "", ac.Name
	byACName.OpenStack.Username, byACName.OpenStack.UserDomainID = tc.userEnv["OS_USERNAME"], "default"
	_, err = New(ctx, byACName, Deps{}, nil)
	require.NoError(t, err, "application credential by name and user")
}

func mustIdentity(t *testing.T, tc *testCloud) *gophercloudServiceClient {
	t.Helper()
	c, err := gos.NewIdentityV3(tc.cpi.c.provider, gophercloudEndpointOpts(tc.cpi.cfg.OpenStack.Region))
	require.NoError(t, err)
	return c
}

// TestCancelledCreateVMCleansUp: create_vm cancelled right after it sends the
// server create (the answer may never arrive) still deletes the server and
// its port before returning (CTX-1, VM-3).
func TestCancelledCreateVMCleansUp(t *testing.T) {
	tc := newTestCloud(t)
	sc := tc.stemcell(t)
	before := tc.inv(t)
	for _, delay := range []time.Duration{0, 300 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		tc.calls.setHook(func(method, host, path string) {
			if method == "POST" && strings.HasSuffix(path, "/servers") {
				time.AfterFunc(delay, cancel)
			}
		})
		_, _, err := tc.cpi.CreateVM(ctx, "agent-cancel", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.95"), nil, cpi.Env{})
		tc.calls.setHook(nil)
		cancel()
		assertCPIError(t, err, cpi.TypeVMCreationFail, false)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, before, tc.inv(t), "cancelled %v after the server create: nothing left", delay)
	}
}

// TestInstanceQuotaExceeded: with the project's instance quota used up (set
// by the admin for this test), create_vm says so, is not retryable, and
// leaves no port behind.
func TestInstanceQuotaExceeded(t *testing.T) {
	tc := newTestCloud(t)
	if tc.admin == nil {
		t.Skip("needs the admin rc beside the demo rc to lower the demo project's quota")
	}
	ctx := context.Background()
	sc := tc.stemcell(t)
	project := tc.userEnv["OS_PROJECT_ID"]
	q, err := quotasets.Get(ctx, tc.admin.c.compute, project).Extract()
	require.NoError(t, err)
	zero, prev := 0, q.Instances
	_, err = quotasets.Update(ctx, tc.admin.c.compute, project, quotasets.UpdateOpts{Instances: &zero}).Extract()
	require.NoError(t, err)
	defer func() {
		_, err := quotasets.Update(ctx, tc.admin.c.compute, project, quotasets.UpdateOpts{Instances: &prev}).Extract()
		require.NoError(t, err, "restoring the demo project's instance quota to %d", prev)
	}()
	before := tc.inv(t)
	_, _, err = tc.cpi.CreateVM(ctx, "agent-quota", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.96"), nil, cpi.Env{})
	assertCPIError(t, err, cpi.TypeVMCreationFail, false, "Quota exceeded", "quota is exhausted")
	assert.Equal(t, before, tc.inv(t))
}

// TestAutoAntiAffinity: with openstack.enable_auto_anti_affinity, the VMs of
// one instance group (env.bosh.group) created in parallel share one
// soft-anti-affinity server group, which goes with the last VM.
func TestAutoAntiAffinity(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	c := *tc.cpi
	c.cfg.OpenStack.EnableAutoAntiAffinity = true
	before := tc.inv(t)
	env := cpi.Env{"bosh": map[string]any{"group": "kpaas-cf-router"}}
	vms := make([]cpi.VMCID, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vms[i], _, errs[i] = c.CreateVM(ctx, cpi.AgentID(fmt.Sprintf("agent-aa-%d", i)), sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual(fmt.Sprintf("10.0.0.%d", 110+i)), nil, env)
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	pages, err := servergroups.List(tc.cpi.c.compute, nil).AllPages(ctx)
	require.NoError(t, err)
	gs, err := servergroups.ExtractServerGroups(pages)
	require.NoError(t, err)
	var mine []servergroups.ServerGroup
	for _, g := range gs {
		if g.Name == "kpaas-kpaas-cf-router" {
			mine = append(mine, g)
		}
	}
	require.Len(t, mine, 1, "one server group for the instance group")
	assert.ElementsMatch(t, []string{string(vms[0]), string(vms[1])}, mine[0].Members)
	assert.Equal(t, "soft-anti-affinity", *mine[0].Policy)
	require.NoError(t, c.DeleteVM(ctx, vms[0]))
	require.NoError(t, c.DeleteVM(ctx, vms[1]))
	assert.Equal(t, before, tc.inv(t), "the server group goes with its last VM")
}

// TestTwoManualNetworks: a VM on two manual networks gets a port with its
// static IP on each, in the order of the network names, and both ports go
// with the VM.
func TestTwoManualNetworks(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	n, err := networks.Create(ctx, tc.cpi.c.network, networks.CreateOpts{Name: "kpaas-test-second"}).Extract()
	require.NoError(t, err)
	defer networks.Delete(ctx, tc.cpi.c.network, n.ID)
	_, err = subnets.Create(ctx, tc.cpi.c.network, subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.9.0.0/24", IPVersion: 4}).Extract()
	require.NoError(t, err)

	before := tc.inv(t)
	nets := tc.manual("10.0.0.130")
	nets["second"] = cpi.Network{Type: "manual", IP: "10.9.0.30", Netmask: "255.255.255.0", CloudProperties: cpi.Props{"net_id": n.ID}}
	drive := *tc.cpi
	drive.cfg.OpenStack.ConfigDrive = "cdrom"
	f := false
	drive.cfg.OpenStack.UseDHCP = &f
	vm, got, err := drive.CreateVM(ctx, "agent-two", sc, cpi.Props{"instance_type": "m1.tiny"}, nets, nil, cpi.Env{})
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.130", got["private"].IP)
	assert.Equal(t, "10.9.0.30", got["second"].IP)
	assert.NotEqual(t, got["private"].MAC, got["second"].MAC)
	s, err := servers.Get(ctx, tc.cpi.c.compute, string(vm)).Extract()
	require.NoError(t, err)
	assert.Contains(t, s.Addresses, "private")
	assert.Contains(t, s.Addresses, "kpaas-test-second")
	require.NoError(t, tc.cpi.DeleteVM(ctx, vm))
	assert.Equal(t, before, tc.inv(t))
}

// TestOrphanPortOfInterruptedCreate: the port an interrupted create_vm left
// (named by the driver, bound to nothing) no longer blocks its IP; a port
// someone else made still does.
func TestOrphanPortOfInterruptedCreate(t *testing.T) {
	tc := newTestCloud(t)
	ctx := context.Background()
	sc := tc.stemcell(t)
	before := tc.inv(t)
	orphan, err := ports.Create(ctx, tc.cpi.c.network, ports.CreateOpts{NetworkID: tc.privNet, Name: "vm-" + newUUID() + "-private",
		Description: "kpaas agent crashed", FixedIPs: []ports.IP{{IPAddress: "10.0.0.140"}}}).Extract()
	require.NoError(t, err)
	vm, _, err := tc.cpi.CreateVM(ctx, "agent-orphan", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.140"), nil, cpi.Env{})
	require.NoError(t, err, "the orphan port is replaced")
	_, err = ports.Get(ctx, tc.cpi.c.network, orphan.ID).Extract()
	assert.True(t, isNotFound(err), "the orphan port is deleted")
	require.NoError(t, tc.cpi.DeleteVM(ctx, vm))
	assert.Equal(t, before, tc.inv(t))

	foreign, err := ports.Create(ctx, tc.cpi.c.network, ports.CreateOpts{NetworkID: tc.privNet, Name: "operator-vip",
		FixedIPs: []ports.IP{{IPAddress: "10.0.0.141"}}}).Extract()
	require.NoError(t, err)
	defer ports.Delete(ctx, tc.cpi.c.network, foreign.ID)
	_, _, err = tc.cpi.CreateVM(ctx, "agent-foreign", sc, cpi.Props{"instance_type": "m1.tiny"}, tc.manual("10.0.0.141"), nil, cpi.Env{})
	assertCPIError(t, err, cpi.TypeVMCreationFail, false, "IP 10.0.0.141 is already in use by port "+foreign.ID)
}
