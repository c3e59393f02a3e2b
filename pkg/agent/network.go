package agent

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// ConfigureNetworks gives the VM's interfaces the addresses and routes of
// its manual networks (BOSH's settings.networks): the interface is the one
// with the network's MAC, or the only non-loopback one when there is a
// single network without MAC. Dynamic networks (DHCP) and preconfigured ones
// are left to the OS. The network carrying "gateway" in its defaults (or the
// only one) gets the default route. h selects the network namespace (tests).
func ConfigureNetworks(h *netlink.Handle, networks map[string]settings.Network) ([]string, error) {
	var notes []string
	names := make([]string, 0, len(networks))
	for n := range networks {
		names = append(names, n)
	}
	sort.Strings(names)
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	for _, name := range names {
		n := networks[name]
		if n.Preconfigured {
			notes = append(notes, fmt.Sprintf("network %s: preconfigured, left as is", name))
			continue
		}
		if n.Type == "dynamic" || n.UseDHCP || n.IP == "" || n.Netmask == "" {
			notes = append(notes, fmt.Sprintf("network %s: DHCP, left to the OS", name))
			continue
		}
		link, err := pickLink(links, n.MAC, len(networks))
		if err != nil {
			return notes, fmt.Errorf("network %s: %w", name, err)
		}
		ip := net.ParseIP(n.IP)
		mask := net.IPMask(net.ParseIP(n.Netmask).To4())
		if ip == nil || mask == nil {
			return notes, fmt.Errorf("network %s: ip %q / netmask %q are not IPv4 addresses", name, n.IP, n.Netmask)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: mask}}
		if err := h.AddrReplace(link, addr); err != nil {
			return notes, fmt.Errorf("network %s: adding %s to %s: %w", name, addr.IPNet, link.Attrs().Name, err)
		}
		if err := h.LinkSetUp(link); err != nil {
			return notes, fmt.Errorf("network %s: bringing %s up: %w", name, link.Attrs().Name, err)
		}
		if n.Gateway != "" && (len(networks) == 1 || contains(n.Default, "gateway")) {
			gw := net.ParseIP(n.Gateway)
			route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}
			if err := h.RouteReplace(route); err != nil {
				return notes, fmt.Errorf("network %s: default route via %s: %w", name, n.Gateway, err)
			}
		}
		for _, r := range n.Routes {
			dst := &net.IPNet{IP: net.ParseIP(r.Destination), Mask: net.IPMask(net.ParseIP(r.Netmask).To4())}
			if dst.IP == nil || dst.Mask == nil {
				return notes, fmt.Errorf("network %s: route %s/%s is not valid", name, r.Destination, r.Netmask)
			}
			route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: net.ParseIP(r.Gateway)}
			if err := h.RouteReplace(route); err != nil {
				return notes, fmt.Errorf("network %s: route to %s via %s: %w", name, dst, r.Gateway, err)
			}
		}
		notes = append(notes, fmt.Sprintf("network %s: %s on %s", name, addr.IPNet, link.Attrs().Name))
	}
	return notes, nil
}

func pickLink(links []netlink.Link, mac string, networks int) (netlink.Link, error) {
	if mac != "" {
		for _, l := range links {
			if strings.EqualFold(l.Attrs().HardwareAddr.String(), mac) {
				return l, nil
			}
		}
		return nil, fmt.Errorf("no interface has MAC %s", mac)
	}
	var candidates []netlink.Link
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback == 0 {
			candidates = append(candidates, l)
		}
	}
	if networks != 1 || len(candidates) != 1 {
		return nil, errors.New("no MAC in the settings and not exactly one network and one interface: cannot tell which interface it is")
	}
	return candidates[0], nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
