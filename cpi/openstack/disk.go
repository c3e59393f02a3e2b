package openstack

import (
	"context"
	"fmt"
	"strconv"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"

	"github.com/kpaas/kpaas/cpi"
)

// sizeKey records the size kpaas asked for, in MiB: Cinder counts whole GiB,
// so a 64 MiB disk is a 1 GiB volume, and resize_disk compares against what
// was asked (shrinking is refused even within the same GiB).
const sizeKey = "kpaas_size_mib"

func gib(mib int) int { return (mib + 1023) / 1024 }

// CreateDisk creates a Cinder volume (rounded up to whole GiB) in the VM's
// availability zone unless ignore_server_availability_zone, and waits until
// it is available.
func (o *CPI) CreateDisk(ctx context.Context, sizeMiB int, props cpi.Props, vm cpi.VMCID) (cpi.DiskCID, error) {
	if sizeMiB <= 0 {
		return "", cloudErr(fmt.Sprintf("creating disk: size %d MiB must be positive", sizeMiB), nil, "", false)
	}
	var dp diskProps
	if err := decodeProps(props, "disk", &dp); err != nil {
		return "", cloudErr("creating disk", err, "", false)
	}
	az := dp.AvailabilityZone
	if az == "" && vm != "" && !o.cfg.OpenStack.IgnoreServerAvailabilityZone {
		var s struct {
			AZ string `json:"OS-EXT-AZ:availability_zone"`
		}
		if r := servers.Get(ctx, o.c.compute, string(vm)); r.Err == nil {
			_ = r.ExtractIntoStructPtr(&s, "server")
			az = s.AZ
		}
	}
	volType := dp.Type
	if volType == "" {
		volType = o.cfg.OpenStack.DefaultVolumeType
	}
	name := "volume-" + newUUID()
	v, err := volumes.Create(ctx, o.c.volume, volumes.CreateOpts{
		Name: name, Size: gib(sizeMiB), AvailabilityZone: az, VolumeType: volType,
		Description: "kpaas persistent disk",
		Metadata:    map[string]string{sizeKey: strconv.Itoa(sizeMiB), "created_by": "kpaas"},
	}, nil).Extract()
	if err != nil {
		return "", apiErr(fmt.Sprintf("creating a %d GiB volume", gib(sizeMiB)), err)
	}
	if err := o.waitVolume(ctx, v.ID, "available"); err != nil {
		cctx, cancel := o.cleanupCtx(ctx)
		defer cancel()
		_ = volumes.Delete(cctx, o.c.volume, v.ID, nil).ExtractErr()
		return "", apiErr("creating volume "+v.ID, err)
	}
	return cpi.DiskCID(v.ID), nil
}

// waitVolume waits until the volume has the status; error statuses end it.
func (o *CPI) waitVolume(ctx context.Context, id, status string) error {
	return o.poll(ctx, "volume "+id+" to become "+status, func(ctx context.Context) (bool, error) {
		v, err := volumes.Get(ctx, o.c.volume, id).Extract()
		if err != nil {
			return false, err
		}
		switch v.Status {
		case status:
			return true, nil
		case "error", "error_deleting", "error_extending", "error_restoring":
			return false, fmt.Errorf("volume %s went to %s", id, v.Status)
		}
		return false, nil
	})
}

func (o *CPI) getVolume(ctx context.Context, cid cpi.DiskCID) (*volumes.Volume, error) {
	v, err := volumes.Get(ctx, o.c.volume, string(cid)).Extract()
	if err != nil {
		if isNotFound(err) {
			return nil, cpi.DiskNotFound(cid)
		}
		return nil, apiErr("getting volume "+string(cid), err)
	}
	return v, nil
}

// DeleteDisk deletes the volume and waits until it is gone. An unknown disk
// is not an error; an attached one is refused.
func (o *CPI) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	v, err := o.getVolume(ctx, cid)
	if err != nil {
		if isDiskNotFound(err) {
			return nil
		}
		return err
	}
	if len(v.Attachments) > 0 || v.Status == "in-use" {
		return cloudErr(fmt.Sprintf("deleting disk %s: it is attached to server %s", cid, attachedTo(v)), nil, "detach it first", false)
	}
	if err := volumes.Delete(ctx, o.c.volume, v.ID, nil).ExtractErr(); err != nil {
		if isNotFound(err) {
			return nil
		}
		return apiErr("deleting volume "+v.ID, err)
	}
	err = o.poll(ctx, "volume "+v.ID+" to be deleted", func(ctx context.Context) (bool, error) {
		got, err := volumes.Get(ctx, o.c.volume, v.ID).Extract()
		if isNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if got.Status == "error_deleting" {
			return false, fmt.Errorf("volume %s went to error_deleting", v.ID)
		}
		return false, nil
	})
	if err != nil {
		return apiErr("deleting volume "+v.ID, err)
	}
	return nil
}

func attachedTo(v *volumes.Volume) string {
	if len(v.Attachments) > 0 {
		return v.Attachments[0].ServerID
	}
	return "(unknown)"
}

func isDiskNotFound(err error) bool {
	ce, ok := err.(*cpi.Error)
	return ok && ce.Type == cpi.TypeDiskNotFound
}

// HasDisk reports whether Cinder has the volume.
func (o *CPI) HasDisk(ctx context.Context, cid cpi.DiskCID) (bool, error) {
	v, err := o.getVolume(ctx, cid)
	if err != nil {
		if isDiskNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return v.Status != "deleting" && v.Status != "deleted", nil
}

// AttachDisk attaches the volume to the server through Nova, waits until it
// is in-use and returns the device Nova assigned and the volume ID (the
// agent's virtio resolution finds the disk by ID). Attaching a disk already
// attached to this VM returns its hint again.
func (o *CPI) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	if ok, err := o.HasVM(ctx, vm); err != nil {
		return cpi.DiskHint{}, err
	} else if !ok {
		return cpi.DiskHint{}, cpi.VMNotFound(vm)
	}
	v, err := o.getVolume(ctx, disk)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	for _, a := range v.Attachments {
		if a.ServerID == string(vm) {
			return cpi.DiskHint{Path: a.Device, VolumeID: v.ID}, nil
		}
	}
	// A volume still detaching from a VM that was just deleted: wait for it.
	if v.Status != "available" {
		if err := o.waitVolume(ctx, v.ID, "available"); err != nil {
			return cpi.DiskHint{}, cloudErr(fmt.Sprintf("attaching disk %s to VM %s: the volume is %s (attached to %s)", disk, vm, v.Status, attachedTo(v)), err, "detach it from the other VM first", false)
		}
	}
	a, err := volumeattach.Create(ctx, o.c.compute, string(vm), volumeattach.CreateOpts{VolumeID: v.ID}).Extract()
	if err != nil {
		if isNotFound(err) {
			return cpi.DiskHint{}, cpi.VMNotFound(vm)
		}
		return cpi.DiskHint{}, apiErr(fmt.Sprintf("attaching volume %s to server %s", disk, vm), err)
	}
	if err := o.waitVolume(ctx, v.ID, "in-use"); err != nil {
		return cpi.DiskHint{}, apiErr(fmt.Sprintf("attaching volume %s to server %s", disk, vm), err)
	}
	return cpi.DiskHint{Path: a.Device, VolumeID: v.ID}, nil
}

// DetachDisk detaches the volume and waits until it is available. A disk
// that is not attached to the VM is DiskNotAttached.
func (o *CPI) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	v, err := o.getVolume(ctx, disk)
	if err != nil {
		return err
	}
	attached := false
	for _, a := range v.Attachments {
		attached = attached || a.ServerID == string(vm)
	}
	if !attached {
		if ok, err := o.HasVM(ctx, vm); err == nil && !ok {
			return cpi.VMNotFound(vm)
		}
		return &cpi.Error{Type: cpi.TypeDiskNotAttached, Message: fmt.Sprintf("Disk '%s' is not attached to VM '%s'", disk, vm)}
	}
	if err := volumeattach.Delete(ctx, o.c.compute, string(vm), v.ID).ExtractErr(); err != nil && !isNotFound(err) {
		return apiErr(fmt.Sprintf("detaching volume %s from server %s", disk, vm), err)
	}
	if err := o.waitVolume(ctx, v.ID, "available"); err != nil {
		return apiErr(fmt.Sprintf("detaching volume %s from server %s", disk, vm), err)
	}
	return nil
}

// GetDisks lists the volumes attached to the server, without its boot volume.
func (o *CPI) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	s, err := servers.Get(ctx, o.c.compute, string(vm)).Extract()
	if err != nil {
		if isNotFound(err) {
			return nil, cpi.VMNotFound(vm)
		}
		return nil, apiErr("getting server "+string(vm), err)
	}
	bootFromVolume := len(s.Image) == 0
	pages, err := volumeattach.List(o.c.compute, string(vm)).AllPages(ctx)
	if err != nil {
		return nil, apiErr("listing volumes of server "+string(vm), err)
	}
	as, err := volumeattach.ExtractVolumeAttachments(pages)
	if err != nil {
		return nil, apiErr("listing volumes of server "+string(vm), err)
	}
	out := []cpi.DiskCID{}
	for _, a := range as {
		if bootFromVolume && (a.Device == "/dev/vda" || a.Device == "/dev/sda") {
			continue
		}
		out = append(out, cpi.DiskCID(a.VolumeID))
	}
	return out, nil
}

// SetDiskMetadata merges the tags into the volume's metadata.
func (o *CPI) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	v, err := o.getVolume(ctx, cid)
	if err != nil {
		return err
	}
	merged := map[string]string{}
	for k, val := range v.Metadata {
		merged[k] = val
	}
	for k, val := range md {
		if len(val) > 255 {
			val = val[:255]
		}
		merged[k] = val
	}
	if _, err := volumes.Update(ctx, o.c.volume, v.ID, volumes.UpdateOpts{Metadata: merged}).Extract(); err != nil {
		return apiErr("setting metadata of volume "+v.ID, err)
	}
	return nil
}

// ResizeDisk grows a detached volume (Cinder extend, whole GiB). A smaller
// size than the disk has is refused; the same GiB count needs no extend.
func (o *CPI) ResizeDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int) error {
	v, err := o.getVolume(ctx, cid)
	if err != nil {
		return err
	}
	cur := v.Size * 1024
	if s, err := strconv.Atoi(v.Metadata[sizeKey]); err == nil && s > 0 && s <= cur {
		cur = s
	}
	if newSizeMiB < cur {
		return cloudErr(fmt.Sprintf("resizing disk %s from %d MiB to %d MiB: shrinking a disk is not possible", cid, cur, newSizeMiB), nil, "create a new disk and copy the data", false)
	}
	if gib(newSizeMiB) > v.Size {
		if v.Status != "available" {
			return cloudErr(fmt.Sprintf("resizing disk %s: it is %s (attached to %s)", cid, v.Status, attachedTo(v)), nil, "detach it first", false)
		}
		if err := volumes.ExtendSize(ctx, o.c.volume, v.ID, volumes.ExtendSizeOpts{NewSize: gib(newSizeMiB)}).ExtractErr(); err != nil {
			return apiErr(fmt.Sprintf("extending volume %s to %d GiB", v.ID, gib(newSizeMiB)), err)
		}
		err := o.poll(ctx, "volume "+v.ID+" to be extended", func(ctx context.Context) (bool, error) {
			got, err := volumes.Get(ctx, o.c.volume, v.ID).Extract()
			if err != nil {
				return false, err
			}
			if got.Status == "error_extending" {
				return false, fmt.Errorf("volume %s went to error_extending", v.ID)
			}
			return got.Status == "available" && got.Size >= gib(newSizeMiB), nil
		})
		if err != nil {
			return apiErr("extending volume "+v.ID, err)
		}
	}
	meta := map[string]string{}
	for k, val := range v.Metadata {
		meta[k] = val
	}
	meta[sizeKey] = strconv.Itoa(newSizeMiB)
	if _, err := volumes.Update(ctx, o.c.volume, v.ID, volumes.UpdateOpts{Metadata: meta}).Extract(); err != nil {
		return apiErr("recording the new size of volume "+v.ID, err)
	}
	return nil
}

// SnapshotDisk snapshots the volume (attached or not) and waits until the
// snapshot is available.
func (o *CPI) SnapshotDisk(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	v, err := o.getVolume(ctx, cid)
	if err != nil {
		return "", err
	}
	meta := map[string]string{}
	for k, val := range md {
		if len(val) > 255 {
			val = val[:255]
		}
		meta[k] = val
	}
	name := "snapshot-" + newUUID()
	if d, i := md["deployment"], md["index"]; d != "" && md["job"] != "" {
		name = fmt.Sprintf("%s/%s/%s", d, md["job"], i)
	}
	s, err := snapshots.Create(ctx, o.c.volume, snapshots.CreateOpts{
		VolumeID: v.ID, Force: true, Name: name, Description: "kpaas snapshot of " + v.ID, Metadata: meta,
	}).Extract()
	if err != nil {
		return "", apiErr("snapshotting volume "+v.ID, err)
	}
	err = o.poll(ctx, "snapshot "+s.ID+" to become available", func(ctx context.Context) (bool, error) {
		got, err := snapshots.Get(ctx, o.c.volume, s.ID).Extract()
		if err != nil {
			return false, err
		}
		if got.Status == "error" {
			return false, fmt.Errorf("snapshot %s went to error", s.ID)
		}
		return got.Status == "available", nil
	})
	if err != nil {
		cctx, cancel := o.cleanupCtx(ctx)
		defer cancel()
		_ = snapshots.Delete(cctx, o.c.volume, s.ID).ExtractErr()
		return "", apiErr("snapshotting volume "+v.ID, err)
	}
	return cpi.SnapshotCID(s.ID), nil
}

// DeleteSnapshot deletes the snapshot and waits until it is gone; an unknown
// snapshot is not an error.
func (o *CPI) DeleteSnapshot(ctx context.Context, cid cpi.SnapshotCID) error {
	id := string(cid)
	if err := snapshots.Delete(ctx, o.c.volume, id).ExtractErr(); err != nil {
		if isNotFound(err) {
			return nil
		}
		return apiErr("deleting snapshot "+id, err)
	}
	err := o.poll(ctx, "snapshot "+id+" to be deleted", func(ctx context.Context) (bool, error) {
		got, err := snapshots.Get(ctx, o.c.volume, id).Extract()
		if isNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if got.Status == "error_deleting" {
			return false, fmt.Errorf("snapshot %s went to error_deleting", id)
		}
		return false, nil
	})
	if err != nil {
		return apiErr("deleting snapshot "+id, err)
	}
	return nil
}
