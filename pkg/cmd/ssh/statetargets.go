package ssh

import (
	"github.com/kpaas/kpaas/pkg/cmdutil"
)

// DefaultTargets is the lookup kpaas ssh, scp and logs use: instances,
// their VM's address on the default network and pinned host key from the
// state store the global flags name, and kpaas's client key from that store
// (or $KPAAS_AGENT_KEY when the store has none); see cmdutil.StateTargets.
func DefaultTargets(f *cmdutil.Factory) func() (Targets, error) {
	return func() (Targets, error) { return f.StateTargets(), nil }
}
