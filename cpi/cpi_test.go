package cpi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
)

func TestErrorIsSentinelOfItsType(t *testing.T) {
	tests := []struct {
		err  error
		want error
	}{
		{cpi.VMNotFound("vm-1"), cpi.ErrVMNotFound},
		{fmt.Errorf("deleting: %w", cpi.DiskNotFound("d")), cpi.ErrDiskNotFound},
		{&cpi.Error{Type: cpi.TypeNotSupported, Message: "x"}, cpi.ErrNotSupported},
		{cpi.VMCreationFailed(true, errors.New("quota")), cpi.ErrVMCreationFailed},
		{cpi.StemcellNotFound("s"), cpi.ErrStemcellNotFound},
	}
	for _, tt := range tests {
		assert.ErrorIs(t, tt.err, tt.want, "%v", tt.err)
	}
	assert.NotErrorIs(t, cpi.VMNotFound("vm"), cpi.ErrDiskNotFound)
}

func TestAsError(t *testing.T) {
	e := cpi.AsError(errors.New("boom"))
	assert.Equal(t, cpi.TypeCloudError, e.Type)
	assert.Equal(t, "boom", e.Message)

	e = cpi.AsError(fmt.Errorf("attaching: %w", cpi.ErrDiskNotFound))
	assert.Equal(t, cpi.TypeDiskNotFound, e.Type)

	e = cpi.AsError(fmt.Errorf("creating: %w", cpi.VMCreationFailed(true, errors.New("no ip"))))
	assert.Equal(t, cpi.TypeVMCreationFail, e.Type)
	assert.True(t, e.OkToRetry)
	assert.Equal(t, "VMCreationFailed: creating: no ip", e.Error(), "the type is said once")
	assert.Nil(t, cpi.AsError(nil))

	// an error read off the wire and wrapped again keeps one type prefix
	wire := &cpi.Error{Type: cpi.TypeCloudError, Message: "quota exceeded"}
	e = cpi.AsError(fmt.Errorf("create_vm: %w", wire))
	assert.Equal(t, "create_vm: quota exceeded", e.Message)
	assert.Equal(t, "CloudError: create_vm: quota exceeded", e.Error())
}

func TestDiskHintWireForms(t *testing.T) {
	var h cpi.DiskHint
	require.NoError(t, json.Unmarshal([]byte(`"/dev/sdc"`), &h))
	assert.Equal(t, cpi.DiskHint{Path: "/dev/sdc"}, h)
	require.NoError(t, json.Unmarshal([]byte(`{"volume_id":"v-1","lun":"2"}`), &h))
	assert.Equal(t, cpi.DiskHint{VolumeID: "v-1", LUN: "2"}, h)
	require.NoError(t, json.Unmarshal([]byte(`null`), &h))
	assert.True(t, h.IsZero())
}

func TestAgentSettingsFromCreateVM(t *testing.T) {
	s, err := cpi.AgentSettings("agent-1", "vm-9", cpi.Networks{
		"net": {Type: "manual", IP: "10.0.0.5", Netmask: "255.255.255.0", Gateway: "10.0.0.1", Default: []string{"gateway"}},
		"dyn": {Type: "dynamic"},
	}, cpi.Env{
		"bosh":  map[string]any{"password": "$6$x", "group": "g"},
		"kpaas": map[string]any{"authorized_keys": []any{"ssh-ed25519 K"}},
		"other": "x",
	})
	require.NoError(t, err)
	assert.Equal(t, "agent-1", s.AgentID)
	assert.Equal(t, "vm-9", s.VM.Name)
	assert.Equal(t, "10.0.0.5", s.Networks["net"].IP)
	assert.True(t, s.Networks["dyn"].UseDHCP)
	assert.Equal(t, "$6$x", s.Env.Bosh.Password)
	assert.Equal(t, []string{"ssh-ed25519 K"}, s.Env.Kpaas.AuthorizedKeys)
	assert.Equal(t, map[string]any{"other": "x"}, s.Env.Extra)
	b, err := s.Marshal()
	require.NoError(t, err)
	assert.Contains(t, string(b), `"persistent":{}`)
}
