package agent

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The agent binary runs on every VM: it must not pull in the CLI side.
func TestAgentDoesNotImportTheCLISide(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/kpaas/kpaas/cmd/kpaas-agent").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/kpaas/kpaas/pkg/agentclient", "github.com/kpaas/kpaas/pkg/cmd", "github.com/kpaas/kpaas/pkg/cli", "github.com/spf13/cobra"} {
			assert.False(t, dep == banned || strings.HasPrefix(dep, banned+"/"), "kpaas-agent imports %s", dep)
		}
	}
}
