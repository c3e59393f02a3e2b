package agent

import (
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// newNetNS creates a network namespace for the test (root only) and returns
// a netlink handle inside it; the host's namespace is not touched.
func newNetNS(t *testing.T) *netlink.Handle {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	require.NoError(t, err)
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	require.NoError(t, netns.Set(orig))
	h, err := netlink.NewHandleAt(ns)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close(); ns.Close() })
	return h
}

func addDummy(t *testing.T, h *netlink.Handle, name, mac string) netlink.Link {
	hw, _ := net.ParseMAC(mac)
	// a veth pair (dummy links are not available everywhere); the peer stays down
	err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: hw}, PeerName: name + "-peer"})
	if err != nil {
		t.Skipf("cannot create a veth pair in the namespace: %v", err)
	}
	l, err := h.LinkByName(name)
	require.NoError(t, err)
	return l
}

func TestConfigureNetworksInANamespace(t *testing.T) {
	h := newNetNS(t)
	addDummy(t, h, "eth0", "02:00:00:00:00:01")
	eth1 := addDummy(t, h, "eth1", "02:00:00:00:00:02")
	networks := map[string]settings.Network{
		"private": {Type: "manual", IP: "10.1.0.5", Netmask: "255.255.255.0", Gateway: "10.1.0.1", MAC: "02:00:00:00:00:01",
			Routes: []settings.Route{{Destination: "192.168.50.0", Netmask: "255.255.255.0", Gateway: "10.1.0.254"}}},
		"public":  {Type: "manual", IP: "172.16.0.9", Netmask: "255.255.0.0", Gateway: "172.16.0.1", MAC: "02:00:00:00:00:02", Default: []string{"dns", "gateway"}},
		"dhcp":    {Type: "dynamic"},
		"already": {Type: "manual", IP: "1.2.3.4", Netmask: "255.0.0.0", Preconfigured: true},
	}
	notes, err := ConfigureNetworks(h, networks)
	require.NoError(t, err)
	assert.Contains(t, notes, "network dhcp: DHCP, left to the OS")
	assert.Contains(t, notes, "network private: 10.1.0.5/24 on eth0")

	addrs, err := h.AddrList(eth1, netlink.FAMILY_V4)
	require.NoError(t, err)
	require.Len(t, addrs, 1)
	assert.Equal(t, "172.16.0.9/16", addrs[0].IPNet.String())
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	require.NoError(t, err)
	var defaultVia, staticVia string
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			defaultVia = r.Gw.String()
		}
		if r.Dst != nil && r.Dst.String() == "192.168.50.0/24" {
			staticVia = r.Gw.String()
		}
	}
	assert.Equal(t, "172.16.0.1", defaultVia, "the default route follows default: [gateway]")
	assert.Equal(t, "10.1.0.254", staticVia)

	// Applying the same settings again changes nothing and does not fail.
	_, err = ConfigureNetworks(h, networks)
	require.NoError(t, err)
}

func TestConfigureNetworksNeedsToKnowTheInterface(t *testing.T) {
	h := newNetNS(t)
	addDummy(t, h, "eth0", "02:00:00:00:00:01")
	addDummy(t, h, "eth1", "02:00:00:00:00:02")
	_, err := ConfigureNetworks(h, map[string]settings.Network{"n": {Type: "manual", IP: "10.0.0.2", Netmask: "255.255.255.0"}})
	assert.ErrorContains(t, err, "cannot tell which interface")
	_, err = ConfigureNetworks(h, map[string]settings.Network{"n": {Type: "manual", IP: "10.0.0.2", Netmask: "255.255.255.0", MAC: "02:00:00:00:00:99"}})
	assert.ErrorContains(t, err, "no interface has MAC 02:00:00:00:00:99")
}
