package ssh

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/kpaas/kpaas/pkg/agent/settings"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
)

// AgentKeyEnv names a private key file kpaas logs in to agents with when the
// state store does not provide one.
const AgentKeyEnv = "KPAAS_AGENT_KEY"

// DefaultTargets is the lookup kpaas ssh, scp and logs use: the state store
// the global flags name, and the agents' client key from $KPAAS_AGENT_KEY.
// (The deploy engine, which generates that key, will supply it from the
// store: replace envClientKey then.)
func DefaultTargets(f *cmdutil.Factory) func() (Targets, error) {
	return func() (Targets, error) {
		return StateTargets{Open: f.OpenState, ClientKey: envClientKey}, nil
	}
}

func envClientKey(ctx context.Context, deployment string) (ssh.Signer, error) {
	path := os.Getenv(AgentKeyEnv)
	if path == "" {
		return nil, fmt.Errorf("no agent client key is recorded for deployment %s; set %s to the private key file its agents accept", deployment, AgentKeyEnv)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", AgentKeyEnv, err)
	}
	k, err := agentclient.ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s=%s: %w", AgentKeyEnv, path, err)
	}
	return k.Signer, nil
}

// StateTargets resolves a deployment's instances from the state store: each
// instance's active VM, reached at its first IP on the agent port, with the
// host key recorded when kpaas created it. ClientKey supplies the key kpaas
// logs in to agents with (its storage belongs to the deploy engine).
type StateTargets struct {
	// Open opens the store (cmdutil.Factory.OpenState); it is closed after each lookup.
	Open      func(ctx context.Context) (state.Store, error)
	ClientKey func(ctx context.Context, deployment string) (ssh.Signer, error)
	Port      int // agent port (6868 when 0)
}

// Targets lists the deployment's instances that have an active VM.
func (s StateTargets) Targets(ctx context.Context, deployment string) ([]agentclient.Target, error) {
	store, err := s.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	ds, err := store.LoadDeployment(ctx, deployment)
	if err != nil {
		return nil, err
	}
	signer, err := s.ClientKey(ctx, deployment)
	if err != nil {
		return nil, fmt.Errorf("the key kpaas logs in to %s's agents with: %w", deployment, err)
	}
	port := s.Port
	if port == 0 {
		port = settings.DefaultAgentPort
	}
	vms := ds.VMsByInstance()
	var out []agentclient.Target
	for _, inst := range ds.Instances {
		var vm *state.VM
		for i := range vms[inst.UUID] {
			if vms[inst.UUID][i].Active {
				vm = &vms[inst.UUID][i]
				break
			}
		}
		if vm == nil || len(vm.IPs) == 0 {
			continue // detached, or its VM is not created yet
		}
		out = append(out, agentclient.Target{
			Name: inst.ID(), Group: inst.Group, ID: inst.UUID, Index: inst.Index,
			Address: net.JoinHostPort(vm.IPs[0], strconv.Itoa(port)),
			HostKey: vm.SSHHostKey, Signer: signer,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Index < out[j].Index
	})
	return out, nil
}
