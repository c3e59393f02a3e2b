package cpi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/qemu"
	"github.com/kpaas/kpaas/cpi/registry"
)

// DefaultQEMUDir is the QEMU cloud's state directory when its config names
// none: $KPAAS_STATE/qemu, else ~/.kpaas/qemu.
func DefaultQEMUDir() string {
	if s := os.Getenv("KPAAS_STATE"); s != "" && !strings.Contains(s, "://") {
		return filepath.Join(s, "qemu")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "kpaas-qemu")
	}
	return filepath.Join(home, ".kpaas", "qemu")
}

// registerQEMU adds "qemu": VMs under QEMU on this host (cpi/qemu).
func registerQEMU(r *registry.Registry) {
	r.Register("qemu", func(config json.RawMessage, logger *slog.Logger) (cpi.CPI, error) {
		var c qemu.Config
		if len(config) > 0 {
			if err := json.Unmarshal(config, &c); err != nil {
				return nil, fmt.Errorf("parsing qemu cpi config: %w", err)
			}
		}
		if c.Dir == "" {
			c.Dir = DefaultQEMUDir()
		}
		return qemu.New(c, logger)
	})
}
