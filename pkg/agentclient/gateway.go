package agentclient

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// GatewayFlags are the --gw-* flags of kpaas ssh, scp and logs.
type GatewayFlags struct {
	Host       string // --gw-host
	User       string // --gw-user
	PrivateKey string // --gw-private-key (path)
	KnownHosts string // --gw-known-hosts (default ~/.ssh/known_hosts)
}

// Gateway builds the gateway the flags describe; nil when --gw-host is not set.
// The gateway's host key must be in the known_hosts file: kpaas does not
// trust keys on first use.
func (g GatewayFlags) Gateway() (*Gateway, error) {
	if g.Host == "" {
		if g.User != "" || g.PrivateKey != "" {
			return nil, errors.New("--gw-user and --gw-private-key need --gw-host")
		}
		return nil, nil
	}
	user := g.User
	if user == "" {
		user = os.Getenv("USER")
	}
	if g.PrivateKey == "" {
		return nil, errors.New("--gw-host needs --gw-private-key (the key the gateway accepts)")
	}
	b, err := os.ReadFile(g.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("reading --gw-private-key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parsing --gw-private-key %s: %w", g.PrivateKey, err)
	}
	kh := g.KnownHosts
	if kh == "" {
		home, _ := os.UserHomeDir()
		kh = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(kh)
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's host key from %s (add it with ssh-keyscan, or pass --gw-known-hosts): %w", kh, err)
	}
	host := g.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "22")
	}
	return &Gateway{Host: host, User: user, Signer: signer, HostKey: cb}, nil
}
