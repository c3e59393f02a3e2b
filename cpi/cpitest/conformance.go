// Package cpitest holds what every CPI driver and the layers above it test
// with: Conformance, the suite that checks each row of cpi/CONTRACT.md against
// a driver, and Fake, an in-memory fault-injecting CPI for the engine's unit
// tests. It imports the cpi package and testify, never a concrete driver.
package cpitest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// Target is a driver under test and what the suite needs to drive it.
type Target struct {
	CPI cpi.CPI
	// StemcellImage is an image file the driver's create_stemcell accepts
	// (empty: the suite writes a small file, enough for drivers that do not
	// read it), with its cloud_properties.
	StemcellImage string
	StemcellProps cpi.Props
	// VMProps are the cloud_properties for create_vm.
	VMProps cpi.Props
	// Networks gives the networks for the i-th VM the suite creates (distinct
	// static IPs). Nil: one dynamic network named "default".
	Networks func(i int) cpi.Networks
	// Inventory lists the driver's resources (VMs, disks, and whatever they
	// hold on the host), to check that failures and deletes leave nothing
	// behind. Nil skips the leak rows.
	Inventory func() ([]string, error)
	// Settings reads the agent settings the driver delivered to a VM. Nil
	// skips the settings rows.
	Settings func(vm cpi.VMCID) (*settings.Settings, error)
	// Reachable waits until the VM's init answers on its network. Nil skips
	// the reachability rows.
	Reachable func(ctx context.Context, nets cpi.Networks) error
}

// Conformance runs every row of cpi/CONTRACT.md against the driver newTarget
// returns. Each row is a subtest named after its ID (e.g. "VM-4").
func Conformance(t *testing.T, newTarget func(t *testing.T) Target) {
	outer := t
	tg := newTarget(t)
	c := tg.CPI
	ctx := context.Background()
	if tg.Networks == nil {
		tg.Networks = func(int) cpi.Networks {
			return cpi.Networks{"default": {Type: "dynamic", Default: []string{"dns", "gateway"}}}
		}
	}
	if tg.StemcellImage == "" {
		tg.StemcellImage = filepath.Join(t.TempDir(), "image")
		require.NoError(t, os.WriteFile(tg.StemcellImage, []byte("image"), 0o644))
	}
	vmN := 0
	nextNets := func() cpi.Networks { vmN++; return tg.Networks(vmN) }
	inventory := func(t *testing.T) []string {
		if tg.Inventory == nil {
			return nil
		}
		inv, err := tg.Inventory()
		require.NoError(t, err)
		return inv
	}
	isCPIError := func(t *testing.T, err error) {
		t.Helper()
		var ce *cpi.Error
		require.True(t, errors.As(err, &ce), "ERR-1: error %v (%T) must be a *cpi.Error", err, err)
		assert.True(t, cpi.KnownType(ce.Type), "ERR-1: error type %q must be one of BOSH's", ce.Type)
	}

	info, err := c.Info(ctx)
	require.NoError(t, err)
	t.Run("INFO-1", func(t *testing.T) {
		assert.Contains(t, []int{1, 2}, info.APIVersion, "api_version")
		assert.NotEmpty(t, info.StemcellFormats, "stemcell_formats")
	})

	before := inventory(t)
	var stemcell cpi.StemcellCID
	t.Run("ST-1", func(t *testing.T) {
		stemcell, err = c.CreateStemcell(ctx, tg.StemcellImage, tg.StemcellProps)
		require.NoError(t, err)
		require.NotEmpty(t, stemcell)
	})
	if stemcell == "" {
		t.Fatal("create_stemcell failed; the VM rows need a stemcell")
	}
	t.Run("ST-2", func(t *testing.T) {
		_, err := c.CreateStemcell(ctx, filepath.Join(t.TempDir(), "missing"), tg.StemcellProps)
		require.Error(t, err)
		isCPIError(t, err)
	})

	// createVM creates a VM that is deleted when owner ends.
	createVM := func(t, owner *testing.T) (cpi.VMCID, cpi.Networks) {
		t.Helper()
		nets := nextNets()
		env := cpi.Env{"bosh": map[string]any{"group": "conformance"}, "kpaas": map[string]any{"authorized_keys": []string{"ssh-ed25519 AAAA test"}}}
		vm, got, err := c.CreateVM(ctx, cpi.AgentID(fmt.Sprintf("agent-%d", vmN)), stemcell, tg.VMProps, nets, nil, env)
		require.NoError(t, err, "create_vm")
		require.NotEmpty(t, vm)
		owner.Cleanup(func() { _ = c.DeleteVM(ctx, vm) })
		return vm, got
	}

	t.Run("VM-1", func(t *testing.T) {
		nets := nextNets()
		vm, got, err := c.CreateVM(ctx, "agent-vm-1", stemcell, tg.VMProps, nets, nil, cpi.Env{})
		require.NoError(t, err)
		defer func() { _ = c.DeleteVM(ctx, vm) }()
		ok, err := c.HasVM(ctx, vm)
		require.NoError(t, err)
		assert.True(t, ok, "has_vm right after create_vm")
		// VM-2: every requested network comes back, manual IPs unchanged, dynamic ones filled in.
		for name, n := range nets {
			require.Contains(t, got, name, "VM-2: network %s in create_vm's result", name)
			if n.IP != "" {
				assert.Equal(t, n.IP, got[name].IP, "VM-2: static IP of %s", name)
			} else if info.APIVersion >= 2 {
				assert.NotEmpty(t, got[name].IP, "VM-2: dynamic IP of %s assigned", name)
			}
		}
	})

	t.Run("VM-3", func(t *testing.T) {
		inv := inventory(t)
		_, _, err := c.CreateVM(ctx, "agent-bad", "no-such-stemcell", tg.VMProps, nextNets(), nil, cpi.Env{})
		require.Error(t, err)
		isCPIError(t, err)
		assert.Equal(t, inv, inventory(t), "VM-3: a failed create_vm leaves nothing behind")
	})

	t.Run("VM-4", func(t *testing.T) {
		inv := inventory(t)
		vm, _ := createVM(t, t)
		require.NoError(t, c.DeleteVM(ctx, vm))
		ok, err := c.HasVM(ctx, vm)
		require.NoError(t, err)
		assert.False(t, ok, "has_vm after delete_vm")
		assert.Equal(t, inv, inventory(t), "VM-4: delete_vm leaves nothing behind")
		// VM-5: delete_vm again succeeds or says VMNotFound.
		if err := c.DeleteVM(ctx, vm); err != nil {
			assert.ErrorIs(t, err, cpi.ErrVMNotFound, "VM-5")
		}
	})

	t.Run("VM-6", func(t *testing.T) {
		ok, err := c.HasVM(ctx, "vm-never-created")
		require.NoError(t, err)
		assert.False(t, ok)
	})

	var vm cpi.VMCID
	var vmNets cpi.Networks
	t.Run("VM-7", func(t *testing.T) {
		vm, vmNets = createVM(t, outer)
		if tg.Settings == nil {
			t.Skip("driver gives no access to delivered settings")
		}
		s, err := tg.Settings(vm)
		require.NoError(t, err)
		assert.Equal(t, "agent-"+fmt.Sprint(vmN), s.AgentID)
		assert.NotEmpty(t, s.VM.Name)
		for name, n := range vmNets {
			require.Contains(t, s.Networks, name)
			if n.IP != "" {
				assert.Equal(t, n.IP, s.Networks[name].IP)
			}
		}
		assert.Equal(t, []string{"ssh-ed25519 AAAA test"}, s.Env.Kpaas.AuthorizedKeys, "env.kpaas reaches the agent")
	})
	if vm == "" {
		t.Fatal("create_vm failed; the remaining rows need a VM")
	}

	t.Run("VM-8", func(t *testing.T) {
		if tg.Reachable == nil {
			t.Skip("driver has no reachability probe")
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		require.NoError(t, tg.Reachable(cctx, vmNets))
	})

	t.Run("VM-9", func(t *testing.T) {
		err := c.RebootVM(ctx, vm)
		if !info.Has(cpi.CapReboot) {
			assert.ErrorIs(t, err, cpi.ErrNotSupported)
			return
		}
		require.NoError(t, err)
		ok, err := c.HasVM(ctx, vm)
		require.NoError(t, err)
		assert.True(t, ok)
		if tg.Reachable != nil {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			require.NoError(t, tg.Reachable(cctx, vmNets), "VM-9: reachable after reboot_vm")
		}
		err = c.RebootVM(ctx, "vm-never-created")
		assert.ErrorIs(t, err, cpi.ErrVMNotFound)
	})

	t.Run("VM-10", func(t *testing.T) {
		err := c.SetVMMetadata(ctx, vm, cpi.Metadata{"deployment": "d", "name": "g/0"})
		if !info.Has(cpi.CapVMMetadata) {
			assert.ErrorIs(t, err, cpi.ErrNotSupported)
			return
		}
		require.NoError(t, err)
		assert.ErrorIs(t, c.SetVMMetadata(ctx, "vm-never-created", cpi.Metadata{"a": "b"}), cpi.ErrVMNotFound)
	})

	var disk cpi.DiskCID
	t.Run("DISK-1", func(t *testing.T) {
		disk, err = c.CreateDisk(ctx, 64, nil, vm)
		require.NoError(t, err)
		require.NotEmpty(t, disk)
		ok, err := c.HasDisk(ctx, disk)
		require.NoError(t, err)
		assert.True(t, ok)
		ok, err = c.HasDisk(ctx, "disk-never-created")
		require.NoError(t, err)
		assert.False(t, ok, "has_disk of an unknown disk is false, not an error")
	})
	if disk == "" {
		t.Fatal("create_disk failed; the disk rows need a disk")
	}
	diskCleanup := disk
	t.Cleanup(func() { _ = c.DeleteDisk(ctx, diskCleanup) })

	t.Run("DISK-2", func(t *testing.T) {
		hint, err := c.AttachDisk(ctx, vm, disk)
		require.NoError(t, err)
		if info.APIVersion >= 2 {
			assert.False(t, hint.IsZero(), "DISK-2: a v2 attach_disk returns a disk hint")
		}
		disks, err := c.GetDisks(ctx, vm)
		require.NoError(t, err)
		assert.Equal(t, []cpi.DiskCID{disk}, disks)
	})

	t.Run("DISK-3", func(t *testing.T) {
		_, err := c.AttachDisk(ctx, vm, "disk-never-created")
		assert.ErrorIs(t, err, cpi.ErrDiskNotFound)
		_, err = c.AttachDisk(ctx, "vm-never-created", disk)
		assert.ErrorIs(t, err, cpi.ErrVMNotFound)
		_, err = c.GetDisks(ctx, "vm-never-created")
		assert.ErrorIs(t, err, cpi.ErrVMNotFound)
	})

	t.Run("DISK-4", func(t *testing.T) {
		require.NoError(t, c.DetachDisk(ctx, vm, disk))
		disks, err := c.GetDisks(ctx, vm)
		require.NoError(t, err)
		assert.Empty(t, disks)
		// detaching again: nil or DiskNotAttached
		if err := c.DetachDisk(ctx, vm, disk); err != nil {
			assert.ErrorIs(t, err, cpi.ErrDiskNotAttached)
		}
	})

	t.Run("DISK-5", func(t *testing.T) {
		other, _ := createVM(t, t)
		_, err := c.AttachDisk(ctx, other, disk)
		require.NoError(t, err)
		require.NoError(t, c.DeleteVM(ctx, other), "delete_vm with a disk attached")
		ok, err := c.HasDisk(ctx, disk)
		require.NoError(t, err)
		assert.True(t, ok, "DISK-5: a persistent disk survives delete_vm")
		_, err = c.AttachDisk(ctx, vm, disk)
		require.NoError(t, err, "DISK-5: the disk attaches to the next VM")
		require.NoError(t, c.DetachDisk(ctx, vm, disk))
	})

	t.Run("DISK-6", func(t *testing.T) {
		err := c.SetDiskMetadata(ctx, disk, cpi.Metadata{"deployment": "d"})
		if !info.Has(cpi.CapDiskMetadata) {
			assert.ErrorIs(t, err, cpi.ErrNotSupported)
			return
		}
		require.NoError(t, err)
		assert.ErrorIs(t, c.SetDiskMetadata(ctx, "disk-never-created", cpi.Metadata{}), cpi.ErrDiskNotFound)
	})

	t.Run("DISK-7", func(t *testing.T) {
		err := c.ResizeDisk(ctx, disk, 128)
		if !info.Has(cpi.CapResizeDisk) {
			assert.ErrorIs(t, err, cpi.ErrNotSupported)
			return
		}
		require.NoError(t, err)
		err = c.ResizeDisk(ctx, disk, 32)
		require.Error(t, err, "DISK-7: shrinking a disk is refused")
		isCPIError(t, err)
		assert.ErrorIs(t, c.ResizeDisk(ctx, "disk-never-created", 256), cpi.ErrDiskNotFound)
	})

	t.Run("SNAP-1", func(t *testing.T) {
		snap, err := c.SnapshotDisk(ctx, disk, cpi.Metadata{"deployment": "d"})
		if !info.Has(cpi.CapSnapshots) {
			assert.ErrorIs(t, err, cpi.ErrNotSupported)
			return
		}
		require.NoError(t, err)
		require.NotEmpty(t, snap)
		require.NoError(t, c.DeleteSnapshot(ctx, snap))
		require.NoError(t, c.DeleteSnapshot(ctx, snap), "SNAP-1: delete_snapshot is idempotent")
	})

	t.Run("DISK-8", func(t *testing.T) {
		require.NoError(t, c.DeleteDisk(ctx, disk))
		ok, err := c.HasDisk(ctx, disk)
		require.NoError(t, err)
		assert.False(t, ok)
		require.NoError(t, c.DeleteDisk(ctx, disk), "DISK-8: delete_disk is idempotent")
	})

	t.Run("ST-3", func(t *testing.T) {
		require.NoError(t, c.DeleteVM(ctx, vm))
		require.NoError(t, c.DeleteStemcell(ctx, stemcell))
		require.NoError(t, c.DeleteStemcell(ctx, stemcell), "ST-3: delete_stemcell is idempotent")
		if tg.Inventory != nil {
			assert.Equal(t, before, inventory(t), "ST-3: nothing is left after deleting everything")
		}
	})
}
