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

// TestAgentOnQEMU drives the stemcell's kpaas-agent in QEMU VMs over SSH
// with the host key kpaas put on the config drive: get_state, a persistent
// disk hot-plugged through QMP that the agent formats and mounts, data
// written to it, the disk unplugged, reboot_vm, the disk plugged again with
// its data, then moved to a second VM with its data.
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
	pool := agentclient.NewPool(agentclient.Options{DialTimeout: 3 * time.Second})
	defer pool.Close()

	type guest struct {
		vm cpi.VMCID
		c  *agentclient.Client
		id string
	}
	boot := func(id string, host4 int) guest {
		vm, nets, err := q.CreateVM(ctx, cpi.AgentID(id), sc, cpi.Props{"ram": 256}, testNet(5, host4), nil, env)
		require.NoError(t, err)
		t.Cleanup(func() { _ = q.DeleteVM(context.Background(), vm) })
		return guest{vm: vm, id: id, c: pool.Client(agentclient.Target{Name: id, Address: nets["default"].IP + ":6868", HostKey: host.Public, Signer: client.Signer})}
	}
	waitAgent := func(g guest, what string) {
		t.Helper()
		start := time.Now()
		for {
			st, err := g.c.GetState(ctx, false)
			if err == nil {
				require.Equal(t, g.id, st.AgentID)
				t.Logf("%s: agent %s answered after %s", what, g.id, time.Since(start).Round(100*time.Millisecond))
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: agent %s did not answer: %v; console:\n%s", what, g.id, err, q.Console(g.vm))
			}
			time.Sleep(time.Second)
		}
	}
	sh := func(g guest, cmd string) string {
		t.Helper()
		var out, errb bytes.Buffer
		code, err := g.c.Exec(ctx, cmd, nil, &out, &errb)
		require.NoError(t, err)
		require.Equal(t, 0, code, "%s: %s", cmd, errb.String())
		return strings.TrimSpace(out.String())
	}
	mount := func(g guest, disk cpi.DiskCID, hint cpi.DiskHint, what string) {
		t.Helper()
		require.NoError(t, g.c.AddPersistentDisk(ctx, string(disk), hint))
		require.NoError(t, g.c.MountDisk(ctx, string(disk)), what)
		require.Contains(t, sh(g, "cat /proc/mounts"), " /var/vcap/store ", what)
	}

	a, b := boot("agent-qemu-a", 10), boot("agent-qemu-b", 11) // both boot at once
	waitAgent(a, "create_vm")

	disk, err := q.CreateDisk(ctx, 64, nil, a.vm)
	require.NoError(t, err)
	defer q.DeleteDisk(context.Background(), disk)
	hint, err := q.AttachDisk(ctx, a.vm, disk)
	require.NoError(t, err)
	mount(a, disk, hint, "mount_disk of the hot-plugged disk")
	sh(a, "echo kept > /var/vcap/store/data && sync")
	require.NoError(t, a.c.UnmountDisk(ctx, string(disk)))
	require.NoError(t, q.DetachDisk(ctx, a.vm, disk))
	require.Eventually(t, func() bool { return !strings.Contains(sh(a, "ls /sys/block"), "sd") }, 10*time.Second, 200*time.Millisecond,
		"the SCSI disk is gone from the VM after detach_disk")

	require.NoError(t, q.RebootVM(ctx, a.vm))
	time.Sleep(2 * time.Second) // let the old agent go away
	waitAgent(a, "reboot_vm")
	hint, err = q.AttachDisk(ctx, a.vm, disk)
	require.NoError(t, err)
	mount(a, disk, hint, "mount_disk after reboot")
	require.Equal(t, "kept", sh(a, "cat /var/vcap/store/data"))

	// Move the disk to the other VM.
	require.NoError(t, a.c.UnmountDisk(ctx, string(disk)))
	require.NoError(t, q.DetachDisk(ctx, a.vm, disk))
	waitAgent(b, "create_vm")
	hint, err = q.AttachDisk(ctx, b.vm, disk)
	require.NoError(t, err)
	mount(b, disk, hint, "mount_disk on the second VM")
	require.Equal(t, "kept", sh(b, "cat /var/vcap/store/data"), "the disk moved with its data")
	require.NoError(t, b.c.UnmountDisk(ctx, string(disk)))

	require.NoError(t, q.DeleteVM(ctx, a.vm))
	require.NoError(t, q.DeleteVM(ctx, b.vm))
	require.NoError(t, q.DeleteDisk(ctx, disk))
	require.NoError(t, q.DeleteStemcell(ctx, sc))
	after, err := q.Inventory()
	require.NoError(t, err)
	require.Equal(t, before, after)
}
