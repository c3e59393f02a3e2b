// Command kpaas-cpi-vsphere serves the vSphere CPI as a BOSH CPI executable:
// `kpaas-cpi-vsphere [--config FILE]` is `kpaas cpi vsphere [--config FILE]`.
// It is a separate binary so that govmomi is not linked into kpaas itself;
// kpaas finds it beside its own executable or on PATH.
package main

import (
	"context"
	"os"

	"github.com/kpaas/kpaas/pkg/cli"
	cpicmd "github.com/kpaas/kpaas/pkg/cmd/cpi"
	"github.com/kpaas/kpaas/pkg/cmd/cpi/vspheredriver"
	"github.com/kpaas/kpaas/pkg/ui"
)

func main() {
	cpicmd.AddDriver(vspheredriver.Register)
	os.Exit(cli.Run(context.Background(), append([]string{"cpi", "vsphere"}, os.Args[1:]...), ui.System()))
}
