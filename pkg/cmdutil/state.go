package cmdutil

import (
	"context"
	"errors"
	"fmt"

	"github.com/kpaas/kpaas/pkg/state"
)

// OpenState opens the state store the global flags name: --state, else
// $KPAAS_STATE, else ~/.kpaas (postgres://... for a shared store). The caller
// closes it.
func (f *Factory) OpenState(ctx context.Context) (state.Store, error) {
	loc, err := state.ResolveLocation(f.Globals.State)
	if err != nil {
		return nil, err
	}
	return state.Open(ctx, loc, state.Options{Now: f.Now, Version: f.Version})
}

// StateTargets resolves deployments' instances to agent targets from the
// state store the global flags name.
func (f *Factory) StateTargets() StateTargets { return StateTargets{Open: f.OpenState} }

// LoadDeployment loads a deployment's whole state; a deployment that does
// not exist is an error that says where kpaas looked and what to run next.
func LoadDeployment(ctx context.Context, r state.Reader, location, name string) (*state.DeploymentState, error) {
	ds, err := r.LoadDeployment(ctx, name)
	if errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("deployment %s not found in %s: `kpaas deployments` lists them: %w", name, location, err)
	}
	if err != nil {
		return nil, fmt.Errorf("loading deployment %s: %w", name, err)
	}
	return ds, nil
}
