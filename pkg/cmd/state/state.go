// Package state implements `kpaas state`, the parent of the commands that move
// a whole environment's state: export and import.
package state

import (
	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmd/state/export"
	importcmd "github.com/kpaas/kpaas/pkg/cmd/state/import"
	"github.com/kpaas/kpaas/pkg/cmdutil"
)

// NewCmdState builds `kpaas state` and its subcommands.
func NewCmdState(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state <command>",
		Short: "Export and import the whole state store (backups, moving between backends)",
		Long: `The state store holds everything kpaas knows about an environment. Export it as JSON
for a backup, or to move an environment between backends (the embedded SQLite store
and PostgreSQL).`,
		Example: `  kpaas state export --include-secrets -o backup.json
  kpaas state import --state postgres://kpaas@db/kpaas backup.json
  kpaas state import --state postgres://kpaas@db/kpaas --from ~/.kpaas`,
	}
	cmd.AddCommand(export.NewCmdExport(f, nil))
	cmd.AddCommand(importcmd.NewCmdImport(f, nil))
	return cmd
}
