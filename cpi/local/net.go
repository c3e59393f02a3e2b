package local

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/kpaas/kpaas/cpi"
)

// nic is one network interface of a VM.
type nic struct {
	Network  string `json:"network"`
	Bridge   string `json:"bridge"`
	HostVeth string `json:"host_veth"`
	Name     string `json:"name"` // inside the VM: eth0, eth1, ...
	IP       string `json:"ip"`
	Prefix   int    `json:"prefix"`
	Gateway  string `json:"gateway"`
	MAC      string `json:"mac"`
	Default  bool   `json:"default"` // carries the default route
}

// bridgeRecord is a bridge the local cloud created (and so may delete).
type bridgeRecord struct {
	Name    string `json:"name"`
	CIDR    string `json:"cidr"`
	Gateway string `json:"gateway"`
}

// macFromIP derives a locally administered MAC from an IPv4 address, so a VM
// recreated with the same IP keeps its MAC and the host's ARP cache stays
// right (a random MAC left the VM unreachable for ~26 s).
func macFromIP(ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	return net.HardwareAddr{0x02, 0x4b, v4[0], v4[1], v4[2], v4[3]}
}

func bridgeName(cidr string, props cpi.Props) string {
	if s, ok := props["bridge"].(string); ok && s != "" {
		return s
	}
	h := sha1.Sum([]byte(cidr))
	return "kb" + hex.EncodeToString(h[:4])
}

func ipToU32(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }
func u32ToIP(u uint32) net.IP {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, u)
	return b
}

// planNICs turns create_vm's networks into NICs, allocating the IPs of dynamic
// networks. used are the IPs taken by other VMs. It returns the networks as
// assigned (create_vm's v2 result).
func planNICs(vmID string, networks cpi.Networks, used map[string]string) ([]nic, cpi.Networks, error) {
	out := cpi.Networks{}
	var nics []nic
	names := networks.NetworkNames()
	for i, name := range names {
		n := networks[name]
		var subnet *net.IPNet
		var ip net.IP
		switch {
		case n.IP != "" && n.Type != "dynamic":
			ip = net.ParseIP(n.IP).To4()
			if ip == nil {
				return nil, nil, fmt.Errorf("network %s: ip %q is not an IPv4 address", name, n.IP)
			}
			mask := net.IPMask(net.ParseIP(n.Netmask).To4())
			if n.Netmask == "" || mask == nil {
				return nil, nil, fmt.Errorf("network %s: netmask %q is not an IPv4 netmask", name, n.Netmask)
			}
			subnet = &net.IPNet{IP: ip.Mask(mask), Mask: mask}
			if other, ok := used[ip.String()]; ok {
				return nil, nil, fmt.Errorf("network %s: ip %s is already used by VM %s", name, ip, other)
			}
		default: // dynamic: allocate from cloud_properties.range
			r, _ := n.CloudProperties["range"].(string)
			if r == "" {
				r, _ = n.CloudProperties["subnet"].(string)
			}
			_, sn, err := net.ParseCIDR(r)
			if err != nil || sn.IP.To4() == nil {
				return nil, nil, fmt.Errorf("dynamic network %s needs cloud_properties.range, an IPv4 CIDR the local cloud allocates from (got %q)", name, r)
			}
			subnet = sn
		}
		ones, bits := subnet.Mask.Size()
		first := ipToU32(subnet.IP) + 1
		last := ipToU32(subnet.IP) + uint32(1)<<(bits-ones) - 2
		gw := net.ParseIP(n.Gateway).To4()
		if gw == nil {
			if g, _ := n.CloudProperties["gateway"].(string); g != "" {
				gw = net.ParseIP(g).To4()
			}
		}
		if gw == nil {
			gw = u32ToIP(first)
		}
		if ip == nil {
			for u := first; u <= last; u++ {
				cand := u32ToIP(u)
				if _, taken := used[cand.String()]; !taken && !cand.Equal(gw) {
					ip = cand
					break
				}
			}
			if ip == nil {
				return nil, nil, fmt.Errorf("dynamic network %s: no free IP left in %s", name, subnet)
			}
		}
		if ip.Equal(gw) {
			return nil, nil, fmt.Errorf("network %s: ip %s is the gateway's (the host's address on the bridge)", name, ip)
		}
		used[ip.String()] = vmID
		mac := macFromIP(ip)
		isDefault := slices.Contains(n.Default, "gateway") || len(names) == 1
		nics = append(nics, nic{
			Network: name, Bridge: bridgeName(subnet.String(), n.CloudProperties),
			HostVeth: fmt.Sprintf("kv%s%d", vmID[len(vmID)-8:], i), Name: fmt.Sprintf("eth%d", i),
			IP: ip.String(), Prefix: ones, Gateway: gw.String(), MAC: mac.String(), Default: isDefault,
		})
		n.IP, n.Netmask, n.Gateway, n.MAC = ip.String(), net.IP(subnet.Mask).String(), gw.String(), mac.String()
		out[name] = n
	}
	// Exactly one default route: the first NIC that asked for it, else the first NIC.
	hasDefault := false
	for i := range nics {
		if nics[i].Default && !hasDefault {
			hasDefault = true
		} else {
			nics[i].Default = false
		}
	}
	if !hasDefault && len(nics) > 0 {
		nics[0].Default = true
	}
	return nics, out, nil
}

func (l *Local) bridgesFile() string { return filepath.Join(l.cfg.Dir, "bridges.json") }

func (l *Local) loadBridges() (map[string]bridgeRecord, error) {
	m := map[string]bridgeRecord{}
	if err := readJSON(l.bridgesFile(), &m); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("reading bridges: %w", err)
	}
	return m, nil
}

// ensureBridges creates the bridges nics need (with the gateway address and
// a MAC derived from it). Call with the lock held.
func (l *Local) ensureBridges(nics []nic) error {
	recs, err := l.loadBridges()
	if err != nil {
		return err
	}
	changed := false
	for _, n := range nics {
		gw := net.ParseIP(n.Gateway).To4()
		link, err := netlink.LinkByName(n.Bridge)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				return fmt.Errorf("looking up bridge %s: %w", n.Bridge, err)
			}
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, HardwareAddr: macFromIP(gw)}}
			if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, syscall.EEXIST) {
				return fmt.Errorf("creating bridge %s: %w", n.Bridge, err)
			}
			recs[n.Bridge] = bridgeRecord{Name: n.Bridge, CIDR: fmt.Sprintf("%s/%d", n.Gateway, n.Prefix), Gateway: n.Gateway}
			changed = true
			if link, err = netlink.LinkByName(n.Bridge); err != nil {
				return fmt.Errorf("looking up bridge %s: %w", n.Bridge, err)
			}
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw, Mask: net.CIDRMask(n.Prefix, 32)}}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("adding %s to bridge %s: %w", addr.IPNet, n.Bridge, err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("bringing bridge %s up: %w", n.Bridge, err)
		}
	}
	if changed {
		if !l.cfg.NoIPForward {
			if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
				l.log.Warn("cannot turn on IP forwarding; VMs on different networks will not reach each other", "err", err)
			}
		}
		return writeJSON(l.bridgesFile(), recs)
	}
	return nil
}

// releaseBridges deletes the bridges the local cloud created that no VM uses
// any more. Call with the lock held.
func (l *Local) releaseBridges() error {
	recs, err := l.loadBridges()
	if err != nil {
		return err
	}
	vms, err := l.listVMs()
	if err != nil {
		return err
	}
	inUse := map[string]bool{}
	for _, vm := range vms {
		for _, n := range vm.NICs {
			inUse[n.Bridge] = true
		}
	}
	changed := false
	var errs []error
	for name := range recs {
		if inUse[name] {
			continue
		}
		if link, err := netlink.LinkByName(name); err == nil {
			if err := netlink.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("deleting bridge %s: %w", name, err))
				continue
			}
		}
		delete(recs, name)
		changed = true
	}
	if changed {
		if err := writeJSON(l.bridgesFile(), recs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// plugNICs creates each NIC's veth pair, the host end on its bridge and the
// VM end (with the MAC from its IP) inside the network namespace of pid, and
// configures addresses and the default route there.
func plugNICs(pid int, nics []nic) error {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("opening the network namespace of pid %d: %w", pid, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("opening netlink in the VM's namespace: %w", err)
	}
	defer h.Close()
	if lo, err := h.LinkByName("lo"); err == nil {
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("bringing lo up: %w", err)
		}
	}
	for _, n := range nics {
		br, err := netlink.LinkByName(n.Bridge)
		if err != nil {
			return fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
		mac, _ := net.ParseMAC(n.MAC)
		// A host end left over from a VM process that died (host reboot, crash) goes first.
		if old, err := netlink.LinkByName(n.HostVeth); err == nil {
			_ = netlink.LinkDel(old)
		}
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: n.HostVeth, MasterIndex: br.Attrs().Index},
			PeerName:         n.Name,
			PeerHardwareAddr: mac,
			PeerNamespace:    netlink.NsFd(int(ns)),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("creating veth %s for network %s: %w", n.HostVeth, n.Network, err)
		}
		host, err := netlink.LinkByName(n.HostVeth)
		if err != nil {
			return fmt.Errorf("veth %s: %w", n.HostVeth, err)
		}
		if err := netlink.LinkSetUp(host); err != nil {
			return fmt.Errorf("bringing veth %s up: %w", n.HostVeth, err)
		}
		in, err := h.LinkByName(n.Name)
		if err != nil {
			return fmt.Errorf("finding %s in the VM: %w", n.Name, err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(n.IP).To4(), Mask: net.CIDRMask(n.Prefix, 32)}}
		if err := h.AddrAdd(in, addr); err != nil {
			return fmt.Errorf("adding %s to %s in the VM: %w", addr.IPNet, n.Name, err)
		}
		if err := h.LinkSetUp(in); err != nil {
			return fmt.Errorf("bringing %s up in the VM: %w", n.Name, err)
		}
		if n.Default {
			if err := h.RouteAdd(&netlink.Route{LinkIndex: in.Attrs().Index, Gw: net.ParseIP(n.Gateway).To4()}); err != nil {
				return fmt.Errorf("adding the default route via %s in the VM: %w", n.Gateway, err)
			}
		}
	}
	return nil
}

// unplugNICs deletes the host ends of the VM's veths (the VM ends go with its
// namespace).
func unplugNICs(nics []nic) error {
	var errs []error
	for _, n := range nics {
		link, err := netlink.LinkByName(n.HostVeth)
		if err != nil {
			continue
		}
		// The kernel also deletes it when the VM's namespace goes: gone is fine.
		if err := netlink.LinkDel(link); err != nil && !errors.Is(err, syscall.ENODEV) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting veth %s: %w", n.HostVeth, err))
		}
	}
	return errors.Join(errs...)
}
