package interpolate

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCompat builds kpaas and replays every golden `bosh int` case of
// ../shared/compat with it (byte-for-byte stdout, store files and exit codes).
func TestCompat(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the compat suite builds kpaas and generates many RSA keys (~40 s)")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	shared := os.Getenv("KPAAS_SHARED")
	if shared == "" {
		shared = filepath.Join(root, "..", "shared")
	}
	runAll := filepath.Join(shared, "compat", "run-all.sh")
	if _, err := os.Stat(runAll); err != nil {
		t.Skip("../shared/compat is absent: no golden bosh int cases to replay")
	}
	bin := filepath.Join(t.TempDir(), "kpaas")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/kpaas")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building kpaas: %v\n%s", err, out)
	}
	cmd := exec.Command("bash", runAll, bin)
	cmd.Env = append(os.Environ(), "QUIET=1")
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "FAIL") || strings.HasPrefix(l, "==") || strings.HasPrefix(l, "  ") {
			t.Log(l)
		}
	}
	if err != nil {
		t.Fatalf("compat cases failed (re-run one with: %s CASE_DIR %s)", filepath.Join(shared, "compat", "run-case.sh"), bin)
	}
}
