package agent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
)

// SetupPlatform prepares the machine from the settings when the agent owns
// it (Options.Platform): hostname (the agent id, as BOSH), the manual
// networks' addresses and routes (ConfigureNetworks; DHCP and preconfigured
// networks are left to the OS), resolv.conf from the default network's DNS,
// and the ephemeral disk on /var/vcap/data. Problems are returned as warnings: the agent must come
// up to be reachable.
func (a *Agent) SetupPlatform(ctx context.Context) []error {
	if !a.platform {
		return nil
	}
	var warns []error
	a.mu.Lock()
	s := *a.settings
	a.mu.Unlock()
	if s.AgentID != "" {
		if err := syscall.Sethostname([]byte(s.AgentID)); err != nil {
			warns = append(warns, fmt.Errorf("setting hostname: %w", err))
		} else {
			os.WriteFile("/etc/hostname", []byte(s.AgentID+"\n"), 0o644)
		}
	}
	if h, err := netlink.NewHandle(); err != nil {
		warns = append(warns, fmt.Errorf("configuring networks: %w", err))
	} else {
		notes, err := ConfigureNetworks(h, s.Networks)
		h.Close()
		for _, n := range notes {
			a.log.Info(n)
		}
		if err != nil {
			warns = append(warns, fmt.Errorf("configuring networks: %w", err))
		}
	}
	if _, n, ok := s.DefaultNetwork(); ok && len(n.DNS) > 0 {
		var b strings.Builder
		for _, d := range n.DNS {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		if err := writeFileAtomic("/etc/resolv.conf", []byte(b.String()), 0o644); err != nil {
			warns = append(warns, fmt.Errorf("writing resolv.conf: %w", err))
		}
	}
	if dev := hintDevice(s.Disks.Ephemeral); dev != "" && !a.isMountPoint(a.layout.Data()) {
		if fi, err := os.Stat(dev); err == nil && fi.Mode()&os.ModeDevice != 0 {
			if formatted, err := hasFilesystem(ctx, dev); err != nil {
				warns = append(warns, err)
			} else if !formatted {
				if _, err := runCmd(ctx, "mkfs.ext4", "-q", "-F", dev); err != nil {
					warns = append(warns, err)
				}
			}
			if _, err := runCmd(ctx, "mount", dev, a.layout.Data()); err != nil {
				warns = append(warns, err)
			} else if err := a.layout.Ensure(); err != nil {
				warns = append(warns, err)
			}
		} else {
			warns = append(warns, fmt.Errorf("ephemeral disk %q is not a block device; using the root disk for /var/vcap/data", dev))
		}
	}
	// /var/vcap/sys/run is a tmpfs, as BOSH's: pidfiles do not survive a reboot.
	if run := a.layout.Path("/var/vcap/data/sys/run"); !a.isMountPoint(run) {
		if _, err := runCmd(ctx, "mount", "-t", "tmpfs", "-o", "size=16m,mode=0750", "tmpfs", run); err != nil {
			warns = append(warns, err)
		}
	}
	return warns
}
