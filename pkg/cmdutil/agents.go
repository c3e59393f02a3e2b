package cmdutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agent/settings"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/state"
)

// ClientKeyVariable is the shared variable (deployment "") holding kpaas's
// SSH client key, the key every agent accepts (env.kpaas.authorized_keys).
// The deploy engine creates it (pkg/engine: engine.ClientKeyVariable, the
// same name); it lives in the state store, encrypted at rest, so every
// operator of a store (SQLite or PostgreSQL) logs in with the same key.
const ClientKeyVariable = "kpaas_agent_client_key"

// AgentKeyEnv names a private key file kpaas logs in to agents with when the
// state store holds no client key (agents set up by something else).
const AgentKeyEnv = "KPAAS_AGENT_KEY"

// ErrNoClientKey means neither the store nor $KPAAS_AGENT_KEY gives a client key.
var ErrNoClientKey = errors.New("the state has no kpaas client key yet (the first deploy creates it; or set " + AgentKeyEnv + " to a private key file the agents accept)")

// ClientKey loads kpaas's SSH client key from the store, else from the file
// $KPAAS_AGENT_KEY names.
func ClientKey(ctx context.Context, r state.Reader) (agentclient.Key, error) {
	v, err := r.Variable(ctx, "", ClientKeyVariable)
	if errors.Is(err, state.ErrNotFound) {
		return envClientKey()
	}
	if err != nil {
		return agentclient.Key{}, fmt.Errorf("loading the kpaas client key: %w", err)
	}
	k, err := agentclient.ParseKey(v.Value)
	if err != nil {
		return agentclient.Key{}, fmt.Errorf("loading the kpaas client key (variable %s): %w", ClientKeyVariable, err)
	}
	return k, nil
}

func envClientKey() (agentclient.Key, error) {
	path := os.Getenv(AgentKeyEnv)
	if path == "" {
		return agentclient.Key{}, ErrNoClientKey
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return agentclient.Key{}, fmt.Errorf("reading the agent client key %s=%s: %w", AgentKeyEnv, path, err)
	}
	k, err := agentclient.ParseKey(string(b))
	if err != nil {
		return agentclient.Key{}, fmt.Errorf("%s=%s: %w", AgentKeyEnv, path, err)
	}
	return k, nil
}

// EnsureClientKey loads kpaas's client key, generating and storing one the
// first time (in one transaction, so two kpaas processes agree on it).
func EnsureClientKey(ctx context.Context, s state.Store) (agentclient.Key, error) {
	var key agentclient.Key
	err := s.Update(ctx, func(tx state.Tx) error {
		v, err := tx.Variable(ctx, "", ClientKeyVariable)
		if err == nil {
			key, err = agentclient.ParseKey(v.Value)
			return err
		}
		if !errors.Is(err, state.ErrNotFound) {
			return err
		}
		if key, err = agentclient.GenerateKey(); err != nil {
			return fmt.Errorf("generating the kpaas client key: %w", err)
		}
		_, err = tx.PutVariable(ctx, state.Variable{Name: ClientKeyVariable, Type: "ssh", Value: key.PrivatePEM})
		return err
	})
	return key, err
}

// InstanceSpec is what kpaas reads back from an instance's recorded spec
// (state.Instance.Spec, the BOSH-style instance/apply spec the deploy
// engine stores): its VM type and networks. Unknown fields are ignored.
type InstanceSpec struct {
	VMType   string                 `json:"-"`
	Networks map[string]NetworkSpec `json:"networks"`
	RawVM    json.RawMessage        `json:"vm_type"`
}

// NetworkSpec is one network of an instance spec.
type NetworkSpec struct {
	IP      string   `json:"ip"`
	Default []string `json:"default"`
}

// ParseInstanceSpec reads the fields kpaas displays from a recorded spec;
// vm_type may be a name or BOSH's {"name": ..., "cloud_properties": ...}.
func ParseInstanceSpec(raw json.RawMessage) InstanceSpec {
	var s InstanceSpec
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return InstanceSpec{}
	}
	var name string
	if json.Unmarshal(s.RawVM, &name) == nil {
		s.VMType = name
	} else {
		var obj struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(s.RawVM, &obj) == nil {
			s.VMType = obj.Name
		}
	}
	return s
}

// DefaultIP is the IP on the network that is the default gateway (BOSH's
// default: [gateway]), else the only network's, else "".
func (s InstanceSpec) DefaultIP() string {
	names := make([]string, 0, len(s.Networks))
	for n := range s.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, d := range s.Networks[n].Default {
			if d == "gateway" {
				return s.Networks[n].IP
			}
		}
	}
	if len(names) == 1 {
		return s.Networks[names[0]].IP
	}
	return ""
}

// AgentAddress is where the agent of a VM with this IP listens: the IP on
// port 6868, or the address as given when it already names a port (agents
// on loopback in tests, port-forwarded VMs).
func AgentAddress(ip string) string {
	if _, _, err := net.SplitHostPort(ip); err == nil {
		return ip
	}
	return net.JoinHostPort(ip, strconv.Itoa(settings.DefaultAgentPort))
}

// ActiveVM is the instance's active VM, if it has one.
func ActiveVM(ds *state.DeploymentState, uuid string) (state.VM, bool) {
	for _, vm := range ds.VMs {
		if vm.Instance == uuid && vm.Active {
			return vm, true
		}
	}
	return state.VM{}, false
}

// VMAddress is the agent address of an instance's VM: its IP on the default
// network from the instance spec, else the VM's first recorded IP.
func VMAddress(inst state.Instance, vm state.VM) string {
	ip := ParseInstanceSpec(inst.Spec).DefaultIP()
	if ip == "" && len(vm.IPs) > 0 {
		ip = vm.IPs[0]
	}
	if ip == "" {
		return ""
	}
	return AgentAddress(ip)
}

// InstanceTargets turns a deployment's instances with an active VM into
// agent targets (address, pinned host key, client key), ordered by group
// and index. Instances without a VM, or without a known address, are left
// out; their names are returned in skipped.
func InstanceTargets(ds *state.DeploymentState, key agentclient.Key) (targets []agentclient.Target, skipped []string) {
	for _, inst := range ds.Instances {
		vm, ok := ActiveVM(ds, inst.UUID)
		addr := VMAddress(inst, vm)
		if !ok || addr == "" {
			skipped = append(skipped, inst.Name())
			continue
		}
		targets = append(targets, agentclient.Target{
			Name: inst.Group + "/" + inst.UUID, Group: inst.Group, ID: inst.UUID, Index: inst.Index,
			Address: addr, HostKey: vm.SSHHostKey, Signer: key.Signer,
		})
	}
	sort.SliceStable(targets, func(i, j int) bool {
		if targets[i].Group != targets[j].Group {
			return targets[i].Group < targets[j].Group
		}
		return targets[i].Index < targets[j].Index
	})
	return targets, skipped
}

// StateTargets lists a deployment's instances as agent targets from the
// state store (the Targets resolver of kpaas ssh, scp and logs).
type StateTargets struct {
	Open func(ctx context.Context) (state.Store, error)
}

// Targets loads the deployment and the client key.
func (s StateTargets) Targets(ctx context.Context, deployment string) ([]agentclient.Target, error) {
	st, err := s.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ds, err := LoadDeployment(ctx, st, st.Location(), deployment)
	if err != nil {
		return nil, err
	}
	key, err := ClientKey(ctx, st)
	if err != nil {
		return nil, err
	}
	targets, skipped := InstanceTargets(ds, key)
	if len(targets) == 0 && len(skipped) > 0 {
		return nil, fmt.Errorf("no instance of %s has a VM to reach (%s): deploy it first", deployment, strings.Join(skipped, ", "))
	}
	return targets, nil
}

// AgentState is what one agent answered to get_state, or why it did not.
type AgentState struct {
	State *protocol.State
	Err   error
}

// maxProbes bounds the agents asked at once (connections and goroutines).
const maxProbes = 128

// ProbeAgents asks every target's agent for get_state in parallel (at most
// maxProbes at once), each within timeout; the result is in the targets' order.
func ProbeAgents(ctx context.Context, pool *agentclient.Pool, targets []agentclient.Target, full bool, timeout time.Duration) []AgentState {
	out := make([]AgentState, len(targets))
	sem := make(chan struct{}, maxProbes)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			st, err := pool.Client(t).GetState(cctx, full)
			out[i] = AgentState{State: st, Err: err}
			if err != nil {
				out[i].State = nil
			}
		}()
	}
	wg.Wait()
	return out
}

// OptionalClientKey is ClientKey for commands that still work without one
// (they show agents as unreachable): nil, and no error, when the state has none.
func OptionalClientKey(ctx context.Context, r state.Reader) (*agentclient.Key, error) {
	k, err := ClientKey(ctx, r)
	switch {
	case err == nil:
		return &k, nil
	case errors.Is(err, ErrNoClientKey):
		return nil, nil
	default:
		return nil, err
	}
}

// DeploymentNames is the deployment a command names, or every deployment in
// the store when it names none (-d left out).
func DeploymentNames(ctx context.Context, r state.Reader, name string) ([]string, error) {
	if name != "" {
		return []string{name}, nil
	}
	deps, err := r.Deployments(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing deployments: %w", err)
	}
	names := make([]string, 0, len(deps))
	for _, d := range deps {
		names = append(names, d.Name)
	}
	return names, nil
}
