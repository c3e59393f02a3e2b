package vsphere_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/vsphere"
	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
)

// inject makes the simulator answer method with fault (count times; 0 = always).
func inject(s *vspheretest.Sim, method string, f types.BaseMethodFault, count int) {
	s.Model.Service.AddFaultRule(&simulator.FaultInjectionRule{
		MethodName: method, ObjectType: "*", ObjectName: "*", Probability: 1,
		FaultType: simulator.FaultTypeCustom, Fault: f, MaxCount: count, Enabled: true,
	})
}

func inventory(t *testing.T, s *vspheretest.Sim) []string {
	t.Helper()
	inv, err := s.Inventory()
	require.NoError(t, err)
	return inv
}

func requireCPIError(t *testing.T, err error, typ string, retry bool) {
	t.Helper()
	var ce *cpi.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, typ, ce.Type, "error type of %v", err)
	assert.Equal(t, retry, ce.OkToRetry, "ok_to_retry of %v", err)
}

func TestACloneThatFailsLeavesNothing(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	before := inventory(t, s)
	inject(s, "CloneVM_Task", &types.InsufficientResourcesFault{}, 0)

	_, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.Error(t, err)
	requireCPIError(t, err, cpi.TypeVMCreationFail, false)
	assert.Contains(t, err.Error(), "cluster DC0_C0 on datastore LocalDS_0", "the error says where")
	assert.Equal(t, before, inventory(t, s), "the env ISO uploaded before the clone is removed")
}

func TestATransientCloneFailureIsRetryable(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	before := inventory(t, s)
	inject(s, "CloneVM_Task", &types.HostCommunication{}, 1)

	_, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.Error(t, err)
	requireCPIError(t, err, cpi.TypeVMCreationFail, true)
	assert.True(t, cpi.Retryable(err))
	assert.Equal(t, before, inventory(t, s))

	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err, "the retry succeeds")
	require.NoError(t, s.Driver.DeleteVM(ctx, vm))
	assert.Equal(t, before, inventory(t, s))
}

func TestAFailureAfterTheCloneDestroysTheVM(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	before := inventory(t, s)
	inject(s, "ReconfigureComputeResource_Task", &types.InvalidArgument{InvalidProperty: "groupSpec"}, 0)

	props := cpi.Props{"cpu": 1, "ram": 512, "disk": 1024, "vm_group": "g"}
	_, _, err := s.Driver.CreateVM(ctx, "a", sc, props, vspheretest.Manual(1), nil, nil)
	require.Error(t, err)
	requireCPIError(t, err, cpi.TypeVMCreationFail, false)
	assert.Contains(t, err.Error(), "DRS group g")
	assert.Equal(t, before, inventory(t, s), "the cloned VM, its files and its env ISO are gone")
}

// setTaskDelay delays the simulator's tasks named name (a global of the
// simulator package: these tests do not run in parallel).
func setTaskDelay(t *testing.T, name string, d time.Duration) {
	simulator.TaskDelay.MethodDelay = map[string]int{name: int(d / time.Millisecond)}
	t.Cleanup(func() { simulator.TaskDelay.MethodDelay = nil })
}

func TestACloneThatTimesOutIsRetryableAndCleanedUp(t *testing.T) {
	s := vspheretest.Start(t, func(_ *simulator.Model, c *vsphere.Config) {
		c.TaskTimeout = vsphere.Duration(200 * time.Millisecond)
		c.CleanupTimeout = vsphere.Duration(20 * time.Second)
	})
	sc := stemcell(t, s)
	before := inventory(t, s)
	setTaskDelay(t, "CloneVm", time.Second)

	start := time.Now()
	_, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.Error(t, err)
	requireCPIError(t, err, cpi.TypeVMCreationFail, true)
	assert.ErrorIs(t, err, vsphere.ErrTaskTimeout)
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "cleanup waited for the slow clone to land")
	settle(t, s, "CloneVm")
	assert.Equal(t, before, inventory(t, s), "the VM the slow clone made is destroyed before create_vm returns")
}

func TestAPowerOffThatTimesOutFailsDeleteVMWhichARetryFinishes(t *testing.T) {
	s := vspheretest.Start(t, func(_ *simulator.Model, c *vsphere.Config) {
		c.TaskTimeout = vsphere.Duration(200 * time.Millisecond)
	})
	sc := stemcell(t, s)
	before := inventory(t, s)
	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err)
	setTaskDelay(t, "PowerOff", 600*time.Millisecond)

	err = s.Driver.DeleteVM(ctx, vm)
	require.Error(t, err)
	requireCPIError(t, err, cpi.TypeCloudError, true)
	ok, err := s.Driver.HasVM(ctx, vm)
	require.NoError(t, err)
	assert.True(t, ok, "a delete_vm that timed out did not delete")

	v := s.VM(t, vm)
	require.Eventually(t, func() bool {
		var state types.VirtualMachinePowerState
		s.Model.Map().WithLock(s.Model.Service.Context, v, func() { state = v.Runtime.PowerState })
		return state == types.VirtualMachinePowerStatePoweredOff
	}, 10*time.Second, 20*time.Millisecond, "the slow power-off lands")
	require.NoError(t, s.Driver.DeleteVM(ctx, vm), "the retry (the VM is off now: no power-off task to delay)")
	assert.Equal(t, before, inventory(t, s))
}

func TestAFullDatastore(t *testing.T) {
	s := vspheretest.Start(t, func(m *simulator.Model, c *vsphere.Config) {
		m.Datastore = 2
		c.DatastoreCacheTTL = vsphere.Duration(time.Nanosecond)
	})
	sc := stemcell(t, s)
	fill := func(name string) {
		for _, obj := range s.Model.Map().All("Datastore") {
			ds := obj.(*simulator.Datastore)
			if ds.Name == name {
				s.Model.Map().WithLock(s.Model.Service.Context, ds, func() {
					ds.Summary.FreeSpace = 100 << 20
					ds.Info.GetDatastoreInfo().FreeSpace = 100 << 20
				})
			}
		}
	}
	fill("LocalDS_0")
	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err, "placement skips the full datastore")
	v := s.VM(t, vm)
	require.Len(t, v.Datastore, 1)
	assert.Equal(t, "LocalDS_1", s.Model.Map().Get(v.Datastore[0]).(*simulator.Datastore).Name)
	disk, err := s.Driver.CreateDisk(ctx, 1024, nil, vm)
	require.NoError(t, err)
	require.NoError(t, s.Driver.DeleteDisk(ctx, disk))

	fill("LocalDS_1")
	before := inventory(t, s)
	_, _, err = s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(2), nil, nil)
	require.Error(t, err)
	requireCPIError(t, err, cpi.TypeVMCreationFail, false)
	assert.ErrorIs(t, err, cpi.ErrVMCreationFailed)
	assert.Contains(t, err.Error(), "no datastore with enough free space")
	assert.Contains(t, err.Error(), "LocalDS_1 (100 MiB free)", "the error names the candidates and their space")
	assert.Equal(t, before, inventory(t, s))

	_, err = s.Driver.CreateDisk(ctx, 1024, nil, vm)
	require.Error(t, err)
	assert.ErrorIs(t, err, cpi.ErrNoDiskSpace)
	_, err = s.Driver.CreateDisk(ctx, 1024, cpi.Props{"type": "thin"}, vm)
	require.NoError(t, err, "a thin disk needs no free space up front")
	require.NoError(t, s.Driver.DeleteVM(ctx, vm))
}

func TestVCenterSaysTheDatastoreIsFull(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	vm, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err)
	inject(s, "CreateVirtualDisk_Task", &types.NoDiskSpace{Datastore: "LocalDS_0"}, 1)
	_, err = s.Driver.CreateDisk(ctx, 64, nil, vm)
	require.Error(t, err)
	requireCPIError(t, err, cpi.TypeNoDiskSpace, false)
	assert.Empty(t, withPrefix(s.Files(t), "kpaas_disks/disk-"))
}

func TestAnUnknownPortGroupLeavesNothing(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	before := inventory(t, s)
	nets := vspheretest.Manual(1)
	n := nets["second"]
	n.CloudProperties = cpi.Props{"name": "no-such-port-group"}
	nets["second"] = n
	_, _, err := s.Driver.CreateVM(ctx, "a", sc, vmType, nets, nil, nil)
	require.Error(t, err)
	requireCPIError(t, err, cpi.TypeVMCreationFail, false)
	assert.Contains(t, err.Error(), `port group "no-such-port-group" not found in datacenter "DC0"`)
	assert.Equal(t, before, inventory(t, s))
}

// settle waits until every simulator task called name has finished (the
// simulator keeps running a task whose wait the driver gave up on).
func settle(t *testing.T, s *vspheretest.Sim, name string) {
	t.Helper()
	require.Eventually(t, func() bool {
		done := true
		for _, obj := range s.Model.Map().AllReference("Task") {
			task := obj.(*simulator.Task)
			s.Model.Map().WithLock(s.Model.Service.Context, task, func() {
				if task.Info.Name == name && task.Info.State != types.TaskInfoStateSuccess && task.Info.State != types.TaskInfoStateError {
					done = false
				}
			})
		}
		return done
	}, 10*time.Second, 10*time.Millisecond, "tasks %s finish", name)
}

func TestACancelledCreateVMStillCleansUp(t *testing.T) {
	s := vspheretest.Start(t)
	sc := stemcell(t, s)
	before := inventory(t, s)
	setTaskDelay(t, "CloneVm", 700*time.Millisecond)

	cctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	_, _, err := s.Driver.CreateVM(cctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	var ce *cpi.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, cpi.TypeVMCreationFail, ce.Type)
	after := inventory(t, s)
	settle(t, s, "CloneVm")
	assert.Equal(t, before, after, "CTX-1/VM-3: create_vm returned after cleaning up")
	assert.Equal(t, before, inventory(t, s), "CTX-1/VM-3: the clone that landed after the cancel was waited for and removed")
}

func TestTransientOnACPIErrorWithoutCause(t *testing.T) {
	// A *cpi.Error raised locally has no cause: its Unwrap returns nil,
	// on which govmomi's fault.In panics.
	err := fmt.Errorf("placing: %w", cpi.Errorf(cpi.TypeCloudError, false, "resource pool not found"))
	assert.NotPanics(t, func() { assert.False(t, vsphere.Transient(err)) })
	busy := fmt.Errorf("cloning: %w", errors.Join(cpi.Errorf(cpi.TypeCloudError, false, "x"), task.Error{LocalizedMethodFault: &types.LocalizedMethodFault{Fault: &types.TaskInProgress{}}}))
	assert.True(t, vsphere.Transient(busy), "a fault beside a cause-less error is still found")
}
