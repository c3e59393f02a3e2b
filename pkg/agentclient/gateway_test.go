package agentclient_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/kpaas/kpaas/pkg/agentclient"
	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
)

// gatewayServer is a minimal SSH jump host on loopback: it accepts one user
// key and forwards direct-tcpip channels.
func gatewayServer(t *testing.T, host, user act.Keys) (addr string, forwards *atomic.Int32) {
	signer, err := ssh.ParsePrivateKey([]byte(host.PEM))
	require.NoError(t, err)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(user.Signer.PublicKey().Marshal()) {
			return nil, nil
		}
		return nil, assert.AnError
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	forwards = &atomic.Int32{}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					if ch.ChannelType() != "direct-tcpip" {
						ch.Reject(ssh.Prohibited, "no")
						continue
					}
					var d struct {
						Host     string
						Port     uint32
						OrigHost string
						OrigPort uint32
					}
					ssh.Unmarshal(ch.ExtraData(), &d)
					up, err := net.Dial("tcp", net.JoinHostPort(d.Host, itoa(d.Port)))
					if err != nil {
						ch.Reject(ssh.ConnectionFailed, err.Error())
						continue
					}
					c, creqs, _ := ch.Accept()
					forwards.Add(1)
					go ssh.DiscardRequests(creqs)
					go func() { io.Copy(c, up); c.CloseWrite() }()
					go func() { io.Copy(up, c); up.Close() }()
				}
			}()
		}
	}()
	return ln.Addr().String(), forwards
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func TestGateway(t *testing.T) {
	t.Parallel()
	a := act.Start(t, agentBin, act.Options{Name: "private/0"})
	gwHost, gwUser := act.MustKeys(t), act.MustKeys(t)
	addr, forwards := gatewayServer(t, gwHost, gwUser)
	gwHostSigner, _ := ssh.ParsePrivateKey([]byte(gwHost.PEM))
	ctx := ctxT(t)

	tg := a.Target()
	tg.Gateway = &agentclient.Gateway{Host: addr, User: "jump", Signer: gwUser.Signer, HostKey: ssh.FixedHostKey(gwHostSigner.PublicKey())}
	pool := newPool(t)
	c := pool.Client(tg)
	require.NoError(t, c.Ping(ctx))
	require.NoError(t, c.Ping(ctx))
	assert.Equal(t, int32(1), forwards.Load(), "one tunnelled connection, reused")

	// The agent's host key is still checked through the tunnel.
	bad := tg
	bad.Name, bad.HostKey = "private/0-bad", act.MustKeys(t).Public
	var ce *agentclient.ConnectError
	err := pool.Client(bad).Ping(ctx)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, agentclient.PhaseHostKey, ce.Phase)
	assert.Equal(t, addr, ce.Via)

	// A gateway that does not accept the key fails as a gateway auth problem.
	wrongUser := tg
	wrongUser.Name = "private/0-gw"
	wrongUser.Gateway = &agentclient.Gateway{Host: addr, User: "other", Signer: act.MustKeys(t).Signer, HostKey: ssh.FixedHostKey(gwHostSigner.PublicKey())}
	err = newPool(t).Client(wrongUser).Ping(context.Background())
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, agentclient.PhaseGateway, ce.Phase)
	assert.Contains(t, err.Error(), "authentication")
}
