package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/vsphere"
	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
)

// vsphereCloudConfig has the shapes of K-PaaS's vSphere cloud-config
// (../shared/compat/corpus/K-PaaS_ap-deployment/cloud-config/
// vsphere-cloud-config.yml): AZs naming a datacenter's cluster (z2 with a
// resource pool), vm_types with cpu/ram/disk, networks by port group name.
const vsphereCloudConfig = `
azs:
- name: z1
  cloud_properties:
    datacenters:
    - name: DC0
      clusters: [DC0_C0: {}]
- name: z2
  cloud_properties:
    datacenters:
    - name: DC0
      clusters: [DC0_C0: {resource_pool: DC0_C0_RP1}]
vm_types:
- name: default
  cloud_properties: {cpu: 1, ram: 1024, disk: 4096}
- name: large
  cloud_properties: {cpu: 2, ram: 2048, disk: 8192}
disk_types:
- name: default
  disk_size: 1024
networks:
- name: default
  type: manual
  subnets:
  - range: 10.0.1.0/24
    gateway: 10.0.1.1
    dns: [10.0.1.2]
    reserved: [10.0.1.2-10.0.1.9]
    azs: [z1, z2]
    cloud_properties: {name: VM Network}
- name: second
  type: manual
  subnets:
  - range: 10.0.2.0/24
    gateway: 10.0.2.1
    reserved: [10.0.2.2-10.0.2.9]
    azs: [z1, z2]
    cloud_properties: {name: DC0_DVPG0}
compilation:
  workers: 2
  reuse_compilation_vms: true
  az: z1
  vm_type: default
  network: default
`

// nics returns a VM's NICs as "<port group>" for standard port groups and
// "dvpg:<portgroup name>" for distributed ones.
func nics(s *vspheretest.Sim, vm *simulator.VirtualMachine) []string {
	var out []string
	for _, dev := range vm.Config.Hardware.Device {
		nic, ok := dev.(types.BaseVirtualEthernetCard)
		if !ok {
			continue
		}
		switch b := nic.GetVirtualEthernetCard().Backing.(type) {
		case *types.VirtualEthernetCardNetworkBackingInfo:
			out = append(out, b.DeviceName)
		case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
			name := b.Port.PortgroupKey
			for _, o := range s.Model.Map().All("DistributedVirtualPortgroup") {
				if pg := o.(*simulator.DistributedVirtualPortgroup); pg.Key == b.Port.PortgroupKey {
					name = pg.Name
				}
			}
			out = append(out, "dvpg:"+name)
		default:
			out = append(out, "?")
		}
	}
	return out
}

// attachedDisks lists the persistent-disk CIDs whose VMDK a VM has attached.
func attachedDisks(vm *simulator.VirtualMachine) []string {
	var out []string
	for _, dev := range vm.Config.Hardware.Device {
		d, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		if b, ok := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok && strings.Contains(b.FileName, "kpaas_disks/") {
			name := b.FileName[strings.Index(b.FileName, "kpaas_disks/")+len("kpaas_disks/"):]
			out = append(out, strings.TrimSuffix(name, ".vmdk"))
		}
	}
	return out
}

func TestDeployThroughVSphereSimulator(t *testing.T) {
	ctx := context.Background()
	s := vspheretest.Start(t, func(m *simulator.Model, c *vsphere.Config) { m.Pool = 1 }) // DC0_C0_RP1
	sc, err := s.Driver.CreateStemcell(ctx, vspheretest.StemcellImage(t), cpi.Props{"name": "bosh-vsphere-esxi-ubuntu-jammy-go_agent", "version": "1.0"})
	require.NoError(t, err)
	templates := s.VMs()
	w := newIaaSWorld(t, s.Driver, sc, vsphereCloudConfig)

	w.apply(iaasManifest, false)
	ds := w.load()
	vms := instanceVMs(ds)
	require.Equal(t, []string{"data/0", "web/0", "web/1"}, sortedKeys(vms))
	var cids []string
	for _, v := range vms {
		cids = append(cids, v.CID)
	}
	assert.ElementsMatch(t, append(cids, templates...), s.VMs(), "the simulator holds the stemcell and exactly the VMs the state records (compile VMs are gone)")

	// web: 1 CPU, 1 NIC on "VM Network"; web/1 sits in z2's resource pool.
	for _, name := range []string{"web/0", "web/1"} {
		vm := s.VM(t, cpi.VMCID(vms[name].CID))
		assert.EqualValues(t, 1, vm.Config.Hardware.NumCPU, name)
		assert.EqualValues(t, 1024, vm.Config.Hardware.MemoryMB, name)
		assert.Equal(t, []string{"VM Network"}, nics(s, vm), name)
		require.Len(t, vms[name].IPs, 1, name)
		assert.True(t, strings.HasPrefix(vms[name].IPs[0], "10.0.1."), "%s IP %v", name, vms[name].IPs)
	}
	pool := s.Model.Map().Get(*s.VM(t, cpi.VMCID(vms["web/1"].CID)).ResourcePool).(*simulator.ResourcePool)
	assert.Equal(t, "DC0_C0_RP1", pool.Name, "web/1 is in z2, whose cluster names a resource pool")

	// data: 2 CPUs, NICs on both port groups, its persistent disk attached.
	data := s.VM(t, cpi.VMCID(vms["data/0"].CID))
	assert.EqualValues(t, 2, data.Config.Hardware.NumCPU)
	assert.EqualValues(t, 2048, data.Config.Hardware.MemoryMB)
	assert.ElementsMatch(t, []string{"VM Network", "dvpg:DC0_DVPG0"}, nics(s, data))
	assert.Len(t, vms["data/0"].IPs, 2)
	disks := activeDisks(ds)
	require.Len(t, disks, 1, "only data has a persistent disk")
	diskCID := disks[vms["data/0"].Instance]
	require.NotEmpty(t, diskCID, "the disk belongs to data/0")
	assert.Equal(t, []string{diskCID}, attachedDisks(data))
	assert.Contains(t, s.Files(t), "kpaas_disks/"+diskCID+".vmdk")
	assert.Contains(t, w.agents.calls("add_persistent_disk "+diskCID), "data/0", "the agent was told about the disk")
	for _, name := range []string{"web/0", "web/1"} {
		assert.Empty(t, attachedDisks(s.VM(t, cpi.VMCID(vms[name].CID))), name)
	}

	// Every create_vm, compile VMs included, had its AZ's datacenters.
	require.GreaterOrEqual(t, len(w.cloud.vmProps), 4, "3 instances and the compile VMs")
	for _, p := range w.cloud.vmProps {
		assert.Contains(t, p, "datacenters", "create_vm props %v", p)
	}

	// A redeploy with no change touches nothing in the cloud.
	assert.Contains(t, w.cloud.mutations(), "attach_disk", "the first deploy was recorded")
	p := w.apply(iaasManifest, false)
	assert.Equal(t, 0, p.Plan.Changes())
	assert.Empty(t, w.cloud.mutations(), "a no-op deploy makes no CPI call that changes the cloud")

	// Recreate: new VMs, the same disk, attached to data's new VM.
	w.apply(iaasManifest, true)
	after := instanceVMs(w.load())
	for name, v := range vms {
		assert.NotEqual(t, v.CID, after[name].CID, "%s got a new VM", name)
	}
	assert.Equal(t, disks, activeDisks(w.load()), "recreate keeps the persistent disk")
	assert.Equal(t, []string{diskCID}, attachedDisks(s.VM(t, cpi.VMCID(after["data/0"].CID))))
	var newCIDs []string
	for _, v := range after {
		newCIDs = append(newCIDs, v.CID)
	}
	assert.ElementsMatch(t, append(newCIDs, templates...), s.VMs(), "the old VMs are gone from the simulator")

	// delete-deployment: no VM left, the disk orphaned and still on the datastore.
	require.NoError(t, w.engine().DeleteDeployment(ctx, w.load(), false))
	assert.Equal(t, templates, s.VMs(), "only the stemcell template is left")
	orphans, err := w.st.OrphanedDisks(ctx)
	require.NoError(t, err)
	require.Len(t, orphans, 1)
	assert.Equal(t, diskCID, orphans[0].CID)
	assert.Contains(t, s.Files(t), "kpaas_disks/"+diskCID+".vmdk", "an orphaned disk keeps its VMDK")
	ok, err := s.Driver.HasDisk(ctx, cpi.DiskCID(diskCID))
	require.NoError(t, err)
	assert.True(t, ok)
}
