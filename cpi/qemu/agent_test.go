package qemu_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
)

// TestAgentOnQEMU drives the stemcell's kpaas-agent in a QEMU VM over SSH
// with the host key kpaas put on the config drive: get_state, a persistent
// disk hot-plugged through QMP that the agent formats and mounts, data
// written to it, the disk unplugged, reboot_vm, and the disk plugged again
// with its data.
func TestAgentOnQEMU(t *testing.T) {
	q := newCloud(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	before, err := q.Inventory()
	require.NoError(t, err)
	sc, err := q.CreateStemcell(ctx, stemcellPath(), nil)
	require.NoError(t, err)
	host, client := agentclienttest.MustKeys(t), agentclienttest.MustKeys(t)
	env := cpi.Env{"kpaas": map[string]any{"host_key": host.PEM, "authorized_keys": []string{client.Public}}}
	vm, nets, err := q.CreateVM(ctx, "agent-qemu", sc, cpi.Props{"ram": 256}, testNet(5, 10), nil, env)
	require.NoError(t, err)
	defer q.DeleteVM(context.Background(), vm)

	pool := agentclient.NewPool(agentclient.Options{DialTimeout: 3 * time.Second})
	defer pool.Close()
	c := pool.Client(agentclient.Target{Name: "qemu/0", Address: nets["default"].IP + ":6868", HostKey: host.Public, Signer: client.Signer})
	waitAgent := func(what string) {
		t.Helper()
		start := time.Now()
		for {
			st, err := c.GetState(ctx, false)
			if err == nil {
				require.Equal(t, "agent-qemu", st.AgentID)
				t.Logf("%s: agent answered after %s", what, time.Since(start).Round(100*time.Millisecond))
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: agent did not answer: %v; console:\n%s", what, err, q.Console(vm))
			}
			time.Sleep(time.Second)
		}
	}
	sh := func(cmd string) string {
		t.Helper()
		var out, errb bytes.Buffer
		code, err := c.Exec(ctx, cmd, nil, &out, &errb)
		require.NoError(t, err)
		require.Equal(t, 0, code, "%s: %s", cmd, errb.String())
		return strings.TrimSpace(out.String())
	}
	waitAgent("create_vm")

	disk, err := q.CreateDisk(ctx, 64, nil, vm)
	require.NoError(t, err)
	defer q.DeleteDisk(context.Background(), disk)
	hint, err := q.AttachDisk(ctx, vm, disk)
	require.NoError(t, err)
	require.NoError(t, c.AddPersistentDisk(ctx, string(disk), hint))
	require.Eventually(t, func() bool { return c.MountDisk(ctx, string(disk)) == nil }, 30*time.Second, time.Second, "mount_disk of the hot-plugged disk")
	sh("echo kept > /var/vcap/store/data && sync")
	require.Contains(t, sh("cat /proc/mounts"), "/var/vcap/store")
	require.NoError(t, c.UnmountDisk(ctx, string(disk)))
	require.NoError(t, q.DetachDisk(ctx, vm, disk))
	require.Eventually(t, func() bool { return !strings.Contains(sh("ls /sys/block"), "sd") }, 10*time.Second, 200*time.Millisecond,
		"the SCSI disk is gone from the VM after detach_disk")

	require.NoError(t, q.RebootVM(ctx, vm))
	time.Sleep(2 * time.Second) // let the old agent go away
	waitAgent("reboot_vm")

	_, err = q.AttachDisk(ctx, vm, disk)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return c.MountDisk(ctx, string(disk)) == nil }, 30*time.Second, time.Second, "mount_disk after reboot")
	require.Equal(t, "kept", sh("cat /var/vcap/store/data"))

	require.NoError(t, q.DeleteVM(ctx, vm))
	require.NoError(t, q.DeleteDisk(ctx, disk))
	require.NoError(t, q.DeleteStemcell(ctx, sc))
	after, err := q.Inventory()
	require.NoError(t, err)
	require.Equal(t, before, after)
}
