package local

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/internal/hostnet"
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

// alloc plans the local cloud's addresses: MACs 02:4b:<ip>, bridges kb<hash>.
var alloc = hostnet.Allocator{Cloud: "the local cloud", MACPrefix: 0x4b, BridgePrefix: "kb"}

// planNICs turns create_vm's networks into NICs, allocating the IPs of dynamic
// networks. used are the IPs taken by other VMs. It returns the networks as
// assigned (create_vm's v2 result).
func planNICs(vmID string, networks cpi.Networks, used map[string]string) ([]nic, cpi.Networks, error) {
	addrs, out, err := alloc.Plan(vmID, networks, used)
	if err != nil {
		return nil, nil, err
	}
	nics := make([]nic, 0, len(addrs))
	for i, a := range addrs {
		isDefault := slices.Contains(networks[a.Network].Default, "gateway") || len(addrs) == 1
		nics = append(nics, nic{
			Network: a.Network, Bridge: a.Bridge,
			HostVeth: fmt.Sprintf("kv%s%d", vmID[len(vmID)-8:], i), Name: fmt.Sprintf("eth%d", i),
			IP: a.IP.String(), Prefix: a.Prefix, Gateway: a.Gateway.String(), MAC: a.MAC.String(), Default: isDefault,
		})
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

func (l *Local) bridges() hostnet.Bridges {
	return hostnet.Bridges{File: filepath.Join(l.cfg.Dir, "bridges.json"), MACPrefix: alloc.MACPrefix,
		Sync: true, NoIPForward: l.cfg.NoIPForward, Log: l.log}
}

func (l *Local) loadBridges() (map[string]hostnet.BridgeRecord, error) { return l.bridges().Load() }

// ensureBridges creates the bridges nics need (with the gateway address and
// a MAC derived from it). Call with the lock held.
func (l *Local) ensureBridges(nics []nic) error {
	want := make([]hostnet.Bridge, 0, len(nics))
	for _, n := range nics {
		want = append(want, hostnet.Bridge{Name: n.Bridge, Gateway: n.Gateway, Prefix: n.Prefix})
	}
	return l.bridges().Ensure(want)
}

// releaseBridges deletes the bridges the local cloud created that no VM uses
// any more. Call with the lock held.
func (l *Local) releaseBridges() error {
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
	return l.bridges().Release(inUse)
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
