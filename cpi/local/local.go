// Package local is the local cloud, kpaas's default CPI: a VM is a set of
// Linux namespaces (mount, PID, network, UTS, IPC) on this host, its root
// filesystem the stemcell's rootfs shared read-only through overlayfs with a
// per-VM writable upper layer (the ephemeral disk), its NICs veth pairs into
// one Linux bridge per network (MAC derived from the IP), its persistent disks
// sparse ext4 image files attached as loop devices, its limits cgroups (v1 or
// v2), and its init the stemcell's agent, which reads the settings the driver
// writes into the VM's filesystem. A VM whose cloud_properties say
// container_host: true can run containers (a Kubernetes node): it gets its
// own cgroup namespace with every hierarchy mounted, its own copies of the
// global sysctls the kubelet writes, /dev/kmsg, and /var/vcap/data on the
// host's filesystem (see containerHostSpec).
//
// Everything the driver knows lives under its state directory, so kpaas can
// be restarted and a host reboot recovered (has_vm stays true for a VM whose
// processes are gone; reboot_vm starts it again). It needs root. It imports
// cpi, pkg/agent/settings and stemcells; nothing above it.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/internal/statefile"
	"github.com/kpaas/kpaas/stemcells"
)

// Config configures the local cloud.
type Config struct {
	// Dir is the state directory (VMs, disks, stemcells, bridges).
	Dir string `json:"dir"`
	// AgentPath is the init run in each VM (default stemcells.AgentPath).
	AgentPath string `json:"agent_path,omitempty"`
	// AgentArgs are passed to the init.
	AgentArgs []string `json:"agent_args,omitempty"`
	// InitCommand starts the launcher that becomes a VM's PID 1 before it
	// execs the agent (default: this executable's hidden `cpi local-vm-init`).
	// The spec file path is appended.
	InitCommand []string `json:"init_command,omitempty"`
	// NoIPForward leaves the host's net.ipv4.ip_forward alone. By default the
	// local cloud turns it on when it creates a bridge, so VMs on different
	// networks reach each other through the host (as bosh-lite does).
	NoIPForward bool `json:"no_ip_forward,omitempty"`
	// StartTimeout bounds starting one VM (default 30s).
	StartTimeout time.Duration `json:"-"`
}

// ErrNeedsRoot says the local cloud cannot run without root.
var ErrNeedsRoot = errors.New("the local cloud needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create namespaces, mounts, bridges and loop devices: run kpaas as root (sudo kpaas ...)")

// Local is the local cloud driver.
type Local struct {
	cfg    Config
	log    *slog.Logger
	cg     cgroups
	exited chan struct{}
}

// New opens the local cloud in cfg.Dir.
func New(cfg Config, logger *slog.Logger) (*Local, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNeedsRoot
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("local cloud: no state directory given (config key \"dir\")")
	}
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = abs
	if cfg.AgentPath == "" {
		cfg.AgentPath = stemcells.AgentPath
	}
	if len(cfg.InitCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("local cloud: finding the kpaas executable for the VM launcher: %w", err)
		}
		cfg.InitCommand = []string{exe, "cpi", "local-vm-init"}
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, d := range []string{"vms", "disks", "stemcells", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("local cloud: creating state directory: %w", err)
		}
	}
	return &Local{cfg: cfg, log: logger, cg: detectCgroups(cfg.Dir)}, nil
}

// Dir is the state directory.
func (l *Local) Dir() string { return l.cfg.Dir }

func newID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Info implements cpi.CPI.
func (l *Local) Info(ctx context.Context) (cpi.Info, error) {
	return cpi.Info{APIVersion: 2, StemcellFormats: []string{stemcells.FormatLocal, "general-tar"}, Capabilities: slices.Clone(cpi.AllCapabilities)}, nil
}

// --- stemcells ---------------------------------------------------------------

type stemcellRecord struct {
	CID       cpi.StemcellCID `json:"cid"`
	Props     cpi.Props       `json:"cloud_properties,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

func (l *Local) stemcellDir(cid cpi.StemcellCID) string {
	return filepath.Join(l.cfg.Dir, "stemcells", string(cid))
}

// CreateStemcell unpacks the image (a tar.gz of the root filesystem) into the
// state directory. A whole stemcell tarball (stemcell.MF + image) is accepted too.
func (l *Local) CreateStemcell(ctx context.Context, imagePath string, props cpi.Props) (cpi.StemcellCID, error) {
	if _, err := os.Stat(imagePath); err != nil {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "creating stemcell: %w", err)
	}
	cid := cpi.StemcellCID(newID("sc-"))
	dir := l.stemcellDir(cid)
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "creating stemcell: %w", err)
	}
	fail := func(err error) (cpi.StemcellCID, error) {
		_ = os.RemoveAll(dir)
		return "", cpi.Errorf(cpi.TypeCloudError, false, "creating stemcell from %s: %w", imagePath, err)
	}
	image := imagePath
	if isStemcellTarball(imagePath) {
		tb, err := stemcells.Open(imagePath, dir)
		if err != nil {
			return fail(err)
		}
		image = tb.ImagePath
		if props == nil {
			props = tb.Manifest.CloudProperties
		}
	}
	out, err := exec.CommandContext(ctx, "tar", "--numeric-owner", "-xzf", image, "-C", rootfs).CombinedOutput()
	if err != nil {
		return fail(fmt.Errorf("unpacking the image (a tar.gz of the root filesystem): %v: %s", err, strings.TrimSpace(string(out))))
	}
	if image != imagePath {
		_ = os.Remove(image)
	}
	if err := writeJSON(filepath.Join(dir, "stemcell.json"), stemcellRecord{CID: cid, Props: props, CreatedAt: time.Now().UTC()}); err != nil {
		return fail(err)
	}
	return cid, nil
}

func isStemcellTarball(path string) bool {
	out, err := exec.Command("tar", "-tzf", path, "stemcell.MF").CombinedOutput()
	return err == nil && strings.TrimSpace(string(out)) == "stemcell.MF"
}

// DeleteStemcell implements cpi.CPI. A stemcell still used by a VM stays on
// disk until that VM is gone (its overlay needs the rootfs); it is refused.
func (l *Local) DeleteStemcell(ctx context.Context, cid cpi.StemcellCID) error {
	if !safeID(string(cid)) {
		return nil
	}
	vms, err := l.listVMs()
	if err != nil {
		return cerr(err)
	}
	for _, vm := range vms {
		if vm.Stemcell == cid {
			return cpi.Errorf(cpi.TypeCloudError, false, "stemcell '%s' is used by VM '%s'; delete the VM first", cid, vm.CID)
		}
	}
	if err := os.RemoveAll(l.stemcellDir(cid)); err != nil {
		return cpi.Errorf(cpi.TypeCloudError, false, "deleting stemcell: %w", err)
	}
	return nil
}

// --- state files -------------------------------------------------------------

// safeID keeps CIDs from naming paths outside the state directory.
func safeID(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/\\") && s != "." && s != ".."
}

// writeJSON writes v atomically and durably (temp file, fsync, rename).
func writeJSON(path string, v any) error { return writeJSONSync(path, v, true) }

// writeJSONSync writes v atomically; durably when sync (what does not outlive
// the host's uptime, like a PID, needs no fsync).
func writeJSONSync(path string, v any, sync bool) error { return statefile.WriteJSON(path, v, sync) }

func readJSON(path string, v any) error { return statefile.ReadJSON(path, v) }

// lock takes the state directory's lock (between goroutines and processes).
func (l *Local) lock() (func(), error) {
	return statefile.Lock(filepath.Join(l.cfg.Dir, "lock"), "the local cloud")
}

// cerr turns err into a *cpi.Error, keeping nil nil (a nil *cpi.Error in an
// error interface is not nil).
func cerr(err error) error {
	if err == nil {
		return nil
	}
	return cpi.AsError(err)
}
