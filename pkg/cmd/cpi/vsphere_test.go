package cpi

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/external"
	"github.com/kpaas/kpaas/cpi/registry"
	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
	"github.com/kpaas/kpaas/pkg/agent/settings"
	"github.com/kpaas/kpaas/pkg/cmd/cpi/vspheredriver"
)

// TestServesVsphereThroughTheWire runs the conformance suite through
// `kpaas cpi vsphere --config FILE` (one command run per call, as BOSH runs
// a CPI) against the vCenter simulator started in this process.
// The driver is linked in process here, as cmd/kpaas-cpi-vsphere links it.
func TestServesVsphereThroughTheWire(t *testing.T) {
	withLinked(t, vspheredriver.Register)
	conformanceThroughCommand(t)
}

// TestVsphereThroughThePluginExecutable runs the suite through kpaas's own
// `kpaas cpi vsphere`, which links no vSphere code and runs the real
// kpaas-cpi-vsphere executable (built here, found on PATH) for every call.
func TestVsphereThroughThePluginExecutable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kpaas-cpi-vsphere; skipped with -short")
	}
	withLinked(t)
	dir := t.TempDir()
	build := exec.Command(goTool(), "build", "-o", filepath.Join(dir, "kpaas-cpi-vsphere"), "github.com/kpaas/kpaas/cmd/kpaas-cpi-vsphere")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	conformanceThroughCommand(t)
}

func TestVspherePluginMissingSaysWhatToDo(t *testing.T) {
	withLinked(t)
	t.Setenv("PATH", t.TempDir())
	_, err := Drivers().Open("vsphere", []byte(`{}`), nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "kpaas-cpi-vsphere")
	require.Contains(t, err.Error(), "make build")
}

// withLinked sets the drivers linked into this binary for one test.
func withLinked(t *testing.T, register ...func(*registry.Registry)) {
	saved := linked
	linked = register
	t.Cleanup(func() { linked = saved })
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func conformanceThroughCommand(t *testing.T) {
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		s := vspheretest.Start(t)
		b, err := json.Marshal(s.Config)
		require.NoError(t, err)
		cfg := filepath.Join(t.TempDir(), "cpi.json")
		require.NoError(t, os.WriteFile(cfg, b, 0o600))
		return cpitest.Target{
			CPI:           external.New(external.Config{Run: runCommand("vsphere", "--config", cfg)}),
			StemcellImage: vspheretest.StemcellImage(t),
			VMProps:       cpi.Props{"cpu": 1, "ram": 512, "disk": 1024},
			Networks:      vspheretest.Manual,
			Inventory:     s.Inventory,
			Settings:      func(vm cpi.VMCID) (*settings.Settings, error) { return s.Settings(t, vm) },
		}
	})
}
