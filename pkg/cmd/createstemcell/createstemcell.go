// Package createstemcell implements `kpaas create-stemcell`: it builds a
// stemcell in BOSH's tarball format with kpaas-agent installed, either the
// tiny busybox test stemcell (offline, seconds) or a Debian one (debootstrap
// minbase, about a minute, needs the Debian archive). The building lives in
// the stemcells package; this package parses flags and renders.
package createstemcell

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
	"github.com/kpaas/kpaas/stemcells"
)

// Options of `kpaas create-stemcell`.
type Options struct {
	IO      *ui.IOStreams
	Now     func() time.Time
	JSON    bool
	OS      string // busybox or debian
	Suite   string
	Mirror  string
	Agent   string
	Busybox string
	Out     string
	Version string
	Format  string
	WorkDir string
	DiskMiB int
}

// NewCmdCreateStemcell builds `kpaas create-stemcell`. runF replaces the run function in tests.
func NewCmdCreateStemcell(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "create-stemcell [--os debian|busybox] --agent FILE [-o FILE]",
		Short: "Build a stemcell (BOSH tarball format) with kpaas-agent installed",
		Long: `Build a stemcell for the local cloud: a BOSH stemcell tarball (stemcell.MF and
an image, here a tar.gz of the root filesystem) with kpaas-agent at
/var/vcap/bosh/bin/kpaas-agent.

  --os debian    Debian (bookworm by default) from debootstrap --variant=minbase;
                 needs root, the debootstrap package and the Debian archive (~1 minute).
  --os busybox   the tiny test stemcell: busybox-static and the agent, built offline
                 in under a second.

  --format qcow2 (with --os debian) builds OpenStack's format instead: a bootable qcow2
                 disk (MBR, ext4 labelled root, extlinux, systemd starting kpaas-agent, DHCP),
                 with agent.json reading the config drive, then the metadata service. Needs
                 extlinux, syslinux-common and qemu-utils besides debootstrap.
  --format ova   (with --os debian) vSphere's format: image.ovf, a streamOptimized
                 image-disk1.vmdk of the same boot disk (generic kernel, open-vm-tools)
                 and image.mf; agent.json reads guestinfo.`,
		Example: `  kpaas create-stemcell --os busybox --agent bin/kpaas-agent -o tiny.tgz
  sudo kpaas create-stemcell --os debian --agent bin/kpaas-agent -o bookworm.tgz
  sudo kpaas create-stemcell --os debian --format qcow2 --agent bin/kpaas-agent -o openstack.tgz
  sudo kpaas create-stemcell --os debian --format ova --agent bin/kpaas-agent -o vsphere.tgz
  kpaas create-stemcell --os busybox --agent bin/kpaas-agent --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			switch opts.OS {
			case "debian", "busybox":
			default:
				return cmdutil.FlagErrorf("--os must be debian or busybox, not %q", opts.OS)
			}
			switch opts.Format {
			case "local":
			case "qcow2", "ova":
				if opts.OS != "debian" {
					return cmdutil.FlagErrorf("--format %s needs --os debian (the tiny stemcell does not boot a kernel)", opts.Format)
				}
			default:
				return cmdutil.FlagErrorf("--format must be local, qcow2 or ova, not %q", opts.Format)
			}
			if opts.Agent == "" {
				opts.Agent = findAgent()
				if opts.Agent == "" {
					return cmdutil.FlagErrorf("--agent is required: the kpaas-agent binary to install (CGO_ENABLED=0 go build -o kpaas-agent ./cmd/kpaas-agent)")
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return createStemcellRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.OS, "os", "debian", "Operating system: debian or busybox (the tiny test stemcell)")
	fl.StringVar(&opts.Suite, "suite", "bookworm", "Debian suite (with --os debian)")
	fl.StringVar(&opts.Mirror, "mirror", "http://deb.debian.org/debian", "Debian mirror `URL` (with --os debian)")
	fl.StringVar(&opts.Agent, "agent", "", "kpaas-agent binary `file` to install (default: kpaas-agent beside kpaas)")
	fl.StringVar(&opts.Busybox, "busybox", "/bin/busybox", "Static busybox `file` (with --os busybox)")
	fl.StringVarP(&opts.Out, "output", "o", "", "Stemcell tarball to write (default: <name>-<version>.tgz)")
	fl.StringVar(&opts.Version, "version", "", "Stemcell version (default: the UTC date and time)")
	fl.StringVar(&opts.Format, "format", "local", "Image format: local (tar.gz rootfs, the local cloud), qcow2 (OpenStack, QEMU) or ova (vSphere: OVF + streamOptimized vmdk)")
	fl.IntVar(&opts.DiskMiB, "disk-size", 3072, "Root disk size in MiB (with --format qcow2 or ova)")
	fl.StringVar(&opts.WorkDir, "work-dir", "", "Keep the build's rootfs in `dir` (default: a temp dir, removed)")
	return cmd
}

func findAgent() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "kpaas-agent")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

type stemcellView struct {
	Path            string   `json:"path"`
	Name            string   `json:"name"`
	Version         string   `json:"version"`
	OperatingSystem string   `json:"operating_system"`
	APIVersion      int      `json:"api_version"`
	StemcellFormats []string `json:"stemcell_formats"`
	SHA1            string   `json:"sha1"`
	Size            int64    `json:"size"`
	Elapsed         string   `json:"elapsed"`
}

func createStemcellRun(ctx context.Context, opts *Options) error {
	start := opts.Now()
	out := opts.Out
	tmpOut := out
	if tmpOut == "" {
		tmpOut = filepath.Join(".", fmt.Sprintf(".kpaas-stemcell-%d.tgz", start.UnixNano()))
	}
	bo := stemcells.BuildOptions{AgentBinary: opts.Agent, Out: tmpOut, Version: opts.Version, WorkDir: opts.WorkDir, Progress: opts.IO.ErrOut, Now: opts.Now}
	var mf *stemcells.Manifest
	var err error
	switch {
	case opts.OS == "busybox":
		mf, err = stemcells.Tiny(ctx, stemcells.TinyOptions{BuildOptions: bo, Busybox: opts.Busybox})
	case opts.Format == "qcow2":
		mf, err = stemcells.OpenStack(ctx, stemcells.OpenStackOptions{DebianOptions: stemcells.DebianOptions{BuildOptions: bo, Suite: opts.Suite, Mirror: opts.Mirror}, DiskMiB: opts.DiskMiB})
	case opts.Format == "ova":
		mf, err = stemcells.VSphere(ctx, stemcells.OpenStackOptions{DebianOptions: stemcells.DebianOptions{BuildOptions: bo, Suite: opts.Suite, Mirror: opts.Mirror}, DiskMiB: opts.DiskMiB})
	default:
		mf, err = stemcells.Debian(ctx, stemcells.DebianOptions{BuildOptions: bo, Suite: opts.Suite, Mirror: opts.Mirror})
	}
	if err != nil {
		return fmt.Errorf("creating stemcell: %w", err)
	}
	if out == "" {
		out = fmt.Sprintf("%s-%s.tgz", mf.Name, mf.Version)
		if err := os.Rename(tmpOut, out); err != nil {
			return fmt.Errorf("creating stemcell: %w", err)
		}
	}
	tb, err := stemcells.Open(out, mustTemp())
	if err != nil {
		return fmt.Errorf("checking the stemcell just built: %w", err)
	}
	_ = os.RemoveAll(filepath.Dir(tb.ImagePath))
	fi, _ := os.Stat(out)
	v := stemcellView{Path: out, Name: tb.Manifest.Name, Version: tb.Manifest.Version, OperatingSystem: tb.Manifest.OperatingSystem,
		APIVersion: tb.Manifest.APIVersion, StemcellFormats: tb.Manifest.StemcellFormats, SHA1: tb.Manifest.SHA1, Size: fi.Size(),
		Elapsed: opts.Now().Sub(start).Round(time.Millisecond).String()}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, v)
	}
	_, err = fmt.Fprintf(opts.IO.Out, "Stemcell %s/%s (%s) written to %s (%d bytes, sha1 %s) in %s\n",
		v.Name, v.Version, v.OperatingSystem, v.Path, v.Size, v.SHA1, v.Elapsed)
	return err
}

func mustTemp() string {
	d, err := os.MkdirTemp("", "kpaas-stemcell-check-")
	if err != nil {
		return os.TempDir()
	}
	return d
}
