package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/interpolate"
	"github.com/kpaas/kpaas/pkg/plan"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// fakeAgent is an in-process agent: it keeps blobs, compiles by naming the
// result after the package, and records every call in the shared log.
type fakeAgent struct {
	f    *fakeAgents
	name string
}

type fakeAgents struct {
	mu        sync.Mutex
	log       []string
	blobs     map[string][]byte
	failStart map[string]error // by instance name
	// startingPolls: how many get_state calls report "starting" before
	// "running", by instance name.
	startingPolls map[string]int
	pingErr       error
	onStart       func(name string)
	// busyApplies: how many applies answer Busy (jobs running), as the
	// agent does when a reload cannot apply the change.
	busyApplies int
}

func newFakeAgents() *fakeAgents {
	return &fakeAgents{blobs: map[string][]byte{}, failStart: map[string]error{}, startingPolls: map[string]int{}}
}

func (f *fakeAgents) dial(t agentclient.Target) Agent { return &fakeAgent{f: f, name: t.Name} }

// sleep stands in for the engine's timer: it records the wait and returns.
func (f *fakeAgents) sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, fmt.Sprintf("engine sleep %s", d))
	return ctx.Err()
}

func (f *fakeAgents) record(name, call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, name+" "+call)
}

func (f *fakeAgents) calls(call string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.log {
		if strings.HasSuffix(l, " "+call) {
			out = append(out, strings.TrimSuffix(l, " "+call))
		}
	}
	return out
}

func (a *fakeAgent) Ping(ctx context.Context) error { a.f.record(a.name, "ping"); return a.f.pingErr }
func (a *fakeAgent) GetState(ctx context.Context, full bool) (*protocol.State, error) {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	a.f.log = append(a.f.log, a.name+" get_state")
	if a.f.startingPolls[a.name] > 0 {
		a.f.startingPolls[a.name]--
		return &protocol.State{JobState: "starting", Processes: []protocol.Process{{Job: "web", Name: "nginx", State: "starting"}}}, nil
	}
	return &protocol.State{JobState: protocol.JobRunning}, nil
}
func (a *fakeAgent) EnsureBlobs(ctx context.Context, blobs []agentclient.Blob) (int, error) {
	n := 0
	for _, b := range blobs {
		a.f.mu.Lock()
		_, ok := a.f.blobs[b.SHA256]
		a.f.mu.Unlock()
		if ok {
			continue
		}
		r, err := b.Open()
		if err != nil {
			return n, err
		}
		data, _ := io.ReadAll(r)
		r.Close()
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != b.SHA256 {
			return n, fmt.Errorf("blob %s has the wrong content", b.SHA256)
		}
		a.f.mu.Lock()
		a.f.blobs[b.SHA256] = data
		a.f.mu.Unlock()
		n++
	}
	return n, nil
}
func (a *fakeAgent) Apply(ctx context.Context, spec protocol.ApplySpec) error {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	for n, p := range spec.Packages {
		if _, ok := a.f.blobs[p.BlobstoreID]; !ok {
			return fmt.Errorf("apply: package %s blob missing", n)
		}
	}
	if _, ok := a.f.blobs[spec.RenderedTemplatesArchive.BlobstoreID]; !ok {
		return errors.New("apply: rendered templates missing")
	}
	if a.f.busyApplies > 0 {
		a.f.busyApplies--
		a.f.log = append(a.f.log, a.name+" apply-busy")
		return &agentclient.RPCError{VM: a.name, Method: "apply", Type: protocol.ErrBusy, Message: "process hello/hello is still running and this apply cannot reload it in place"}
	}
	a.f.log = append(a.f.log, a.name+" apply")
	return nil
}
func (a *fakeAgent) StopJobs(ctx context.Context, o agentclient.StopOptions) error {
	a.f.record(a.name, "stop")
	return nil
}
func (a *fakeAgent) Start(ctx context.Context) error {
	if a.f.onStart != nil {
		a.f.onStart(a.name)
	}
	a.f.record(a.name, "start")
	a.f.mu.Lock()
	err := a.f.failStart[a.name]
	a.f.mu.Unlock()
	return err
}
func (a *fakeAgent) RunScript(ctx context.Context, name string, env map[string]string) (*protocol.RunScriptResponse, error) {
	a.f.record(a.name, name)
	return &protocol.RunScriptResponse{}, nil
}
func (a *fakeAgent) RunErrand(ctx context.Context, req protocol.RunErrandRequest) (*protocol.RunErrandResponse, error) {
	return &protocol.RunErrandResponse{}, nil
}
func (a *fakeAgent) AddPersistentDisk(ctx context.Context, cid string, hint any) error {
	a.f.record(a.name, "add_persistent_disk "+cid)
	return nil
}
func (a *fakeAgent) MountDisk(ctx context.Context, cid string) error {
	a.f.record(a.name, "mount_disk")
	return nil
}
func (a *fakeAgent) UnmountDisk(ctx context.Context, cid string) error {
	a.f.record(a.name, "unmount_disk")
	return nil
}
func (a *fakeAgent) CompilePackage(ctx context.Context, req protocol.CompilePackageRequest) (*protocol.CompilePackageResponse, error) {
	a.f.record(req.Name, "compile")
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	if _, ok := a.f.blobs[req.BlobstoreID]; !ok {
		return nil, errors.New("source blob missing")
	}
	for d, ref := range req.Deps {
		if _, ok := a.f.blobs[ref.BlobstoreID]; !ok {
			return nil, fmt.Errorf("dependency %s missing", d)
		}
	}
	data := []byte("compiled " + req.Name + " " + req.Version)
	sum := sha256.Sum256(data)
	id := hex.EncodeToString(sum[:])
	a.f.blobs[id] = data
	return &protocol.CompilePackageResponse{BlobstoreID: id, SHA1: "sha256:" + id, Size: int64(len(data))}, nil
}
func (a *fakeAgent) GetBlob(ctx context.Context, id string, w io.Writer) error {
	a.f.mu.Lock()
	data, ok := a.f.blobs[id]
	a.f.mu.Unlock()
	if !ok {
		return errors.New("no blob")
	}
	_, err := w.Write(data)
	return err
}

type world struct {
	t      *testing.T
	st     state.Store
	blobs  *blobstore.Store
	cloud  *cpitest.Fake
	agents *fakeAgents
	events []ui.Progress
	mu     sync.Mutex
}

func moduleRoot(t testing.TB) string {
	out, err := exec.Command(filepath.Join(os.Getenv("GOROOT"), "bin", "go"), "env", "GOMOD").Output()
	if err != nil {
		out, err = exec.Command("go", "env", "GOMOD").Output()
	}
	require.NoError(t, err)
	return filepath.Dir(strings.TrimSpace(string(out)))
}

const cloudConfig = `
azs: [{name: z1}, {name: z2}]
vm_types: [{name: small}]
networks:
- name: net
  subnets: [{range: 10.1.0.0/24, gateway: 10.1.0.1, azs: [z1, z2]}]
compilation: {workers: 2, az: z1, network: net, vm_type: small}
`

func newWorld(t *testing.T) *world {
	return newWorldWith(t, filepath.Join(moduleRoot(t), "releases", "kpaas-hello"))
}

// newWorldWith is newWorld with the kpaas-hello release read from dir.
func newWorldWith(t *testing.T, releaseDir string) *world {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := state.Open(ctx, filepath.Join(dir, "state"), state.Options{Key: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	bs, err := blobstore.Open(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	rd, err := release.ReadDir(releaseDir)
	require.NoError(t, err)
	tgz := filepath.Join(dir, "hello.tgz")
	_, err = rd.WriteTarball(tgz, release.CreateOptions{Version: "1"})
	require.NoError(t, err)
	id, _, err := bs.PutFile(tgz)
	require.NoError(t, err)
	require.NoError(t, st.SaveRelease(ctx, state.Release{Name: "kpaas-hello", Version: "1", SHA256: id}))
	cloud := cpitest.NewFake()
	img := filepath.Join(dir, "image")
	require.NoError(t, os.WriteFile(img, []byte("x"), 0o644))
	sc, err := cloud.CreateStemcell(ctx, img, nil)
	require.NoError(t, err)
	require.NoError(t, st.SaveStemcell(ctx, state.Stemcell{Name: "sc", Version: "1", OS: "busybox", CID: string(sc), CPI: "default"}))
	_, _, err = st.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Name: "default", Content: cloudConfig})
	require.NoError(t, err)
	return &world{t: t, st: st, blobs: bs, cloud: cloud, agents: newFakeAgents()}
}

func manifestOf(instances int, greeting string) string {
	return fmt.Sprintf(`name: hello
releases: [{name: kpaas-hello, version: latest}]
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: web
  azs: [z1, z2]
  instances: %d
  vm_type: small
  stemcell: default
  persistent_disk: 16
  networks: [{name: net}]
  jobs:
  - name: hello
    release: kpaas-hello
    properties: {hello: {greeting: %s}}
`, instances, greeting)
}

func (w *world) engine() *Engine {
	key, err := agentclient.GenerateKey()
	require.NoError(w.t, err)
	return &Engine{State: w.st, Blobs: w.blobs, ClientKey: key, Dial: w.agents.dial,
		CPIs:  func(az string) (cpi.CPI, string, error) { return w.cloud, "default", nil },
		Sink:  ui.ProgressFunc(func(p ui.Progress) { w.mu.Lock(); w.events = append(w.events, p); w.mu.Unlock() }),
		Sleep: w.agents.sleep}
}

func (w *world) prepare(m string, recreate bool) *Prepared {
	p, err := Prepare(context.Background(), w.st, w.blobs, PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(m), Recreate: recreate})
	require.NoError(w.t, err)
	return p
}

func (w *world) deploy(m string) error {
	return w.engine().Apply(context.Background(), w.prepare(m, false))
}

func TestDeployRecordsEveryCloudObjectAndRedeployIsANoOp(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	require.NoError(t, w.deploy(manifestOf(3, "hi")))

	ds, err := w.st.LoadDeployment(ctx, "hello")
	require.NoError(t, err)
	require.Len(t, ds.Instances, 3)
	require.Len(t, ds.VMs, 3)
	assert.ElementsMatch(t, w.cloud.VMs(), []cpi.VMCID{cpi.VMCID(ds.VMs[0].CID), cpi.VMCID(ds.VMs[1].CID), cpi.VMCID(ds.VMs[2].CID)},
		"the state knows exactly the VMs the cloud has (compile VMs are gone)")
	require.Len(t, ds.Disks, 3)
	for _, d := range ds.Disks {
		fd, ok := w.cloud.Disk(cpi.DiskCID(d.CID))
		require.True(t, ok)
		assert.NotEmpty(t, fd.VM, "disk %s is attached", d.CID)
	}
	assert.Len(t, ds.IPs, 3)
	for _, v := range ds.VMs {
		assert.NotEmpty(t, v.SSHHostKey)
		fv, _ := w.cloud.VM(cpi.VMCID(v.CID))
		kp, _ := fv.Env["kpaas"].(map[string]any)
		assert.NotEmpty(t, kp["host_key"], "the VM got the host key kpaas pinned")
	}
	assert.Equal(t, []string{"hello-lib", "hello-scripts"}, sortedCopy(w.agents.calls("compile")))
	assert.Len(t, w.agents.calls("post-deploy"), 3)

	creates := w.cloud.CallCount("create_vm")
	p := w.prepare(manifestOf(3, "hi"), false)
	assert.Equal(t, 0, p.Plan.Changes())
	require.NoError(t, w.engine().Apply(ctx, p))
	assert.Equal(t, creates, w.cloud.CallCount("create_vm"), "a no-op deploy creates nothing")
	assert.Len(t, w.agents.calls("compile"), 2, "compiled packages are cached")
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestUpdateIsCanaryFirstAndRecreateKeepsDisks(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	require.NoError(t, w.deploy(manifestOf(3, "hi")))
	before, _ := w.st.LoadDeployment(ctx, "hello")
	w.agents.log = nil
	require.NoError(t, w.deploy(manifestOf(3, "bonjour")))
	assert.Equal(t, []string{"web/0", "web/2", "web/1"}, w.agents.calls("start"), "canary web/0 first, then z1, then z2")
	assert.Equal(t, []string{"web/0", "web/2", "web/1"}, w.agents.calls("stop"))

	require.NoError(t, w.engine().Apply(ctx, w.prepare(manifestOf(3, "bonjour"), true)))
	after, _ := w.st.LoadDeployment(ctx, "hello")
	disks := func(ds *state.DeploymentState) map[string]string {
		m := map[string]string{}
		for _, d := range ds.Disks {
			m[d.Instance] = d.CID
		}
		return m
	}
	assert.Equal(t, disks(before), disks(after), "recreate keeps every persistent disk")
	for _, v := range before.VMs {
		_, ok := w.cloud.VM(cpi.VMCID(v.CID))
		assert.False(t, ok, "old VM %s deleted", v.CID)
	}
	for _, d := range after.Disks {
		fd, _ := w.cloud.Disk(cpi.DiskCID(d.CID))
		vms := after.VMsByInstance()[d.Instance]
		require.NotEmpty(t, vms)
		assert.Equal(t, cpi.VMCID(vms[0].CID), fd.VM, "disk attached to the new VM")
	}
}

func TestCanaryFailureStopsTheDeployLeavingTheRestUntouched(t *testing.T) {
	w := newWorld(t)
	w.agents.failStart["web/0"] = errors.New("jobs are failing")
	err := w.deploy(manifestOf(3, "hi"))
	var ee *Error
	require.ErrorAs(t, err, &ee)
	status := map[string]string{}
	for _, r := range ee.Results {
		status[r.Instance] = r.Status
	}
	assert.Equal(t, map[string]string{"web/0": "failed", "web/1": "untouched", "web/2": "untouched"}, status)
	assert.Len(t, w.cloud.VMs(), 1, "only the canary got a VM (compile VMs are gone)")
	ds, _ := w.st.LoadDeployment(context.Background(), "hello")
	assert.Len(t, ds.VMs, 1, "the canary's VM is recorded, so the next deploy picks it up")
	assert.Empty(t, ds.Deployment.Manifest, "a failed deploy does not become the deployed manifest")

	// The next deploy finishes the job: web/0 is retried.
	delete(w.agents.failStart, "web/0")
	p := w.prepare(manifestOf(3, "hi"), false)
	assert.Equal(t, 3, p.Plan.Changes())
	require.NoError(t, w.engine().Apply(context.Background(), p))
}

func TestVMIsRecordedBeforeItsAgentAnswers(t *testing.T) {
	w := newWorld(t)
	w.agents.pingErr = errors.New("host key mismatch")
	require.Error(t, w.deploy(manifestOf(1, "hi")))
	ds, err := w.st.LoadDeployment(context.Background(), "hello")
	if err == nil {
		assert.Len(t, ds.VMs, len(w.cloud.VMs()), "every VM the cloud has is in the state")
	} else {
		assert.Empty(t, w.cloud.VMs())
	}
}

func TestCtrlCFinishesInFlightAndStartsNothingElse(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	w.agents.onStart = func(name string) {
		if name == "web/0" {
			cancel()
		}
	}
	err := w.engine().Apply(ctx, w.prepare(manifestOf(3, "hi"), false))
	require.ErrorIs(t, err, context.Canceled)
	var ee *Error
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "done", ee.Results[0].Status, "the canary in flight finished")
	assert.Equal(t, "untouched", ee.Results[1].Status)
	ds, _ := w.st.LoadDeployment(context.Background(), "hello")
	existing, err := ExistingFromState(ds)
	require.NoError(t, err)
	require.Len(t, existing, 1)
	assert.NotNil(t, existing[0].Spec, "and was saved as applied")
}

func TestDeleteDeploymentLeavesNothing(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	require.NoError(t, w.deploy(manifestOf(2, "hi")))
	ds, err := w.st.LoadDeployment(ctx, "hello")
	require.NoError(t, err)
	require.NoError(t, w.engine().DeleteDeployment(ctx, ds, false))
	assert.Empty(t, w.cloud.VMs())
	_, err = w.st.LoadDeployment(ctx, "hello")
	assert.ErrorIs(t, err, state.ErrNotFound)
	ips, err := w.st.IPReservations(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, ips)
	orphans, err := w.st.OrphanedDisks(ctx)
	require.NoError(t, err)
	assert.Len(t, orphans, 2, "persistent disks are orphaned, not deleted")
	for _, o := range orphans {
		fd, ok := w.cloud.Disk(cpi.DiskCID(o.CID))
		require.True(t, ok)
		assert.Empty(t, fd.VM, "and detached")
	}
}

func TestPlanOnlyReads(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	p := w.prepare(manifestOf(2, "hi"), false)
	assert.Equal(t, 2, p.Plan.Changes())
	_, err := w.st.Deployment(ctx, "hello")
	assert.ErrorIs(t, err, state.ErrNotFound, "Prepare wrote nothing")
	assert.Zero(t, w.cloud.CallCount("create_vm"))
	for _, i := range p.Plan.Instances() {
		assert.Equal(t, plan.ActionCreate, i.Action)
	}
}

func TestDiskResizeAndRemovalOnUpdate(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	require.NoError(t, w.deploy(manifestOf(1, "hi")))
	ds, _ := w.st.LoadDeployment(ctx, "hello")
	require.Len(t, ds.Disks, 1)
	cid := ds.Disks[0].CID
	vm := ds.VMs[0].CID

	p := w.prepare(strings.Replace(manifestOf(1, "hi"), "persistent_disk: 16", "persistent_disk: 32", 1), false)
	require.Equal(t, plan.ActionUpdate, p.Plan.Instances()[0].Action)
	assert.Equal(t, []string{"disk resized (16 MB -> 32 MB)"}, p.Plan.Instances()[0].Reasons)
	require.NoError(t, w.engine().Apply(ctx, p))
	fd, _ := w.cloud.Disk(cpi.DiskCID(cid))
	assert.Equal(t, 32, fd.SizeMiB, "the same disk, resized")
	assert.Equal(t, cpi.VMCID(vm), fd.VM, "on the same VM, attached again")
	ds, _ = w.st.LoadDeployment(ctx, "hello")
	assert.Equal(t, 32, ds.Disks[0].SizeMB)

	require.NoError(t, w.deploy(strings.Replace(manifestOf(1, "hi"), "  persistent_disk: 16\n", "", 1)))
	orphans, _ := w.st.OrphanedDisks(ctx)
	require.Len(t, orphans, 1)
	assert.Equal(t, cid, orphans[0].CID, "a disk no longer asked for is orphaned")
	fd, _ = w.cloud.Disk(cpi.DiskCID(cid))
	assert.Empty(t, fd.VM)
}

func TestNonSerialGroupsRunTogetherAndMaxInFlightHolds(t *testing.T) {
	w := newWorld(t)
	m := manifestOf(5, "hi")
	m = strings.Replace(m, "update: {canaries: 1, max_in_flight: 2,", "update: {serial: false, canaries: 1, max_in_flight: 2,", 1)
	second := strings.SplitN(m, "instance_groups:\n", 2)[1]
	second = strings.Replace(second, "- name: web", "- name: api", 1)
	second = strings.Replace(second, "instances: 5", "instances: 1", 1)
	second = strings.Replace(second, "  persistent_disk: 16\n", "", 1)
	m += second

	var mu sync.Mutex
	inFlight, maxWeb := map[string]int{}, 0
	apiStarted := make(chan struct{})
	var once sync.Once
	w.agents.onStart = func(name string) {
		group := strings.Split(name, "/")[0]
		if group == "api" {
			once.Do(func() { close(apiStarted) })
			return
		}
		if name == "web/0" {
			select { // web's canary waits for api: only possible if both groups run at once
			case <-apiStarted:
			case <-time.After(5 * time.Second):
				t.Error("api did not start while web was updating: groups ran one after the other")
			}
		}
		mu.Lock()
		inFlight[group]++
		maxWeb = max(maxWeb, inFlight[group])
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		inFlight[group]--
		mu.Unlock()
	}
	require.NoError(t, w.deploy(m))
	assert.Equal(t, 2, maxWeb, "max_in_flight 2 after the canary")
	assert.Len(t, w.agents.calls("start"), 6)
}

func TestAnIPSomethingAnswersOnIsNotUsed(t *testing.T) {
	w := newWorld(t)
	e := w.engine()
	e.InUse = func(ctx context.Context, ip string) bool { return ip == "10.1.0.2" }
	err := e.Apply(context.Background(), w.prepare(manifestOf(1, "hi"), false))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ip 10.1.0.2 on network net answers on the network")
	assert.Empty(t, w.cloud.VMs(), "no VM was created with it")
}

func TestProbeIP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:6868")
	if err != nil {
		t.Skip("port 6868 on loopback is busy")
	}
	assert.True(t, ProbeIP(context.Background(), "127.0.0.1"), "an agent port that accepts")
	l.Close()
	assert.False(t, ProbeIP(context.Background(), "127.0.0.1"), "a refused connection is no agent")
}

func TestHardStoppedInstancesStayDetachedUntilStarted(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	require.NoError(t, w.deploy(manifestOf(2, "hi")))
	p := w.prepare(manifestOf(2, "hi"), false)
	insts, err := Select(p.Plan, "web/1")
	require.NoError(t, err)
	require.Len(t, insts, 1)
	require.NoError(t, w.engine().Stop(ctx, p, insts, true))
	assert.Len(t, w.cloud.VMs(), 1, "stop --hard deletes the VM")
	ds, _ := w.st.LoadDeployment(ctx, "hello")
	assert.Len(t, ds.Disks, 2, "and keeps the disk")

	p = w.prepare(manifestOf(2, "hi"), false)
	assert.Equal(t, 0, p.Plan.Changes(), "a deploy leaves a detached instance alone")

	insts, err = Select(p.Plan, "web/1")
	require.NoError(t, err)
	require.NoError(t, w.engine().Start(ctx, p, insts))
	assert.Len(t, w.cloud.VMs(), 2, "start creates its VM again")
	p = w.prepare(manifestOf(2, "hi"), false)
	assert.Equal(t, 0, p.Plan.Changes())
	ds, _ = w.st.LoadDeployment(ctx, "hello")
	for _, i := range ds.Instances {
		assert.Equal(t, state.Started, i.DesiredState)
	}
}

func TestCreateSwapDeleteStartsTheNewVMBeforeDeletingTheOld(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	m := strings.Replace(manifestOf(1, "hi"), "update: {", "update: {vm_strategy: create-swap-delete, ", 1)
	noDisk := strings.Replace(m, "  persistent_disk: 16\n", "", 1)
	require.NoError(t, w.deploy(noDisk))
	before, _ := w.st.LoadDeployment(ctx, "hello")
	oldVM := before.VMs[0].CID
	oldIP := before.IPs[0].IP

	var sawBoth bool
	w.agents.onStart = func(name string) {
		_, ok := w.cloud.VM(cpi.VMCID(oldVM))
		sawBoth = ok && len(w.cloud.VMs()) == 2
	}
	p := w.prepare(noDisk, true)
	inst := p.Plan.Instances()[0]
	require.Equal(t, plan.ActionRecreate, inst.Action)
	require.True(t, inst.Swap)
	newIP := inst.Desired.Networks["net"].IP
	assert.NotEqual(t, oldIP, newIP)
	require.NoError(t, w.engine().Apply(ctx, p))
	assert.True(t, sawBoth, "the new VM started while the old one still existed")
	_, ok := w.cloud.VM(cpi.VMCID(oldVM))
	assert.False(t, ok, "then the old VM was deleted")
	after, _ := w.st.LoadDeployment(ctx, "hello")
	require.Len(t, after.VMs, 1)
	require.Len(t, after.IPs, 1)
	assert.Equal(t, newIP, after.IPs[0].IP, "the old address is released")
	again := w.prepare(noDisk, false)
	assert.Equal(t, 0, again.Plan.Changes(), "%v", again.Plan.Instances()[0].Reasons)

	// With a persistent disk, the disk moves to the new VM.
	w2 := newWorld(t)
	require.NoError(t, w2.deploy(m))
	d0, _ := w2.st.LoadDeployment(ctx, "hello")
	require.NoError(t, w2.engine().Apply(ctx, w2.prepare(m, true)))
	d1, _ := w2.st.LoadDeployment(ctx, "hello")
	require.Len(t, d1.VMs, 1)
	assert.NotEqual(t, d0.VMs[0].CID, d1.VMs[0].CID)
	fd, _ := w2.cloud.Disk(cpi.DiskCID(d0.Disks[0].CID))
	assert.Equal(t, cpi.VMCID(d1.VMs[0].CID), fd.VM)
}

// A manifest named by a variable (`name: ((deployment_name))`, the K-PaaS
// manifests) keeps its generated variables across deploys: they are looked
// up under the name the vars give, not the placeholder, so a redeploy does
// not generate a new CA and new passwords.
func TestGeneratedVariablesSurviveARedeployOfAManifestNamedByAVariable(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	m := strings.Replace(manifestOf(1, "((greeting))"), "name: hello\n", "name: ((deployment_name))\n", 1) +
		"variables:\n- {name: greeting, type: password}\n"
	in := PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(m),
		Vars: interpolate.Sources{Files: []map[string]any{{"deployment_name": "hello"}}}}
	name, err := DeploymentName(in)
	require.NoError(t, err)
	assert.Equal(t, "hello", name, "the deployment lock's name")

	p, err := Prepare(ctx, w.st, w.blobs, in)
	require.NoError(t, err)
	require.Contains(t, p.Generated, "greeting")
	require.NoError(t, w.engine().Apply(ctx, p))
	first, err := w.st.Variable(ctx, "hello", "greeting")
	require.NoError(t, err)

	p, err = Prepare(ctx, w.st, w.blobs, in)
	require.NoError(t, err)
	assert.Empty(t, p.Generated, "nothing is generated again")
	assert.Equal(t, 0, p.Plan.Changes())
	require.NoError(t, w.engine().Apply(ctx, p))
	again, err := w.st.Variable(ctx, "hello", "greeting")
	require.NoError(t, err)
	assert.Equal(t, first.Value, again.Value)
	assert.Equal(t, first.ID, again.ID, "no new version of the variable")
}
