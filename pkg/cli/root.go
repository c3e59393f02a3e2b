package cli

import (
	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmd/configs"
	convergecmd "github.com/kpaas/kpaas/pkg/cmd/converge"
	cpicmd "github.com/kpaas/kpaas/pkg/cmd/cpi"
	"github.com/kpaas/kpaas/pkg/cmd/createrelease"
	"github.com/kpaas/kpaas/pkg/cmd/createstemcell"
	"github.com/kpaas/kpaas/pkg/cmd/deploy"
	"github.com/kpaas/kpaas/pkg/cmd/deployments"
	"github.com/kpaas/kpaas/pkg/cmd/disks"
	"github.com/kpaas/kpaas/pkg/cmd/errands"
	"github.com/kpaas/kpaas/pkg/cmd/events"
	"github.com/kpaas/kpaas/pkg/cmd/instances"
	"github.com/kpaas/kpaas/pkg/cmd/interpolate"
	"github.com/kpaas/kpaas/pkg/cmd/locks"
	"github.com/kpaas/kpaas/pkg/cmd/logs"
	manifestcmd "github.com/kpaas/kpaas/pkg/cmd/manifest"
	"github.com/kpaas/kpaas/pkg/cmd/releases"
	"github.com/kpaas/kpaas/pkg/cmd/renderjob"
	"github.com/kpaas/kpaas/pkg/cmd/scp"
	"github.com/kpaas/kpaas/pkg/cmd/showconfig"
	"github.com/kpaas/kpaas/pkg/cmd/ssh"
	statecmd "github.com/kpaas/kpaas/pkg/cmd/state"
	"github.com/kpaas/kpaas/pkg/cmd/stemcells"
	"github.com/kpaas/kpaas/pkg/cmd/unlock"
	"github.com/kpaas/kpaas/pkg/cmd/updateconfig"
	"github.com/kpaas/kpaas/pkg/cmd/upload"
	"github.com/kpaas/kpaas/pkg/cmd/variables"
	"github.com/kpaas/kpaas/pkg/cmd/version"
	"github.com/kpaas/kpaas/pkg/cmd/vms"
	"github.com/kpaas/kpaas/pkg/cmdutil"
)

// NewRootCmd builds the kpaas command tree.
func NewRootCmd(f *cmdutil.Factory) *cobra.Command {
	g := f.Globals
	root := &cobra.Command{
		Use:   "kpaas <command> [flags]",
		Short: "Deploy and keep alive K-PaaS platforms from BOSH manifests, without a director",
		Long: `kpaas reads BOSH v2 manifests, ops files and vars, plans the change, drives the
IaaS through a CPI, and rolls out releases to the kpaas agent on each VM over SSH.`,
		Example: `  kpaas interpolate manifest.yml -o ops.yml -l vars.yml
  kpaas deploy -d cf manifest.yml
  kpaas vms -d cf --json`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       f.Version,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			f.IO.SetNoColor(g.NoColor || !f.IO.ColorEnabled())
		},
	}
	root.SetVersionTemplate("kpaas version {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVarP(&g.Deployment, "deployment", "d", "", "Deployment `name`")
	pf.StringVar(&g.State, "state", "", "State `location`: a directory (SQLite) or postgres://... (default ~/.kpaas, or $KPAAS_STATE)")
	pf.BoolVar(&g.JSON, "json", false, "Print machine-readable JSON on stdout")
	pf.BoolVarP(&g.NonInteractive, "non-interactive", "n", false, "Do not ask for confirmation")
	pf.BoolVar(&g.NoColor, "no-color", false, "Do not use colour (also: NO_COLOR)")
	pf.StringVar(&g.LogLevel, "log-level", "", "Debug log `level`: debug, info, warn, error (also: KPAAS_LOG_LEVEL)")
	pf.StringVar(&g.LogFile, "log-file", "", "Write debug logs to `file`")

	root.AddCommand(createrelease.NewCmdCreateRelease(f, nil))
	root.AddCommand(interpolate.NewCmdInterpolate(f, nil))
	root.AddCommand(cpicmd.NewCmdCPI(f, nil))
	root.AddCommand(createstemcell.NewCmdCreateStemcell(f, nil))
	root.AddCommand(logs.NewCmdLogs(f, nil))
	root.AddCommand(scp.NewCmdSCP(f, nil))
	root.AddCommand(ssh.NewCmdSSH(f, nil))
	root.AddCommand(renderjob.NewCmdRenderJob(f, nil))
	root.AddCommand(version.NewCmdVersion(f, nil))
	// Register new commands here, one line each, in alphabetical order.
	root.AddCommand(showconfig.NewCmdCloudConfig(f, nil))
	root.AddCommand(deploy.NewCmdDeleteDeployment(f, nil))
	root.AddCommand(upload.NewCmdDeleteRelease(f, nil))
	root.AddCommand(upload.NewCmdDeleteStemcell(f, nil))
	root.AddCommand(deploy.NewCmdDeploy(f, nil))
	root.AddCommand(convergecmd.NewCmdConverge(f, nil))
	root.AddCommand(convergecmd.NewCmdMonitor(f, nil))
	root.AddCommand(convergecmd.NewCmdCCK(f, nil))
	root.AddCommand(convergecmd.NewCmdUpdateResurrection(f, nil))
	root.AddCommand(deploy.NewCmdPlan(f, nil))
	root.AddCommand(deploy.NewCmdRecreate(f, nil))
	root.AddCommand(deploy.NewCmdRestart(f, nil))
	root.AddCommand(deploy.NewCmdRunErrand(f, nil))
	root.AddCommand(deploy.NewCmdStart(f, nil))
	root.AddCommand(deploy.NewCmdStop(f, nil))
	root.AddCommand(upload.NewCmdUploadRelease(f, nil))
	root.AddCommand(upload.NewCmdUploadStemcell(f, nil))
	root.AddCommand(upload.NewCmdExportRelease(f, nil))
	root.AddCommand(configs.NewCmdConfigs(f, nil))
	root.AddCommand(showconfig.NewCmdCPIConfig(f, nil))
	root.AddCommand(events.NewCmdEvents(f, nil))
	root.AddCommand(locks.NewCmdLocks(f, nil))
	root.AddCommand(showconfig.NewCmdRuntimeConfig(f, nil))
	root.AddCommand(statecmd.NewCmdState(f))
	root.AddCommand(unlock.NewCmdUnlock(f, nil))
	root.AddCommand(updateconfig.NewCmdUpdateCloudConfig(f, nil))
	root.AddCommand(updateconfig.NewCmdUpdateCPIConfig(f, nil))
	root.AddCommand(updateconfig.NewCmdUpdateRuntimeConfig(f, nil))
	root.AddCommand(deployments.NewCmdDeployments(f, nil))
	root.AddCommand(disks.NewCmdDisks(f, nil))
	root.AddCommand(errands.NewCmdErrands(f, nil))
	root.AddCommand(instances.NewCmdInstances(f, nil))
	root.AddCommand(manifestcmd.NewCmdManifest(f, nil))
	root.AddCommand(releases.NewCmdReleases(f, nil))
	root.AddCommand(stemcells.NewCmdStemcells(f, nil))
	root.AddCommand(variables.NewCmdVariables(f, nil))
	root.AddCommand(vms.NewCmdVMs(f, nil))
	return root
}
