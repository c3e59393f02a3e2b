package settings

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A settings document as the BOSH OpenStack CPI writes it must parse.
func TestParseBoshSettings(t *testing.T) {
	doc := `{"agent_id":"4149ba0f","vm":{"name":"vm-8d1c"},"mbus":"nats://nats:pw@10.0.0.6:4222",
 "ntp":["pool.ntp.org"],"blobstore":{"provider":"dav","options":{"endpoint":"http://10.0.0.6:25250"}},
 "networks":{"default":{"type":"manual","ip":"10.0.0.10","netmask":"255.255.255.0","gateway":"10.0.0.1",
   "dns":["10.0.0.2"],"default":["dns","gateway"],"cloud_properties":{"net_id":"n1"}},
   "other":{"type":"dynamic"}},
 "disks":{"system":"/dev/sda","ephemeral":{"path":"/dev/sdb"}},
 "env":{"bosh":{"password":"$6$x","authorized_keys":["ssh-ed25519 AAAA"]},"kpaas":{"host_key":"PEM"}}}`
	s, err := Parse([]byte(doc))
	require.NoError(t, err)
	assert.Equal(t, "4149ba0f", s.AgentID)
	assert.Equal(t, "vm-8d1c", s.VM.Name)
	assert.Equal(t, map[string]any{"path": "/dev/sdb"}, s.Disks.Ephemeral)
	assert.NotNil(t, s.Disks.Persistent)
	assert.Equal(t, "PEM", s.Env.Kpaas.HostKey)
	name, n, ok := s.DefaultNetwork()
	require.True(t, ok)
	assert.Equal(t, "default", name)
	assert.Equal(t, "10.0.0.10", n.IP)

	b, err := s.Marshal()
	require.NoError(t, err)
	again, err := Parse(b)
	require.NoError(t, err)
	assert.Equal(t, s, again)
}

func TestParseRejectsGarbage(t *testing.T) {
	_, err := Parse([]byte("{not json"))
	assert.ErrorContains(t, err, "parsing agent settings")
}
