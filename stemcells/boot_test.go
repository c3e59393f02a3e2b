package stemcells_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/stemcells"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestQcow2StemcellBoots boots a stemcell built by `kpaas create-stemcell
// --format qcow2` under QEMU (TCG) from its own boot loader and waits for
// systemd to start kpaas-agent. Building takes minutes and needs the Debian
// archive, so it runs only when KPAAS_QCOW2_STEMCELL names one.
func TestQcow2StemcellBoots(t *testing.T) {
	path := os.Getenv("KPAAS_QCOW2_STEMCELL")
	if path == "" {
		t.Skip("set KPAAS_QCOW2_STEMCELL to a stemcell built by `kpaas create-stemcell --format qcow2` to run")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install -y qemu-system-x86)")
	}
	dir := t.TempDir()
	tb, err := stemcells.Open(path, dir)
	require.NoError(t, err)
	require.Equal(t, []string{"openstack-qcow2"}, tb.Manifest.StemcellFormats)
	out, err := exec.Command("tar", "-xzf", tb.ImagePath, "-C", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	disk := filepath.Join(dir, "root.img")
	info, err := exec.Command("qemu-img", "info", disk).Output()
	require.NoError(t, err)
	require.Contains(t, string(info), "file format: qcow2")
	require.Contains(t, string(info), "compat: 0.10")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var console syncBuf
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "1",
		"-nographic", "-no-reboot", "-drive", "file="+disk+",if=virtio,snapshot=on", "-nic", "user,model=virtio-net-pci")
	cmd.Stdout, cmd.Stderr = &console, &console
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	start := time.Now()
	for !strings.Contains(console.String(), "kpaas agent") {
		select {
		case <-ctx.Done():
			t.Fatalf("kpaas-agent was not started within %s; console:\n%s", time.Since(start), tail(console.String()))
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Logf("boot to systemd starting kpaas-agent under TCG: %s", time.Since(start).Round(100*time.Millisecond))
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
