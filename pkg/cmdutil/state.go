package cmdutil

import (
	"context"

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
