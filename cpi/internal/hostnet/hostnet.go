// Package hostnet holds the host networking the local and QEMU clouds share:
// IPv4 allocation for create_vm's networks, MACs derived from IPs, and the
// bridges a cloud creates (recorded in a JSON file so it deletes only its own).
package hostnet

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/internal/statefile"
)

// MACFromIP derives a locally administered MAC (02:prefix:ip) from an IPv4
// address, so a VM recreated with the same IP keeps its MAC and the host's
// ARP cache stays right.
func MACFromIP(prefix byte, ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	return net.HardwareAddr{0x02, prefix, v4[0], v4[1], v4[2], v4[3]}
}

// BridgeName is cloud_properties.bridge, else prefix + a hash of cidr.
func BridgeName(prefix, cidr string, props cpi.Props) string {
	if s, ok := props["bridge"].(string); ok && s != "" {
		return s
	}
	h := sha1.Sum([]byte(cidr))
	return prefix + hex.EncodeToString(h[:4])
}

func ipToU32(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }
func u32ToIP(u uint32) net.IP {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, u)
	return b
}

// Allocator plans the addresses of a cloud's VMs.
type Allocator struct {
	Cloud        string // in errors: "the local cloud"
	MACPrefix    byte   // second byte of derived MACs
	BridgePrefix string // of derived bridge names
}

// Addr is one network of a VM as planned.
type Addr struct {
	Network string
	Bridge  string
	IP      net.IP
	Prefix  int
	Gateway net.IP
	MAC     net.HardwareAddr
}

// Plan assigns each of networks (in NetworkNames order) an IP, gateway and
// MAC, allocating the IPs of dynamic networks from cloud_properties.range
// (or .subnet). used maps IPs other VMs hold to their VM; the new ones are
// added for vmID. It returns the addresses and the networks as assigned
// (create_vm's v2 result).
func (a Allocator) Plan(vmID string, networks cpi.Networks, used map[string]string) ([]Addr, cpi.Networks, error) {
	out := cpi.Networks{}
	var addrs []Addr
	for _, name := range networks.NetworkNames() {
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
				return nil, nil, fmt.Errorf("dynamic network %s needs cloud_properties.range, an IPv4 CIDR %s allocates from (got %q)", name, a.Cloud, r)
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
		mac := MACFromIP(a.MACPrefix, ip)
		addrs = append(addrs, Addr{
			Network: name, Bridge: BridgeName(a.BridgePrefix, subnet.String(), n.CloudProperties),
			IP: ip, Prefix: ones, Gateway: gw, MAC: mac,
		})
		n.IP, n.Netmask, n.Gateway, n.MAC = ip.String(), net.IP(subnet.Mask).String(), gw.String(), mac.String()
		out[name] = n
	}
	return addrs, out, nil
}

// BridgeRecord is a bridge the cloud created (and so may delete).
type BridgeRecord struct {
	Name    string `json:"name"`
	CIDR    string `json:"cidr"`
	Gateway string `json:"gateway"`
}

// Bridge is a bridge a VM needs: its name and the host's (gateway) address.
type Bridge struct {
	Name    string
	Gateway string
	Prefix  int
}

// Bridges manages a cloud's bridges, recorded in File.
type Bridges struct {
	File        string
	MACPrefix   byte
	Sync        bool // fsync the record file
	NoIPForward bool
	Log         *slog.Logger
}

// Load reads the bridges created so far.
func (b Bridges) Load() (map[string]BridgeRecord, error) {
	m := map[string]BridgeRecord{}
	if err := statefile.ReadJSON(b.File, &m); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("reading bridges: %w", err)
	}
	return m, nil
}

// Ensure creates the bridges wanted (with the gateway address and a MAC
// derived from it) and turns on IP forwarding when it created one. Call with
// the cloud's lock held.
func (b Bridges) Ensure(want []Bridge) error {
	recs, err := b.Load()
	if err != nil {
		return err
	}
	changed := false
	for _, n := range want {
		gw := net.ParseIP(n.Gateway).To4()
		link, err := netlink.LinkByName(n.Name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				return fmt.Errorf("looking up bridge %s: %w", n.Name, err)
			}
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Name, HardwareAddr: MACFromIP(b.MACPrefix, gw)}}
			if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, syscall.EEXIST) {
				return fmt.Errorf("creating bridge %s: %w", n.Name, err)
			}
			recs[n.Name] = BridgeRecord{Name: n.Name, CIDR: fmt.Sprintf("%s/%d", n.Gateway, n.Prefix), Gateway: n.Gateway}
			changed = true
			if link, err = netlink.LinkByName(n.Name); err != nil {
				return fmt.Errorf("looking up bridge %s: %w", n.Name, err)
			}
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw, Mask: net.CIDRMask(n.Prefix, 32)}}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("adding %s to bridge %s: %w", addr.IPNet, n.Name, err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("bringing bridge %s up: %w", n.Name, err)
		}
	}
	if changed {
		if !b.NoIPForward {
			if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
				b.Log.Warn("cannot turn on IP forwarding; VMs on different networks will not reach each other", "err", err)
			}
		}
		return statefile.WriteJSON(b.File, recs, b.Sync)
	}
	return nil
}

// Release deletes the bridges the cloud created that are not inUse. Call
// with the cloud's lock held.
func (b Bridges) Release(inUse map[string]bool) error {
	recs, err := b.Load()
	if err != nil {
		return err
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
		if err := statefile.WriteJSON(b.File, recs, b.Sync); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
