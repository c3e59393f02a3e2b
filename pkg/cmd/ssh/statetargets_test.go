package ssh

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
	"github.com/kpaas/kpaas/pkg/ui"
)

// kpaas ssh against what a real SQLite state store records: instances, their
// active VM's IP and pinned host key, reaching a real agent.
func TestStateTargetsWithARealStore(t *testing.T) {
	client := act.MustKeys(t)
	a := act.Start(t, agentBin, act.Options{Name: "api/0", Client: &client})
	host, portStr, _ := net.SplitHostPort(a.Addr)
	port, _ := strconv.Atoi(portStr)

	loc := statetest.SQLite.NewLocation(t)
	store := statetest.Open(t, loc)
	ctx := context.Background()
	_, err := store.CreateDeployment(ctx, "cf")
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, store.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "api", Index: 0, UUID: "6f1e-aaaa", DesiredState: state.Started, UpdatedAt: now}))
	require.NoError(t, store.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "api", Index: 1, UUID: "7a2b-bbbb", DesiredState: state.Detached, UpdatedAt: now}))
	require.NoError(t, store.SaveVM(ctx, state.VM{CID: "vm-old", Deployment: "cf", Instance: "6f1e-aaaa", IPs: []string{"10.9.9.9"}, SSHHostKey: "old", Active: false, CreatedAt: now.Add(-time.Hour)}))
	require.NoError(t, store.SaveVM(ctx, state.VM{CID: "vm-1", Deployment: "cf", Instance: "6f1e-aaaa", IPs: []string{host}, SSHHostKey: a.Host.Public, Active: true, CreatedAt: now}))

	resolver := StateTargets{
		Open: func(ctx context.Context) (state.Store, error) {
			return statetest.OpenWith(t, loc, state.Options{Key: statetest.Key}), nil
		},
		ClientKey: func(ctx context.Context, dep string) (gossh.Signer, error) { return client.Signer, nil },
		Port:      port,
	}
	targets, err := resolver.Targets(ctx, "cf")
	require.NoError(t, err)
	require.Len(t, targets, 1, "the detached instance has no VM")
	assert.Equal(t, "api/6f1e-aaaa", targets[0].Name)
	assert.Equal(t, a.Addr, targets[0].Address)

	ios, _, out, _ := ui.Test()
	require.NoError(t, sshRun(ctx, &Options{IO: ios, Targets: func() (Targets, error) { return resolver, nil }, Deployment: "cf", Selector: "api/0", Command: "echo via state"}))
	assert.Equal(t, "api/6f1e-aaaa: via state\n", out.String())

	_, err = resolver.Targets(ctx, "nope")
	assert.Error(t, err)
	noKey := resolver
	noKey.ClientKey = func(context.Context, string) (gossh.Signer, error) { return nil, errors.New("not stored yet") }
	_, err = noKey.Targets(ctx, "cf")
	assert.ErrorContains(t, err, "the key kpaas logs in to cf's agents with: not stored yet")
}
