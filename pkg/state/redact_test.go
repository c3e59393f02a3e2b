package state_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/kpaas/kpaas/pkg/state"
)

func TestRedactYAML(t *testing.T) {
	in := `director:
  password: hunter2
  users:
  - name: admin
    client_secret: abc
  private_key: |
    -----BEGIN RSA PRIVATE KEY-----
    MIIE
    -----END RSA PRIVATE KEY-----
  api_key: ((key))
  name: password-rotation
  token_ttl:
    value: 5
openstack: {password: inline}
`
	want := `director:
  password: <redacted>
  users:
  - name: admin
    client_secret: <redacted>
  private_key: <redacted>
  api_key: <redacted>
  name: password-rotation
  token_ttl:
    value: 5
openstack: {password: inline}
`
	assert.Equal(t, want, state.RedactYAML(in))
	assert.Equal(t, "", state.RedactYAML(""))
}
