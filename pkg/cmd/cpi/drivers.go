package cpi

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/registry"
)

// FakeConfig configures the "fake" driver: an in-memory CPI whose state is
// kept in a file between calls (for tests of the layers above a CPI).
type FakeConfig struct {
	StateFile string `json:"state_file"`
}

// Drivers returns the registry of built-in drivers.
func Drivers() *registry.Registry {
	r := registry.New()
	r.Register("fake", func(config json.RawMessage, _ *slog.Logger) (cpi.CPI, error) {
		var c FakeConfig
		if err := json.Unmarshal(config, &c); err != nil {
			return nil, fmt.Errorf("parsing fake cpi config: %w", err)
		}
		if c.StateFile == "" {
			return nil, fmt.Errorf("fake cpi config: state_file is required (the calls are separate processes)")
		}
		return cpitest.NewFakeFile(c.StateFile)
	})
	registerLocal(r)
	registerVsphere(r)
	registerQEMU(r)
	return r
}
