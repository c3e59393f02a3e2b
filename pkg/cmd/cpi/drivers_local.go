package cpi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/local"
	"github.com/kpaas/kpaas/cpi/registry"
)

// DefaultLocalDir is the local cloud's state directory when its config names none:
// $KPAAS_STATE/local, else ~/.kpaas/local.
func DefaultLocalDir() string {
	if s := os.Getenv("KPAAS_STATE"); s != "" && !strings.Contains(s, "://") {
		return filepath.Join(s, "local")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".kpaas", "local")
}

func registerLocal(r *registry.Registry) {
	r.Register("local", func(config json.RawMessage, logger *slog.Logger) (cpi.CPI, error) {
		var c local.Config
		if err := json.Unmarshal(config, &c); err != nil {
			return nil, fmt.Errorf("parsing local cpi config: %w", err)
		}
		if c.Dir == "" {
			c.Dir = DefaultLocalDir()
		}
		return local.New(c, logger)
	})
}

// newCmdLocalVMInit is the hidden launcher a local VM starts with: it becomes
// the VM's PID 1, sets up its root and execs the agent.
func newCmdLocalVMInit() *cobra.Command {
	return &cobra.Command{
		Use:    "local-vm-init SPEC",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			os.Exit(local.VMInit(args[0]))
			return nil
		},
	}
}
