// Package qemu is a hypervisor-backed local cloud: real virtual machines under
// QEMU on this host. create_stemcell takes the qcow2 stemcell built for
// OpenStack (stemcells.OpenStack) and extracts its kernel and initrd;
// create_vm boots a copy-on-write qcow2 overlay of it with the kernel passed
// directly, the agent settings on an OpenStack-style config drive (label
// config-2), one tap device per network on a bridge (IP as kpaas allocated
// it, MAC derived from the IP) and memory/CPUs from the vm_type. Persistent
// disks are qcow2 files hot-plugged through QMP as virtio-scsi disks.
//
// Every QEMU process runs in its own session, detached from the caller (kpaas
// cpi runs one process per call); the driver finds it again by its pid and
// start time and talks to it over the VM's QMP socket. A QEMU that died is a
// VM that is gone (has_vm false).
package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"crypto/rand"
	"encoding/hex"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/internal/statefile"
	"github.com/kpaas/kpaas/stemcells"
)

// Config configures the QEMU cloud.
type Config struct {
	// Dir is the state directory (VMs, disks, stemcells, bridges).
	Dir string `json:"dir"`
	// QEMU is the emulator binary (default qemu-system-x86_64).
	QEMU string `json:"qemu,omitempty"`
	// Accel is kvm, tcg or empty: detect (KVM when a test guest boots under
	// it within a few seconds, else TCG; the result is kept in Dir/accel).
	Accel string `json:"accel,omitempty"`
	// MemMiB and CPUs are the defaults when the vm_type names none (256, 1).
	MemMiB int `json:"ram,omitempty"`
	CPUs   int `json:"cpu,omitempty"`
	// NoIPForward leaves net.ipv4.ip_forward alone.
	NoIPForward bool `json:"no_ip_forward,omitempty"`
	// RebootTimeout bounds a clean reboot (ctrl-alt-del) before reboot_vm
	// resets the VM (default 60s).
	RebootTimeout time.Duration `json:"-"`
	// KernelArgs are appended to the kernel command line.
	KernelArgs string `json:"kernel_args,omitempty"`
}

// ErrNeedsRoot says the QEMU cloud cannot run without root.
var ErrNeedsRoot = errors.New("the QEMU cloud needs root (CAP_NET_ADMIN) to create bridges and tap devices: run kpaas as root (sudo kpaas ...)")

// QEMU is the driver.
type QEMU struct {
	cfg Config
	log *slog.Logger
}

var _ cpi.CPI = (*QEMU)(nil)

// New opens the QEMU cloud in cfg.Dir.
func New(cfg Config, logger *slog.Logger) (*QEMU, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNeedsRoot
	}
	if cfg.Dir == "" {
		return nil, errors.New("qemu cpi config: dir is required (the state directory)")
	}
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(cfg.QEMU); err != nil {
		return nil, fmt.Errorf("qemu cpi: %s not found: install qemu-system-x86 and qemu-utils (.ci/setup-qemu.sh): %w", cfg.QEMU, err)
	}
	if cfg.MemMiB == 0 {
		cfg.MemMiB = 256
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(ioDiscard{}, nil))
	}
	for _, d := range []string{"vms", "disks", "stemcells"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("creating the QEMU cloud's state dir: %w", err)
		}
	}
	return &QEMU{cfg: cfg, log: logger}, nil
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

// Dir is the state directory.
func (q *QEMU) Dir() string { return q.cfg.Dir }

// Info implements cpi.CPI.
func (q *QEMU) Info(ctx context.Context) (cpi.Info, error) {
	return cpi.Info{APIVersion: 2, StemcellFormats: []string{"openstack-qcow2", "openstack-raw"},
		Capabilities: []cpi.Capability{cpi.CapReboot, cpi.CapVMMetadata, cpi.CapDiskMetadata, cpi.CapResizeDisk, cpi.CapHotAttach}}, nil
}

func newID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

var idRE = regexp.MustCompile(`^[a-z]+-[0-9a-f]{16}$`)

func safeID(s string) bool { return idRE.MatchString(s) }

// stemcellRecord is stemcells/<cid>/stemcell.json.
type stemcellRecord struct {
	CID     cpi.StemcellCID `json:"cid"`
	Name    string          `json:"name"`
	Version string          `json:"version"`
	Kernel  string          `json:"kernel"` // file names in the stemcell dir
	Initrd  string          `json:"initrd"`
	Cmdline string          `json:"cmdline"`
}

func (q *QEMU) stemcellDir(cid cpi.StemcellCID) string {
	return filepath.Join(q.cfg.Dir, "stemcells", string(cid))
}

func (q *QEMU) loadStemcell(cid cpi.StemcellCID) (*stemcellRecord, error) {
	if !safeID(string(cid)) {
		return nil, cpi.StemcellNotFound(cid)
	}
	var rec stemcellRecord
	if err := readJSON(filepath.Join(q.stemcellDir(cid), "stemcell.json"), &rec); err != nil {
		return nil, cpi.StemcellNotFound(cid)
	}
	return &rec, nil
}

// CreateStemcell implements cpi.CPI: imagePath is a BOSH stemcell tarball in
// OpenStack's qcow2 format (or its image, a tar.gz of root.img). The root disk
// becomes the backing file of every VM's overlay; the kernel and initrd are
// copied out of its root filesystem so create_vm can boot them directly.
func (q *QEMU) CreateStemcell(ctx context.Context, imagePath string, props cpi.Props) (cpi.StemcellCID, error) {
	cid := cpi.StemcellCID(newID("sc-"))
	dir := q.stemcellDir(cid)
	rec, err := q.importStemcell(ctx, imagePath, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", cpi.Errorf(cpi.TypeCloudError, false, "creating stemcell from %s: %w", imagePath, err)
	}
	rec.CID = cid
	if err := writeJSON(filepath.Join(dir, "stemcell.json"), rec); err != nil {
		_ = os.RemoveAll(dir)
		return "", cpi.Errorf(cpi.TypeCloudError, false, "creating stemcell: %w", err)
	}
	return cid, nil
}

func (q *QEMU) importStemcell(ctx context.Context, imagePath, dir string) (*stemcellRecord, error) {
	if _, err := os.Stat(imagePath); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	rec := &stemcellRecord{Cmdline: stemcells.KernelCmdline}
	image := imagePath
	if tb, err := stemcells.Open(imagePath, dir); err == nil {
		if !slices.Contains(tb.Manifest.StemcellFormats, "openstack-qcow2") && !slices.Contains(tb.Manifest.StemcellFormats, "openstack-raw") {
			return nil, fmt.Errorf("stemcell %s/%s has formats %v; the QEMU cloud boots openstack-qcow2 stemcells (kpaas create-stemcell --os debian --format qcow2)", tb.Manifest.Name, tb.Manifest.Version, tb.Manifest.StemcellFormats)
		}
		rec.Name, rec.Version = tb.Manifest.Name, tb.Manifest.Version
		image = tb.ImagePath
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xzf", image, "-C", dir, "root.img").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unpacking root.img from %s: %v: %s", image, err, bytes.TrimSpace(out))
	}
	if image != imagePath {
		_ = os.Remove(image)
	}
	root := filepath.Join(dir, "root.img")
	if err := extractBoot(ctx, root, dir, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// extractBoot copies /boot/vmlinuz-* and /boot/initrd.img-* out of the first
// partition of the disk image (through a sparse raw copy and debugfs, without
// mounting anything).
func extractBoot(ctx context.Context, img, dir string, rec *stemcellRecord) error {
	raw := filepath.Join(dir, "root.raw")
	defer os.Remove(raw)
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "raw", img, raw).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert %s: %v: %s", img, err, bytes.TrimSpace(out))
	}
	off, err := firstPartitionOffset(raw)
	if err != nil {
		return err
	}
	dev := fmt.Sprintf("%s?offset=%d", raw, off)
	out, err := exec.CommandContext(ctx, "debugfs", "-R", "ls /boot", dev).Output()
	if err != nil {
		return fmt.Errorf("listing /boot of %s with debugfs: %w", img, err)
	}
	var kernel, initrd string
	for _, f := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(f, "vmlinuz-") && f > kernel:
			kernel = f
		case strings.HasPrefix(f, "initrd.img-") && f > initrd:
			initrd = f
		}
	}
	if kernel == "" || initrd == "" {
		return fmt.Errorf("no /boot/vmlinuz-* and /boot/initrd.img-* in %s (found %q): is it a bootable qcow2 stemcell?", img, strings.Fields(string(out)))
	}
	for src, dst := range map[string]string{kernel: "vmlinuz", initrd: "initrd.img"} {
		if o, err := exec.CommandContext(ctx, "debugfs", "-R", fmt.Sprintf("dump /boot/%s %s", src, filepath.Join(dir, dst)), dev).CombinedOutput(); err != nil {
			return fmt.Errorf("copying /boot/%s out of %s: %v: %s", src, img, err, o)
		}
		if fi, err := os.Stat(filepath.Join(dir, dst)); err != nil || fi.Size() == 0 {
			return fmt.Errorf("copying /boot/%s out of %s: nothing written", src, img)
		}
	}
	rec.Kernel, rec.Initrd = "vmlinuz", "initrd.img"
	return nil
}

// firstPartitionOffset reads the MBR of a raw disk image.
func firstPartitionOffset(raw string) (int64, error) {
	f, err := os.Open(raw)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return 0, fmt.Errorf("reading the MBR of %s: %w", raw, err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return 0, nil // a bare filesystem
	}
	lba := binary.LittleEndian.Uint32(mbr[446+8:])
	return int64(lba) * 512, nil
}

// DeleteStemcell implements cpi.CPI (idempotent).
func (q *QEMU) DeleteStemcell(ctx context.Context, cid cpi.StemcellCID) error {
	if !safeID(string(cid)) {
		return nil
	}
	if err := os.RemoveAll(q.stemcellDir(cid)); err != nil {
		return cpi.Errorf(cpi.TypeCloudError, false, "deleting stemcell %s: %w", cid, err)
	}
	return nil
}

func writeJSON(path string, v any) error { return statefile.WriteJSON(path, v, false) }

func readJSON(path string, v any) error { return statefile.ReadJSON(path, v) }

// lock takes the state directory's lock (between goroutines and processes).
func (q *QEMU) lock() (func(), error) {
	return statefile.Lock(filepath.Join(q.cfg.Dir, "lock"), "the QEMU cloud")
}

// accel picks the accelerator: the configured one, else the one detected
// earlier (Dir/accel), else KVM if a test guest (the stemcell's kernel with no
// root filesystem) reaches its "unable to mount root" panic under KVM within
// 6 s, else TCG.
func (q *QEMU) accel(ctx context.Context, sc *stemcellRecord) string {
	if q.cfg.Accel != "" {
		return q.cfg.Accel
	}
	path := filepath.Join(q.cfg.Dir, "accel")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b))
	}
	acc := "tcg"
	if ProbeKVM(ctx, q.cfg.QEMU, filepath.Join(q.stemcellDir(sc.CID), sc.Kernel), 6*time.Second) {
		acc = "kvm"
	}
	q.log.Info("accelerator chosen", "accel", acc)
	_ = os.WriteFile(path, []byte(acc+"\n"), 0o600)
	return acc
}

// ProbeKVM reports whether kernel boots under KVM far enough to look for its
// root filesystem within timeout.
func ProbeKVM(ctx context.Context, qemuBin, kernel string, timeout time.Duration) bool {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemuBin, "-accel", "kvm", "-m", "128", "-nographic", "-no-reboot", "-nodefaults",
		"-serial", "stdio", "-kernel", kernel, "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent")
	out, _ := cmd.CombinedOutput()
	return bytes.Contains(out, []byte("Kernel panic")) || bytes.Contains(out, []byte("VFS:"))
}

// cerr turns err into a *cpi.Error, keeping nil nil.
func cerr(err error) error {
	if err == nil {
		return nil
	}
	return cpi.AsError(err)
}

// Accelerator returns the accelerator VMs of stemcell run under (kvm or
// tcg), probing KVM on first use.
func (q *QEMU) Accelerator(ctx context.Context, stemcell cpi.StemcellCID) (string, error) {
	sc, err := q.loadStemcell(stemcell)
	if err != nil {
		return "", err
	}
	return q.accel(ctx, sc), nil
}
