// Package agentclient is the kpaas side of the agent protocol
// (pkg/agent/protocol): a typed client over SSH, a connection pool holding
// one SSH connection per VM with many channels on it, keep-alives,
// reconnection, host-key pinning (the key kpaas generated for the VM: no
// trust on first use) and gateways (ProxyJump style). Errors name the VM,
// the address and what failed: the TCP connection, the host key or the
// authentication. It must not import pkg/agent (the server side).
package agentclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultUser is the SSH user kpaas presents to agents.
const DefaultUser = "kpaas"

// Target is one VM's agent: where it is and how to trust and log in to it.
type Target struct {
	Name    string // instance name for messages: "api/0", "api/6f1e..."
	Group   string // instance group
	ID      string // instance UUID
	Index   int
	Address string     // host:port of the agent (port 6868)
	HostKey string     // the agent's host public key (authorized_keys format), pinned
	User    string     // default "kpaas"
	Signer  ssh.Signer // kpaas's client key
	Gateway *Gateway   // optional jump host
}

// Gateway is an SSH jump host in front of VMs on private networks (the BOSH
// CLI's --gw-host/--gw-user/--gw-private-key).
type Gateway struct {
	Host    string // host or host:port (port 22 by default)
	User    string
	Signer  ssh.Signer
	HostKey ssh.HostKeyCallback // how to trust the gateway (known_hosts or a pinned key); required
}

func (g *Gateway) addr() string {
	if _, _, err := net.SplitHostPort(g.Host); err == nil {
		return g.Host
	}
	return net.JoinHostPort(g.Host, "22")
}

// Connection phases named by ConnectError.
const (
	PhaseTCP     = "tcp"
	PhaseHostKey = "host key"
	PhaseAuth    = "authentication"
	PhaseSSH     = "ssh handshake"
	PhaseGateway = "gateway"
)

// ConnectError says which VM, which address, and which step of connecting failed.
type ConnectError struct {
	VM      string
	Address string
	Via     string // gateway address, when one is used
	Phase   string
	Err     error
}

func (e *ConnectError) Error() string {
	via := ""
	if e.Via != "" {
		via = " via gateway " + e.Via
	}
	hint := ""
	switch e.Phase {
	case PhaseTCP:
		hint = " (is the VM up and the agent listening? is a gateway needed?)"
	case PhaseHostKey:
		hint = " (the VM does not present the host key kpaas generated for it: a different VM answers at this address, or its settings were not applied)"
	case PhaseAuth:
		hint = " (the agent does not accept kpaas's key: check env.kpaas.authorized_keys in its settings)"
	}
	return fmt.Sprintf("connecting to the agent of %s at %s%s: %s failed: %v%s", e.VM, e.Address, via, e.Phase, e.Err, hint)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// ErrHostKeyMismatch is wrapped by host key failures.
var ErrHostKeyMismatch = errors.New("host key mismatch")

// Options tune a Pool.
type Options struct {
	DialTimeout time.Duration // TCP + SSH handshake (10s)
	KeepAlive   time.Duration // keep-alive interval (15s); a connection that does not answer is dropped
	Logger      *slog.Logger
}

// Pool holds one SSH connection per target and hands out Clients.
type Pool struct {
	opts Options

	mu     sync.Mutex
	conns  map[string]*conn
	gws    map[string]*conn
	closed bool
	stop   chan struct{}
}

type conn struct {
	ready  chan struct{}
	client *ssh.Client
	err    error
}

// NewPool starts a pool and its keep-alive loop; Close it when done.
func NewPool(opts Options) *Pool {
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{opts: opts, conns: map[string]*conn{}, gws: map[string]*conn{}, stop: make(chan struct{})}
	go p.keepAlive()
	return p
}

// Close closes every connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.stop)
	all := make([]*conn, 0, len(p.conns)+len(p.gws))
	for _, c := range p.conns {
		all = append(all, c)
	}
	for _, c := range p.gws {
		all = append(all, c)
	}
	p.conns, p.gws = map[string]*conn{}, map[string]*conn{}
	p.mu.Unlock()
	for _, c := range all {
		<-c.ready
		if c.client != nil {
			c.client.Close()
		}
	}
	return nil
}

// Len is the number of open (or opening) connections to agents.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func targetKey(t Target) string { return t.Name + "\x00" + t.Address }

// Client returns the client of target t; the connection is made on first use.
func (p *Pool) Client(t Target) *Client {
	if t.User == "" {
		t.User = DefaultUser
	}
	return &Client{pool: p, t: t}
}

// get returns the pooled connection to t, dialling once for all callers.
func (p *Pool) get(ctx context.Context, t Target) (*ssh.Client, error) {
	key := targetKey(t)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("agent connection pool is closed")
	}
	c, ok := p.conns[key]
	if !ok {
		c = &conn{ready: make(chan struct{})}
		p.conns[key] = c
		p.mu.Unlock()
		c.client, c.err = p.dial(ctx, t)
		close(c.ready)
		if c.err != nil {
			p.drop(key, c)
		} else {
			go func() { c.client.Wait(); p.drop(key, c) }()
		}
		return c.client, c.err
	}
	p.mu.Unlock()
	select {
	case <-c.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c.client, c.err
}

func (p *Pool) drop(key string, c *conn) {
	p.mu.Lock()
	if p.conns[key] == c {
		delete(p.conns, key)
	}
	p.mu.Unlock()
}

// forget closes and drops t's connection (after it broke), so the next use redials.
func (p *Pool) forget(t Target, cl *ssh.Client) {
	key := targetKey(t)
	p.mu.Lock()
	if c, ok := p.conns[key]; ok && c.client == cl {
		delete(p.conns, key)
	}
	p.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
}

func (p *Pool) clientConfig(t Target, phase *string) (*ssh.ClientConfig, error) {
	if t.HostKey == "" {
		return nil, &ConnectError{VM: t.Name, Address: t.Address, Phase: PhaseHostKey, Err: errors.New("no host key is recorded for this VM, and kpaas does not trust keys on first use")}
	}
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(t.HostKey))
	if err != nil {
		return nil, &ConnectError{VM: t.Name, Address: t.Address, Phase: PhaseHostKey, Err: fmt.Errorf("parsing the recorded host key: %w", err)}
	}
	if t.Signer == nil {
		return nil, &ConnectError{VM: t.Name, Address: t.Address, Phase: PhaseAuth, Err: errors.New("no client key to log in with")}
	}
	return &ssh.ClientConfig{
		User: t.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(t.Signer)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), want.Marshal()) {
				*phase = PhaseHostKey
				return fmt.Errorf("%w: the agent presented %s %s, kpaas expects %s %s", ErrHostKeyMismatch,
					key.Type(), ssh.FingerprintSHA256(key), want.Type(), ssh.FingerprintSHA256(want))
			}
			return nil
		},
		HostKeyAlgorithms: []string{want.Type()},
		Timeout:           p.opts.DialTimeout,
		Config: ssh.Config{
			// AES-GCM first: hardware accelerated, the fastest for blob uploads.
			Ciphers: []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr"},
		},
	}, nil
}

func (p *Pool) dial(ctx context.Context, t Target) (*ssh.Client, error) {
	phase := PhaseSSH
	cfg, err := p.clientConfig(t, &phase)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
	defer cancel()
	var raw net.Conn
	via := ""
	if t.Gateway != nil {
		via = t.Gateway.addr()
		gw, err := p.gateway(ctx, t)
		if err != nil {
			return nil, err
		}
		raw, err = gw.DialContext(ctx, "tcp", t.Address)
		if err != nil {
			return nil, &ConnectError{VM: t.Name, Address: t.Address, Via: via, Phase: PhaseTCP, Err: err}
		}
	} else {
		var d net.Dialer
		raw, err = d.DialContext(ctx, "tcp", t.Address)
		if err != nil {
			return nil, &ConnectError{VM: t.Name, Address: t.Address, Phase: PhaseTCP, Err: err}
		}
		if tc, ok := raw.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(raw, t.Address, cfg)
	if err != nil {
		raw.Close()
		if phase != PhaseHostKey && strings.Contains(err.Error(), "unable to authenticate") {
			phase = PhaseAuth
		}
		return nil, &ConnectError{VM: t.Name, Address: t.Address, Via: via, Phase: phase, Err: err}
	}
	raw.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

// gateway returns the (shared) SSH connection to t's gateway.
func (p *Pool) gateway(ctx context.Context, t Target) (*ssh.Client, error) {
	g := t.Gateway
	key := g.User + "@" + g.addr()
	p.mu.Lock()
	c, ok := p.gws[key]
	if !ok {
		c = &conn{ready: make(chan struct{})}
		p.gws[key] = c
		p.mu.Unlock()
		c.client, c.err = p.dialGateway(ctx, t)
		close(c.ready)
		if c.err != nil || c.client == nil {
			p.mu.Lock()
			delete(p.gws, key)
			p.mu.Unlock()
		} else {
			go func() {
				c.client.Wait()
				p.mu.Lock()
				if p.gws[key] == c {
					delete(p.gws, key)
				}
				p.mu.Unlock()
			}()
		}
		return c.client, c.err
	}
	p.mu.Unlock()
	select {
	case <-c.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c.client, c.err
}

func (p *Pool) dialGateway(ctx context.Context, t Target) (*ssh.Client, error) {
	g := t.Gateway
	fail := func(phase string, err error) error {
		return &ConnectError{VM: t.Name, Address: t.Address, Via: g.addr(), Phase: PhaseGateway, Err: fmt.Errorf("%s: %w", phase, err)}
	}
	if g.HostKey == nil {
		return nil, fail(PhaseHostKey, errors.New("no way to verify the gateway's host key (known_hosts entry or pinned key)"))
	}
	if g.Signer == nil {
		return nil, fail(PhaseAuth, errors.New("no private key for the gateway"))
	}
	hkFailed := false
	cfg := &ssh.ClientConfig{
		User: g.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(g.Signer)},
		HostKeyCallback: func(h string, r net.Addr, k ssh.PublicKey) error {
			err := g.HostKey(h, r, k)
			hkFailed = err != nil
			return err
		},
		Timeout: p.opts.DialTimeout,
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", g.addr())
	if err != nil {
		return nil, fail(PhaseTCP, err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(raw, g.addr(), cfg)
	if err != nil {
		raw.Close()
		phase := PhaseSSH
		if hkFailed {
			phase = PhaseHostKey
		} else if strings.Contains(err.Error(), "unable to authenticate") {
			phase = PhaseAuth
		}
		return nil, fail(phase, err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// keepAlive pings every connection each interval and drops those that do
// not answer within it, so the next call reconnects instead of hanging.
func (p *Pool) keepAlive() {
	t := time.NewTicker(p.opts.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		var clients []*ssh.Client
		for _, c := range p.conns {
			select {
			case <-c.ready:
				if c.client != nil {
					clients = append(clients, c.client)
				}
			default:
			}
		}
		p.mu.Unlock()
		for _, cl := range clients {
			go func() {
				done := make(chan error, 1)
				go func() {
					_, _, err := cl.SendRequest("keepalive@openssh.com", true, nil)
					done <- err
				}()
				select {
				case err := <-done:
					if err != nil {
						cl.Close()
					}
				case <-time.After(p.opts.KeepAlive):
					p.opts.Logger.Warn("agent connection did not answer a keep-alive; closing it", "remote", cl.RemoteAddr().String())
					cl.Close()
				}
			}()
		}
	}
}

// Select returns the targets matching selector: "" or "*" (all), "GROUP",
// "GROUP/ID" (the instance UUID, else the index, else a unique prefix of at
// least 4 characters of the UUID).
func Select(all []Target, selector string) ([]Target, error) {
	if selector == "" || selector == "*" {
		return all, nil
	}
	group, id, hasID := strings.Cut(selector, "/")
	var inGroup []Target
	for _, t := range all {
		if t.Group == group {
			inGroup = append(inGroup, t)
		}
	}
	out := inGroup
	if hasID {
		out = nil
		for _, match := range []func(Target) bool{
			func(t Target) bool { return t.ID == id },
			func(t Target) bool { return strconv.Itoa(t.Index) == id },
			func(t Target) bool { return len(id) >= 4 && strings.HasPrefix(t.ID, id) },
		} {
			for _, t := range inGroup {
				if match(t) {
					out = append(out, t)
				}
			}
			if len(out) > 0 {
				break
			}
		}
		if len(out) > 1 {
			var names []string
			for _, t := range out {
				names = append(names, t.Name)
			}
			return nil, fmt.Errorf("%q is ambiguous: it matches %s", selector, strings.Join(names, ", "))
		}
	}
	if len(out) == 0 {
		var names []string
		for _, t := range all {
			names = append(names, t.Name)
		}
		return nil, fmt.Errorf("no instance matches %q; instances: %s", selector, strings.Join(names, ", "))
	}
	return out, nil
}
