package agentclient

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Key is an SSH key pair as kpaas keeps it: the private key in PEM (to put
// in a VM's settings as env.kpaas.host_key, or to log in with) and the public
// key as an authorized_keys line (to pin, or to put in env.kpaas.authorized_keys).
type Key struct {
	PrivatePEM string
	Public     string
	Signer     ssh.Signer
}

// GenerateKey makes an ed25519 key pair: kpaas generates each VM's host key
// before creating the VM, so it can pin it from the first connection.
func GenerateKey() (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return Key{}, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return Key{}, err
	}
	return Key{PrivatePEM: string(pem.EncodeToMemory(block)), Public: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), Signer: signer}, nil
}

// ParseKey reads a private key in PEM (OpenSSH, PKCS#1/8, EC).
func ParseKey(privatePEM string) (Key, error) {
	signer, err := ssh.ParsePrivateKey([]byte(privatePEM))
	if err != nil {
		return Key{}, fmt.Errorf("parsing the private key: %w", err)
	}
	return Key{PrivatePEM: privatePEM, Public: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), Signer: signer}, nil
}
