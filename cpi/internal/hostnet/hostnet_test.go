package hostnet

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
)

func TestPlanAllocatesAfterGatewaySkippingUsed(t *testing.T) {
	a := Allocator{Cloud: "the test cloud", MACPrefix: 0x4b, BridgePrefix: "kb"}
	used := map[string]string{"10.9.0.2": "vm-other"}
	addrs, out, err := a.Plan("vm-new", cpi.Networks{"n": {Type: "dynamic", CloudProperties: cpi.Props{"range": "10.9.0.0/24"}}}, used)
	require.NoError(t, err)
	require.Len(t, addrs, 1)
	assert.Equal(t, "10.9.0.3", addrs[0].IP.String())
	assert.Equal(t, "10.9.0.1", addrs[0].Gateway.String())
	assert.Equal(t, 24, addrs[0].Prefix)
	assert.Equal(t, "02:4b:0a:09:00:03", addrs[0].MAC.String())
	assert.Equal(t, "vm-new", used["10.9.0.3"])
	assert.Equal(t, "255.255.255.0", out["n"].Netmask)
	assert.Regexp(t, `^kb[0-9a-f]{8}$`, addrs[0].Bridge)
}

func TestPlanErrors(t *testing.T) {
	a := Allocator{Cloud: "the test cloud", MACPrefix: 0x51, BridgePrefix: "kq"}
	_, _, err := a.Plan("vm", cpi.Networks{"n": {Type: "dynamic"}}, map[string]string{})
	assert.ErrorContains(t, err, "the test cloud allocates from")
	_, _, err = a.Plan("vm", cpi.Networks{"n": {IP: "10.0.0.1", Netmask: "255.255.255.0"}}, map[string]string{})
	assert.ErrorContains(t, err, "is the gateway's")
	_, _, err = a.Plan("vm", cpi.Networks{"n": {IP: "10.0.0.5", Netmask: "255.255.255.0"}}, map[string]string{"10.0.0.5": "vm-a"})
	assert.ErrorContains(t, err, "already used by VM vm-a")
	_, _, err = a.Plan("vm", cpi.Networks{"n": {Type: "dynamic", CloudProperties: cpi.Props{"range": "10.0.0.0/30"}}}, map[string]string{"10.0.0.2": "x"})
	assert.ErrorContains(t, err, "no free IP left")
}

func TestBridgeNameAndMAC(t *testing.T) {
	assert.Equal(t, "mybr", BridgeName("kb", "10.0.0.0/24", cpi.Props{"bridge": "mybr"}))
	assert.NotEqual(t, BridgeName("kb", "10.0.0.0/24", nil), BridgeName("kb", "10.0.1.0/24", nil))
	assert.Equal(t, net.HardwareAddr{2, 0x51, 192, 168, 1, 9}, MACFromIP(0x51, net.ParseIP("192.168.1.9")))
}
