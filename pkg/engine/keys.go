package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/state"
)

// ClientKeyVariable names the state variable holding kpaas's agent client
// key (deployment "", encrypted at rest like every variable).
const ClientKeyVariable = "kpaas_agent_client_key"

// ClientKey returns the key kpaas logs in to agents with, creating it on
// first use.
func ClientKey(ctx context.Context, st state.Store) (agentclient.Key, error) {
	v, err := st.Variable(ctx, "", ClientKeyVariable)
	if err == nil {
		return agentclient.ParseKey(v.Value)
	}
	if !errors.Is(err, state.ErrNotFound) {
		return agentclient.Key{}, err
	}
	k, err := agentclient.GenerateKey()
	if err != nil {
		return k, err
	}
	if _, err := st.PutVariable(ctx, state.Variable{Name: ClientKeyVariable, Type: "ssh", Value: k.PrivatePEM}); err != nil {
		return k, fmt.Errorf("saving the agent client key: %w", err)
	}
	return k, nil
}

// Targets lists a deployment's instances with a VM as agent targets: the
// address of the VM's default network, its pinned host key and kpaas's
// client key (what `kpaas ssh/logs/scp` need).
func Targets(ctx context.Context, st state.Store, deployment string) ([]agentclient.Target, error) {
	key, err := ClientKey(ctx, st)
	if err != nil {
		return nil, err
	}
	ds, err := st.LoadDeployment(ctx, deployment)
	if err != nil {
		return nil, err
	}
	vms := ds.VMsByInstance()
	var out []agentclient.Target
	for _, i := range ds.Instances {
		v := vms[i.UUID]
		if len(v) == 0 || !v[0].Active || len(v[0].IPs) == 0 {
			continue
		}
		out = append(out, agentclient.Target{Name: i.Name(), Group: i.Group, ID: i.UUID, Index: i.Index,
			Address: net.JoinHostPort(v[0].IPs[0], strconv.Itoa(6868)), HostKey: v[0].SSHHostKey, Signer: key.Signer})
	}
	return out, nil
}

// StateClientKey adapts ClientKey to the shape `kpaas ssh/scp/logs` take
// (ssh.StateTargets.ClientKey): the key is read from the store open opens.
func StateClientKey(open func(ctx context.Context) (state.Store, error)) func(ctx context.Context, deployment string) (ssh.Signer, error) {
	return func(ctx context.Context, deployment string) (ssh.Signer, error) {
		st, err := open(ctx)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		k, err := ClientKey(ctx, st)
		if err != nil {
			return nil, fmt.Errorf("reading the agent client key of deployment %s: %w", deployment, err)
		}
		return k.Signer, nil
	}
}
