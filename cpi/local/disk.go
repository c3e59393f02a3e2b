package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/internal/statefile"
)

// diskRecord is what the local cloud keeps about a persistent disk
// (disks/<cid>.json beside disks/<cid>.img).
type diskRecord struct {
	CID       cpi.DiskCID  `json:"cid"`
	SizeMiB   int          `json:"size_mib"`
	Props     cpi.Props    `json:"cloud_properties,omitempty"`
	VM        cpi.VMCID    `json:"vm,omitempty"`
	Loop      string       `json:"loop,omitempty"`
	Metadata  cpi.Metadata `json:"metadata,omitempty"`
	CreatedAt time.Time    `json:"created_at"`
}

// DevDisksDir is where a VM finds its attached disks' block devices.
const DevDisksDir = "/dev/kpaas"

func diskHint(cid cpi.DiskCID) cpi.DiskHint {
	return cpi.DiskHint{Path: DevDisksDir + "/" + string(cid), ID: string(cid)}
}

func (l *Local) diskPath(cid cpi.DiskCID, ext string) string {
	return filepath.Join(l.cfg.Dir, "disks", string(cid)+ext)
}

func (l *Local) loadDisk(cid cpi.DiskCID) (*diskRecord, error) {
	if !safeID(string(cid)) {
		return nil, cpi.DiskNotFound(cid)
	}
	return statefile.Load[diskRecord](l.diskPath(cid, ".json"), cpi.DiskNotFound(cid), "disk "+string(cid))
}

func (l *Local) saveDisk(d *diskRecord) error { return writeJSON(l.diskPath(d.CID, ".json"), d) }

func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// CreateDisk makes a sparse image file, formatted ext4 unless
// cloud_properties.fs is "none" (the agent then formats it).
func (l *Local) CreateDisk(ctx context.Context, sizeMiB int, props cpi.Props, vm cpi.VMCID) (cpi.DiskCID, error) {
	if sizeMiB <= 0 {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "creating disk: size must be positive, got %d MiB", sizeMiB)
	}
	cid := cpi.DiskCID(newID("disk-"))
	img := l.diskPath(cid, ".img")
	fail := func(err error) (cpi.DiskCID, error) {
		_ = os.Remove(img)
		_ = os.Remove(l.diskPath(cid, ".json"))
		if errors.Is(err, syscall.ENOSPC) {
			return "", &cpi.Error{Type: cpi.TypeNoDiskSpace, Message: fmt.Sprintf("creating disk of %d MiB: %v", sizeMiB, err), Err: err}
		}
		return "", cpi.Errorf(cpi.TypeCloudError, false, "creating disk of %d MiB: %w", sizeMiB, err)
	}
	fh, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	err = fh.Truncate(int64(sizeMiB) << 20)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if fs, _ := props["fs"].(string); fs != "none" {
		if _, err := run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", img); err != nil {
			return fail(fmt.Errorf("formatting: %w (mkfs.ext4 is in Debian's e2fsprogs)", err))
		}
	}
	if err := l.saveDisk(&diskRecord{CID: cid, SizeMiB: sizeMiB, Props: props, CreatedAt: time.Now().UTC()}); err != nil {
		return fail(err)
	}
	return cid, nil
}

// DeleteDisk implements cpi.CPI; an attached disk is refused, a gone one is fine.
func (l *Local) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	unlock, err := l.lock()
	if err != nil {
		return cerr(err)
	}
	defer unlock()
	d, err := l.loadDisk(cid)
	if errors.Is(err, cpi.ErrDiskNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.VM != "" {
		if _, err := l.loadVM(d.VM); err == nil {
			return cpi.Errorf(cpi.TypeCloudError, false, "disk %s is attached to VM %s: detach it first", cid, d.VM)
		}
	}
	detachLoop(d)
	if err := os.Remove(l.diskPath(cid, ".img")); err != nil && !os.IsNotExist(err) {
		return cpi.Errorf(cpi.TypeCloudError, false, "deleting disk %s: %w", cid, err)
	}
	if err := os.Remove(l.diskPath(cid, ".json")); err != nil && !os.IsNotExist(err) {
		return cpi.Errorf(cpi.TypeCloudError, false, "deleting disk %s: %w", cid, err)
	}
	return nil
}

// HasDisk implements cpi.CPI.
func (l *Local) HasDisk(ctx context.Context, cid cpi.DiskCID) (bool, error) {
	_, err := l.loadDisk(cid)
	if errors.Is(err, cpi.ErrDiskNotFound) {
		return false, nil
	}
	return err == nil, err
}

// AttachDisk attaches the image as a loop device and puts its block device
// node in the VM's /dev/kpaas (a host directory bind-mounted into the VM, so
// a running VM sees it at once). The hint is that path.
func (l *Local) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	unlock, err := l.lock()
	if err != nil {
		return cpi.DiskHint{}, cerr(err)
	}
	defer unlock()
	rec, err := l.loadVM(vm)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	d, err := l.loadDisk(disk)
	if err != nil {
		return cpi.DiskHint{}, err
	}
	if d.VM != "" && d.VM != vm {
		if _, err := l.loadVM(d.VM); err == nil {
			return cpi.DiskHint{}, cpi.Errorf(cpi.TypeCloudError, false, "disk %s is attached to VM %s: detach it first", disk, d.VM)
		}
	}
	d.VM = vm
	if err := l.plugDisk(ctx, rec, d); err != nil {
		return cpi.DiskHint{}, cpi.Errorf(cpi.TypeCloudError, true, "attaching disk %s to VM %s: %w", disk, vm, err)
	}
	if !slices.Contains(rec.Disks, disk) {
		rec.Disks = append(rec.Disks, disk)
	}
	if err := l.saveVM(rec); err != nil {
		return cpi.DiskHint{}, cerr(err)
	}
	return diskHint(disk), nil
}

// plugDisk makes sure the disk has a loop device backed by its image and a
// node in the VM's devdisks directory, and saves the disk record.
func (l *Local) plugDisk(ctx context.Context, rec *vmRecord, d *diskRecord) error {
	img := l.diskPath(d.CID, ".img")
	if d.Loop == "" || backingFile(d.Loop) != img {
		out, err := run(ctx, "losetup", "--find", "--show", img)
		if err != nil {
			return err
		}
		d.Loop = out
	}
	if err := l.saveDisk(d); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(d.Loop, &st); err != nil {
		return fmt.Errorf("loop device %s: %w", d.Loop, err)
	}
	node := filepath.Join(l.vmDir(rec.CID), "devdisks", string(d.CID))
	_ = os.Remove(node)
	if err := unix.Mknod(node, unix.S_IFBLK|0o660, int(st.Rdev)); err != nil {
		return fmt.Errorf("creating device node %s: %w", node, err)
	}
	return nil
}

// backingFile is the image behind a loop device ("" when none).
func backingFile(loop string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(loop), "loop/backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// detachLoop frees the disk's loop device (deferred by the kernel while the
// VM still has it mounted).
func detachLoop(d *diskRecord) {
	if d.Loop != "" && strings.HasSuffix(backingFile(d.Loop), string(d.CID)+".img") {
		_, _ = run(context.Background(), "losetup", "-d", d.Loop)
	}
	d.Loop = ""
}

// attachAll re-plugs the VM's disks (after a host reboot the loop devices are gone).
func (l *Local) attachAll(rec *vmRecord) error {
	if len(rec.Disks) == 0 {
		return nil
	}
	unlock, err := l.lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, cid := range rec.Disks {
		d, err := l.loadDisk(cid)
		if err != nil {
			return err
		}
		if err := l.plugDisk(context.Background(), rec, d); err != nil {
			return fmt.Errorf("re-attaching disk %s: %w", cid, err)
		}
	}
	return nil
}

// releaseDisk detaches disk from vm on the host side. Call with the lock held.
func (l *Local) releaseDisk(cid cpi.DiskCID, vm cpi.VMCID) error {
	_ = os.Remove(filepath.Join(l.vmDir(vm), "devdisks", string(cid)))
	d, err := l.loadDisk(cid)
	if errors.Is(err, cpi.ErrDiskNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	detachLoop(d)
	if d.VM == vm {
		d.VM = ""
	}
	return l.saveDisk(d)
}

// DetachDisk implements cpi.CPI. The agent has unmounted the disk first
// (unmount_disk); if not, the loop device is freed when the VM lets it go.
func (l *Local) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	unlock, err := l.lock()
	if err != nil {
		return cerr(err)
	}
	defer unlock()
	rec, err := l.loadVM(vm)
	if err != nil {
		return err
	}
	if _, err := l.loadDisk(disk); err != nil {
		return err
	}
	if !slices.Contains(rec.Disks, disk) {
		return nil
	}
	if err := l.releaseDisk(disk, vm); err != nil {
		return cpi.Errorf(cpi.TypeCloudError, true, "detaching disk %s from VM %s: %w", disk, vm, err)
	}
	rec.Disks = slices.DeleteFunc(rec.Disks, func(c cpi.DiskCID) bool { return c == disk })
	return cerr(l.saveVM(rec))
}

// GetDisks implements cpi.CPI.
func (l *Local) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	rec, err := l.loadVM(vm)
	if err != nil {
		return nil, err
	}
	return slices.Clone(rec.Disks), nil
}

// SetDiskMetadata implements cpi.CPI.
func (l *Local) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	unlock, err := l.lock()
	if err != nil {
		return cerr(err)
	}
	defer unlock()
	d, err := l.loadDisk(cid)
	if err != nil {
		return err
	}
	d.Metadata = md
	return cerr(l.saveDisk(d))
}

// ResizeDisk grows a detached disk's image and its ext4 filesystem.
func (l *Local) ResizeDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int) error {
	unlock, err := l.lock()
	if err != nil {
		return cerr(err)
	}
	defer unlock()
	d, err := l.loadDisk(cid)
	if err != nil {
		return err
	}
	if newSizeMiB < d.SizeMiB {
		return cpi.Errorf(cpi.TypeNotSupported, false, "resizing disk %s: shrinking from %d to %d MiB is not supported", cid, d.SizeMiB, newSizeMiB)
	}
	if d.VM != "" {
		return cpi.Errorf(cpi.TypeCloudError, false, "resizing disk %s: it is attached to VM %s; detach it first", cid, d.VM)
	}
	img := l.diskPath(cid, ".img")
	if err := os.Truncate(img, int64(newSizeMiB)<<20); err != nil {
		return cpi.Errorf(cpi.TypeCloudError, false, "resizing disk %s: %w", cid, err)
	}
	if fs, _ := d.Props["fs"].(string); fs != "none" {
		if _, err := run(ctx, "e2fsck", "-f", "-y", "-p", img); err != nil {
			l.log.Debug("e2fsck before resize", "disk", cid, "err", err)
		}
		if _, err := run(ctx, "resize2fs", img); err != nil {
			return cpi.Errorf(cpi.TypeCloudError, false, "resizing the filesystem of disk %s: %w", cid, err)
		}
	}
	d.SizeMiB = newSizeMiB
	return cerr(l.saveDisk(d))
}

// SnapshotDisk copies the disk's image (sparse) into snapshots/.
func (l *Local) SnapshotDisk(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	if _, err := l.loadDisk(cid); err != nil {
		return "", err
	}
	sid := cpi.SnapshotCID(newID("snap-"))
	dst := filepath.Join(l.cfg.Dir, "snapshots", string(sid)+".img")
	if _, err := run(ctx, "cp", "--sparse=always", l.diskPath(cid, ".img"), dst); err != nil {
		_ = os.Remove(dst)
		return "", cpi.Errorf(cpi.TypeCloudError, false, "snapshotting disk %s: %w", cid, err)
	}
	return sid, nil
}

// DeleteSnapshot implements cpi.CPI; a gone snapshot is fine.
func (l *Local) DeleteSnapshot(ctx context.Context, cid cpi.SnapshotCID) error {
	if !safeID(string(cid)) {
		return nil
	}
	if err := os.Remove(filepath.Join(l.cfg.Dir, "snapshots", string(cid)+".img")); err != nil && !os.IsNotExist(err) {
		return cpi.Errorf(cpi.TypeCloudError, false, "deleting snapshot %s: %w", cid, err)
	}
	return nil
}
