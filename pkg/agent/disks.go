package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// mountedDisk records where a persistent disk is mounted.
type mountedDisk struct {
	Device     string `json:"device"`
	MountPoint string `json:"mount_point"`
}

func (a *Agent) loadJSON(path string, v any) {
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, v)
	}
}

func (a *Agent) saveJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o600)
}

// diskHints merges the settings' persistent disk hints with those added by
// add_persistent_disk (persistent_disk_hints.json).
func (a *Agent) diskHints() map[string]any {
	out := map[string]any{}
	a.mu.Lock()
	for k, v := range a.settings.Disks.Persistent {
		out[k] = v
	}
	a.mu.Unlock()
	added := map[string]any{}
	a.loadJSON(a.layout.DiskHintsFile(), &added)
	for k, v := range added {
		out[k] = v
	}
	return out
}

// mounted is the persistent disks mounted now: the saved record, less the
// entries whose mount point is no longer mounted (after a reboot or a hard
// reset the record outlives the mounts; trusting it would let mount_disk
// skip the mount and the jobs write their data to the root disk).
func (a *Agent) mounted() map[string]mountedDisk {
	m := map[string]mountedDisk{}
	a.loadJSON(a.layout.MountsFile(), &m)
	stale := false
	for cid, d := range m {
		if !a.isMountPoint(d.MountPoint) {
			delete(m, cid)
			stale = true
		}
	}
	if stale {
		_ = a.saveJSON(a.layout.MountsFile(), m)
	}
	return m
}

// remountDisks mounts again, after a reboot, the persistent disks the record
// says were mounted, before any job starts: a job must never find an empty
// /var/vcap/store on the root disk where its data was.
func (a *Agent) remountDisks(ctx context.Context) error {
	saved := map[string]mountedDisk{}
	a.loadJSON(a.layout.MountsFile(), &saved)
	var errs []error
	for cid, d := range saved {
		if a.isMountPoint(d.MountPoint) {
			continue
		}
		a.log.Info("mounting the persistent disk again after a restart", "disk", cid, "mount_point", d.MountPoint)
		if err := a.MountDisk(ctx, cid); err != nil {
			errs = append(errs, fmt.Errorf("mounting persistent disk %s again: %w", cid, err))
		}
	}
	return errors.Join(errs...)
}

// AddPersistentDisk records the hint of an attached disk.
func (a *Agent) AddPersistentDisk(req protocol.AddPersistentDiskRequest) error {
	if req.CID == "" || req.Hint == nil {
		return protocol.Errorf(protocol.ErrInvalidRequest, "add_persistent_disk needs cid and hint")
	}
	added := map[string]any{}
	a.loadJSON(a.layout.DiskHintsFile(), &added)
	added[req.CID] = req.Hint
	return a.saveJSON(a.layout.DiskHintsFile(), added)
}

// RemovePersistentDisk forgets a disk's hint.
func (a *Agent) RemovePersistentDisk(req protocol.DiskRequest) error {
	added := map[string]any{}
	a.loadJSON(a.layout.DiskHintsFile(), &added)
	delete(added, req.CID)
	return a.saveJSON(a.layout.DiskHintsFile(), added)
}

// ListDisk lists the CIDs of the mounted persistent disks.
func (a *Agent) ListDisk() []string {
	var out []string
	for cid := range a.mounted() {
		out = append(out, cid)
	}
	sort.Strings(out)
	return out
}

// diskAppearTimeout bounds mount_disk's wait for a disk's device to appear.
var diskAppearTimeout = 30 * time.Second

// hintDevice turns a disk hint into a device path.
func hintDevice(hint any) string {
	switch h := hint.(type) {
	case string:
		return h
	case map[string]any:
		for _, k := range []string{"path", "device_path"} {
			if s, ok := h[k].(string); ok && s != "" {
				return s
			}
		}
		if s, ok := h["id"].(string); ok && s != "" {
			return "/dev/disk/by-id/" + s
		}
		if s, ok := h["volume_id"].(string); ok && s != "" {
			return "/dev/disk/by-id/virtio-" + truncate(s, 20)
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// hasFilesystem probes dev with blkid: exit 0 = a filesystem, exit 2 =
// nothing found. Any other failure (blkid missing, I/O error) is an error:
// never format a disk we could not probe.
func hasFilesystem(ctx context.Context, dev string) (bool, error) {
	out, err := exec.CommandContext(ctx, "blkid", "-p", "-o", "value", "-s", "TYPE", dev).Output()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return strings.TrimSpace(string(out)) != "", nil
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		return false, nil
	default:
		return false, fmt.Errorf("probing %s for a filesystem with blkid: %v", dev, err)
	}
}

func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// MountDisk formats the disk if it carries no filesystem and mounts it on
// /var/vcap/store. When another disk is mounted there (a disk replaced by a
// new one) its data is copied onto the new disk first, then it is unmounted.
func (a *Agent) MountDisk(ctx context.Context, cid string) error {
	a.diskMu.Lock()
	defer a.diskMu.Unlock()
	mounts := a.mounted()
	if _, ok := mounts[cid]; ok {
		return nil
	}
	hint, ok := a.diskHints()[cid]
	if !ok {
		return protocol.Errorf(protocol.ErrNotFound, "disk %s: no hint in the settings or from add_persistent_disk; attach it and call add_persistent_disk first", cid)
	}
	dev := hintDevice(hint)
	if os.Geteuid() != 0 {
		return protocol.Errorf(protocol.ErrNotSupported, "disk %s: formatting and mounting %s needs root; the agent runs as uid %d", cid, dev, os.Geteuid())
	}
	// A hot-plugged disk appears a moment after attach_disk returns (the
	// guest scans the bus, udev makes the by-id link): wait for it.
	fi, err := os.Stat(dev)
	for wait := time.Now().Add(diskAppearTimeout); err != nil && time.Now().Before(wait); fi, err = os.Stat(dev) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return protocol.Errorf(protocol.ErrDisk, "disk %s: %q (from hint %v) is not a block device on this VM", cid, dev, hint)
	}
	fs := a.settings.Env.Bosh.PersistentDiskFS
	if fs == "" {
		fs = "ext4"
	}
	formatted, err := hasFilesystem(ctx, dev)
	if err != nil {
		return protocol.Errorf(protocol.ErrDisk, "disk %s: %v", cid, err)
	}
	if !formatted {
		args := []string{"-q", dev}
		if fs == "ext4" {
			args = []string{"-q", "-F", dev}
		}
		if _, err := runCmd(ctx, "mkfs."+fs, args...); err != nil {
			return protocol.Errorf(protocol.ErrDisk, "disk %s: formatting %s as %s: %v", cid, dev, fs, err)
		}
	}
	opts := a.settings.Env.Bosh.PersistentDiskOpts
	mountArgs := func(target string) []string {
		args := []string{}
		if len(opts) > 0 {
			args = append(args, "-o", strings.Join(opts, ","))
		}
		return append(args, dev, target)
	}
	store := a.layout.Store()
	var old string
	for c, m := range mounts {
		if m.MountPoint == store {
			old = c
		}
	}
	if old == "" {
		if err := os.MkdirAll(store, 0o755); err != nil {
			return err
		}
		if _, err := runCmd(ctx, "mount", mountArgs(store)...); err != nil {
			return protocol.Errorf(protocol.ErrDisk, "disk %s: %v", cid, err)
		}
		mounts[cid] = mountedDisk{Device: dev, MountPoint: store}
		return a.saveJSON(a.layout.MountsFile(), mounts)
	}
	// Migration: new disk at store_migration_target, copy, swap.
	target := a.layout.StoreMigration()
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if _, err := runCmd(ctx, "mount", mountArgs(target)...); err != nil {
		return protocol.Errorf(protocol.ErrDisk, "disk %s: %v", cid, err)
	}
	if _, err := runCmd(ctx, "cp", "-a", store+"/.", target+"/"); err != nil {
		runCmd(ctx, "umount", target)
		return protocol.Errorf(protocol.ErrDisk, "disk %s: copying data from disk %s: %v", cid, old, err)
	}
	if _, err := runCmd(ctx, "umount", target); err != nil {
		return protocol.Errorf(protocol.ErrDisk, "disk %s: %v", cid, err)
	}
	if _, err := runCmd(ctx, "umount", store); err != nil {
		return protocol.Errorf(protocol.ErrDisk, "disk %s: unmounting old disk %s: %v", cid, old, err)
	}
	delete(mounts, old)
	if _, err := runCmd(ctx, "mount", mountArgs(store)...); err != nil {
		a.saveJSON(a.layout.MountsFile(), mounts)
		return protocol.Errorf(protocol.ErrDisk, "disk %s: %v", cid, err)
	}
	mounts[cid] = mountedDisk{Device: dev, MountPoint: store}
	return a.saveJSON(a.layout.MountsFile(), mounts)
}

// UnmountDisk unmounts a persistent disk (nothing to do when it is not mounted).
func (a *Agent) UnmountDisk(ctx context.Context, cid string) error {
	a.diskMu.Lock()
	defer a.diskMu.Unlock()
	mounts := a.mounted()
	m, ok := mounts[cid]
	if !ok {
		return nil
	}
	if os.Geteuid() != 0 {
		return protocol.Errorf(protocol.ErrNotSupported, "disk %s: unmounting needs root", cid)
	}
	if _, err := runCmd(ctx, "umount", m.MountPoint); err != nil {
		return protocol.Errorf(protocol.ErrDisk, "disk %s: %v (is a process still using %s?)", cid, err, m.MountPoint)
	}
	delete(mounts, cid)
	return a.saveJSON(a.layout.MountsFile(), mounts)
}
