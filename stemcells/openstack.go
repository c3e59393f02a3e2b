package stemcells

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// OpenStackOptions configure the qcow2 stemcell (OpenStack, and QEMU).
type OpenStackOptions struct {
	DebianOptions
	// DiskMiB is the root disk's size (default 3072).
	DiskMiB int
}

// OpenStackAgentConfig is the agent.json of OpenStack stemcells: settings
// from the config drive, else the metadata service (BOSH's sources).
const OpenStackAgentConfig = `{"Platform":{"Linux":{"DevicePathResolutionType":"virtio","CreatePartitionIfNoEphemeralDisk":true}},` +
	`"Infrastructure":{"Settings":{"Sources":[` +
	`{"Type":"ConfigDrive","DiskPaths":["/dev/disk/by-label/CONFIG-2","/dev/disk/by-label/config-2"],"MetaDataPath":"ec2/latest/meta-data.json","UserDataPath":"ec2/latest/user-data"},` +
	`{"Type":"HTTP","URI":"http://169.254.169.254","UserDataPath":"/latest/user-data"}]}}}` + "\n"

// OpenStackPackages are added to DefaultDebianPackages for a bootable image.
var OpenStackPackages = []string{"linux-image-cloud-amd64", "systemd-sysv", "udev", "kmod", "initramfs-tools"}

// KernelCmdline is the kernel command line of the qcow2 stemcell (no_timer_check:
// guests under load without it panicked).
const KernelCmdline = "root=LABEL=root ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 no_timer_check"

const agentUnit = `[Unit]
Description=kpaas agent
After=network.target

[Service]
ExecStart=/var/vcap/bosh/bin/kpaas-agent
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`

const dhcpNetwork = `[Match]
Name=eth* en*

[Network]
DHCP=ipv4
`

// OpenStack builds a bootable Debian qcow2 stemcell in BOSH's OpenStack
// format: image = tar.gz of root.img (qcow2, compat 0.10) holding an MBR disk
// with one ext4 partition labelled root, extlinux as boot loader, systemd
// starting kpaas-agent, DHCP on every NIC. It needs root, debootstrap,
// extlinux, syslinux-common (mbr.bin) and qemu-utils (qemu-img) on the host.
func OpenStack(ctx context.Context, o OpenStackOptions) (*Manifest, error) {
	return bootable(ctx, o, bootTarget{
		iaas: "openstack", hypervisor: "kvm", format: "openstack-qcow2",
		packages: OpenStackPackages, agentConfig: OpenStackAgentConfig, cmdline: KernelCmdline,
		props: map[string]any{"disk_format": "qcow2", "container_format": "bare", "auto_disk_config": true},
		image: func(ctx context.Context, raw, dir string) ([]string, error) {
			out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10", raw, filepath.Join(dir, "root.img")).CombinedOutput()
			if err != nil {
				return nil, fmt.Errorf("qemu-img convert: %v: %s", err, out)
			}
			return []string{"root.img"}, nil
		},
	})
}

// bootTarget is what differs between the bootable stemcells of each IaaS.
type bootTarget struct {
	iaas, hypervisor, format string
	packages                 []string
	agentConfig, cmdline     string
	props                    map[string]any
	// image turns the raw disk into the files of the image tarball, in dir.
	image func(ctx context.Context, raw, dir string) ([]string, error)
}

func bootable(ctx context.Context, o OpenStackOptions, t bootTarget) (*Manifest, error) {
	o.defaults()
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if o.Mirror == "" {
		o.Mirror = "http://deb.debian.org/debian"
	}
	if o.Include == nil {
		o.Include = append(append([]string{}, DefaultDebianPackages...), t.packages...)
	}
	if o.DiskMiB == 0 {
		o.DiskMiB = 3072
	}
	var missing []string
	for tool, pkg := range map[string]string{"debootstrap": "debootstrap", "extlinux": "extlinux", "qemu-img": "qemu-utils", "mkfs.ext4": "e2fsprogs"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, pkg)
		}
	}
	mbr := "/usr/lib/syslinux/mbr/mbr.bin"
	if _, err := os.Stat(mbr); err != nil {
		missing = append(missing, "syslinux-common")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("building a %s stemcell needs: apt-get install -y %s", t.format, strings.Join(missing, " "))
	}
	if o.AgentBinary == "" {
		return nil, fmt.Errorf("no agent binary given: build cmd/kpaas-agent (CGO_ENABLED=0 go build -o kpaas-agent ./cmd/kpaas-agent) and pass it with --agent")
	}
	if err := isStatic(o.AgentBinary); err != nil {
		return nil, fmt.Errorf("agent binary: %w (build it with CGO_ENABLED=0)", err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("building a %s stemcell needs root (debootstrap, loop mounts): run it with sudo", t.format)
	}
	work, cleanup, err := workDir(o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	root := filepath.Join(work, "rootfs")
	if err := debootstrap(ctx, o.DebianOptions, root); err != nil {
		return nil, err
	}
	if err := layout(root); err != nil {
		return nil, err
	}
	o.step("Configuring boot: systemd unit for the agent, DHCP, fstab, extlinux")
	files := map[string]string{
		"etc/fstab":                                 "LABEL=root / ext4 defaults,errors=remount-ro 0 1\n",
		"etc/systemd/system/kpaas-agent.service":    agentUnit,
		"etc/systemd/network/50-kpaas-dhcp.network": dhcpNetwork,
		"var/vcap/bosh/agent.json":                  t.agentConfig,
		"etc/hostname":                              "localhost\n",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p, err)
		}
	}
	for _, unit := range []string{"kpaas-agent.service", "systemd-networkd.service"} {
		if out, err := exec.CommandContext(ctx, "chroot", root, "systemctl", "enable", unit).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("enabling %s: %v: %s", unit, err, out)
		}
	}
	if err := copyFile(o.AgentBinary, filepath.Join(root, AgentPath), 0o755); err != nil {
		return nil, err
	}
	kernel, initrd, err := kernelFiles(root)
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("DEFAULT linux\nTIMEOUT 0\nPROMPT 0\nLABEL linux\n  LINUX %s\n  INITRD %s\n  APPEND %s\n", kernel, initrd, t.cmdline)
	if err := os.MkdirAll(filepath.Join(root, "boot/extlinux"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "boot/extlinux/extlinux.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	for _, p := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		_ = os.RemoveAll(filepath.Join(root, p))
		_ = os.MkdirAll(filepath.Join(root, p), 0o755)
	}

	raw := filepath.Join(work, "root.raw")
	o.step("Making a %d MiB disk: MBR, ext4 partition labelled root, extlinux", o.DiskMiB)
	if err := makeBootDisk(ctx, raw, root, o.DiskMiB, mbr, filepath.Join(work, "mnt")); err != nil {
		return nil, err
	}
	imgDir := filepath.Join(work, "image.d")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return nil, err
	}
	o.step("Converting the disk to the %s image", t.format)
	members, err := t.image(ctx, raw, imgDir)
	if err != nil {
		return nil, err
	}
	_ = os.Remove(raw)
	name := fmt.Sprintf("bosh-%s-%s-debian-%s-go_agent", t.iaas, t.hypervisor, o.Suite)
	props := map[string]any{
		"name": name, "version": o.Version, "infrastructure": t.iaas, "hypervisor": t.hypervisor,
		"disk": o.DiskMiB, "os_type": "linux", "os_distro": "debian", "architecture": "x86_64",
	}
	for k, v := range t.props {
		props[k] = v
	}
	mf := Manifest{Name: name, Version: o.Version, OperatingSystem: "debian-" + o.Suite, APIVersion: 2,
		StemcellFormats: []string{t.format}, CloudProperties: props}
	image := filepath.Join(work, "image")
	o.step("Packing %s into the image", strings.Join(members, ", "))
	if out, err := exec.CommandContext(ctx, "tar", append([]string{"-C", imgDir, "-czf", image}, members...)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("packing image: %v: %s", err, out)
	}
	o.step("Writing stemcell %s", o.Out)
	return &mf, Write(o.Out, mf, image)
}

func debootstrap(ctx context.Context, o DebianOptions, root string) error {
	if ents, err := os.ReadDir(root); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s is not empty (another build, or a kept --work-dir): remove it or pick another work dir", root)
	}
	o.step("Running debootstrap --variant=minbase %s (%s)", o.Suite, o.Mirror)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(o.Include, ","), o.Suite, root, o.Mirror)
	var tail strings.Builder
	lp := &lineProgress{w: o.Progress, prefix: "  debootstrap: "}
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { tail.Write(p); return lp.Write(p) })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap %s: %w: %s", o.Suite, err, lastLines(tail.String(), 10))
	}
	o.step("debootstrap done in %s", time.Since(start).Round(time.Second))
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// kernelFiles finds the installed kernel and initrd (paths inside root).
func kernelFiles(root string) (string, string, error) {
	ks, _ := filepath.Glob(filepath.Join(root, "boot/vmlinuz-*"))
	is, _ := filepath.Glob(filepath.Join(root, "boot/initrd.img-*"))
	if len(ks) == 0 || len(is) == 0 {
		return "", "", fmt.Errorf("no kernel or initrd in %s/boot: is linux-image-cloud-amd64 installed?", root)
	}
	return "/boot/" + filepath.Base(ks[len(ks)-1]), "/boot/" + filepath.Base(is[len(is)-1]), nil
}

// makeBootDisk writes a raw disk: an MBR with one bootable Linux partition
// from 1 MiB to the end, an ext4 filesystem in it populated from root
// (mkfs.ext4 -d, no mount), then extlinux installed through a loop mount and
// syslinux's MBR code.
func makeBootDisk(ctx context.Context, raw, root string, sizeMiB int, mbrCode, mnt string) error {
	const offset = 1 << 20
	size := int64(sizeMiB) << 20
	fh, err := os.OpenFile(raw, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := fh.Truncate(size); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	fsKiB := (size - offset) >> 10
	// ^64bit: syslinux cannot read 64-bit ext4.
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "root", "-O", "^64bit", "-E", fmt.Sprintf("offset=%d", offset), "-d", root, raw, fmt.Sprintf("%dk", fsKiB)).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 -d: %v: %s", err, out)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "mount", "-o", fmt.Sprintf("loop,offset=%d", offset), raw, mnt).CombinedOutput(); err != nil {
		return fmt.Errorf("mounting the root filesystem: %v: %s", err, out)
	}
	out, err := exec.CommandContext(ctx, "extlinux", "--install", filepath.Join(mnt, "boot/extlinux")).CombinedOutput()
	if uerr := exec.Command("umount", "-d", mnt).Run(); err == nil && uerr != nil {
		err = fmt.Errorf("unmounting: %w", uerr)
	}
	if err != nil {
		return fmt.Errorf("extlinux --install: %v: %s", err, out)
	}
	code, err := os.ReadFile(mbrCode)
	if err != nil {
		return err
	}
	return writeMBR(raw, code, offset/512, (size-offset)/512)
}

// writeMBR writes the boot code (up to 440 bytes) and a partition table with
// one bootable Linux partition (type 0x83) at LBA start for n sectors.
func writeMBR(path string, code []byte, start, n int64) error {
	var mbr [512]byte
	copy(mbr[:440], code)
	e := mbr[446:462]
	e[0] = 0x80                            // bootable
	copy(e[1:4], []byte{0xfe, 0xff, 0xff}) // CHS: use LBA
	e[4] = 0x83
	copy(e[5:8], []byte{0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(e[8:12], uint32(start))
	binary.LittleEndian.PutUint32(e[12:16], uint32(n))
	mbr[510], mbr[511] = 0x55, 0xaa
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := fh.WriteAt(mbr[:], 0); err != nil {
		fh.Close()
		return fmt.Errorf("writing the MBR: %w", err)
	}
	return fh.Close()
}
