package qemu

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

	"github.com/kpaas/kpaas/cpi"
)

// nic is one network interface of a VM: a tap device QEMU creates, put on
// the network's bridge.
type nic struct {
	Network string `json:"network"`
	Bridge  string `json:"bridge"`
	Tap     string `json:"tap"`
	IP      string `json:"ip"`
	Prefix  int    `json:"prefix"`
	Gateway string `json:"gateway"`
	MAC     string `json:"mac"`
}

type bridgeRecord struct {
	Name    string `json:"name"`
	CIDR    string `json:"cidr"`
	Gateway string `json:"gateway"`
}

// macFromIP derives a locally administered MAC from an IPv4 address (as the
// local cloud does, with another prefix), so a VM recreated with the same IP
// has the same MAC and the host's ARP cache stays right.
func macFromIP(ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	return net.HardwareAddr{0x02, 0x51, v4[0], v4[1], v4[2], v4[3]}
}

func bridgeName(cidr string, props cpi.Props) string {
	if s, ok := props["bridge"].(string); ok && s != "" {
		return s
	}
	h := sha1.Sum([]byte(cidr))
	return "kq" + hex.EncodeToString(h[:4])
}

func ipToU32(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }
func u32ToIP(u uint32) net.IP {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, u)
	return b
}

// planNICs turns create_vm's networks into NICs, allocating the IPs of dynamic
// networks from cloud_properties.range. used are the IPs other VMs hold.
func planNICs(vmID string, networks cpi.Networks, used map[string]string) ([]nic, cpi.Networks, error) {
	out := cpi.Networks{}
	var nics []nic
	for i, name := range networks.NetworkNames() {
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
		default:
			r, _ := n.CloudProperties["range"].(string)
			if r == "" {
				r, _ = n.CloudProperties["subnet"].(string)
			}
			_, sn, err := net.ParseCIDR(r)
			if err != nil || sn.IP.To4() == nil {
				return nil, nil, fmt.Errorf("dynamic network %s needs cloud_properties.range, an IPv4 CIDR the QEMU cloud allocates from (got %q)", name, r)
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
		nics = append(nics, nic{
			Network: name, Bridge: bridgeName(subnet.String(), n.CloudProperties),
			Tap: fmt.Sprintf("qt%s%d", vmID[len(vmID)-8:], i),
			IP:  ip.String(), Prefix: ones, Gateway: gw.String(), MAC: mac.String(),
		})
		n.IP, n.Netmask, n.Gateway, n.MAC = ip.String(), net.IP(subnet.Mask).String(), gw.String(), mac.String()
		if len(networks) == 1 && len(n.Default) == 0 {
			n.Default = []string{"dns", "gateway"}
		}
		out[name] = n
	}
	return nics, out, nil
}

func (q *QEMU) bridgesFile() string { return filepath.Join(q.cfg.Dir, "bridges.json") }

func (q *QEMU) loadBridges() (map[string]bridgeRecord, error) {
	m := map[string]bridgeRecord{}
	if err := readJSON(q.bridgesFile(), &m); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("reading bridges: %w", err)
	}
	return m, nil
}

// ensureBridges creates the bridges nics need, with the gateway address. Call
// with the lock held.
func (q *QEMU) ensureBridges(nics []nic) error {
	recs, err := q.loadBridges()
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
		if !q.cfg.NoIPForward {
			if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
				q.log.Warn("cannot turn on IP forwarding; VMs on different networks will not reach each other", "err", err)
			}
		}
		return writeJSON(q.bridgesFile(), recs)
	}
	return nil
}

// releaseBridges deletes the bridges this cloud created that no VM uses.
// Call with the lock held.
func (q *QEMU) releaseBridges() error {
	recs, err := q.loadBridges()
	if err != nil {
		return err
	}
	vms, err := q.listVMs()
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
		if err := writeJSON(q.bridgesFile(), recs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// plugTaps puts each tap QEMU created on its bridge and brings it up.
func plugTaps(nics []nic) error {
	for _, n := range nics {
		tap, err := netlink.LinkByName(n.Tap)
		if err != nil {
			return fmt.Errorf("tap %s: %w", n.Tap, err)
		}
		br, err := netlink.LinkByName(n.Bridge)
		if err != nil {
			return fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
		if err := netlink.LinkSetMaster(tap, br); err != nil {
			return fmt.Errorf("putting tap %s on bridge %s: %w", n.Tap, n.Bridge, err)
		}
		if err := netlink.LinkSetUp(tap); err != nil {
			return fmt.Errorf("bringing tap %s up: %w", n.Tap, err)
		}
	}
	return nil
}

// deleteTaps removes taps left behind (QEMU removes its own when it exits).
func deleteTaps(nics []nic) {
	for _, n := range nics {
		if l, err := netlink.LinkByName(n.Tap); err == nil {
			_ = netlink.LinkDel(l)
		}
	}
}

var _ = slices.Contains[[]string]
