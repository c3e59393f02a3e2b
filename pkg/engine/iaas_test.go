package engine

// Engine-level deploys through the real IaaS CPIs: vSphere against govmomi's
// simulator started in process, OpenStack against the real (loopback)
// OpenStack of ../shared/openstack/setup.sh. VMs never boot on either, so the
// agents are the in-process fakeAgents of engine_test.go, handed to the
// engine through Engine.Dial (the seam tests use; `kpaas deploy` sets it to
// the SSH agent pool). Everything else is what `kpaas deploy` runs: Prepare,
// Apply, DeleteDeployment over a real state store and blobstore.

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// recordingCPI counts the calls that change the cloud.
type recordingCPI struct {
	cpi.CPI
	mu    sync.Mutex
	calls []string
	// vmProps are the cloud properties of every create_vm, compile VMs too.
	vmProps []cpi.Props
}

func (r *recordingCPI) rec(call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call)
}

// mutations returns the mutating calls made so far and forgets them.
func (r *recordingCPI) mutations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

func (r *recordingCPI) CreateVM(ctx context.Context, a cpi.AgentID, sc cpi.StemcellCID, p cpi.Props, n cpi.Networks, d []cpi.DiskCID, e cpi.Env) (cpi.VMCID, cpi.Networks, error) {
	r.rec("create_vm")
	r.mu.Lock()
	r.vmProps = append(r.vmProps, p)
	r.mu.Unlock()
	return r.CPI.CreateVM(ctx, a, sc, p, n, d, e)
}
func (r *recordingCPI) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	r.rec("delete_vm")
	return r.CPI.DeleteVM(ctx, cid)
}
func (r *recordingCPI) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	r.rec("reboot_vm")
	return r.CPI.RebootVM(ctx, cid)
}
func (r *recordingCPI) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	r.rec("set_vm_metadata")
	return r.CPI.SetVMMetadata(ctx, cid, md)
}
func (r *recordingCPI) CreateDisk(ctx context.Context, size int, p cpi.Props, vm cpi.VMCID) (cpi.DiskCID, error) {
	r.rec("create_disk")
	return r.CPI.CreateDisk(ctx, size, p, vm)
}
func (r *recordingCPI) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	r.rec("delete_disk")
	return r.CPI.DeleteDisk(ctx, cid)
}
func (r *recordingCPI) AttachDisk(ctx context.Context, vm cpi.VMCID, d cpi.DiskCID) (cpi.DiskHint, error) {
	r.rec("attach_disk")
	return r.CPI.AttachDisk(ctx, vm, d)
}
func (r *recordingCPI) DetachDisk(ctx context.Context, vm cpi.VMCID, d cpi.DiskCID) error {
	r.rec("detach_disk")
	return r.CPI.DetachDisk(ctx, vm, d)
}
func (r *recordingCPI) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	r.rec("set_disk_metadata")
	return r.CPI.SetDiskMetadata(ctx, cid, md)
}
func (r *recordingCPI) ResizeDisk(ctx context.Context, cid cpi.DiskCID, size int) error {
	r.rec("resize_disk")
	return r.CPI.ResizeDisk(ctx, cid, size)
}
func (r *recordingCPI) SnapshotDisk(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	r.rec("snapshot_disk")
	return r.CPI.SnapshotDisk(ctx, cid, md)
}
func (r *recordingCPI) DeleteSnapshot(ctx context.Context, cid cpi.SnapshotCID) error {
	r.rec("delete_snapshot")
	return r.CPI.DeleteSnapshot(ctx, cid)
}

// iaasWorld is a state store, a blobstore with kpaas-hello uploaded, a
// stemcell already in the cloud, a cloud-config and one real CPI.
type iaasWorld struct {
	t      *testing.T
	st     state.Store
	blobs  *blobstore.Store
	cloud  *recordingCPI
	agents *fakeAgents
}

func newIaaSWorld(t *testing.T, c cpi.CPI, stemcell cpi.StemcellCID, cloudConfig string) *iaasWorld {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := state.Open(ctx, filepath.Join(dir, "state"), state.Options{Key: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	bs, err := blobstore.Open(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	rd, err := release.ReadDir(filepath.Join(moduleRoot(t), "releases", "kpaas-hello"))
	require.NoError(t, err)
	tgz := filepath.Join(dir, "hello.tgz")
	_, err = rd.WriteTarball(tgz, release.CreateOptions{Version: "1"})
	require.NoError(t, err)
	id, _, err := bs.PutFile(tgz)
	require.NoError(t, err)
	require.NoError(t, st.SaveRelease(ctx, state.Release{Name: "kpaas-hello", Version: "1", SHA256: id}))
	require.NoError(t, st.SaveStemcell(ctx, state.Stemcell{Name: "sc", Version: "1", OS: "ubuntu-jammy", CID: string(stemcell), CPI: "default"}))
	_, _, err = st.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Name: "default", Content: cloudConfig})
	require.NoError(t, err)
	return &iaasWorld{t: t, st: st, blobs: bs, cloud: &recordingCPI{CPI: c}, agents: newFakeAgents()}
}

func (w *iaasWorld) engine() *Engine {
	key, err := agentclient.GenerateKey()
	require.NoError(w.t, err)
	return &Engine{State: w.st, Blobs: w.blobs, ClientKey: key, Dial: w.agents.dial,
		CPIs: func(az string) (cpi.CPI, string, error) { return w.cloud, "default", nil },
		Sink: ui.ProgressFunc(func(p ui.Progress) {
			if p.Status == "done" && p.Duration > 2*time.Second {
				w.t.Logf("slow step: %s %s %s: %s", p.Stage, p.Object, p.Step, p.Duration.Round(time.Millisecond))
			}
		})}
}

func (w *iaasWorld) apply(m string, recreate bool) *Prepared {
	p, err := Prepare(context.Background(), w.st, w.blobs, PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(m), Recreate: recreate})
	require.NoError(w.t, err)
	require.NoError(w.t, w.engine().Apply(context.Background(), p))
	return p
}

func (w *iaasWorld) load() *state.DeploymentState {
	ds, err := w.st.LoadDeployment(context.Background(), "iaas")
	require.NoError(w.t, err)
	return ds
}

// iaasManifest: web (2 instances, no disk) and data (1 instance, a 1 GiB
// persistent disk, two networks).
const iaasManifest = `name: iaas
releases: [{name: kpaas-hello, version: latest}]
stemcells: [{alias: default, os: ubuntu-jammy, version: latest}]
update: {canaries: 1, max_in_flight: 2, serial: false, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: web
  azs: [z1, z2]
  instances: 2
  vm_type: default
  stemcell: default
  networks: [{name: default}]
  jobs: [{name: hello, release: kpaas-hello, properties: {hello: {greeting: hi}}}]
- name: data
  azs: [z1]
  instances: 1
  vm_type: large
  stemcell: default
  persistent_disk_type: default
  networks: [{name: default, default: [dns, gateway]}, {name: second}]
  jobs: [{name: hello, release: kpaas-hello, properties: {hello: {greeting: hi}}}]
`

// instanceVMs maps instance name (group/index) to its active VM.
func instanceVMs(ds *state.DeploymentState) map[string]state.VM {
	names := map[string]string{}
	for _, i := range ds.Instances {
		names[i.UUID] = fmt.Sprintf("%s/%d", i.Group, i.Index)
	}
	out := map[string]state.VM{}
	for _, v := range ds.VMs {
		if v.Active && names[v.Instance] != "" {
			out[names[v.Instance]] = v
		}
	}
	return out
}

func activeDisks(ds *state.DeploymentState) map[string]string {
	out := map[string]string{}
	for _, d := range ds.Disks {
		if d.Active {
			out[d.Instance] = d.CID
		}
	}
	return out
}

// sortedKeys lists a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
