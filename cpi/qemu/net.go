package qemu

import (
	"fmt"
	"path/filepath"

	"github.com/vishvananda/netlink"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/internal/hostnet"
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

// alloc plans the QEMU cloud's addresses: MACs 02:51:<ip> (the local cloud
// uses another prefix), bridges kq<hash>.
var alloc = hostnet.Allocator{Cloud: "the QEMU cloud", MACPrefix: 0x51, BridgePrefix: "kq"}

// planNICs turns create_vm's networks into NICs, allocating the IPs of dynamic
// networks from cloud_properties.range. used are the IPs other VMs hold.
func planNICs(vmID string, networks cpi.Networks, used map[string]string) ([]nic, cpi.Networks, error) {
	addrs, out, err := alloc.Plan(vmID, networks, used)
	if err != nil {
		return nil, nil, err
	}
	nics := make([]nic, 0, len(addrs))
	for i, a := range addrs {
		nics = append(nics, nic{
			Network: a.Network, Bridge: a.Bridge,
			Tap: fmt.Sprintf("qt%s%d", vmID[len(vmID)-8:], i),
			IP:  a.IP.String(), Prefix: a.Prefix, Gateway: a.Gateway.String(), MAC: a.MAC.String(),
		})
		if n := out[a.Network]; len(networks) == 1 && len(n.Default) == 0 {
			n.Default = []string{"dns", "gateway"}
			out[a.Network] = n
		}
	}
	return nics, out, nil
}

func (q *QEMU) bridges() hostnet.Bridges {
	return hostnet.Bridges{File: filepath.Join(q.cfg.Dir, "bridges.json"), MACPrefix: alloc.MACPrefix,
		NoIPForward: q.cfg.NoIPForward, Log: q.log}
}

func (q *QEMU) loadBridges() (map[string]hostnet.BridgeRecord, error) { return q.bridges().Load() }

// ensureBridges creates the bridges nics need, with the gateway address. Call
// with the lock held.
func (q *QEMU) ensureBridges(nics []nic) error {
	want := make([]hostnet.Bridge, 0, len(nics))
	for _, n := range nics {
		want = append(want, hostnet.Bridge{Name: n.Bridge, Gateway: n.Gateway, Prefix: n.Prefix})
	}
	return q.bridges().Ensure(want)
}

// releaseBridges deletes the bridges this cloud created that no VM uses.
// Call with the lock held.
func (q *QEMU) releaseBridges() error {
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
	return q.bridges().Release(inUse)
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
