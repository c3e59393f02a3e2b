package cmdutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/kpaas/kpaas/cpi/registry"
	"github.com/kpaas/kpaas/pkg/state"
)

// DefaultCPIDriver is the driver used when no cpi-config is stored: the local
// cloud of Linux-namespace VMs.
const DefaultCPIDriver = "local"

// LocalCloudDir is the default local cloud's state directory for a state
// location: <state dir>/local for an embedded store, ~/.kpaas/local for a
// PostgreSQL one.
func LocalCloudDir(location string) string {
	if location != "" && !state.IsPostgres(location) {
		return filepath.Join(location, "local")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".kpaas", "local")
}

// CPIConfigFrom merges every stored cpi-config (BOSH keeps several named ones
// and uses all their CPIs) into one. No config: an empty CPIConfig.
func CPIConfigFrom(ctx context.Context, r state.Reader) (registry.CPIConfig, []int64, error) {
	var out registry.CPIConfig
	cfgs, err := r.Configs(ctx, state.CPIConfig)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return out, nil, fmt.Errorf("reading the cpi-config: %w", err)
	}
	var ids []int64
	for _, c := range cfgs {
		var one registry.CPIConfig
		if err := yaml.Unmarshal([]byte(c.Content), &one); err != nil {
			return out, nil, fmt.Errorf("parsing cpi-config %q (version %d): %w; fix it with `kpaas update-cpi-config`", c.Name, c.Version, err)
		}
		out.CPIs = append(out.CPIs, one.CPIs...)
		ids = append(ids, c.ID)
	}
	return out, ids, nil
}

// OpenCPIs opens the CPIs of the latest cpi-config in the store through the
// Factory's driver registry (f.Drivers); with no cpi-config, the local cloud
// with its directory under the state directory, named "default".
func (f *Factory) OpenCPIs(ctx context.Context, st state.Reader) (*registry.Set, error) {
	if f.Drivers == nil {
		return nil, errors.New("no CPI drivers are registered in this build")
	}
	cfg, _, err := CPIConfigFrom(ctx, st)
	if err != nil {
		return nil, err
	}
	loc, err := state.ResolveLocation(f.Globals.State)
	if err != nil {
		return nil, err
	}
	def, err := json.Marshal(map[string]any{"dir": LocalCloudDir(loc)})
	if err != nil {
		return nil, err
	}
	return f.Drivers().OpenAll(cfg, DefaultCPIDriver, def, f.Logger())
}

// BlobstoreDir is where kpaas keeps release tarballs and compiled packages:
// <state dir>/blobs for an embedded store, ~/.kpaas/blobs for a PostgreSQL one.
func BlobstoreDir(location string) string {
	return filepath.Join(filepath.Dir(LocalCloudDir(location)), "blobs")
}
