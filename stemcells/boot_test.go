package stemcells_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agent/settings"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
	"github.com/kpaas/kpaas/stemcells"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestQcow2StemcellBoots boots a stemcell built by `kpaas create-stemcell
// --format qcow2` under QEMU (TCG) from its own boot loader, with an
// OpenStack-style config drive, waits for systemd to start kpaas-agent and
// for the agent to answer over SSH (through a loopback port forward). Building takes minutes and needs the Debian
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

	// A config drive as OpenStack makes one (label config-2, the settings as
	// ec2/latest/user-data), as an ext4 image built without mounting.
	host, client := agentclienttest.MustKeys(t), agentclienttest.MustKeys(t)
	st := settings.Settings{AgentID: "qcow2-agent", VM: settings.VM{Name: "vm-qcow2"},
		Networks: map[string]settings.Network{"default": {Type: "dynamic", UseDHCP: true, Default: []string{"dns", "gateway"}}},
		Env:      settings.Env{Kpaas: settings.KpaasEnv{HostKey: host.PEM, AuthorizedKeys: []string{client.Public}}}}
	b, err := st.Marshal()
	require.NoError(t, err)
	cd := filepath.Join(dir, "cd")
	require.NoError(t, os.MkdirAll(filepath.Join(cd, "ec2/latest"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cd, "ec2/latest/user-data"), b, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(cd, "ec2/latest/meta-data.json"), []byte(`{"instance-id":"vm-qcow2"}`), 0o644))
	cdImg := filepath.Join(dir, "config-2.img")
	out, err = exec.Command("mkfs.ext4", "-q", "-F", "-L", "config-2", "-d", cd, cdImg, "4M").CombinedOutput()
	require.NoError(t, err, "%s", out)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var console syncBuf
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "1",
		"-nographic", "-no-reboot", "-drive", "file="+disk+",if=virtio,snapshot=on",
		"-drive", "file="+cdImg+",if=virtio,format=raw,readonly=on",
		"-nic", fmt.Sprintf("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%d-:6868", port))
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

	// The agent read the config drive and answers over SSH with the host key kpaas generated.
	pool := agentclient.NewPool(agentclient.Options{DialTimeout: 5 * time.Second})
	defer pool.Close()
	c := pool.Client(agentclient.Target{Name: "qcow2/0", Address: fmt.Sprintf("127.0.0.1:%d", port), HostKey: host.Public, Signer: client.Signer})
	var state *protocol.State
	for {
		state, err = c.GetState(ctx, false)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("agent did not answer over SSH: %v; console:\n%s", err, tail(console.String()))
		case <-time.After(time.Second):
		}
	}
	require.Equal(t, "qcow2-agent", state.AgentID)
	t.Logf("boot to the agent answering over SSH under TCG: %s", time.Since(start).Round(100*time.Millisecond))
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

// TestOVAStemcellBoots boots the vmdk of a stemcell built by `kpaas
// create-stemcell --format ova` under QEMU (no vSphere here: virtio instead of
// LSI Logic, so guestinfo is absent and the agent cannot get settings) and
// waits for systemd to start kpaas-agent. Runs when KPAAS_OVA_STEMCELL names one.
func TestOVAStemcellBoots(t *testing.T) {
	path := os.Getenv("KPAAS_OVA_STEMCELL")
	if path == "" {
		t.Skip("set KPAAS_OVA_STEMCELL to a stemcell built by `kpaas create-stemcell --format ova` to run")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install -y qemu-system-x86)")
	}
	dir := t.TempDir()
	tb, err := stemcells.Open(path, dir)
	require.NoError(t, err)
	require.Equal(t, []string{"vsphere-ova"}, tb.Manifest.StemcellFormats)
	out, err := exec.Command("tar", "-xzf", tb.ImagePath, "-C", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	mf, err := os.ReadFile(filepath.Join(dir, "image.mf"))
	require.NoError(t, err)
	for _, f := range []string{"image.ovf", "image-disk1.vmdk"} {
		sum, err := exec.Command("sha256sum", filepath.Join(dir, f)).Output()
		require.NoError(t, err)
		require.Contains(t, string(mf), "SHA256("+f+")= "+strings.Fields(string(sum))[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var console syncBuf
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "768", "-smp", "1", "-nographic", "-no-reboot",
		"-drive", "file="+filepath.Join(dir, "image-disk1.vmdk")+",if=virtio,snapshot=on", "-nic", "user,model=virtio-net-pci")
	cmd.Stdout, cmd.Stderr = &console, &console
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	start := time.Now()
	// tty0 is the primary console (the one vSphere shows), so systemd's unit
	// messages are not on the serial line; the getty on ttyS0 says that
	// multi-user (which starts kpaas-agent) was reached.
	for !strings.Contains(console.String(), "login:") {
		select {
		case <-ctx.Done():
			t.Fatalf("the VM did not reach multi-user within %s; console:\n%s", time.Since(start), tail(console.String()))
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Logf("boot of the vmdk to multi-user under TCG: %s", time.Since(start).Round(100*time.Millisecond))
}
