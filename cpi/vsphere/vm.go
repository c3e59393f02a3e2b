package vsphere

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kpaas/kpaas/cpi"
)

// CID prefixes.
const (
	vmPrefix       = "vm-"
	stemcellPrefix = "sc-"
	diskPrefix     = "disk-"
	snapshotPrefix = "snap-"
	// EnvDir is the datastore directory that holds the env ISOs, next to
	// the VMs' directories.
	EnvDir = "kpaas-env"
)

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// placement is where a new VM goes.
type placement struct {
	cluster *clusterInfo
	ds      *dsInfo
}

// place picks the cluster and ephemeral datastore: the AZ's/vm_type's
// datacenters[0].clusters (else the global ones), the first whose datastores
// matching datastore_pattern (or the vm_type's datastores) can hold need bytes.
func (d *Driver) place(ctx context.Context, c *vim25.Client, p VMProps, need int64) (placement, error) {
	dc := d.cfg.datacenter()
	clusters := dc.Clusters
	if len(p.Datacenters) > 0 {
		if p.Datacenters[0].Name != "" && p.Datacenters[0].Name != dc.Name {
			return placement{}, cpi.Errorf(cpi.TypeCloudError, false, "vsphere: cloud_properties datacenter %q is not the configured datacenter %q", p.Datacenters[0].Name, dc.Name)
		}
		if len(p.Datacenters[0].Clusters) > 0 {
			clusters = p.Datacenters[0].Clusters
		}
	}
	var errs []error
	for _, cl := range clusters {
		ci, err := d.inv.cluster(ctx, c, cl)
		if err != nil {
			return placement{}, err
		}
		ds, err := d.inv.pickDatastore(ctx, c, ci.datastores, dc.DatastorePattern, p.Datastores, need)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", cl.Name, err))
			continue
		}
		return placement{cluster: ci, ds: ds}, nil
	}
	return placement{}, errors.Join(errs...)
}

// CreateVM clones the stemcell's template into one VM in a single task
// (linked clone, NICs, ephemeral disk, guestinfo settings, env ISO, power on).
func (d *Driver) CreateVM(ctx context.Context, agentID cpi.AgentID, stemcell cpi.StemcellCID, props cpi.Props, networks cpi.Networks, diskCIDs []cpi.DiskCID, env cpi.Env) (cpi.VMCID, cpi.Networks, error) {
	c, err := d.vc(ctx)
	if err != nil {
		return "", nil, vmFailed(err)
	}
	p, err := decodeProps[VMProps](props, "vm_type")
	if err != nil {
		return "", nil, cpi.VMCreationFailed(false, err)
	}
	tmpl, err := d.inv.template(ctx, c, stemcell)
	if err != nil {
		if errors.Is(err, cpi.ErrStemcellNotFound) {
			return "", nil, err
		}
		return "", nil, vmFailed(err)
	}
	need := (int64(p.Disk) + int64(p.RAM)) << 20
	pl, err := d.place(ctx, c, p, need)
	if err != nil {
		return "", nil, vmFailed(err)
	}
	folder, err := d.inv.folder(ctx, c, d.cfg.datacenter().VMFolder)
	if err != nil {
		return "", nil, vmFailed(err)
	}

	uuid := newUUID()
	cid := cpi.VMCID(vmPrefix + uuid)
	nets := cpi.Networks{}
	devices := copyDevices(tmpl.devices)
	var changes []types.BaseVirtualDeviceConfigSpec
	for _, nic := range devices.SelectByType((*types.VirtualEthernetCard)(nil)) {
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: nic})
	}
	key := int32(-100)
	for _, name := range networks.NetworkNames() {
		n := networks[name]
		np, err := decodeProps[NetworkProps](n.CloudProperties, "network "+name)
		if err != nil {
			return "", nil, cpi.VMCreationFailed(false, err)
		}
		if np.Name == "" {
			return "", nil, cpi.VMCreationFailed(false, fmt.Errorf("vsphere: network %s: cloud_properties.name (the port group) is required", name))
		}
		backing, err := d.inv.network(ctx, c, np.Name)
		if err != nil {
			return "", nil, vmFailed(err)
		}
		dev, err := devices.CreateEthernetCard("vmxnet3", backing)
		if err != nil {
			return "", nil, vmFailed(err)
		}
		n.MAC = macFor(n.IP)
		card := dev.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
		card.AddressType = string(types.VirtualEthernetCardMacTypeManual)
		card.MacAddress = n.MAC
		card.Key = key
		key--
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: dev})
		nets[name] = n
	}

	s, err := cpi.AgentSettings(agentID, string(cid), nets, env)
	if err != nil {
		return "", nil, cpi.VMCreationFailed(false, err)
	}
	s.VM.ID = string(cid)
	system := devices.SelectByType((*types.VirtualDisk)(nil))
	if len(system) > 0 {
		s.Disks.System = strconv.Itoa(int(deref(system[0].GetVirtualDevice().UnitNumber)))
	}
	if p.Disk > 0 {
		ctrl, err := devices.FindSCSIController("")
		if err != nil {
			return "", nil, vmFailed(fmt.Errorf("vsphere: stemcell %s has no SCSI controller for the ephemeral disk: %w", stemcell, err))
		}
		eph := devices.CreateDisk(ctrl, pl.ds.ref, dsPath(pl.ds.name, string(cid), "ephemeral_disk.vmdk"))
		devices.AssignController(eph, ctrl)
		eph.CapacityInKB = int64(p.Disk) * 1024
		eph.Key = key
		key--
		b := eph.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		b.DiskMode = string(types.VirtualDiskModeIndependent_nonpersistent)
		if p.DiskMode == "persistent" {
			b.DiskMode = string(types.VirtualDiskModePersistent)
		}
		b.ThinProvisioned = types.NewBool(true)
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, FileOperation: types.VirtualDeviceConfigSpecFileOperationCreate, Device: eph})
		s.Disks.Ephemeral = strconv.Itoa(int(deref(eph.UnitNumber)))
	}
	doc, err := d.encodeSettings(s)
	if err != nil {
		return "", nil, cpi.VMCreationFailed(false, err)
	}
	iso, err := envISO(doc)
	if err != nil {
		return "", nil, cpi.VMCreationFailed(false, err)
	}
	isoPath := dsPath(pl.ds.name, EnvDir, string(cid)+".iso")
	cd, err := devices.FindCdrom("")
	op := types.VirtualDeviceConfigSpecOperationEdit
	if err != nil {
		ide, ierr := devices.FindIDEController("")
		if ierr != nil {
			return "", nil, vmFailed(fmt.Errorf("vsphere: stemcell %s has neither a CD-ROM nor an IDE controller for the env ISO: %w", stemcell, ierr))
		}
		cd, err = devices.CreateCdrom(ide)
		if err != nil {
			return "", nil, vmFailed(err)
		}
		cd.Key = key
		op = types.VirtualDeviceConfigSpecOperationAdd
	}
	cd = devices.InsertIso(cd, isoPath)
	cd.Connectable = &types.VirtualDeviceConnectInfo{StartConnected: true, Connected: true, AllowGuestControl: false}
	changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: op, Device: cd})

	extra := []types.BaseOptionValue{}
	for k, v := range guestinfo(doc) {
		extra = append(extra, &types.OptionValue{Key: k, Value: v})
	}
	for _, kv := range p.vmxOptions() {
		extra = append(extra, &types.OptionValue{Key: kv[0], Value: kv[1]})
	}
	config := &types.VirtualMachineConfigSpec{
		InstanceUuid: uuid,
		ExtraConfig:  extra,
		DeviceChange: changes,
		Annotation:   "kpaas agent " + string(agentID),
	}
	if p.CPU > 0 {
		config.NumCPUs = int32(p.CPU)
	}
	if p.RAM > 0 {
		config.MemoryMB = int64(p.RAM)
	}
	if p.NestedHardwareVirtualization {
		config.NestedHVEnabled = types.NewBool(true)
	}
	config.CpuHotAddEnabled = p.CPUHotAddEnabled
	config.MemoryHotAddEnabled = p.MemoryHotAddEnabled
	if p.MemoryReservationLocked {
		config.MemoryReservationLockedToMax = types.NewBool(true)
	}
	spec := types.VirtualMachineCloneSpec{
		Location: types.VirtualMachineRelocateSpec{Pool: &pl.cluster.pool, Datastore: &pl.ds.ref},
		Config:   config,
		PowerOn:  true,
	}
	if tmpl.snapshot != nil {
		spec.Snapshot = tmpl.snapshot
		spec.Location.DiskMoveType = string(types.VirtualMachineRelocateDiskMoveOptionsCreateNewChildDiskBacking)
	}

	if err := d.upload(ctx, c, pl.ds.name, EnvDir+"/"+string(cid)+".iso", iso); err != nil {
		return "", nil, vmFailed(fmt.Errorf("vsphere: uploading the env ISO for %s: %w", cid, err))
	}
	d.inv.reserve(pl.ds, need)
	ref, err := d.clone(ctx, c, tmpl.ref, folder, string(cid), spec)
	if err == nil && p.VMGroup != "" {
		err = d.addToVMGroup(ctx, c, pl.cluster, ref, p.VMGroup)
	}
	if err != nil {
		d.inv.forgetStores()
		var slow *UnfinishedTaskError
		errors.As(err, &slow)
		if cerr := d.cleanupVM(cid, uuid, isoPath, slow); cerr != nil {
			err = fmt.Errorf("%w; cleaning up also failed, remove VM %s and %s by hand: %v", err, cid, isoPath, cerr)
		}
		return "", nil, vmFailed(fmt.Errorf("vsphere: creating VM %s from stemcell %s in cluster %s on datastore %s: %w", cid, stemcell, pl.cluster.name, pl.ds.name, err))
	}
	d.inv.rememberVM(cid, ref)
	return cid, nets, nil
}

// copyDevices copies a (cached) device list so a create_vm can assign
// controllers and change backings without touching the cache: every device
// is copied, and a controller's list of attached device keys too.
func copyDevices(l object.VirtualDeviceList) object.VirtualDeviceList {
	out := make(object.VirtualDeviceList, 0, len(l))
	for _, dev := range l {
		v := reflect.New(reflect.TypeOf(dev).Elem())
		v.Elem().Set(reflect.ValueOf(dev).Elem())
		cp := v.Interface().(types.BaseVirtualDevice)
		if c, ok := cp.(types.BaseVirtualController); ok {
			vc := c.GetVirtualController()
			vc.Device = append([]int32(nil), vc.Device...)
		}
		out = append(out, cp)
	}
	return out
}

func deref(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// vmFailed turns a create_vm failure into VMCreationFailed (ok_to_retry
// when the cause is transient); a NoDiskSpace or NetworkNotFound keeps its
// message and is not retried.
func vmFailed(err error) error {
	var ce *cpi.Error
	if errors.As(err, &ce) && ce.Type == cpi.TypeVMCreationFail {
		return err
	}
	return cpi.VMCreationFailed(transient(err), err)
}

func (d *Driver) clone(ctx context.Context, c *vim25.Client, tmpl types.ManagedObjectReference, folder *object.Folder, name string, spec types.VirtualMachineCloneSpec) (types.ManagedObjectReference, error) {
	t, err := object.NewVirtualMachine(c, tmpl).Clone(ctx, folder, name, spec)
	if err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("starting the clone: %w", err)
	}
	res, err := d.waitKeep(ctx, t, "cloning the stemcell")
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	ref, ok := res.(types.ManagedObjectReference)
	if !ok {
		return types.ManagedObjectReference{}, fmt.Errorf("clone task returned %T, not a VM: %w", res, errInternal)
	}
	return ref, nil
}

// cleanupVM removes what a failed create_vm may have left: the VM (found by
// its instance UUID) and the env ISO. A clone that outlived task_timeout
// (slow) is given cleanup_timeout to finish, so the VM it makes is removed
// too, and is cancelled if it does not. It runs on its own context so a
// cancelled call still cleans up.
func (d *Driver) cleanupVM(cid cpi.VMCID, uuid, isoPath string, slow *UnfinishedTaskError) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(d.cfg.CleanupTimeout))
	defer cancel()
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	var errs []error
	if slow != nil {
		if _, err := slow.Task.WaitForResult(ctx, nil); err != nil && ctx.Err() != nil {
			d.cancelTask(slow.Task, slow.What)
			errs = append(errs, fmt.Errorf("the clone task %s was still running after cleanup_timeout and was cancelled; check that VM %s does not appear", slow.Task.Reference().Value, cid))
		}
	}
	ref, err := d.inv.findByUUID(ctx, c, uuid)
	if err != nil {
		errs = append(errs, err)
	} else if ref != nil {
		if err := d.destroy(ctx, c, cid, *ref); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.deleteFile(ctx, c, isoPath); err != nil {
		errs = append(errs, err)
	}
	d.inv.forgetVM(cid)
	return errors.Join(errs...)
}

// addToVMGroup adds the VM to a DRS VM group of its cluster, creating the
// group when missing.
func (d *Driver) addToVMGroup(ctx context.Context, c *vim25.Client, ci *clusterInfo, vm types.ManagedObjectReference, group string) error {
	cc := object.NewClusterComputeResource(c, ci.ref)
	var m mo.ClusterComputeResource
	if err := cc.Properties(ctx, ci.ref, []string{"configurationEx"}, &m); err != nil {
		return fmt.Errorf("reading the DRS groups of cluster %s: %w", ci.name, err)
	}
	op := types.ArrayUpdateOperationAdd
	members := []types.ManagedObjectReference{vm}
	if cfg, ok := m.ConfigurationEx.(*types.ClusterConfigInfoEx); ok {
		for _, g := range cfg.Group {
			if vg, ok := g.(*types.ClusterVmGroup); ok && vg.Name == group {
				op = types.ArrayUpdateOperationEdit
				members = append(vg.Vm, vm)
			}
		}
	}
	spec := &types.ClusterConfigSpecEx{GroupSpec: []types.ClusterGroupSpec{{
		ArrayUpdateSpec: types.ArrayUpdateSpec{Operation: op},
		Info:            &types.ClusterVmGroup{ClusterGroupInfo: types.ClusterGroupInfo{Name: group}, Vm: members},
	}}}
	t, err := cc.Reconfigure(ctx, spec, true)
	if err != nil {
		return fmt.Errorf("adding the VM to DRS group %s of cluster %s: %w", group, ci.name, err)
	}
	_, err = d.wait(ctx, t, "adding the VM to DRS group "+group)
	return err
}

// vmInfo is what delete_vm, get_disks, attach_disk and detach_disk read.
type vmInfo struct {
	ref     types.ManagedObjectReference
	power   types.VirtualMachinePowerState
	devices object.VirtualDeviceList
	extra   map[string]string
}

func (d *Driver) vmInfo(ctx context.Context, c *vim25.Client, cid cpi.VMCID) (*vmInfo, error) {
	ref, err := d.inv.vm(ctx, c, cid)
	if err != nil {
		return nil, err
	}
	if ref == nil {
		return nil, cpi.VMNotFound(cid)
	}
	var m mo.VirtualMachine
	err = property.DefaultCollector(c).RetrieveOne(ctx, *ref, []string{"runtime.powerState", "config.hardware.device", "config.extraConfig"}, &m)
	if err != nil {
		if notFound(err) {
			d.inv.forgetVM(cid)
			return d.vmInfoUncached(ctx, c, cid)
		}
		return nil, classify(fmt.Errorf("vsphere: reading VM %s: %w", cid, err))
	}
	vi := &vmInfo{ref: *ref, power: m.Runtime.PowerState, extra: map[string]string{}}
	if m.Config != nil {
		vi.devices = object.VirtualDeviceList(m.Config.Hardware.Device)
		for _, o := range m.Config.ExtraConfig {
			if ov := o.GetOptionValue(); ov != nil {
				vi.extra[ov.Key] = fmt.Sprint(ov.Value)
			}
		}
	}
	return vi, nil
}

// vmInfoUncached retries once after a stale cached reference.
func (d *Driver) vmInfoUncached(ctx context.Context, c *vim25.Client, cid cpi.VMCID) (*vmInfo, error) {
	ref, err := d.inv.vm(ctx, c, cid)
	if err != nil {
		return nil, err
	}
	if ref == nil {
		return nil, cpi.VMNotFound(cid)
	}
	return d.vmInfo(ctx, c, cid)
}

// DeleteVM powers the VM off, detaches its persistent disks (so they
// survive), destroys it and removes its env ISO. A missing VM is deleted.
func (d *Driver) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	vi, err := d.vmInfo(ctx, c, cid)
	if errors.Is(err, cpi.ErrVMNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	iso := ""
	if cd, err := vi.devices.FindCdrom(""); err == nil {
		if b, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo); ok && strings.Contains(b.FileName, EnvDir+"/") {
			iso = b.FileName
		}
	}
	vm := object.NewVirtualMachine(c, vi.ref)
	if vi.power == types.VirtualMachinePowerStatePoweredOn {
		t, err := vm.PowerOff(ctx)
		if err == nil {
			_, err = d.wait(ctx, t, "powering off "+string(cid))
		}
		if err != nil && !fault.IsAlreadyPoweredOffError(err) {
			return classify(fmt.Errorf("vsphere: deleting VM %s: %w", cid, err))
		}
	}
	if persistent := d.persistentDisks(vi.devices); len(persistent) > 0 {
		var changes []types.BaseVirtualDeviceConfigSpec
		for _, dev := range persistent {
			changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: dev.disk})
		}
		t, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: changes})
		if err == nil {
			_, err = d.wait(ctx, t, "detaching persistent disks of "+string(cid))
		}
		if err != nil {
			return classify(fmt.Errorf("vsphere: deleting VM %s: detaching its persistent disks first: %w", cid, err))
		}
	}
	if err := d.destroyPoweredOff(ctx, c, cid, vi.ref); err != nil {
		return err
	}
	if iso != "" {
		if err := d.deleteFile(ctx, c, iso); err != nil {
			return classify(fmt.Errorf("vsphere: deleting the env ISO of VM %s: %w", cid, err))
		}
	}
	return nil
}

// destroy powers a VM off (if on) and destroys it.
func (d *Driver) destroy(ctx context.Context, c *vim25.Client, cid cpi.VMCID, ref types.ManagedObjectReference) error {
	vm := object.NewVirtualMachine(c, ref)
	state, err := vm.PowerState(ctx)
	if err != nil {
		if notFound(err) {
			return nil
		}
		return classify(fmt.Errorf("vsphere: reading the power state of %s: %w", cid, err))
	}
	if state == types.VirtualMachinePowerStatePoweredOn {
		t, err := vm.PowerOff(ctx)
		if err == nil {
			_, err = d.wait(ctx, t, "powering off "+string(cid))
		}
		if err != nil && !fault.IsAlreadyPoweredOffError(err) {
			return classify(fmt.Errorf("vsphere: powering off %s: %w", cid, err))
		}
	}
	return d.destroyPoweredOff(ctx, c, cid, ref)
}

func (d *Driver) destroyPoweredOff(ctx context.Context, c *vim25.Client, cid cpi.VMCID, ref types.ManagedObjectReference) error {
	t, err := object.NewVirtualMachine(c, ref).Destroy(ctx)
	if err == nil {
		_, err = d.wait(ctx, t, "destroying "+string(cid))
	}
	d.inv.forgetVM(cid)
	if err != nil && !notFound(err) {
		return classify(fmt.Errorf("vsphere: destroying VM %s: %w", cid, err))
	}
	return nil
}

// HasVM reports whether the VM exists (asking vCenter, not the cache).
func (d *Driver) HasVM(ctx context.Context, cid cpi.VMCID) (bool, error) {
	c, err := d.vc(ctx)
	if err != nil {
		return false, err
	}
	uuid, ok := strings.CutPrefix(string(cid), vmPrefix)
	if !ok {
		return false, nil
	}
	ref, err := d.inv.findByUUID(ctx, c, uuid)
	if err != nil {
		return false, err
	}
	if ref == nil {
		d.inv.forgetVM(cid)
		return false, nil
	}
	d.inv.rememberVM(cid, *ref)
	return true, nil
}

// RebootVM resets the VM (a hard reset: the guest may have no VMware
// tools), or powers it on when it is off.
func (d *Driver) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	vi, err := d.vmInfo(ctx, c, cid)
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(c, vi.ref)
	var t *object.Task
	if vi.power == types.VirtualMachinePowerStatePoweredOn {
		t, err = vm.Reset(ctx)
	} else {
		t, err = vm.PowerOn(ctx)
	}
	if err == nil {
		_, err = d.wait(ctx, t, "rebooting "+string(cid))
	}
	if err != nil {
		return classify(fmt.Errorf("vsphere: rebooting VM %s: %w", cid, err))
	}
	return nil
}

// SetVMMetadata stores the tags as vCenter custom attributes.
func (d *Driver) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	ref, err := d.inv.vm(ctx, c, cid)
	if err != nil {
		return err
	}
	if ref == nil {
		return cpi.VMNotFound(cid)
	}
	m, err := object.GetCustomFieldsManager(c)
	if err != nil {
		return classify(fmt.Errorf("vsphere: custom attributes are not available on this vCenter: %w", err))
	}
	for _, k := range sortedKeys(md) {
		key, err := d.fieldKey(ctx, m, k)
		if err != nil {
			return err
		}
		if err := m.Set(ctx, *ref, key, md[k]); err != nil {
			if notFound(err) {
				d.inv.forgetVM(cid)
				return cpi.VMNotFound(cid)
			}
			return classify(fmt.Errorf("vsphere: setting metadata %s on VM %s: %w", k, cid, err))
		}
	}
	return nil
}

func (d *Driver) fieldKey(ctx context.Context, m *object.CustomFieldsManager, name string) (int32, error) {
	d.inv.mu.Lock()
	if d.inv.fields == nil {
		d.inv.fields = map[string]int32{}
	}
	if k, ok := d.inv.fields[name]; ok {
		d.inv.mu.Unlock()
		return k, nil
	}
	d.inv.mu.Unlock()
	key, err := m.FindKey(ctx, name)
	if err != nil {
		def, aerr := m.Add(ctx, name, "VirtualMachine", nil, nil)
		if aerr != nil {
			if key, err = m.FindKey(ctx, name); err != nil { // added meanwhile
				return 0, classify(fmt.Errorf("vsphere: adding custom attribute %s: %w", name, aerr))
			}
		} else {
			key = def.Key
		}
	}
	d.inv.mu.Lock()
	d.inv.fields[name] = key
	d.inv.mu.Unlock()
	return key, nil
}

// upload writes a file to a datastore over HTTP.
func (d *Driver) upload(ctx context.Context, c *vim25.Client, ds, path string, data []byte) error {
	u, err := d.dsURL(ctx, c, ds, path)
	if err != nil {
		return err
	}
	p := soap.DefaultUpload
	p.ContentLength = int64(len(data))
	return c.Upload(ctx, bytes.NewReader(data), u, &p)
}

// deleteFile deletes a datastore file; a missing file is not an error.
func (d *Driver) deleteFile(ctx context.Context, c *vim25.Client, path string) error {
	dc, _, err := d.inv.datacenter(ctx, c)
	if err != nil {
		return err
	}
	t, err := object.NewFileManager(c).DeleteDatastoreFile(ctx, path, dc)
	if err == nil {
		_, err = d.wait(ctx, t, "deleting "+path)
	}
	if err != nil && !fileNotFound(err) {
		return err
	}
	return nil
}
