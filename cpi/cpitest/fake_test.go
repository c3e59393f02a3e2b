package cpitest_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
)

func TestFakeConformance(t *testing.T) {
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		f := cpitest.NewFake()
		return cpitest.Target{CPI: f, Inventory: f.Inventory, Settings: f.Settings}
	})
}

func TestFakeWithoutCapabilitiesConformance(t *testing.T) {
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		f := cpitest.NewFake()
		f.Capabilities = nil
		return cpitest.Target{CPI: f, Inventory: f.Inventory}
	})
}

func TestFakeFileConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fake.json")
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		f, err := cpitest.NewFakeFile(path)
		require.NoError(t, err)
		return cpitest.Target{CPI: f, Inventory: f.Inventory, Settings: f.Settings}
	})
}

func TestFakeFailNext(t *testing.T) {
	ctx := context.Background()
	f := cpitest.NewFake()
	boom := cpi.VMCreationFailed(true, errors.New("quota exceeded"))
	f.FailNext("create_vm", boom)
	st, err := f.CreateStemcell(ctx, "/dev/null", nil)
	require.NoError(t, err)

	_, _, err = f.CreateVM(ctx, "a1", st, nil, cpi.Networks{"n": {Type: "manual", IP: "10.0.0.5"}}, nil, nil)
	require.ErrorIs(t, err, cpi.ErrVMCreationFailed)
	assert.True(t, cpi.Retryable(err))
	assert.Empty(t, f.VMs(), "a failed create_vm leaves no VM")

	vm, nets, err := f.CreateVM(ctx, "a1", st, nil, cpi.Networks{"n": {Type: "manual", IP: "10.0.0.5"}}, nil, nil)
	require.NoError(t, err, "the failure is consumed")
	assert.Equal(t, "10.0.0.5", nets["n"].IP)
	assert.Equal(t, 2, f.CallCount("create_vm"))
	got, ok := f.VM(vm)
	require.True(t, ok)
	assert.Equal(t, cpi.AgentID("a1"), got.AgentID)
	assert.Equal(t, []string{"create_stemcell", "create_vm", "create_vm"}, methods(f.Calls()))
}

func TestFakeFileSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fake.json")
	f, err := cpitest.NewFakeFile(path)
	require.NoError(t, err)
	d, err := f.CreateDisk(ctx, 10, nil, "")
	require.NoError(t, err)

	g, err := cpitest.NewFakeFile(path)
	require.NoError(t, err)
	ok, err := g.HasDisk(ctx, d)
	require.NoError(t, err)
	assert.True(t, ok)
	d2, err := g.CreateDisk(ctx, 10, nil, "")
	require.NoError(t, err)
	assert.NotEqual(t, d, d2, "CIDs are not reused after a restart")
}

func methods(cs []cpitest.Call) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Method
	}
	return out
}

func TestFakeVanish(t *testing.T) {
	ctx := context.Background()
	f := cpitest.NewFake()
	st, _ := f.CreateStemcell(ctx, "/dev/null", nil)
	vm, _, err := f.CreateVM(ctx, "a", st, nil, nil, nil, nil)
	require.NoError(t, err)
	d, _ := f.CreateDisk(ctx, 1, nil, vm)
	_, err = f.AttachDisk(ctx, vm, d)
	require.NoError(t, err)
	f.Vanish(vm)
	ok, err := f.HasVM(ctx, vm)
	require.NoError(t, err)
	assert.False(t, ok)
	disk, _ := f.Disk(d)
	assert.Empty(t, disk.VM, "the disk survives, detached")
	assert.Zero(t, f.CallCount("delete_vm"))
}
