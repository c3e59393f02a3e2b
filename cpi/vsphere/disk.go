package vsphere

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vmdk"

	"github.com/kpaas/kpaas/cpi"
)

// diskFile is the VMDK of a persistent disk or snapshot, relative to the
// datastore root: <disk_path>/<cid>.vmdk.
func (d *Driver) diskFile(cid string) string {
	return path.Join(d.cfg.datacenter().DiskPath, cid+".vmdk")
}

// attachedDisk is a persistent disk found on a VM.
type attachedDisk struct {
	cid  cpi.DiskCID
	disk *types.VirtualDisk
}

// persistentDisks lists the VM's disks that are kpaas persistent disks
// (their VMDK is <disk_path>/disk-<uuid>.vmdk), sorted by CID.
func (d *Driver) persistentDisks(devices object.VirtualDeviceList) []attachedDisk {
	var out []attachedDisk
	dir := strings.Trim(d.cfg.datacenter().DiskPath, "/") + "/"
	for _, dev := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		disk := dev.(*types.VirtualDisk)
		b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
		if !ok {
			continue
		}
		var p object.DatastorePath
		if !p.FromString(b.GetVirtualDeviceFileBackingInfo().FileName) {
			continue
		}
		rel := strings.TrimPrefix(p.Path, "/")
		if !strings.HasPrefix(rel, dir) {
			continue
		}
		base := path.Base(rel)
		if !strings.HasPrefix(base, diskPrefix) || !strings.HasSuffix(base, ".vmdk") {
			continue
		}
		out = append(out, attachedDisk{cid: cpi.DiskCID(strings.TrimSuffix(base, ".vmdk")), disk: disk})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cid < out[j].cid })
	return out
}

// persistentStores are the datastores persistent disks may live on: those of
// the configured clusters that match persistent_datastore_pattern.
func (d *Driver) persistentStores(ctx context.Context, c *vim25.Client, names []string) ([]*dsInfo, error) {
	var refs []types.ManagedObjectReference
	for _, cl := range d.cfg.datacenter().Clusters {
		ci, err := d.inv.cluster(ctx, c, cl)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ci.datastores...)
	}
	refs = uniqRefs(refs)
	stores, err := d.inv.datastores(ctx, c, refs)
	if err != nil {
		return nil, err
	}
	match, err := datastoreMatcher(d.cfg.datacenter().PersistentDatastorePattern, names)
	if err != nil {
		return nil, err
	}
	var out []*dsInfo
	for _, ds := range stores {
		if match(ds.name) {
			out = append(out, ds)
		}
	}
	return out, nil
}

// dsURL is the HTTP URL of a datastore file.
func (d *Driver) dsURL(ctx context.Context, c *vim25.Client, ds, file string) (*url.URL, error) {
	dc, _, err := d.inv.datacenter(ctx, c)
	if err != nil {
		return nil, err
	}
	dcPath := strings.TrimPrefix(dc.InventoryPath, "/")
	if dcPath == "" {
		dcPath = d.cfg.datacenter().Name
	}
	return object.NewDatastoreURL(*c.URL(), dcPath, ds, file), nil
}

// exists asks the datastore's HTTP interface whether a file is there (one
// HEAD request).
func (d *Driver) exists(ctx context.Context, c *vim25.Client, ds, file string) (bool, error) {
	u, err := d.dsURL(ctx, c, ds, file)
	if err != nil {
		return false, err
	}
	p := soap.DefaultDownload
	p.Method = http.MethodHead
	res, err := c.DownloadRequest(ctx, u, &p)
	if err != nil {
		return false, classify(fmt.Errorf("vsphere: checking %s on datastore %s: %w", file, ds, err))
	}
	_ = res.Body.Close()
	return res.StatusCode == http.StatusOK, nil
}

// findFile returns the datastore holding file (a disk or snapshot VMDK), or "".
func (d *Driver) findFile(ctx context.Context, c *vim25.Client, cid string) (string, error) {
	d.inv.mu.Lock()
	ds, ok := d.inv.disks[cpi.DiskCID(cid)]
	d.inv.mu.Unlock()
	if ok {
		found, err := d.exists(ctx, c, ds, d.diskFile(cid))
		if err != nil || found {
			return ds, err
		}
		d.forgetDisk(cid)
	}
	stores, err := d.persistentStores(ctx, c, nil)
	if err != nil {
		return "", err
	}
	for _, s := range stores {
		found, err := d.exists(ctx, c, s.name, d.diskFile(cid))
		if err != nil {
			return "", err
		}
		if found {
			d.inv.mu.Lock()
			d.inv.disks[cpi.DiskCID(cid)] = s.name
			d.inv.mu.Unlock()
			return s.name, nil
		}
	}
	return "", nil
}

func (d *Driver) forgetDisk(cid string) {
	d.inv.mu.Lock()
	delete(d.inv.disks, cpi.DiskCID(cid))
	d.inv.mu.Unlock()
}

// ensureDiskDir makes <disk_path> on a datastore once per driver.
func (d *Driver) ensureDiskDir(ctx context.Context, c *vim25.Client, ds string) error {
	d.inv.mu.Lock()
	done := d.inv.diskDirs[ds]
	d.inv.mu.Unlock()
	if done {
		return nil
	}
	dc, _, err := d.inv.datacenter(ctx, c)
	if err != nil {
		return err
	}
	err = object.NewFileManager(c).MakeDirectory(ctx, dsPath(ds, d.cfg.datacenter().DiskPath), dc, true)
	if err != nil && !isFileExists(err) {
		return classify(fmt.Errorf("vsphere: making %s on datastore %s: %w", d.cfg.datacenter().DiskPath, ds, err))
	}
	d.inv.mu.Lock()
	d.inv.diskDirs[ds] = true
	d.inv.mu.Unlock()
	return nil
}

// CreateDisk creates an independent-persistent VMDK <disk_path>/disk-<uuid>.vmdk
// on the persistent datastore with the most free space.
func (d *Driver) CreateDisk(ctx context.Context, sizeMiB int, props cpi.Props, vm cpi.VMCID) (cpi.DiskCID, error) {
	c, err := d.vc(ctx)
	if err != nil {
		return "", err
	}
	p, err := decodeProps[DiskProps](props, "disk_type")
	if err != nil {
		return "", &cpi.Error{Type: cpi.TypeCloudError, Message: err.Error(), Err: err}
	}
	if sizeMiB <= 0 {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "vsphere: disk size must be positive, got %d MiB", sizeMiB)
	}
	stores, err := d.persistentStores(ctx, c, p.Datastores)
	if err != nil {
		return "", err
	}
	refs := make([]types.ManagedObjectReference, 0, len(stores))
	for _, s := range stores {
		refs = append(refs, s.ref)
	}
	need := int64(sizeMiB) << 20
	if p.Type == "thin" || (p.Type == "" && d.cfg.DefaultDiskType == "thin") {
		need = 0
	}
	ds, err := d.inv.pickDatastore(ctx, c, refs, d.cfg.datacenter().PersistentDatastorePattern, p.Datastores, need)
	if err != nil {
		return "", classify(err)
	}
	if err := d.ensureDiskDir(ctx, c, ds.name); err != nil {
		return "", err
	}
	dc, _, err := d.inv.datacenter(ctx, c)
	if err != nil {
		return "", err
	}
	cid := diskPrefix + newUUID()
	diskType := types.VirtualDiskTypePreallocated
	if p.Type == "thin" || (p.Type == "" && d.cfg.DefaultDiskType == "thin") {
		diskType = types.VirtualDiskTypeThin
	}
	spec := &types.FileBackedVirtualDiskSpec{
		VirtualDiskSpec: types.VirtualDiskSpec{AdapterType: string(types.VirtualDiskAdapterTypeLsiLogic), DiskType: string(diskType)},
		CapacityKb:      int64(sizeMiB) * 1024,
	}
	file := dsPath(ds.name, d.diskFile(cid))
	t, err := object.NewVirtualDiskManager(c).CreateVirtualDisk(ctx, file, dc, spec)
	if err == nil {
		_, err = d.wait(ctx, t, "creating disk "+cid)
	}
	if err != nil {
		d.inv.forgetStores()
		return "", classify(fmt.Errorf("vsphere: creating disk %s (%d MiB) on datastore %s: %w", cid, sizeMiB, ds.name, err))
	}
	d.inv.reserve(ds, need)
	d.inv.mu.Lock()
	d.inv.disks[cpi.DiskCID(cid)] = ds.name
	d.inv.mu.Unlock()
	return cpi.DiskCID(cid), nil
}

// DeleteDisk deletes the VMDK and its metadata; a missing disk is deleted.
func (d *Driver) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	if !strings.HasPrefix(string(cid), diskPrefix) {
		return nil
	}
	return d.deleteVMDK(ctx, string(cid))
}

func (d *Driver) deleteVMDK(ctx context.Context, cid string) error {
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	ds, err := d.findFile(ctx, c, cid)
	if err != nil || ds == "" {
		return err
	}
	if strings.HasPrefix(cid, diskPrefix) {
		vm, err := d.attachedTo(ctx, c, cpi.DiskCID(cid))
		if err != nil {
			return err
		}
		if vm != "" {
			return cpi.Errorf(cpi.TypeCloudError, false, "vsphere: disk %s is attached to VM %s; detach it (or delete the VM) first", cid, vm)
		}
	}
	dc, _, err := d.inv.datacenter(ctx, c)
	if err != nil {
		return err
	}
	t, err := object.NewVirtualDiskManager(c).DeleteVirtualDisk(ctx, dsPath(ds, d.diskFile(cid)), dc)
	if err == nil {
		_, err = d.wait(ctx, t, "deleting disk "+cid)
	}
	if err != nil && !fileNotFound(err) {
		if fault := (&types.FileLocked{}); isFault(err, fault) {
			return cpi.Errorf(cpi.TypeCloudError, false, "vsphere: disk %s is in use (attached to a VM?); detach it first: %w", cid, err)
		}
		return classify(fmt.Errorf("vsphere: deleting disk %s on datastore %s: %w", cid, ds, err))
	}
	d.forgetDisk(cid)
	if strings.HasPrefix(cid, diskPrefix) {
		meta := dsPath(ds, path.Join(d.cfg.datacenter().DiskPath, cid+".json"))
		if err := d.deleteFile(ctx, c, meta); err != nil {
			return classify(fmt.Errorf("vsphere: deleting metadata of disk %s: %w", cid, err))
		}
	}
	d.inv.forgetStores()
	return nil
}

// attachedTo returns the VM in vm_folder the disk is attached to, or "".
func (d *Driver) attachedTo(ctx context.Context, c *vim25.Client, cid cpi.DiskCID) (cpi.VMCID, error) {
	folder, err := d.inv.folder(ctx, c, d.cfg.datacenter().VMFolder)
	if err != nil {
		return "", err
	}
	var f mo.Folder
	if err := folder.Properties(ctx, folder.Reference(), []string{"childEntity"}, &f); err != nil {
		return "", classify(fmt.Errorf("vsphere: listing the VMs of %s: %w", d.cfg.datacenter().VMFolder, err))
	}
	var refs []types.ManagedObjectReference
	for _, r := range f.ChildEntity {
		if r.Type == "VirtualMachine" {
			refs = append(refs, r)
		}
	}
	if len(refs) == 0 {
		return "", nil
	}
	var vms []mo.VirtualMachine
	if err := property.DefaultCollector(c).Retrieve(ctx, refs, []string{"name", "config.hardware.device"}, &vms); err != nil {
		return "", classify(fmt.Errorf("vsphere: reading the VMs of %s: %w", d.cfg.datacenter().VMFolder, err))
	}
	for _, vm := range vms {
		if vm.Config == nil {
			continue
		}
		for _, a := range d.persistentDisks(object.VirtualDeviceList(vm.Config.Hardware.Device)) {
			if a.cid == cid {
				return cpi.VMCID(vm.Name), nil
			}
		}
	}
	return "", nil
}

// HasDisk reports whether the disk's VMDK exists.
func (d *Driver) HasDisk(ctx context.Context, cid cpi.DiskCID) (bool, error) {
	if !strings.HasPrefix(string(cid), diskPrefix) {
		return false, nil
	}
	c, err := d.vc(ctx)
	if err != nil {
		return false, err
	}
	ds, err := d.findFile(ctx, c, string(cid))
	return ds != "", err
}

// AttachDisk hot-adds the VMDK to the VM (independent-persistent, next free
// unit on the VM's SCSI controller) and returns the hint BOSH's vSphere CPI
// gives: the unit number (and the disk UUID when disk.enableUUID is set).
func (d *Driver) AttachDisk(ctx context.Context, vmCID cpi.VMCID, cid cpi.DiskCID) (cpi.DiskHint, error) {
	c, err := d.vc(ctx)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	vi, err := d.vmInfo(ctx, c, vmCID)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	for _, a := range d.persistentDisks(vi.devices) {
		if a.cid == cid {
			return d.hint(a.disk, vi), nil
		}
	}
	ds := ""
	if strings.HasPrefix(string(cid), diskPrefix) {
		if ds, err = d.findFile(ctx, c, string(cid)); err != nil {
			return cpi.DiskHint{}, err
		}
	}
	if ds == "" {
		return cpi.DiskHint{}, cpi.DiskNotFound(cid)
	}
	ctrl, err := vi.devices.FindSCSIController("")
	if err != nil {
		return cpi.DiskHint{}, cpi.Errorf(cpi.TypeCloudError, false, "vsphere: VM %s has no SCSI controller to attach disk %s to: %w", vmCID, cid, err)
	}
	ds2 := d.storeRef(ds)
	disk := &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{
			Key: -1,
			Backing: &types.VirtualDiskFlatVer2BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: dsPath(ds, d.diskFile(string(cid))), Datastore: ds2},
				DiskMode:                     string(types.VirtualDiskModeIndependent_persistent),
			},
		},
	}
	vi.devices.AssignController(disk, ctrl)
	spec := types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
		&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: disk},
	}}
	t, err := object.NewVirtualMachine(c, vi.ref).Reconfigure(ctx, spec)
	if err == nil {
		_, err = d.wait(ctx, t, "attaching disk "+string(cid))
	}
	if err != nil {
		if notFound(err) {
			d.inv.forgetVM(vmCID)
			return cpi.DiskHint{}, cpi.VMNotFound(vmCID)
		}
		return cpi.DiskHint{}, classify(fmt.Errorf("vsphere: attaching disk %s to VM %s: %w", cid, vmCID, err))
	}
	if vi.extra["disk.enableUUID"] == "1" || strings.EqualFold(vi.extra["disk.enableUUID"], "true") {
		// The UUID is only known once attached: read the devices back.
		if again, err := d.vmInfo(ctx, c, vmCID); err == nil {
			for _, a := range d.persistentDisks(again.devices) {
				if a.cid == cid {
					return d.hint(a.disk, again), nil
				}
			}
		}
	}
	return d.hint(disk, vi), nil
}

func (d *Driver) hint(disk *types.VirtualDisk, vi *vmInfo) cpi.DiskHint {
	unit := strconv.Itoa(int(deref(disk.UnitNumber)))
	h := cpi.DiskHint{Path: unit, VolumeID: unit}
	if vi.extra["disk.enableUUID"] == "1" || strings.EqualFold(vi.extra["disk.enableUUID"], "true") {
		if b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok && b.Uuid != "" {
			h.ID = strings.ToLower(strings.ReplaceAll(b.Uuid, " ", ""))
		}
	}
	return h
}

func (d *Driver) storeRef(name string) *types.ManagedObjectReference {
	d.inv.mu.Lock()
	defer d.inv.mu.Unlock()
	for r, s := range d.inv.stores {
		if s.name == name {
			ref := r
			return &ref
		}
	}
	return nil
}

// DetachDisk removes the disk from the VM, keeping its file.
func (d *Driver) DetachDisk(ctx context.Context, vmCID cpi.VMCID, cid cpi.DiskCID) error {
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	vi, err := d.vmInfo(ctx, c, vmCID)
	if err != nil {
		return err
	}
	for _, a := range d.persistentDisks(vi.devices) {
		if a.cid != cid {
			continue
		}
		spec := types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: a.disk},
		}}
		t, err := object.NewVirtualMachine(c, vi.ref).Reconfigure(ctx, spec)
		if err == nil {
			_, err = d.wait(ctx, t, "detaching disk "+string(cid))
		}
		if err != nil {
			return classify(fmt.Errorf("vsphere: detaching disk %s from VM %s: %w", cid, vmCID, err))
		}
		return nil
	}
	return &cpi.Error{Type: cpi.TypeDiskNotAttached, Message: fmt.Sprintf("Disk '%s' is not attached to VM '%s'", cid, vmCID)}
}

// GetDisks lists the persistent disks attached to the VM.
func (d *Driver) GetDisks(ctx context.Context, vmCID cpi.VMCID) ([]cpi.DiskCID, error) {
	c, err := d.vc(ctx)
	if err != nil {
		return nil, err
	}
	vi, err := d.vmInfo(ctx, c, vmCID)
	if err != nil {
		return nil, err
	}
	out := []cpi.DiskCID{}
	for _, a := range d.persistentDisks(vi.devices) {
		out = append(out, a.cid)
	}
	return out, nil
}

// SetDiskMetadata stores the tags in <disk_path>/<cid>.json next to the VMDK
// (a plain VMDK has no tags of its own).
func (d *Driver) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	ds := ""
	if strings.HasPrefix(string(cid), diskPrefix) {
		if ds, err = d.findFile(ctx, c, string(cid)); err != nil {
			return err
		}
	}
	if ds == "" {
		return cpi.DiskNotFound(cid)
	}
	b, err := json.Marshal(md)
	if err != nil {
		return classify(err)
	}
	if err := d.upload(ctx, c, ds, path.Join(d.cfg.datacenter().DiskPath, string(cid)+".json"), b); err != nil {
		return classify(fmt.Errorf("vsphere: writing metadata of disk %s: %w", cid, err))
	}
	return nil
}

// ResizeDisk grows a detached disk (ExtendVirtualDisk); shrinking is refused.
func (d *Driver) ResizeDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int) error {
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	ds := ""
	if strings.HasPrefix(string(cid), diskPrefix) {
		if ds, err = d.findFile(ctx, c, string(cid)); err != nil {
			return err
		}
	}
	if ds == "" {
		return cpi.DiskNotFound(cid)
	}
	cur, err := d.diskSize(ctx, c, ds, string(cid))
	if err != nil {
		return err
	}
	want := int64(newSizeMiB) << 20
	if want < cur {
		return cpi.Errorf(cpi.TypeCloudError, false, "vsphere: disk %s is %d MiB; shrinking it to %d MiB is not possible (create a smaller disk and copy the data)", cid, cur>>20, newSizeMiB)
	}
	if want == cur {
		return nil
	}
	dc, _, err := d.inv.datacenter(ctx, c)
	if err != nil {
		return err
	}
	t, err := object.NewVirtualDiskManager(c).ExtendVirtualDisk(ctx, dsPath(ds, d.diskFile(string(cid))), dc, want>>10, nil)
	if err == nil {
		_, err = d.wait(ctx, t, "resizing disk "+string(cid))
	}
	if err != nil {
		return classify(fmt.Errorf("vsphere: resizing disk %s to %d MiB (is it still attached?): %w", cid, newSizeMiB, err))
	}
	d.inv.forgetStores()
	return nil
}

// diskSize reads the capacity from the VMDK descriptor.
func (d *Driver) diskSize(ctx context.Context, c *vim25.Client, ds, cid string) (int64, error) {
	u, err := d.dsURL(ctx, c, ds, d.diskFile(cid))
	if err != nil {
		return 0, err
	}
	r, _, err := c.Download(ctx, u, &soap.DefaultDownload)
	if err != nil {
		return 0, classify(fmt.Errorf("vsphere: reading the descriptor of disk %s: %w", cid, err))
	}
	defer r.Close()
	desc, err := vmdk.ParseDescriptor(r)
	if err != nil {
		return 0, classify(fmt.Errorf("vsphere: parsing the descriptor of disk %s: %w", cid, err))
	}
	return desc.Capacity(), nil
}

// SnapshotDisk copies the VMDK to <disk_path>/snap-<uuid>.vmdk.
func (d *Driver) SnapshotDisk(ctx context.Context, cid cpi.DiskCID, _ cpi.Metadata) (cpi.SnapshotCID, error) {
	c, err := d.vc(ctx)
	if err != nil {
		return "", err
	}
	ds := ""
	if strings.HasPrefix(string(cid), diskPrefix) {
		if ds, err = d.findFile(ctx, c, string(cid)); err != nil {
			return "", err
		}
	}
	if ds == "" {
		return "", cpi.DiskNotFound(cid)
	}
	dc, _, err := d.inv.datacenter(ctx, c)
	if err != nil {
		return "", err
	}
	snap := snapshotPrefix + newUUID()
	t, err := object.NewVirtualDiskManager(c).CopyVirtualDisk(ctx, dsPath(ds, d.diskFile(string(cid))), dc, dsPath(ds, d.diskFile(snap)), dc, nil, false)
	if err == nil {
		_, err = d.wait(ctx, t, "snapshotting disk "+string(cid))
	}
	if err != nil {
		return "", classify(fmt.Errorf("vsphere: snapshotting disk %s: %w", cid, err))
	}
	d.inv.mu.Lock()
	d.inv.disks[cpi.DiskCID(snap)] = ds
	d.inv.mu.Unlock()
	d.inv.forgetStores()
	return cpi.SnapshotCID(snap), nil
}

// DeleteSnapshot deletes a snapshot's VMDK; a missing one is deleted.
func (d *Driver) DeleteSnapshot(ctx context.Context, cid cpi.SnapshotCID) error {
	if !strings.HasPrefix(string(cid), snapshotPrefix) {
		return nil
	}
	return d.deleteVMDK(ctx, string(cid))
}
