package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/internal/statefile"
)

// diskRecord is disks/<cid>.json beside the qcow2 file.
type diskRecord struct {
	CID      cpi.DiskCID  `json:"cid"`
	SizeMiB  int          `json:"size_mib"`
	VM       cpi.VMCID    `json:"vm,omitempty"`
	Metadata cpi.Metadata `json:"metadata,omitempty"`
}

// serial is the disk's SCSI serial (and QEMU node/device name suffix).
func serial(cid cpi.DiskCID) string { return strings.TrimPrefix(string(cid), "disk-") }

// diskHint is where the disk appears in the VM: udev's by-id link of a QEMU
// SCSI disk with the serial set.
func diskHint(cid cpi.DiskCID) cpi.DiskHint {
	id := "scsi-0QEMU_QEMU_HARDDISK_" + serial(cid)
	return cpi.DiskHint{Path: "/dev/disk/by-id/" + id, ID: id}
}

func (q *QEMU) diskPath(cid cpi.DiskCID, ext string) string {
	return filepath.Join(q.cfg.Dir, "disks", string(cid)+ext)
}

func (q *QEMU) loadDisk(cid cpi.DiskCID) (*diskRecord, error) {
	if !safeID(string(cid)) {
		return nil, cpi.DiskNotFound(cid)
	}
	return statefile.Load[diskRecord](q.diskPath(cid, ".json"), cpi.DiskNotFound(cid), "disk "+string(cid))
}

func (q *QEMU) saveDisk(d *diskRecord) error { return writeJSON(q.diskPath(d.CID, ".json"), d) }

// CreateDisk implements cpi.CPI: a qcow2 file (unformatted: the agent
// formats it).
func (q *QEMU) CreateDisk(ctx context.Context, sizeMiB int, props cpi.Props, vm cpi.VMCID) (cpi.DiskCID, error) {
	if sizeMiB <= 0 {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "create_disk: size %d MiB must be positive", sizeMiB)
	}
	cid := cpi.DiskCID(newID("disk-"))
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", q.diskPath(cid, ".qcow2"), fmt.Sprintf("%dM", sizeMiB)).CombinedOutput(); err != nil {
		_ = os.Remove(q.diskPath(cid, ".qcow2"))
		return "", cpi.Errorf(cpi.TypeCloudError, false, "creating disk of %d MiB: %v: %s", sizeMiB, err, bytes.TrimSpace(out))
	}
	if err := q.saveDisk(&diskRecord{CID: cid, SizeMiB: sizeMiB}); err != nil {
		_ = os.Remove(q.diskPath(cid, ".qcow2"))
		return "", cpi.Errorf(cpi.TypeCloudError, false, "creating disk: %w", err)
	}
	return cid, nil
}

// DeleteDisk implements cpi.CPI (idempotent; an attached disk is refused).
func (q *QEMU) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	d, err := q.loadDisk(cid)
	if errors.Is(err, cpi.ErrDiskNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.VM != "" {
		if vm, err := q.loadVM(d.VM); err == nil && slices.Contains(vm.Disks, cid) {
			return cpi.Errorf(cpi.TypeCloudError, false, "disk %s is attached to VM %s: detach it first", cid, d.VM)
		}
	}
	_ = os.Remove(q.diskPath(cid, ".qcow2"))
	if err := os.Remove(q.diskPath(cid, ".json")); err != nil && !os.IsNotExist(err) {
		return cpi.Errorf(cpi.TypeCloudError, false, "deleting disk %s: %w", cid, err)
	}
	return nil
}

// HasDisk implements cpi.CPI.
func (q *QEMU) HasDisk(ctx context.Context, cid cpi.DiskCID) (bool, error) {
	_, err := q.loadDisk(cid)
	if errors.Is(err, cpi.ErrDiskNotFound) {
		return false, nil
	}
	return err == nil, err
}

// AttachDisk implements cpi.CPI: hot-plugs the qcow2 file into a running VM
// as a SCSI disk (blockdev-add + device_add over QMP); a VM whose QEMU is not
// running gets it on its next start.
func (q *QEMU) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	unlock, err := q.lock()
	if err != nil {
		return cpi.DiskHint{}, cerr(err)
	}
	defer unlock()
	rec, err := q.loadVM(vm)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	d, err := q.loadDisk(disk)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	if slices.Contains(rec.Disks, disk) {
		return diskHint(disk), nil
	}
	if d.VM != "" && d.VM != vm {
		if other, err := q.loadVM(d.VM); err == nil && slices.Contains(other.Disks, disk) {
			return cpi.DiskHint{}, cpi.Errorf(cpi.TypeCloudError, false, "disk %s is attached to VM %s: detach it first", disk, d.VM)
		}
	}
	if running(rec) {
		if err := q.hotplug(ctx, rec, disk); err != nil {
			return cpi.DiskHint{}, cpi.Errorf(cpi.TypeCloudError, true, "attaching disk %s to VM %s: %w", disk, vm, err)
		}
	}
	d.VM = vm
	rec.Disks = append(rec.Disks, disk)
	if err := q.saveDisk(d); err != nil {
		return cpi.DiskHint{}, cerr(err)
	}
	return diskHint(disk), cerr(q.saveVM(rec))
}

func (q *QEMU) hotplug(ctx context.Context, rec *vmRecord, disk cpi.DiskCID) error {
	m, err := q.qmpFor(ctx, rec)
	if err != nil {
		return err
	}
	defer m.Close()
	s := serial(disk)
	if _, err := m.do("blockdev-add", map[string]any{"driver": "qcow2", "node-name": "n" + s,
		"file": map[string]any{"driver": "file", "filename": q.diskPath(disk, ".qcow2")}}); err != nil {
		return err
	}
	if _, err := m.do("device_add", map[string]any{"driver": "scsi-hd", "bus": "scsi0.0", "drive": "n" + s, "id": "d" + s, "serial": s}); err != nil {
		_, _ = m.do("blockdev-del", map[string]any{"node-name": "n" + s})
		return err
	}
	return nil
}

func (q *QEMU) unplug(ctx context.Context, rec *vmRecord, disk cpi.DiskCID) error {
	m, err := q.qmpFor(ctx, rec)
	if err != nil {
		return err
	}
	defer m.Close()
	s := serial(disk)
	if _, err := m.do("device_del", map[string]any{"id": "d" + s}); err != nil && !strings.Contains(err.Error(), "DeviceNotFound") {
		return err
	} else if err == nil {
		if err := m.waitEvent("DEVICE_DELETED", func(b json.RawMessage) bool {
			var d struct {
				Device string `json:"device"`
			}
			return json.Unmarshal(b, &d) == nil && d.Device == "d"+s
		}, 20*time.Second); err != nil {
			return err
		}
	}
	if _, err := m.do("blockdev-del", map[string]any{"node-name": "n" + s}); err != nil && !strings.Contains(err.Error(), "not found") {
		return err
	}
	return nil
}

// DetachDisk implements cpi.CPI (a disk not attached is detached).
func (q *QEMU) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	unlock, err := q.lock()
	if err != nil {
		return cerr(err)
	}
	defer unlock()
	rec, err := q.loadVM(vm)
	if err != nil {
		return err
	}
	if !slices.Contains(rec.Disks, disk) {
		return nil
	}
	if running(rec) {
		if err := q.unplug(ctx, rec, disk); err != nil {
			return cpi.Errorf(cpi.TypeCloudError, true, "detaching disk %s from VM %s: %w", disk, vm, err)
		}
	}
	rec.Disks = slices.DeleteFunc(rec.Disks, func(d cpi.DiskCID) bool { return d == disk })
	if err := q.saveVM(rec); err != nil {
		return cerr(err)
	}
	if d, err := q.loadDisk(disk); err == nil && d.VM == vm {
		d.VM = ""
		return cerr(q.saveDisk(d))
	}
	return nil
}

// GetDisks implements cpi.CPI.
func (q *QEMU) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	rec, err := q.loadVM(vm)
	if err != nil {
		return nil, err
	}
	return slices.Clone(rec.Disks), nil
}

// SetDiskMetadata implements cpi.CPI.
func (q *QEMU) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	unlock, err := q.lock()
	if err != nil {
		return cerr(err)
	}
	defer unlock()
	d, err := q.loadDisk(cid)
	if err != nil {
		return err
	}
	d.Metadata = md
	return cerr(q.saveDisk(d))
}

// ResizeDisk implements cpi.CPI: grows a detached disk's qcow2 file (the
// agent grows the filesystem).
func (q *QEMU) ResizeDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int) error {
	unlock, err := q.lock()
	if err != nil {
		return cerr(err)
	}
	defer unlock()
	d, err := q.loadDisk(cid)
	if err != nil {
		return err
	}
	if newSizeMiB < d.SizeMiB {
		return cpi.Errorf(cpi.TypeCloudError, false, "resize_disk %s: %d MiB is smaller than its %d MiB; disks only grow", cid, newSizeMiB, d.SizeMiB)
	}
	if d.VM != "" {
		if vm, err := q.loadVM(d.VM); err == nil && slices.Contains(vm.Disks, cid) {
			return cpi.Errorf(cpi.TypeCloudError, false, "resize_disk %s: attached to VM %s; detach it first", cid, d.VM)
		}
	}
	if newSizeMiB == d.SizeMiB {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "qemu-img", "resize", "-q", q.diskPath(cid, ".qcow2"), fmt.Sprintf("%dM", newSizeMiB)).CombinedOutput(); err != nil {
		return cpi.Errorf(cpi.TypeCloudError, false, "resizing disk %s: %v: %s", cid, err, bytes.TrimSpace(out))
	}
	d.SizeMiB = newSizeMiB
	return cerr(q.saveDisk(d))
}

// SnapshotDisk is not supported.
func (q *QEMU) SnapshotDisk(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	return "", cpi.NotSupported("snapshot_disk")
}

// DeleteSnapshot is not supported.
func (q *QEMU) DeleteSnapshot(ctx context.Context, cid cpi.SnapshotCID) error {
	return cpi.NotSupported("delete_snapshot")
}
