package stemcells

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BuildOptions are shared by the builders.
type BuildOptions struct {
	// AgentBinary is the kpaas-agent (static) installed at AgentPath; it is
	// the VM's init on the local cloud.
	AgentBinary string
	// Out is the stemcell tarball to write.
	Out string
	// Version of the stemcell (default: UTC date and time, "2026.1126.1532").
	Version string
	// WorkDir holds the rootfs while building (default: a temp dir, removed).
	WorkDir string
	// Progress receives one line per step.
	Progress io.Writer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *BuildOptions) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Version == "" {
		o.Version = o.Now().UTC().Format("2006.0102.1504")
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

func (o *BuildOptions) step(format string, args ...any) {
	fmt.Fprintf(o.Progress, format+"\n", args...)
}

// TinyOptions configure the tiny test stemcell.
type TinyOptions struct {
	BuildOptions
	// Busybox is a static busybox binary (default /bin/busybox, from Debian's
	// busybox-static package).
	Busybox string
}

// Tiny builds the test stemcell: busybox (with its applet links), the agent,
// and the BOSH directory layout. It needs no network and takes well under a second.
func Tiny(ctx context.Context, o TinyOptions) (*Manifest, error) {
	o.defaults()
	if o.Busybox == "" {
		o.Busybox = "/bin/busybox"
	}
	if err := isStatic(o.Busybox); err != nil {
		return nil, fmt.Errorf("busybox for the tiny stemcell: %w (install Debian's busybox-static: apt-get install -y busybox-static)", err)
	}
	work, cleanup, err := workDir(o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	root := filepath.Join(work, "rootfs")
	o.step("Laying out rootfs in %s", root)
	if err := layout(root); err != nil {
		return nil, err
	}
	if err := copyFile(o.Busybox, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, o.Busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		p := filepath.Join(root, applet)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(filepath.Dir(p), filepath.Join(root, "bin/busybox"))
		if err := os.Symlink(rel, p); err != nil {
			return nil, fmt.Errorf("linking busybox applet %s: %w", applet, err)
		}
	}
	// busybox-static has no blkid and no mkfs.ext4, which the agent runs to
	// find or make a persistent disk's filesystem: small shims for ext only.
	for p, script := range tinyShims {
		if err := os.WriteFile(filepath.Join(root, p), []byte(script), 0o755); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p, err)
		}
	}
	if err := installAgent(o.BuildOptions, root); err != nil {
		return nil, err
	}
	mf := Manifest{
		Name: "bosh-kpaas-local-busybox-go_agent", Version: o.Version, OperatingSystem: "busybox",
		APIVersion: 2, StemcellFormats: []string{FormatLocal},
		CloudProperties: map[string]any{"name": "bosh-kpaas-local-busybox-go_agent", "version": o.Version, "infrastructure": "local", "hypervisor": "namespaces", "os_type": "linux", "architecture": "x86_64"},
	}
	return &mf, pack(ctx, o.BuildOptions, root, work, mf)
}

// tinyShims stand in for util-linux's blkid and e2fsprogs' mkfs.ext4 in the
// tiny stemcell (ext2/3/4 only: what the local cloud's disks carry).
var tinyShims = map[string]string{
	// BOSH runs packaging scripts with bash; busybox's sh (ash) stands in.
	"bin/bash": "#!/bin/sh\n# kpaas tiny stemcell: bash is busybox sh (ash).\nexec /bin/sh \"$@\"\n",
	"sbin/blkid": `#!/bin/sh
# kpaas tiny stemcell: blkid for ext2/3/4 only (busybox-static has none).
# Accepts blkid's flags, looks at the last argument.
for dev; do :; done
[ -r "$dev" ] || exit 2
magic=$(dd if="$dev" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')
if [ "$magic" = "53ef" ]; then echo ext4; exit 0; fi
exit 2
`,
	"sbin/mkfs.ext4": `#!/bin/sh
# kpaas tiny stemcell: mkfs.ext4 through busybox mke2fs (an ext2 filesystem,
# which the kernel's ext4 driver mounts). Flags other than -F are ignored.
for dev; do :; done
exec mke2fs -F "$dev"
`,
}

// DebianOptions configure the Debian stemcell.
type DebianOptions struct {
	BuildOptions
	Suite  string // default bookworm
	Mirror string // default http://deb.debian.org/debian
	// Include lists extra packages (default: what the agent and BOSH jobs need).
	Include []string
}

// DefaultDebianPackages are installed on top of minbase.
var DefaultDebianPackages = []string{"iproute2", "iputils-ping", "procps", "e2fsprogs", "util-linux", "mount", "ca-certificates", "curl", "rsync", "less", "netbase", "ifupdown", "openssh-client"}

// Debian builds a Debian stemcell with debootstrap (variant minbase) plus the
// agent. It needs root, the debootstrap package and access to the Debian
// archive; it takes about a minute.
func Debian(ctx context.Context, o DebianOptions) (*Manifest, error) {
	o.defaults()
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if o.Mirror == "" {
		o.Mirror = "http://deb.debian.org/debian"
	}
	if o.Include == nil {
		o.Include = DefaultDebianPackages
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return nil, fmt.Errorf("building a Debian stemcell needs debootstrap: apt-get install -y debootstrap")
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("building a Debian stemcell needs root (debootstrap creates device nodes and chroots): run it with sudo")
	}
	work, cleanup, err := workDir(o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	root := filepath.Join(work, "rootfs")
	if err := debootstrap(ctx, o, root); err != nil {
		return nil, err
	}
	// Trim what a VM never uses.
	for _, p := range []string{"var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"} {
		_ = os.RemoveAll(filepath.Join(root, p))
		_ = os.MkdirAll(filepath.Join(root, p), 0o755)
	}
	if err := layout(root); err != nil {
		return nil, err
	}
	if err := installAgent(o.BuildOptions, root); err != nil {
		return nil, err
	}
	name := "bosh-kpaas-local-debian-" + o.Suite + "-go_agent"
	mf := Manifest{
		Name: name, Version: o.Version, OperatingSystem: "debian-" + o.Suite,
		APIVersion: 2, StemcellFormats: []string{FormatLocal},
		CloudProperties: map[string]any{"name": name, "version": o.Version, "infrastructure": "local", "hypervisor": "namespaces", "os_type": "linux", "os_distro": "debian", "architecture": "x86_64"},
	}
	return &mf, pack(ctx, o.BuildOptions, root, work, mf)
}

// layout creates BOSH's on-VM directories and the files a minimal system needs.
func layout(root string) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root", "var/run",
		"var/vcap/bosh/bin", "var/vcap/bosh/log", "var/vcap/data", "var/vcap/store", "var/vcap/sys/log", "var/vcap/sys/run",
		"var/vcap/jobs", "var/vcap/packages", "var/vcap/monit", "var/vcap/instance"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("laying out rootfs: %w", err)
		}
	}
	_ = os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	files := map[string]string{
		"etc/hosts":    "127.0.0.1 localhost\n",
		"etc/hostname": "localhost\n",
	}
	if _, err := os.Stat(filepath.Join(root, "etc/passwd")); err != nil {
		files["etc/passwd"] = "root:x:0:0:root:/root:/bin/sh\nvcap:x:1000:1000:BOSH System User:/home/vcap:/bin/sh\n"
		files["etc/group"] = "root:x:0:\nvcap:x:1000:\nbosh_sshers:x:1001:vcap\nbosh_sudoers:x:1002:\n"
	} else {
		ensureLine(filepath.Join(root, "etc/passwd"), "vcap:", "vcap:x:1000:1000:BOSH System User:/home/vcap:/bin/bash\n")
		ensureLine(filepath.Join(root, "etc/group"), "vcap:", "vcap:x:1000:\n")
		ensureLine(filepath.Join(root, "etc/group"), "bosh_sshers:", "bosh_sshers:x:1001:vcap\n")
		ensureLine(filepath.Join(root, "etc/group"), "bosh_sudoers:", "bosh_sudoers:x:1002:\n")
	}
	for p, content := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
			return fmt.Errorf("laying out rootfs: %w", err)
		}
	}
	return os.MkdirAll(filepath.Join(root, "home/vcap"), 0o755)
}

func ensureLine(path, prefix, line string) {
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return
		}
	}
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
	if err == nil {
		_, _ = fh.WriteString(line)
		fh.Close()
	}
}

// LocalAgentConfig is the agent.json of local-cloud stemcells: settings come
// from the file the local CPI writes (BOSH's warden stemcells do the same).
const LocalAgentConfig = `{"Platform":{"Linux":{"UsePreformattedPersistentDisk":true,"SkipDiskSetup":true}},` +
	`"Infrastructure":{"Settings":{"Sources":[{"Type":"File","SettingsPath":"/var/vcap/bosh/warden-cpi-agent-env.json"}]}}}` + "\n"

func installAgent(o BuildOptions, root string) error {
	if o.AgentBinary == "" {
		return fmt.Errorf("no agent binary given: build cmd/kpaas-agent (CGO_ENABLED=0 go build -o kpaas-agent ./cmd/kpaas-agent) and pass it with --agent")
	}
	if err := isStatic(o.AgentBinary); err != nil {
		return fmt.Errorf("agent binary: %w (build it with CGO_ENABLED=0)", err)
	}
	o.step("Installing agent %s at %s", o.AgentBinary, AgentPath)
	if err := os.WriteFile(filepath.Join(root, "var/vcap/bosh/agent.json"), []byte(LocalAgentConfig), 0o644); err != nil {
		return fmt.Errorf("writing agent.json: %w", err)
	}
	return copyFile(o.AgentBinary, filepath.Join(root, AgentPath), 0o755)
}

// pack writes the rootfs as the image (tar.gz of ".") and the stemcell tarball.
func pack(ctx context.Context, o BuildOptions, root, work string, mf Manifest) error {
	image := filepath.Join(work, "image")
	o.step("Packing rootfs into the image")
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", root, "-czf", image, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("packing rootfs: %w: %s", err, out)
	}
	o.step("Writing stemcell %s", o.Out)
	if err := Write(o.Out, mf, image); err != nil {
		return err
	}
	return nil
}

func workDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, os.MkdirAll(dir, 0o755)
	}
	d, err := os.MkdirTemp("", "kpaas-stemcell-")
	if err != nil {
		return "", nil, fmt.Errorf("creating work dir: %w", err)
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

// isStatic checks that path is an ELF executable without an interpreter
// (it must run in a rootfs without a libc).
func isStatic(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) < 4 || string(b[:4]) != "\x7fELF" {
		return fmt.Errorf("%s is not an ELF executable", path)
	}
	if bytes.Contains(b[:min(len(b), 4096)], []byte("/lib64/ld-linux")) || bytes.Contains(b[:min(len(b), 4096)], []byte("/lib/ld-linux")) {
		return fmt.Errorf("%s is dynamically linked", path)
	}
	return nil
}

type lineProgress struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (l *lineProgress) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
		if strings.HasPrefix(line, "I: Retrieving") || strings.HasPrefix(line, "I: Installing core") || strings.HasPrefix(line, "I: Base system installed") || strings.HasPrefix(line, "E:") || strings.HasPrefix(line, "W:") {
			fmt.Fprintln(l.w, l.prefix+line)
		}
	}
	return len(p), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
