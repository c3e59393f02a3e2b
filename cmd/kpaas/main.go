// Command kpaas deploys and keeps alive K-PaaS platforms from BOSH manifests.
package main

import (
	"os"

	"github.com/kpaas/kpaas/pkg/cli"
)

func main() { os.Exit(cli.Main()) }
