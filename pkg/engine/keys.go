package engine

import (
	"context"
	"errors"
	"fmt"

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
