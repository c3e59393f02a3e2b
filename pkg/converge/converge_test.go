package converge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/health"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

// clock is a fake clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fleet is a set of fake agents by instance name: an agent answers with its
// job state, or fails when it is down.
type fleet struct {
	mu    sync.Mutex
	state map[string]string // name -> job state; "" down
}

type fleetAgent struct {
	f    *fleet
	name string
}

func (a fleetAgent) GetState(ctx context.Context, full bool) (*protocol.State, error) {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	js := a.f.state[a.name]
	if js == "" {
		return nil, fmt.Errorf("dialing %s: connection refused", a.name)
	}
	st := &protocol.State{JobState: js}
	st.Processes = []protocol.Process{{Name: "hello", State: map[string]string{"failing": "failing"}[js]}}
	if js == "running" {
		st.Processes[0].State = "running"
	}
	return st, nil
}

func (f *fleet) set(name, js string) { f.mu.Lock(); f.state[name] = js; f.mu.Unlock() }

// remediator records fixes; a recreate brings the agent back running, a
// restart leaves the job as it was (a job that keeps failing).
type remediator struct {
	mu    sync.Mutex
	f     *fleet
	fixes []string
	err   error
	on    func([]Fix)
}

func (r *remediator) Remediate(ctx context.Context, dep string, fixes []Fix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range fixes {
		r.fixes = append(r.fixes, string(f.Action)+" "+f.Name)
	}
	if r.on != nil {
		r.on(fixes)
	}
	return r.err
}

func (r *remediator) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.fixes
	r.fixes = nil
	return out
}

type world struct {
	st    state.Store
	cpi   *cpitest.Fake
	clock *clock
	fleet *fleet
	rem   *remediator
	vms   map[string]cpi.VMCID
	r     *Reconciler
	seen  []Report
}

func newWorld(t *testing.T, n int, opts Options) *world {
	ctx := context.Background()
	w := &world{st: statetest.Open(t, filepath.Join(t.TempDir(), "state.db")), cpi: cpitest.NewFake(),
		clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, fleet: &fleet{state: map[string]string{}}, vms: map[string]cpi.VMCID{}}
	w.rem = &remediator{f: w.fleet}
	_, err := w.st.CreateDeployment(ctx, "d")
	require.NoError(t, err)
	img := filepath.Join(t.TempDir(), "image")
	require.NoError(t, os.WriteFile(img, []byte("image"), 0o600))
	sc, err := w.cpi.CreateStemcell(ctx, img, nil)
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("web/%d", i)
		uuid := fmt.Sprintf("u%d", i)
		require.NoError(t, w.st.SaveInstance(ctx, state.Instance{Deployment: "d", Group: "web", Index: i, UUID: uuid, AZ: "z1", DesiredState: state.Started}))
		cid, _, err := w.cpi.CreateVM(ctx, cpi.AgentID(uuid), sc, nil, nil, nil, nil)
		require.NoError(t, err)
		w.vms[name] = cid
		require.NoError(t, w.st.SaveVM(ctx, state.VM{CID: string(cid), Deployment: "d", Instance: uuid, IPs: []string{fmt.Sprintf("10.0.0.%d", i+10)}, Active: true}))
		w.fleet.set(name, "running")
	}
	w.r = New(Deps{
		Store: w.st,
		Dial:  func(t agentclient.Target) Agent { return fleetAgent{f: w.fleet, name: t.Name} },
		HasVM: func(ctx context.Context, dep, az, cid string) (bool, error) {
			return w.cpi.HasVM(ctx, cpi.VMCID(cid))
		},
		Remediator: w.rem,
		Now:        w.clock.Now,
		Report:     func(r Report) { w.seen = append(w.seen, r) },
	}, opts)
	return w
}

func (w *world) pass(t *testing.T) Outcome {
	o, err := w.r.Pass(context.Background(), "d", health.Resurrection{})
	require.NoError(t, err)
	return o
}

func TestVanishedVMIsRecreatedAtOnce(t *testing.T) {
	w := newWorld(t, 3, Options{})
	o := w.pass(t)
	assert.Equal(t, 3, o.Healthy)

	w.cpi.Vanish(w.vms["web/1"])
	w.fleet.set("web/1", "")
	w.clock.Add(10 * time.Second)
	o = w.pass(t)
	require.Len(t, o.Unhealthy, 1)
	assert.Equal(t, []string{"recreate web/1"}, w.rem.got(), "a missing VM does not wait for the agent timeout")
	evs, err := w.st.Events(context.Background(), state.EventFilter{Deployment: "d", Action: "resurrect-recreate"})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	assert.Equal(t, "web/1", evs[0].Instance)
	assert.Contains(t, string(evs[0].Context), "missing_vm")
}

func TestUnresponsiveAgentWaitsForTheTimeout(t *testing.T) {
	w := newWorld(t, 3, Options{})
	w.pass(t)
	w.fleet.set("web/2", "")
	for i := 0; i < 2; i++ {
		w.clock.Add(10 * time.Second)
		o := w.pass(t)
		assert.Empty(t, o.Unhealthy, "20 s of silence is under the 30 s agent timeout")
		assert.Equal(t, 1, o.Suspect)
	}
	w.clock.Add(10 * time.Second)
	o := w.pass(t)
	require.Len(t, o.Unhealthy, 1)
	assert.Equal(t, []string{"recreate web/2"}, w.rem.got())
	assert.GreaterOrEqual(t, w.cpi.CallCount("has_vm"), 1, "the CPI was asked about the silent agent's VM")
	assert.Contains(t, o.Unhealthy[0].Details[0], "connection refused")
}

func TestFailingJobIsRestartedThenRecreated(t *testing.T) {
	w := newWorld(t, 2, Options{Budget: health.Budget{Backoff: time.Second}})
	w.pass(t)
	w.fleet.set("web/0", "failing")
	w.clock.Add(10 * time.Second)
	w.pass(t)
	w.clock.Add(20 * time.Second)
	w.pass(t)
	assert.Empty(t, w.rem.got(), "within the grace period")
	w.clock.Add(10 * time.Second)
	w.pass(t)
	assert.Equal(t, []string{"restart web/0"}, w.rem.got())
	// Still failing after the restart: once the grace has passed again, recreate.
	for i := 0; i < 4; i++ {
		w.clock.Add(10 * time.Second)
		w.pass(t)
	}
	assert.Equal(t, []string{"recreate web/0"}, w.rem.got())
}

func TestMeltdownGateRemediatesNothingAndSaysWhy(t *testing.T) {
	mu, err := health.ParseMaxUnhealthy("1")
	require.NoError(t, err)
	w := newWorld(t, 4, Options{MaxUnhealthy: mu})
	w.pass(t)
	w.cpi.Vanish(w.vms["web/0"])
	w.cpi.Vanish(w.vms["web/3"])
	w.fleet.set("web/0", "")
	w.fleet.set("web/3", "")
	w.clock.Add(10 * time.Second)
	o := w.pass(t)
	assert.Len(t, o.Unhealthy, 2)
	assert.Contains(t, o.Gated, "2 of 4 instances are unhealthy")
	assert.Empty(t, w.rem.got())
	w.clock.Add(10 * time.Second)
	o = w.pass(t)
	assert.NotEmpty(t, o.Gated, "still held on the next pass")
	evs, err := w.st.Events(context.Background(), state.EventFilter{Deployment: "d", Action: "meltdown"})
	require.NoError(t, err)
	require.Len(t, evs, 1, "recorded once, not every pass")
	assert.Contains(t, evs[0].Error, "max_unhealthy (1)")
}

func TestLockedDeploymentIsLeftAlone(t *testing.T) {
	w := newWorld(t, 2, Options{})
	w.pass(t)
	l, err := w.st.Lock(context.Background(), state.LockRequest{Name: state.DeploymentLock("d"), Op: "deploy"})
	require.NoError(t, err)
	w.cpi.Vanish(w.vms["web/0"])
	w.fleet.set("web/0", "")
	w.clock.Add(10 * time.Second)
	o := w.pass(t)
	assert.Contains(t, o.Locked, "(deploy)")
	assert.Empty(t, w.rem.got())
	require.NoError(t, l.Release(context.Background()))
	w.clock.Add(10 * time.Second)
	w.pass(t)
	assert.Equal(t, []string{"recreate web/0"}, w.rem.got())
}

func TestResurrectionRulesAndRetryBudget(t *testing.T) {
	w := newWorld(t, 2, Options{Budget: health.Budget{Max: 2, Backoff: 30 * time.Second}})
	w.rem.err = errors.New("create_vm failed")
	w.pass(t)
	w.cpi.Vanish(w.vms["web/0"])
	w.fleet.set("web/0", "")
	off := health.Resurrection{Rules: []health.Rule{{Enabled: false, Include: &health.Selector{InstanceGroups: []string{"web"}}}}}
	w.clock.Add(10 * time.Second)
	_, err := w.r.Pass(context.Background(), "d", off)
	require.NoError(t, err)
	assert.Empty(t, w.rem.got(), "resurrection is off for web")

	var attempts []time.Time
	for i := 0; i < 20; i++ {
		w.clock.Add(10 * time.Second)
		if len(w.pass(t).Fixed) > 0 || len(w.rem.got()) > 0 {
			attempts = append(attempts, w.clock.Now())
		}
	}
	require.Len(t, attempts, 2, "the budget allows two tries in the window")
	assert.GreaterOrEqual(t, attempts[1].Sub(attempts[0]), 30*time.Second, "with backoff between them")
	evs, err := w.st.Events(context.Background(), state.EventFilter{Deployment: "d", Action: "resurrect-recreate"})
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.Equal(t, "create_vm failed", evs[0].Error)
}

func TestHistoryFromEventsSurvivesARestart(t *testing.T) {
	w := newWorld(t, 1, Options{Budget: health.Budget{Backoff: time.Second}})
	w.pass(t)
	w.fleet.set("web/0", "failing")
	for i := 0; i < 5; i++ {
		w.clock.Add(10 * time.Second)
		w.pass(t)
	}
	assert.Equal(t, []string{"restart web/0"}, w.rem.got())

	// A new reconciler (the next `kpaas converge`, a restarted monitor)
	// knows a restart was tried and goes on to recreate.
	r2 := New(w.r.deps, w.r.opts)
	for i := 0; i < 5; i++ {
		w.clock.Add(10 * time.Second)
		_, err := r2.Pass(context.Background(), "d", health.Resurrection{})
		require.NoError(t, err)
	}
	assert.Equal(t, []string{"recreate web/0"}, w.rem.got())
}
