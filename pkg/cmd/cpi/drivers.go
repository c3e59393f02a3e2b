package cpi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/external"
	"github.com/kpaas/kpaas/cpi/fake"
	"github.com/kpaas/kpaas/cpi/registry"
)

// FakeConfig configures the "fake" driver: an in-memory CPI whose state is
// kept in a file between calls (for tests of the layers above a CPI).
type FakeConfig struct {
	StateFile string `json:"state_file"`
}

// Plugins are drivers kept out of the kpaas binary, served by an executable
// of their own (a BOSH CPI executable built from this repository, installed
// beside kpaas): kpaas runs them through cpi/external, one process per call,
// with the driver's configuration as the request context's properties.
var Plugins = map[string]string{"vsphere": "kpaas-cpi-vsphere"}

var linked []func(*registry.Registry)

// AddDriver links a driver into this binary's registry (a plugin executable
// calls it for its own driver, so the plugin serves it in process).
func AddDriver(register func(*registry.Registry)) { linked = append(linked, register) }

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
		return fake.NewFakeFile(c.StateFile)
	})
	registerLocal(r)
	registerOpenStack(r)
	registerQEMU(r)
	for _, register := range linked {
		register(r)
	}
	for name, executable := range Plugins {
		if !contains(r.Names(), name) {
			r.Register(name, pluginOpener(name, executable))
		}
	}
	return r
}

func pluginOpener(name, executable string) registry.Factory {
	return func(config json.RawMessage, logger *slog.Logger) (cpi.CPI, error) {
		path, err := findPlugin(executable)
		if err != nil {
			return nil, fmt.Errorf("the %s cpi is served by %s, a separate executable: %w; build it with `make build` (bin/%s) and install it beside kpaas", name, executable, err, executable)
		}
		props := map[string]any{}
		if len(config) > 0 {
			if err := json.Unmarshal(config, &props); err != nil {
				return nil, fmt.Errorf("%s cpi config must be a JSON object: %w", name, err)
			}
		}
		return external.New(external.Config{Command: path, Properties: props, Logger: logger}), nil
	}
}

// findPlugin looks for executable beside the running kpaas, then on PATH.
func findPlugin(executable string) (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), executable)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(executable)
	if err != nil {
		return "", fmt.Errorf("not found beside %s nor on PATH", selfPath())
	}
	return p, nil
}

func selfPath() string {
	if self, err := os.Executable(); err == nil {
		return self
	}
	return "kpaas"
}
