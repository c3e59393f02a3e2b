package agentclient

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGenerateAndParseKey(t *testing.T) {
	k, err := GenerateKey()
	require.NoError(t, err)
	assert.Contains(t, k.PrivatePEM, "BEGIN OPENSSH PRIVATE KEY")
	assert.Regexp(t, `^ssh-ed25519 \S+$`, k.Public)
	again, err := ParseKey(k.PrivatePEM)
	require.NoError(t, err)
	assert.Equal(t, k.Public, again.Public)
	other, _ := GenerateKey()
	assert.NotEqual(t, k.Public, other.Public)
	_, err = ParseKey("not a key")
	assert.ErrorContains(t, err, "parsing the private key")
}
