package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

// eachBackend runs body once per backend (SQLite always; PostgreSQL when a
// server is configured, else that subtest skips with the reason).
func eachBackend(t *testing.T, body func(t *testing.T, b statetest.Backend)) {
	for _, b := range statetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { body(t, b) })
	}
}

func newStore(t testing.TB, b statetest.Backend) state.Store {
	return statetest.Open(t, b.NewLocation(t))
}

// fakeClock is a settable clock for stores.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestConfigsAreVersioned(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)

		c1, changed, err := s.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Content: "azs: [z1]\n"})
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Equal(t, 1, c1.Version)
		assert.Equal(t, "default", c1.Name)
		assert.NotZero(t, c1.ID)

		same, changed, err := s.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Content: "azs: [z1]\n"})
		require.NoError(t, err)
		assert.False(t, changed, "same content makes no new version")
		assert.Equal(t, c1.ID, same.ID)

		c2, changed, err := s.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Content: "azs: [z1, z2]\n"})
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Equal(t, 2, c2.Version)
		_, _, err = s.SaveConfig(ctx, state.Config{Type: state.RuntimeConfig, Name: "dns", Content: "addons: []\n"})
		require.NoError(t, err)

		latest, err := s.Config(ctx, state.CloudConfig, "")
		require.NoError(t, err)
		assert.Equal(t, "azs: [z1, z2]\n", latest.Content)
		old, err := s.ConfigByID(ctx, c1.ID)
		require.NoError(t, err)
		assert.Equal(t, "azs: [z1]\n", old.Content, "old versions are kept as they were")

		all, err := s.Configs(ctx, "")
		require.NoError(t, err)
		require.Len(t, all, 2)
		assert.Equal(t, []string{"cloud/default/2", "runtime/dns/1"}, []string{
			fmt.Sprintf("%s/%s/%d", all[0].Type, all[0].Name, all[0].Version),
			fmt.Sprintf("%s/%s/%d", all[1].Type, all[1].Name, all[1].Version)})

		vs, err := s.ConfigVersions(ctx, state.CloudConfig, "default")
		require.NoError(t, err)
		require.Len(t, vs, 2)
		assert.Equal(t, 2, vs[0].Version)

		_, err = s.Config(ctx, state.CPIConfig, "")
		assert.ErrorIs(t, err, state.ErrNotFound)
		_, _, err = s.SaveConfig(ctx, state.Config{Type: "cluod", Content: "x"})
		assert.ErrorContains(t, err, `unknown config type "cluod"`)
	})
}

func sampleDeployment(t testing.TB, s state.Store, name string, n int) {
	t.Helper()
	ctx := context.Background()
	_, err := s.CreateDeployment(ctx, name)
	require.NoError(t, err)
	err = s.Update(ctx, func(tx state.Tx) error {
		for i := 0; i < n; i++ {
			uuid := fmt.Sprintf("%s-uuid-%05d", name, i)
			if err := tx.SaveInstance(ctx, state.Instance{Deployment: name, Group: "web", Index: i, UUID: uuid, AZ: "z1", Bootstrap: i == 0,
				Spec: json.RawMessage(`{"job":"web"}`)}); err != nil {
				return err
			}
			if err := tx.SaveVM(ctx, state.VM{CID: "vm-" + uuid, Deployment: name, Instance: uuid, AgentID: "agent-" + uuid,
				IPs: []string{fmt.Sprintf("10.0.%d.%d", i/250, i%250+2)}, Stemcell: "ubuntu-jammy/1.1", Active: true,
				CloudProperties: json.RawMessage(`{"flavor":"m1.small"}`), SSHHostKey: "ssh-ed25519 AAAA" + uuid}); err != nil {
				return err
			}
			if err := tx.SaveDisk(ctx, state.Disk{CID: "disk-" + uuid, Deployment: name, Instance: uuid, SizeMB: 1024, Active: true}); err != nil {
				return err
			}
			if err := tx.ReserveIP(ctx, state.IPReservation{Network: "net-" + name, IP: fmt.Sprintf("10.0.%d.%d", i/250, i%250+2), Deployment: name, Instance: uuid, Static: true}); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
}

func TestLoadDeploymentReturnsEverything(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		sampleDeployment(t, s, "cf", 3)
		sampleDeployment(t, s, "other", 2)
		require.NoError(t, s.SaveVM(ctx, state.VM{CID: "compile-1", Deployment: "cf", AgentID: "a-c", SSHHostPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n"}))

		st, err := s.LoadDeployment(ctx, "cf")
		require.NoError(t, err)
		assert.Equal(t, "cf", st.Deployment.Name)
		require.Len(t, st.Instances, 3)
		assert.Equal(t, "web/0", st.Instances[0].Name())
		assert.True(t, st.Instances[0].Bootstrap)
		assert.False(t, st.Instances[1].Bootstrap)
		assert.Equal(t, state.Started, st.Instances[0].DesiredState)
		assert.JSONEq(t, `{"job":"web"}`, string(st.Instances[0].Spec))
		require.Len(t, st.VMs, 4)
		require.Len(t, st.Disks, 3)
		require.Len(t, st.IPs, 3)

		vms := st.VMsByInstance()
		vm := vms["cf-uuid-00001"][0]
		assert.Equal(t, "vm-cf-uuid-00001", vm.CID)
		assert.Equal(t, []string{"10.0.0.3"}, vm.IPs)
		assert.JSONEq(t, `{"flavor":"m1.small"}`, string(vm.CloudProperties))
		assert.Equal(t, "ssh-ed25519 AAAAcf-uuid-00001", vm.SSHHostKey)
		assert.Equal(t, "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n", vms[""][0].SSHHostPrivateKey, "host private key decrypts")
		assert.Equal(t, 1024, st.DisksByInstance()["cf-uuid-00002"][0].SizeMB)
		assert.Equal(t, "10.0.0.4", st.IPsByInstance()["cf-uuid-00002"][0].IP)

		_, err = s.LoadDeployment(ctx, "nope")
		assert.ErrorIs(t, err, state.ErrNotFound)
		assert.ErrorContains(t, err, `deployment "nope"`)
	})
}

func TestEveryMutationBumpsTheSerial(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		d, err := s.CreateDeployment(ctx, "cf")
		require.NoError(t, err)
		serial := d.Serial
		steps := []func() error{
			func() error {
				return s.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "api", Index: 0, UUID: "u1"})
			},
			func() error { return s.SaveVM(ctx, state.VM{CID: "vm-1", Deployment: "cf", Instance: "u1"}) },
			func() error { return s.SetInstanceState(ctx, "cf", "u1", state.Stopped) },
			func() error { return s.SetInstanceIgnore(ctx, "cf", "u1", true) },
			func() error {
				return s.SaveDisk(ctx, state.Disk{CID: "d-1", Deployment: "cf", Instance: "u1", SizeMB: 10})
			},
			func() error {
				return s.ReserveIP(ctx, state.IPReservation{Network: "n", IP: "10.0.0.5", Deployment: "cf", Instance: "u1"})
			},
			func() error { return s.ReleaseIP(ctx, "n", "10.0.0.5") },
			func() error { return s.OrphanDisk(ctx, "d-1") },
			func() error { return s.DeleteVM(ctx, "vm-1") },
			func() error { return s.DeleteInstance(ctx, "cf", "u1") },
			func() error { return s.RecordDeploySuccess(ctx, "cf", "name: cf\n", nil) },
		}
		for i, step := range steps {
			require.NoError(t, step(), "step %d", i)
			d, err := s.Deployment(ctx, "cf")
			require.NoError(t, err)
			assert.Greater(t, d.Serial, serial, "step %d", i)
			serial = d.Serial
		}
		st, err := s.LoadDeployment(ctx, "cf")
		require.NoError(t, err)
		assert.Empty(t, st.Instances)
		assert.Empty(t, st.VMs)
		assert.Empty(t, st.Disks)
		assert.Equal(t, "name: cf\n", st.Deployment.Manifest)
		assert.False(t, st.Deployment.LastDeployedAt.IsZero())
	})
}

func TestInstancesDesiredStateAndIgnore(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		sampleDeployment(t, s, "cf", 2)
		require.NoError(t, s.SetInstanceState(ctx, "cf", "cf-uuid-00001", state.Detached))
		require.NoError(t, s.SetInstanceIgnore(ctx, "cf", "cf-uuid-00000", true))
		st, err := s.LoadDeployment(ctx, "cf")
		require.NoError(t, err)
		assert.Equal(t, state.Started, st.Instances[0].DesiredState)
		assert.True(t, st.Instances[0].Ignore)
		assert.Equal(t, state.Detached, st.Instances[1].DesiredState)
		assert.False(t, st.Instances[1].Ignore)

		assert.ErrorContains(t, s.SetInstanceState(ctx, "cf", "cf-uuid-00001", "paused"), `unknown desired state "paused"`)
		assert.ErrorIs(t, s.SetInstanceState(ctx, "cf", "no-such", state.Stopped), state.ErrNotFound)
		assert.ErrorIs(t, s.SaveInstance(ctx, state.Instance{Deployment: "ghost", Group: "g", UUID: "x"}), state.ErrNotFound)
		// A second instance with the same group/index is refused.
		assert.Error(t, s.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "web", Index: 0, UUID: "another"}))
	})
}

func TestDisksAndOrphans(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		sampleDeployment(t, s, "cf", 1)
		require.NoError(t, s.OrphanDisk(ctx, "disk-cf-uuid-00000"))
		st, err := s.LoadDeployment(ctx, "cf")
		require.NoError(t, err)
		assert.Empty(t, st.Disks)
		orphans, err := s.OrphanedDisks(ctx)
		require.NoError(t, err)
		require.Len(t, orphans, 1)
		assert.Equal(t, state.OrphanedDisk{CID: "disk-cf-uuid-00000", Deployment: "cf", Instance: "web/cf-uuid-00000", AZ: "z1", SizeMB: 1024, OrphanedAt: orphans[0].OrphanedAt}, orphans[0])
		require.NoError(t, s.DeleteOrphanedDisk(ctx, "disk-cf-uuid-00000"))
		assert.ErrorIs(t, s.DeleteOrphanedDisk(ctx, "disk-cf-uuid-00000"), state.ErrNotFound)
		assert.ErrorIs(t, s.OrphanDisk(ctx, "nope"), state.ErrNotFound)
	})
}

func TestIPReservations(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		sampleDeployment(t, s, "cf", 1)
		_, err := s.CreateDeployment(ctx, "k8s")
		require.NoError(t, err)
		err = s.ReserveIP(ctx, state.IPReservation{Network: "net-cf", IP: "10.0.0.2", Deployment: "k8s", Instance: "m1"})
		var conflict *state.IPConflictError
		require.ErrorAs(t, err, &conflict)
		assert.ErrorIs(t, err, state.ErrIPTaken)
		assert.Equal(t, "cf", conflict.Deployment)
		assert.Equal(t, "cf-uuid-00000", conflict.Instance)
		assert.Contains(t, err.Error(), `ip 10.0.0.2 on network net-cf is already reserved by deployment "cf"`)
		// The same address on another network is free; reserving again for the same owner is fine.
		require.NoError(t, s.ReserveIP(ctx, state.IPReservation{Network: "other", IP: "10.0.0.2", Deployment: "k8s", Instance: "m1"}))
		require.NoError(t, s.ReserveIP(ctx, state.IPReservation{Network: "other", IP: "10.0.0.2", Deployment: "k8s", Instance: "m1"}))
		rs, err := s.IPReservations(ctx, "other")
		require.NoError(t, err)
		require.Len(t, rs, 1)
		all, err := s.IPReservations(ctx, "")
		require.NoError(t, err)
		assert.Len(t, all, 2)
	})
}

func TestUpdateIsAllOrNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		_, err := s.CreateDeployment(ctx, "cf")
		require.NoError(t, err)
		boom := errors.New("cpi failed")
		err = s.Update(ctx, func(tx state.Tx) error {
			for i := 0; i < 5; i++ {
				if err := tx.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "g", Index: i, UUID: fmt.Sprint("u", i)}); err != nil {
					return err
				}
			}
			if _, err := tx.AppendEvents(ctx, state.Event{Action: "create", ObjectType: "instance"}); err != nil {
				return err
			}
			// Reads inside the transaction see its own writes.
			st, err := tx.LoadDeployment(ctx, "cf")
			if err != nil {
				return err
			}
			if len(st.Instances) != 5 {
				return fmt.Errorf("tx sees %d instances", len(st.Instances))
			}
			return boom
		})
		require.ErrorIs(t, err, boom)
		st, err := s.LoadDeployment(ctx, "cf")
		require.NoError(t, err)
		assert.Empty(t, st.Instances)
		evs, err := s.Events(ctx, state.EventFilter{})
		require.NoError(t, err)
		assert.Empty(t, evs)
	})
}

func TestStemcellsReleasesCompiledPackages(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		require.NoError(t, s.SaveStemcell(ctx, state.Stemcell{Name: "ubuntu-jammy", Version: "1.1", OS: "ubuntu-jammy", CID: "img-1", APIVersion: 2}))
		require.NoError(t, s.SaveStemcell(ctx, state.Stemcell{Name: "ubuntu-jammy", Version: "1.1", OS: "ubuntu-jammy", CID: "img-2", CPI: "openstack"}))
		scs, err := s.Stemcells(ctx)
		require.NoError(t, err)
		require.Len(t, scs, 2)
		assert.Equal(t, "img-1", scs[0].CID)
		require.NoError(t, s.DeleteStemcell(ctx, "ubuntu-jammy", "1.1", ""))
		assert.ErrorIs(t, s.DeleteStemcell(ctx, "ubuntu-jammy", "1.1", ""), state.ErrNotFound)

		require.NoError(t, s.SaveRelease(ctx, state.Release{Name: "nginx", Version: "1.2", CommitHash: "abc", SHA256: "f00"}))
		rs, err := s.Releases(ctx)
		require.NoError(t, err)
		require.Len(t, rs, 1)
		assert.Equal(t, "abc", rs[0].CommitHash)
		require.NoError(t, s.DeleteRelease(ctx, "nginx", "1.2"))

		p := state.CompiledPackage{Name: "nginx", Version: "v1", Fingerprint: "fp1", StemcellOS: "ubuntu-jammy", StemcellVersion: "1.1", BlobSHA256: "b1"}
		require.NoError(t, s.SaveCompiledPackage(ctx, p))
		got, err := s.CompiledPackage(ctx, "fp1", "ubuntu-jammy", "1.1", "")
		require.NoError(t, err)
		assert.Equal(t, "b1", got.BlobSHA256)
		_, err = s.CompiledPackage(ctx, "fp1", "ubuntu-jammy", "1.2", "")
		assert.ErrorIs(t, err, state.ErrNotFound)
	})
}

func TestEventsFilterAndOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		s := statetest.OpenWith(t, b.NewLocation(t), state.Options{Key: statetest.Key, Now: clock.Now, User: "alice", Host: "ws1"})
		mk := func(action, dep, inst string) state.Event {
			clock.Add(time.Minute)
			return state.Event{Action: action, ObjectType: "instance", ObjectName: inst, Deployment: dep, Instance: inst, Time: clock.Now()}
		}
		ids, err := s.AppendEvents(ctx, mk("create", "cf", "api/u1"), mk("update", "cf", "api/u2"), mk("delete", "k8s", "master/u3"))
		require.NoError(t, err)
		require.Len(t, ids, 3)
		assert.Less(t, ids[0], ids[1])
		_, err = s.AppendEvents(ctx, state.Event{Action: "stop", ObjectType: "instance", Deployment: "cf", Instance: "api/u1", Error: "agent timed out", TaskID: 7, Context: json.RawMessage(`{"why":"test"}`)})
		require.NoError(t, err)

		all, err := s.Events(ctx, state.EventFilter{})
		require.NoError(t, err)
		require.Len(t, all, 4)
		assert.Equal(t, "stop", all[0].Action, "newest first")
		assert.Equal(t, "alice@ws1", all[0].User)
		assert.Equal(t, "agent timed out", all[0].Error)
		assert.Equal(t, int64(7), all[0].TaskID)
		assert.JSONEq(t, `{"why":"test"}`, string(all[0].Context))

		names := func(f state.EventFilter) []string {
			evs, err := s.Events(ctx, f)
			require.NoError(t, err)
			var out []string
			for _, e := range evs {
				out = append(out, e.Action)
			}
			return out
		}
		assert.Equal(t, []string{"stop", "update", "create"}, names(state.EventFilter{Deployment: "cf"}))
		assert.Equal(t, []string{"stop", "create"}, names(state.EventFilter{Instance: "api/u1"}))
		assert.Equal(t, []string{"stop", "create"}, names(state.EventFilter{Instance: "u1"}))
		assert.Equal(t, []string{"delete"}, names(state.EventFilter{Action: "delete"}))
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		assert.Equal(t, []string{"update", "create"}, names(state.EventFilter{Before: t0.Add(3 * time.Minute)}))
		assert.Equal(t, []string{"stop", "delete"}, names(state.EventFilter{After: t0.Add(2 * time.Minute)}))
		assert.Equal(t, []string{"stop"}, names(state.EventFilter{Limit: 1}))
	})
}

func TestTasks(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		id, err := s.CreateTask(ctx, state.Task{Description: "deploy cf", Deployment: "cf"})
		require.NoError(t, err)
		require.NoError(t, s.FinishTask(ctx, id, state.TaskError, "", "create_vm failed"))
		tk, err := s.Task(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, state.TaskError, tk.State)
		assert.Equal(t, "create_vm failed", tk.Error)
		assert.False(t, tk.EndedAt.IsZero())
		ts, err := s.Tasks(ctx, "cf", 10)
		require.NoError(t, err)
		assert.Len(t, ts, 1)
		assert.ErrorIs(t, s.FinishTask(ctx, id+100, state.TaskDone, "", ""), state.ErrNotFound)
	})
}

func TestDeleteDeploymentRemovesWhatItOwns(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		sampleDeployment(t, s, "cf", 2)
		sampleDeployment(t, s, "keep", 1)
		_, err := s.PutVariable(ctx, state.Variable{Deployment: "cf", Name: "pw", Value: "x"})
		require.NoError(t, err)
		require.NoError(t, s.DeleteDeployment(ctx, "cf"))
		_, err = s.LoadDeployment(ctx, "cf")
		assert.ErrorIs(t, err, state.ErrNotFound)
		ips, err := s.IPReservations(ctx, "")
		require.NoError(t, err)
		assert.Len(t, ips, 1, "only the other deployment's IP is left")
		_, err = s.Variable(ctx, "cf", "pw")
		assert.ErrorIs(t, err, state.ErrNotFound)
		st, err := s.LoadDeployment(ctx, "keep")
		require.NoError(t, err)
		assert.Len(t, st.Instances, 1)
		assert.ErrorIs(t, s.DeleteDeployment(ctx, "cf"), state.ErrNotFound)
	})
}

func TestLocks(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		clock := &fakeClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
		loc := b.NewLocation(t)
		alice := statetest.OpenWith(t, loc, state.Options{Key: statetest.Key, Now: clock.Now, User: "alice", Host: "ws1"})
		bob := statetest.OpenWith(t, loc, state.Options{Key: statetest.Key, Now: clock.Now, User: "bob", Host: "ci"})

		l, err := alice.Lock(ctx, state.LockRequest{Name: state.DeploymentLock("cf"), Op: "deploy", TTL: time.Minute, Heartbeat: -1})
		require.NoError(t, err)
		clock.Add(90 * time.Second)
		require.NoError(t, l.Refresh(ctx))
		clock.Add(30 * time.Second)

		_, err = bob.Lock(ctx, state.LockRequest{Name: state.DeploymentLock("cf"), Op: "delete-deployment", Heartbeat: -1})
		var le *state.LockError
		require.ErrorAs(t, err, &le)
		assert.ErrorIs(t, err, state.ErrLocked)
		assert.Equal(t, 3, le.ExitCode())
		assert.Equal(t, "alice@ws1", le.Holder)
		assert.Equal(t, "deploy", le.Op)
		assert.Equal(t, time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC), le.Since.UTC())
		msg := err.Error()
		assert.Contains(t, msg, "deployment cf is locked by alice@ws1 (pid ")
		assert.Contains(t, msg, `running "deploy" for 2m0s`)
		assert.Contains(t, msg, "kpaas unlock deployment:cf")

		// Another lock name is independent.
		g, err := bob.Lock(ctx, state.LockRequest{Name: state.GlobalLock, Op: "update-cloud-config", Heartbeat: -1})
		require.NoError(t, err)
		locks, err := alice.Locks(ctx)
		require.NoError(t, err)
		require.Len(t, locks, 2)
		assert.Equal(t, "deployment:cf", locks[0].Name)
		assert.Equal(t, "global", locks[1].Name)
		assert.Equal(t, "bob@ci", locks[1].Holder)
		require.NoError(t, g.Release(ctx))
		require.NoError(t, g.Release(ctx), "twice is harmless")

		// A holder that stops its heartbeat (crashed) loses the lock at expiry.
		clock.Add(61 * time.Second)
		l2, err := bob.Lock(ctx, state.LockRequest{Name: state.DeploymentLock("cf"), Op: "deploy", Heartbeat: -1})
		require.NoError(t, err, "an expired lock can be taken")
		err = l.Refresh(ctx)
		assert.ErrorIs(t, err, state.ErrLockLost)
		select {
		case <-l.Lost():
		default:
			t.Fatal("Lost() not closed")
		}
		require.NoError(t, l.Release(ctx), "releasing a lost lock does not free the new holder's")
		_, err = alice.Lock(ctx, state.LockRequest{Name: state.DeploymentLock("cf"), Op: "deploy", Heartbeat: -1})
		require.ErrorIs(t, err, state.ErrLocked)

		// kpaas unlock breaks it; the holder finds out at its next heartbeat.
		require.NoError(t, alice.Unlock(ctx, state.DeploymentLock("cf")))
		assert.ErrorIs(t, l2.Refresh(ctx), state.ErrLockLost)
		assert.ErrorIs(t, alice.Unlock(ctx, state.DeploymentLock("cf")), state.ErrNotFound)
	})
}

func TestLockHeartbeatKeepsItAlive(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		l, err := s.Lock(ctx, state.LockRequest{Name: "deployment:hb", Op: "deploy", TTL: 3 * time.Second, Heartbeat: 20 * time.Millisecond})
		require.NoError(t, err)
		first := l.Expires
		// Wait until the heartbeat has moved the expiry (observed through the store).
		require.Eventually(t, func() bool {
			ls, err := s.Locks(ctx)
			return err == nil && len(ls) == 1 && ls[0].Expires.After(first)
		}, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, l.Release(ctx))
		ls, err := s.Locks(ctx)
		require.NoError(t, err)
		assert.Empty(t, ls)
	})
}

func TestVariablesEncryptedAtRest(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		loc := b.NewLocation(t)
		s := statetest.Open(t, loc)
		id1, err := s.PutVariable(ctx, state.Variable{Deployment: "cf", Name: "admin_password", Type: "password", Value: "hunter2-very-secret"})
		require.NoError(t, err)
		id2, err := s.PutVariable(ctx, state.Variable{Deployment: "cf", Name: "admin_password", Type: "password", Value: "rotated-secret"})
		require.NoError(t, err)
		assert.Greater(t, id2, id1)
		v, err := s.Variable(ctx, "cf", "admin_password")
		require.NoError(t, err)
		assert.Equal(t, "rotated-secret", v.Value)
		vs, err := s.Variables(ctx, "cf")
		require.NoError(t, err)
		require.Len(t, vs, 1)

		raw := rawVariableBytes(t, b, loc)
		require.NotEmpty(t, raw)
		for _, r := range raw {
			assert.NotContains(t, string(r), "secret", "values are stored encrypted")
		}

		// The wrong key: a clear error, never garbage.
		other := statetest.OpenWith(t, loc, state.Options{Key: []byte("ffffffffffffffffffffffffffffffff")})
		_, err = other.Variable(ctx, "cf", "admin_password")
		require.ErrorIs(t, err, state.ErrWrongKey)
		assert.Contains(t, err.Error(), "is not the key state store")
		_, err = other.PutVariable(ctx, state.Variable{Deployment: "cf", Name: "x", Value: "y"})
		assert.ErrorIs(t, err, state.ErrWrongKey, "nothing is written with a wrong key")
		// Reading what needs no secret still works.
		_, err = other.Events(ctx, state.EventFilter{})
		assert.NoError(t, err)
	})
}

func TestExportImportBetweenBackends(t *testing.T) {
	ctx := context.Background()
	fill := func(t *testing.T, s state.Store) {
		c, _, err := s.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Content: "vm_types: []\n"})
		require.NoError(t, err)
		_, _, err = s.SaveConfig(ctx, state.Config{Type: state.CPIConfig, Content: "cpis:\n- properties:\n    password: topsecret\n"})
		require.NoError(t, err)
		sampleDeployment(t, s, "cf", 3)
		require.NoError(t, s.RecordDeploySuccess(ctx, "cf", "name: cf\n", []int64{c.ID}))
		require.NoError(t, s.SaveVM(ctx, state.VM{CID: "vm-key", Deployment: "cf", Instance: "cf-uuid-00000", SSHHostPrivateKey: "PRIVATE"}))
		require.NoError(t, s.OrphanDisk(ctx, "disk-cf-uuid-00002"))
		require.NoError(t, s.SaveStemcell(ctx, state.Stemcell{Name: "s", Version: "1", CID: "img"}))
		require.NoError(t, s.SaveRelease(ctx, state.Release{Name: "r", Version: "1"}))
		require.NoError(t, s.SaveCompiledPackage(ctx, state.CompiledPackage{Name: "p", Version: "1", Fingerprint: "f", StemcellOS: "o", StemcellVersion: "1", BlobSHA256: "x"}))
		_, err = s.PutVariable(ctx, state.Variable{Deployment: "cf", Name: "pw", Value: "s3cret"})
		require.NoError(t, err)
		tid, err := s.CreateTask(ctx, state.Task{Description: "deploy"})
		require.NoError(t, err)
		_, err = s.AppendEvents(ctx, state.Event{Action: "create", ObjectType: "deployment", ObjectName: "cf", TaskID: tid})
		require.NoError(t, err)
	}
	normalize := func(d *state.Dump) string {
		d.Source, d.ExportedAt = "", time.Time{}
		b, err := json.Marshal(d)
		require.NoError(t, err)
		return string(b)
	}
	bs := statetest.Backends()
	for _, from := range bs {
		for _, to := range bs {
			t.Run(from.Name+"-to-"+to.Name, func(t *testing.T) {
				src := statetest.Open(t, from.NewLocation(t))
				dst := statetest.Open(t, to.NewLocation(t))
				fill(t, src)

				redacted, err := src.Export(ctx, state.ExportOptions{})
				require.NoError(t, err)
				js, _ := json.Marshal(redacted)
				assert.NotContains(t, string(js), "s3cret")
				assert.NotContains(t, string(js), "PRIVATE")
				assert.NotContains(t, string(js), "topsecret", "secret values in configs are redacted too")
				assert.Contains(t, string(js), `password: \u003credacted\u003e`)
				assert.Contains(t, string(js), `"redacted":true`)
				err = dst.Import(ctx, redacted)
				assert.ErrorContains(t, err, "--include-secrets")

				full, err := src.Export(ctx, state.ExportOptions{IncludeSecrets: true})
				require.NoError(t, err)
				require.NoError(t, dst.Import(ctx, full))
				again, err := dst.Export(ctx, state.ExportOptions{IncludeSecrets: true})
				require.NoError(t, err)
				assert.Equal(t, normalize(full), normalize(again))
				assert.ErrorIs(t, dst.Import(ctx, full), state.ErrNotEmpty)

				// New rows after an import get fresh ids.
				c, changed, err := dst.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Content: "vm_types: [a]\n"})
				require.NoError(t, err)
				assert.True(t, changed)
				assert.Equal(t, 2, c.Version)
				v, err := dst.Variable(ctx, "cf", "pw")
				require.NoError(t, err)
				assert.Equal(t, "s3cret", v.Value)
			})
		}
	}
}

func TestSchemaTooNewIsRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		loc := b.NewLocation(t)
		s := statetest.Open(t, loc)
		assert.Equal(t, state.KnownSchemaVersion(), s.SchemaVersion())
		require.NoError(t, s.Close())

		future := state.KnownSchemaVersion() + 1
		execRaw(t, b, loc, fmt.Sprintf(`INSERT INTO schema_migrations (version, name, applied_at, kpaas_version) VALUES (%d, 'from the future', 0, 'v9.9.9')`, future))
		_, err := state.Open(ctx, loc, state.Options{Key: statetest.Key})
		require.ErrorIs(t, err, state.ErrSchemaTooNew)
		assert.Contains(t, err.Error(), fmt.Sprintf("was written by kpaas v9.9.9 with schema version %d, but this kpaas knows schema versions up to %d: use a newer kpaas", future, future-1))
	})
}

func TestOpenTwiceConcurrentlyMigratesOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		loc := b.NewLocation(t)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := state.Open(context.Background(), loc, state.Options{Key: statetest.Key})
				if err == nil {
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for _, err := range errs {
			assert.NoError(t, err)
		}
	})
}

func TestAppendManyEventsKeepsOrderAndIDs(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		evs := make([]state.Event, 1234)
		for i := range evs {
			evs[i] = state.Event{Action: "update", ObjectType: "instance", ObjectName: fmt.Sprint(i)}
		}
		ids, err := s.AppendEvents(ctx, evs...)
		require.NoError(t, err)
		require.Len(t, ids, len(evs))
		got, err := s.Events(ctx, state.EventFilter{})
		require.NoError(t, err)
		require.Len(t, got, len(evs))
		byID := map[int64]string{}
		for _, e := range got {
			byID[e.ID] = e.ObjectName
		}
		for i, id := range ids {
			require.Equal(t, fmt.Sprint(i), byID[id], "event %d", i)
		}
	})
}
