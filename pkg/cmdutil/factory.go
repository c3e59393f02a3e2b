// Package cmdutil holds what every command package shares: the Factory that
// hands a command its streams, global options and clock, and the typed errors
// that pkg/cli maps to exit codes; and, for the commands that reach VMs, how
// a deployment's instances become agent targets (address on the default
// network, pinned host key, kpaas's client key from the state) and how their
// agents are asked for their state in parallel. It must not import concrete
// domain drivers.
package cmdutil

import (
	"log/slog"
	"time"

	"github.com/kpaas/kpaas/cpi/registry"
	"github.com/kpaas/kpaas/pkg/ui"
)

// GlobalOptions are the root command's persistent flags.
type GlobalOptions struct {
	Deployment     string // -d/--deployment
	State          string // --state (or KPAAS_STATE)
	JSON           bool   // --json
	NonInteractive bool   // -n/--non-interactive
	NoColor        bool   // --no-color
	LogLevel       string // --log-level (or KPAAS_LOG_LEVEL)
	LogFile        string // --log-file
}

// Factory gives commands what they need, lazily where it costs something.
type Factory struct {
	IO      *ui.IOStreams
	Globals *GlobalOptions
	Logger  func() *slog.Logger
	Now     func() time.Time
	Version string
	// Drivers returns the registry of built-in CPI drivers (set in pkg/cli
	// from pkg/cmd/cpi.Drivers, so this package imports no driver).
	Drivers func() *registry.Registry
}
