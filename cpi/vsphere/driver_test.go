package vsphere_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vmdk"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/vsphere"
	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
)

var ctx = context.Background()

func stemcell(t *testing.T, s *vspheretest.Sim) cpi.StemcellCID {
	t.Helper()
	sc, err := s.Driver.CreateStemcell(ctx, vspheretest.StemcellImage(t), cpi.Props{"name": "bosh-vsphere-esxi-ubuntu-jammy-go_agent", "version": "1.0"})
	require.NoError(t, err)
	return sc
}

func withPrefix(files []string, prefix string) []string {
	var out []string
	for _, f := range files {
		if strings.HasPrefix(f, prefix) {
			out = append(out, f)
		}
	}
	return out
}

func TestCreateStemcellImportsATemplateWithASnapshot(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	require.True(t, strings.HasPrefix(string(sc), "sc-"), "stemcell CID %s", sc)
	vm := s.VM(t, cpi.VMCID(sc))
	assert.True(t, vm.Config.Template, "the stemcell is a template")
	assert.Equal(t, strings.TrimPrefix(string(sc), "sc-"), vm.Config.InstanceUuid, "the CID is the template's instance UUID")
	require.NotNil(t, vm.Snapshot, "the template has a snapshot for linked clones")
	assert.NotNil(t, vm.Snapshot.CurrentSnapshot)
	folder := s.Model.Map().Get(*vm.Parent).(*simulator.Folder)
	assert.Equal(t, "kpaas_templates", folder.Name, "template_folder")
	assert.NotEmpty(t, withPrefix(s.Files(t), string(sc)+"/"), "the template's files on the datastore")

	require.NoError(t, s.Driver.DeleteStemcell(ctx, sc))
	assert.Empty(t, withPrefix(s.Files(t), string(sc)+"/"), "delete_stemcell removes the template's files")
	assert.NotContains(t, s.VMs(), string(sc))
}

func TestCreateStemcellRefusesAnImageWithoutOVF(t *testing.T) {
	s := vspheretest.Start(t)
	p := filepath.Join(t.TempDir(), "image")
	require.NoError(t, os.WriteFile(p, []byte("not a tarball"), 0o644))
	_, err := s.Driver.CreateStemcell(ctx, p, nil)
	var ce *cpi.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, cpi.TypeCloudError, ce.Type)
	assert.Contains(t, err.Error(), p)
}

func TestCreateVMPlacesSizesWiresAndDeliversSettings(t *testing.T) {
	s := vspheretest.Start(t, func(m *simulator.Model, c *vsphere.Config) { m.Pool = 1 })
	sc := stemcell(t, s)
	props := cpi.Props{
		"cpu": 2, "ram": 2048, "disk": 4096,
		"nested_hardware_virtualization": true,
		"vmx_options":                    map[string]any{"disk.enableUUID": "1"},
		"datacenters": []any{map[string]any{"name": "DC0", "clusters": []any{
			map[string]any{"DC0_C0": map[string]any{"resource_pool": "DC0_C0_RP1"}}}}},
	}
	nets := vspheretest.Manual(1)
	env := cpi.Env{"bosh": map[string]any{"group": "g"}, "kpaas": map[string]any{"authorized_keys": []string{"ssh-ed25519 AAAA k"}}}
	cid, got, err := s.Driver.CreateVM(ctx, "agent-1", sc, props, nets, nil, env)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Driver.DeleteVM(ctx, cid) })

	vm := s.VM(t, cid)
	assert.Equal(t, strings.TrimPrefix(string(cid), "vm-"), vm.Config.InstanceUuid, "the CID is the VM's instance UUID")
	assert.Equal(t, types.VirtualMachinePowerStatePoweredOn, vm.Runtime.PowerState)
	assert.EqualValues(t, 2, vm.Config.Hardware.NumCPU)
	assert.EqualValues(t, 2048, vm.Config.Hardware.MemoryMB)
	pool := s.Model.Map().Get(*vm.ResourcePool).(*simulator.ResourcePool)
	assert.Equal(t, "DC0_C0_RP1", pool.Name, "resource pool from the AZ's cluster entry")
	folder := s.Model.Map().Get(*vm.Parent).(*simulator.Folder)
	assert.Equal(t, "kpaas_vms", folder.Name, "vm_folder")
	assert.Equal(t, "1", vspheretest.ExtraConfig(vm)["disk.enableUUID"], "vmx_options reach extraConfig")

	// NICs: one per network, on its port group, MAC derived from the IP.
	var macs []string
	for _, dev := range vm.Config.Hardware.Device {
		if nic, ok := dev.(types.BaseVirtualEthernetCard); ok {
			card := nic.GetVirtualEthernetCard()
			macs = append(macs, card.MacAddress)
			assert.Equal(t, "manual", card.AddressType)
		}
	}
	// 10.0.1.11 = 0x0a00010b, low 22 bits 0x00010b; 10.0.2.11 -> 0x00020b
	assert.ElementsMatch(t, []string{"00:50:56:00:01:0b", "00:50:56:00:02:0b"}, macs)
	assert.Equal(t, "00:50:56:00:01:0b", got["default"].MAC)
	assert.Equal(t, "10.0.1.11", got["default"].IP)

	// The ephemeral disk: 4096 MiB on SCSI unit 1; the system disk on unit 0.
	var eph *types.VirtualDisk
	for _, dev := range vm.Config.Hardware.Device {
		if d, ok := dev.(*types.VirtualDisk); ok && d.UnitNumber != nil && *d.UnitNumber == 1 {
			eph = d
		}
	}
	require.NotNil(t, eph, "ephemeral disk on unit 1")
	assert.EqualValues(t, 4096*1024, eph.CapacityInKB)

	st, err := s.Settings(t, cid)
	require.NoError(t, err)
	assert.Equal(t, "agent-1", st.AgentID)
	assert.Equal(t, string(cid), st.VM.Name)
	assert.Equal(t, "0", st.Disks.System)
	assert.Equal(t, "1", st.Disks.Ephemeral)
	assert.Equal(t, "00:50:56:00:02:0b", st.Networks["second"].MAC)
	assert.Equal(t, "10.0.2.11", st.Networks["second"].IP)
	assert.Equal(t, []string{"ssh-ed25519 AAAA k"}, st.Env.Kpaas.AuthorizedKeys)
	assert.Contains(t, s.Files(t), "kpaas-env/"+string(cid)+".iso")
}

func TestCreateVMAddsTheVMToItsDRSGroup(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	props := cpi.Props{"cpu": 1, "ram": 512, "disk": 1024, "vm_group": "kpaas-workers"}
	var cids []cpi.VMCID
	for i := range 2 {
		cid, _, err := s.Driver.CreateVM(ctx, "a", sc, props, vspheretest.Manual(i), nil, nil)
		require.NoError(t, err)
		cids = append(cids, cid)
	}
	var members []string
	for _, obj := range s.Model.Map().All("ClusterComputeResource") {
		cc := obj.(*simulator.ClusterComputeResource)
		for _, g := range cc.ConfigurationEx.(*types.ClusterConfigInfoEx).Group {
			if vg, ok := g.(*types.ClusterVmGroup); ok && vg.Name == "kpaas-workers" {
				for _, r := range vg.Vm {
					members = append(members, s.Model.Map().Get(r).(*simulator.VirtualMachine).Name)
				}
			}
		}
	}
	assert.ElementsMatch(t, []string{string(cids[0]), string(cids[1])}, members)
}

func TestDiskFilesOnTheDatastore(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err)
	vmFiles := withPrefix(s.Files(t), string(vm)+"/")
	require.NotEmpty(t, vmFiles, "the VM's directory")

	disk, err := s.Driver.CreateDisk(ctx, 64, nil, vm)
	require.NoError(t, err)
	want := []string{"kpaas_disks/" + string(disk) + "-flat.vmdk", "kpaas_disks/" + string(disk) + ".vmdk"}
	assert.Equal(t, want, withPrefix(s.Files(t), "kpaas_disks/"), "create_disk leaves a descriptor and its extent in disk_path")
	f, err := os.Open(filepath.Join(s.DSDir, "kpaas_disks", string(disk)+".vmdk"))
	require.NoError(t, err)
	desc, err := vmdk.ParseDescriptor(f)
	_ = f.Close()
	require.NoError(t, err)
	assert.EqualValues(t, 64<<20, desc.Capacity(), "the VMDK's capacity")

	require.NoError(t, s.Driver.SetDiskMetadata(ctx, disk, cpi.Metadata{"deployment": "cf", "instance_group": "database"}))
	b, err := os.ReadFile(filepath.Join(s.DSDir, "kpaas_disks", string(disk)+".json"))
	require.NoError(t, err)
	var md map[string]string
	require.NoError(t, json.Unmarshal(b, &md))
	assert.Equal(t, map[string]string{"deployment": "cf", "instance_group": "database"}, md)

	hint, err := s.Driver.AttachDisk(ctx, vm, disk)
	require.NoError(t, err)
	assert.Equal(t, "2", hint.Path, "the first persistent disk takes SCSI unit 2 (0 system, 1 ephemeral)")
	var backing *types.VirtualDiskFlatVer2BackingInfo
	for _, dev := range s.VM(t, vm).Config.Hardware.Device {
		if d, ok := dev.(*types.VirtualDisk); ok {
			if b := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo); strings.Contains(b.FileName, string(disk)) {
				backing = b
			}
		}
	}
	require.NotNil(t, backing, "the disk is on the VM")
	assert.Equal(t, string(types.VirtualDiskModeIndependent_persistent), backing.DiskMode)

	require.NoError(t, s.Driver.DeleteVM(ctx, vm))
	files := s.Files(t)
	assert.Empty(t, withPrefix(files, string(vm)+"/"), "delete_vm removes the VM's directory")
	assert.NotContains(t, files, "kpaas-env/"+string(vm)+".iso", "delete_vm removes the env ISO")
	assert.ElementsMatch(t, append(want, "kpaas_disks/"+string(disk)+".json"), withPrefix(files, "kpaas_disks/"), "the persistent disk survives delete_vm")

	require.NoError(t, s.Driver.ResizeDisk(ctx, disk, 128))
	f, err = os.Open(filepath.Join(s.DSDir, "kpaas_disks", string(disk)+".vmdk"))
	require.NoError(t, err)
	desc, err = vmdk.ParseDescriptor(f)
	_ = f.Close()
	require.NoError(t, err)
	assert.EqualValues(t, 128<<20, desc.Capacity(), "resize_disk grows the VMDK")

	snap, err := s.Driver.SnapshotDisk(ctx, disk, nil)
	require.NoError(t, err)
	assert.Contains(t, s.Files(t), "kpaas_disks/"+string(snap)+".vmdk")
	require.NoError(t, s.Driver.DeleteSnapshot(ctx, snap))

	require.NoError(t, s.Driver.DeleteDisk(ctx, disk))
	assert.Empty(t, withPrefix(s.Files(t), "kpaas_disks/"+string(disk)), "delete_disk removes the VMDK, its extent and its metadata")
	assert.Empty(t, withPrefix(s.Files(t), "kpaas_disks/snap-"), "delete_snapshot removes the copy")
}

func TestCIDsSurviveARestartedDriver(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err)
	disk, err := s.Driver.CreateDisk(ctx, 32, nil, "")
	require.NoError(t, err)

	// A new driver (a new `kpaas cpi vsphere` process) knows nothing cached.
	fresh, err := vsphere.New(s.Config, nil)
	require.NoError(t, err)
	ok, err := fresh.HasVM(ctx, vm)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = fresh.HasDisk(ctx, disk)
	require.NoError(t, err)
	assert.True(t, ok)
	_, err = fresh.AttachDisk(ctx, vm, disk)
	require.NoError(t, err)
	disks, err := fresh.GetDisks(ctx, vm)
	require.NoError(t, err)
	assert.Equal(t, []cpi.DiskCID{disk}, disks)
	vm2, _, err := fresh.CreateVM(ctx, "b", sc, vmType, vspheretest.Manual(2), nil, nil)
	require.NoError(t, err, "create_vm from a stemcell another process imported")
	require.NoError(t, fresh.DeleteVM(ctx, vm2))
	require.NoError(t, fresh.DeleteVM(ctx, vm))
}

func TestConfigForms(t *testing.T) {
	boshJSON := `{"cloud":{"plugin":"vsphere","properties":{"vcenters":[{"host":"vc.example","user":"u","password":"p",
	  "datacenters":[{"name":"AP-DC","vm_folder":"AP_VMs","template_folder":"AP_Templates","disk_path":"AP_Disks",
	  "datastore_pattern":"AP-Storage","persistent_datastore_pattern":"AP-Storage","allow_mixed_datastores":true,
	  "clusters":[{"AP":{"resource_pool":"AP_Pool"}}]}],"default_disk_type":"preallocated","enable_human_readable_name":false}],
	  "agent":{"ntp":["0.pool.ntp.org"]}}}}`
	c, err := vsphere.ParseConfig([]byte(boshJSON))
	require.NoError(t, err)
	assert.Equal(t, "vc.example", c.Host)
	assert.Equal(t, []vsphere.Cluster{{Name: "AP", ResourcePool: "AP_Pool"}}, c.Datacenters[0].Clusters)
	assert.Equal(t, "AP_Disks", c.Datacenters[0].DiskPath)
	assert.Equal(t, []any{"0.pool.ntp.org"}, c.Agent["ntp"])

	// A multi-CPI cpi-config's properties, overlaid by kpaas cpi from the
	// request context, win over cpi.json's vCenter.
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(boshJSON), &doc))
	doc["user"], doc["password"] = "ctx-user", "ctx-pass"
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	c, err = vsphere.ParseConfig(b)
	require.NoError(t, err)
	assert.Equal(t, "ctx-user", c.User)
	assert.Equal(t, "ctx-pass", c.Password)
	assert.Equal(t, "vc.example", c.Host)
	assert.Equal(t, "AP-DC", c.Datacenters[0].Name)

	// The vcenter block of K-PaaS's bosh/vsphere/cpi.yml, as a cpi-config gives it.
	flat := `{"address":"10.0.0.5","user":"u","password":"p","datacenters":[{"name":"AP-DC","clusters":["AP"],
	  "datastore_pattern":"AP-Storage"}],"connection_options":{"ca_cert":"PEM"}}`
	c, err = vsphere.ParseConfig([]byte(flat))
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.5", c.Host)
	assert.Equal(t, "BOSH_VMs", c.Datacenters[0].VMFolder, "BOSH's default folders")
	assert.Equal(t, "BOSH_Templates", c.Datacenters[0].TemplateFolder)
	assert.Equal(t, "BOSH_Disks", c.Datacenters[0].DiskPath)
	assert.Equal(t, "AP-Storage", c.Datacenters[0].PersistentDatastorePattern, "persistent pattern defaults to the ephemeral one")
	assert.Equal(t, "PEM", c.ConnectionOptions.CACert)

	_, err = vsphere.ParseConfig([]byte(`{"datacenters":[{"clusters":[],"datastore_pattern":"("}]}`))
	require.Error(t, err)
	for _, want := range []string{"host (or address) is required", "user is required", "datacenters[0].name is required", "must name at least one cluster", `datastore pattern "("`} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestALostSessionIsLoggedInAgain(t *testing.T) {
	s := vspheretest.Start(t)
	_, err := s.Driver.HasVM(ctx, "vm-x")
	require.NoError(t, err)
	require.NoError(t, vsphere.EndSession(ctx, s.Driver))
	_, err = s.Driver.HasVM(ctx, "vm-x")
	require.NoError(t, err, "a call vCenter refuses with NotAuthenticated logs in again and is repeated")
}

func TestAnIdleSessionIsCheckedBeforeUse(t *testing.T) {
	s := vspheretest.Start(t)
	now := time.Now()
	d, err := vsphere.NewWithOptions(s.Config, nil, vsphere.Options{Now: func() time.Time { return now }})
	require.NoError(t, err)
	_, err = d.HasVM(ctx, "vm-x")
	require.NoError(t, err)
	require.NoError(t, vsphere.EndSession(ctx, d))
	now = now.Add(6 * time.Minute)
	// The finder reads the inventory through the property collector, whose
	// per-object faults a round-trip wrapper does not see.
	_, err = d.CreateStemcell(ctx, vspheretest.StemcellImage(t), nil)
	require.NoError(t, err, "after 6 idle minutes the session is checked and renewed")
}

func TestADynamicNetworkUsesDHCPAndARandomMAC(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	nets := cpi.Networks{"default": {Type: "dynamic", Default: []string{"dns", "gateway"}, CloudProperties: cpi.Props{"name": "VM Network"}}}
	vm, got, err := s.Driver.CreateVM(ctx, "a", sc, vmType, nets, nil, nil)
	require.NoError(t, err)
	// vCenter learns a DHCP address only from a running guest's tools, so
	// create_vm cannot return one (the agent reports it).
	assert.Empty(t, got["default"].IP)
	assert.Regexp(t, `^00:50:56:[0-3][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$`, got["default"].MAC)
	st, err := s.Settings(t, vm)
	require.NoError(t, err)
	assert.True(t, st.Networks["default"].UseDHCP)
	assert.Equal(t, got["default"].MAC, st.Networks["default"].MAC)
	require.NoError(t, s.Driver.DeleteVM(ctx, vm))
}

func TestCreateStemcellFromAnOVA(t *testing.T) {
	s := vspheretest.Start(t)
	// An .ova is the same tar, not gzipped.
	tgz, err := os.Open(vspheretest.StemcellImage(t))
	require.NoError(t, err)
	defer tgz.Close()
	gz, err := gzip.NewReader(tgz)
	require.NoError(t, err)
	ova := filepath.Join(t.TempDir(), "stemcell.ova")
	out, err := os.Create(ova)
	require.NoError(t, err)
	_, err = io.Copy(out, gz)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	sc, err := s.Driver.CreateStemcell(ctx, ova, nil)
	require.NoError(t, err)
	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err)
	require.NoError(t, s.Driver.DeleteVM(ctx, vm))
	require.NoError(t, s.Driver.DeleteStemcell(ctx, sc))
}

func TestSetVMMetadataSetsCustomAttributes(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err)
	require.NoError(t, s.Driver.SetVMMetadata(ctx, vm, cpi.Metadata{"deployment": "cf", "name": "router/0"}))
	require.NoError(t, s.Driver.SetVMMetadata(ctx, vm, cpi.Metadata{"name": "router/1"}), "a second call reuses the attribute definitions")

	fields := map[int32]string{}
	for _, obj := range s.Model.Map().AllReference("CustomFieldsManager") {
		m := obj.(*simulator.CustomFieldsManager)
		for _, f := range m.Field {
			fields[f.Key] = f.Name
		}
	}
	got := map[string]string{}
	for _, v := range s.VM(t, vm).CustomValue {
		cv := v.(*types.CustomFieldStringValue)
		got[fields[cv.Key]] = cv.Value
	}
	assert.Equal(t, map[string]string{"deployment": "cf", "name": "router/1"}, got)
	require.NoError(t, s.Driver.DeleteVM(ctx, vm))
}

func TestDeleteDiskRefusesAnAttachedDisk(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err)
	disk, err := s.Driver.CreateDisk(ctx, 32, nil, vm)
	require.NoError(t, err)
	_, err = s.Driver.AttachDisk(ctx, vm, disk)
	require.NoError(t, err)

	err = s.Driver.DeleteDisk(ctx, disk)
	require.Error(t, err, "DISK-8: deleting an attached disk is refused")
	assert.Contains(t, err.Error(), "attached to VM "+string(vm))
	assert.Len(t, withPrefix(s.Files(t), "kpaas_disks/"+string(disk)), 2, "the VMDK is still there")

	require.NoError(t, s.Driver.DetachDisk(ctx, vm, disk))
	require.NoError(t, s.Driver.DeleteDisk(ctx, disk))
	require.NoError(t, s.Driver.DeleteVM(ctx, vm))
}
