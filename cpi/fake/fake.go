// Package fake is a CPI without a cloud: VMs, disks and stemcells kept in
// memory or in a JSON file (`kpaas cpi fake`), for tests of the layers above
// the CPI and of BOSH CPI interop.
package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// Call is one recorded CPI call.
type Call struct {
	Method string
	Args   []any
}

// FakeVM is what the fake knows about a VM.
type FakeVM struct {
	CID      cpi.VMCID          `json:"cid"`
	AgentID  cpi.AgentID        `json:"agent_id"`
	Stemcell cpi.StemcellCID    `json:"stemcell"`
	Props    cpi.Props          `json:"props,omitempty"`
	Networks cpi.Networks       `json:"networks"`
	Env      cpi.Env            `json:"env,omitempty"`
	Metadata cpi.Metadata       `json:"metadata,omitempty"`
	Disks    []cpi.DiskCID      `json:"disks,omitempty"`
	Settings *settings.Settings `json:"settings"`
	Reboots  int                `json:"reboots"`
}

// FakeDisk is what the fake knows about a disk.
type FakeDisk struct {
	CID      cpi.DiskCID  `json:"cid"`
	SizeMiB  int          `json:"size_mib"`
	Props    cpi.Props    `json:"props,omitempty"`
	VM       cpi.VMCID    `json:"vm,omitempty"`
	Metadata cpi.Metadata `json:"metadata,omitempty"`
}

type fakeState struct {
	Seq       int                             `json:"seq"`
	Stemcells map[cpi.StemcellCID]cpi.Props   `json:"stemcells"`
	VMs       map[cpi.VMCID]*FakeVM           `json:"vms"`
	Disks     map[cpi.DiskCID]*FakeDisk       `json:"disks"`
	Snapshots map[cpi.SnapshotCID]cpi.DiskCID `json:"snapshots"`
	NextIP    int                             `json:"next_ip"`
}

// Fake is an in-memory CPI for the engine's unit tests: it keeps stemcells,
// VMs and disks in maps, records every call, and fails the calls it is told to
// (FailNext). It follows CONTRACT.md and passes Conformance. With a state file
// (NewFakeFile) it persists between processes, so `kpaas cpi fake` can serve it.
type Fake struct {
	mu    sync.Mutex
	st    fakeState
	calls []Call
	fail  map[string][]error
	file  string
	lock  *os.File // flock held during a call, in file mode
	// Capabilities declared in Info; all by default.
	Capabilities []cpi.Capability
}

// NewFake returns an empty fake with every capability.
func NewFake() *Fake {
	return &Fake{
		st: fakeState{
			Stemcells: map[cpi.StemcellCID]cpi.Props{}, VMs: map[cpi.VMCID]*FakeVM{},
			Disks: map[cpi.DiskCID]*FakeDisk{}, Snapshots: map[cpi.SnapshotCID]cpi.DiskCID{},
		},
		fail:         map[string][]error{},
		Capabilities: slices.Clone(cpi.AllCapabilities),
	}
}

// NewFakeFile returns a fake whose state lives in path (created when absent),
// loaded now and saved after every call.
func NewFakeFile(path string) (*Fake, error) {
	f := NewFake()
	f.file = path
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading fake cpi state: %w", err)
	}
	if err := json.Unmarshal(b, &f.st); err != nil {
		return nil, fmt.Errorf("parsing fake cpi state %s: %w", path, err)
	}
	return f, nil
}

// FailNext makes the next call of method (BOSH's name, e.g. "create_vm") return err.
// Several calls queue.
func (f *Fake) FailNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = append(f.fail[method], err)
}

// Calls returns the recorded calls in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// CallCount counts the calls of method.
func (f *Fake) CallCount(method string) int {
	n := 0
	for _, c := range f.Calls() {
		if c.Method == method {
			n++
		}
	}
	return n
}

// VM returns a copy of a VM's record.
func (f *Fake) VM(cid cpi.VMCID) (FakeVM, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.st.VMs[cid]
	if !ok {
		return FakeVM{}, false
	}
	return *v, true
}

// VMs lists the VM CIDs.
func (f *Fake) VMs() []cpi.VMCID {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]cpi.VMCID, 0, len(f.st.VMs))
	for k := range f.st.VMs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Disk returns a copy of a disk's record.
func (f *Fake) Disk(cid cpi.DiskCID) (FakeDisk, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.st.Disks[cid]
	if !ok {
		return FakeDisk{}, false
	}
	return *d, true
}

// Inventory lists every resource the fake holds, for leak checks.
func (f *Fake) Inventory() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.st.Stemcells {
		out = append(out, "stemcell/"+string(k))
	}
	for k := range f.st.VMs {
		out = append(out, "vm/"+string(k))
	}
	for k := range f.st.Disks {
		out = append(out, "disk/"+string(k))
	}
	for k := range f.st.Snapshots {
		out = append(out, "snapshot/"+string(k))
	}
	slices.Sort(out)
	return out, nil
}

// Settings returns the agent settings delivered to a VM.
func (f *Fake) Settings(cid cpi.VMCID) (*settings.Settings, error) {
	v, ok := f.VM(cid)
	if !ok {
		return nil, cpi.VMNotFound(cid)
	}
	return v.Settings, nil
}

// begin records the call, pops an injected failure and locks the state. The
// caller must call end.
func (f *Fake) begin(method string, args ...any) error {
	f.mu.Lock()
	if f.file != "" {
		// Several processes (`kpaas cpi fake` calls in parallel) share the
		// file: lock it and reload for every call.
		if lk, err := os.OpenFile(f.file+".lock", os.O_CREATE|os.O_RDWR, 0o600); err == nil {
			if syscall.Flock(int(lk.Fd()), syscall.LOCK_EX) == nil {
				f.lock = lk
			} else {
				lk.Close()
			}
		}
		if b, err := os.ReadFile(f.file); err == nil {
			var st fakeState
			if json.Unmarshal(b, &st) == nil {
				f.st = st
			}
		}
	}
	f.calls = append(f.calls, Call{Method: method, Args: args})
	if q := f.fail[method]; len(q) > 0 {
		f.fail[method] = q[1:]
		return q[0]
	}
	return nil
}

func (f *Fake) end() error {
	defer f.mu.Unlock()
	if f.file == "" {
		return nil
	}
	if f.lock != nil {
		defer func() { f.lock.Close(); f.lock = nil }()
	}
	b, err := json.Marshal(f.st)
	if err != nil {
		return err
	}
	tmp := f.file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("saving fake cpi state: %w", err)
	}
	return os.Rename(tmp, f.file)
}

func (f *Fake) id(prefix string) string {
	f.st.Seq++
	return fmt.Sprintf("%s-%d", prefix, f.st.Seq)
}

func (f *Fake) has(c cpi.Capability) bool { return slices.Contains(f.Capabilities, c) }

func done(f *Fake, err error) error {
	if serr := f.end(); err == nil {
		return serr
	}
	return err
}

// Info implements cpi.CPI.
func (f *Fake) Info(ctx context.Context) (cpi.Info, error) {
	err := f.begin("info")
	return cpi.Info{APIVersion: 2, StemcellFormats: []string{"warden-tar", "general-tar"}, Capabilities: slices.Clone(f.Capabilities)}, done(f, err)
}

// CreateStemcell implements cpi.CPI.
func (f *Fake) CreateStemcell(ctx context.Context, imagePath string, props cpi.Props) (cpi.StemcellCID, error) {
	if err := f.begin("create_stemcell", imagePath, props); err != nil {
		return "", done(f, err)
	}
	if _, err := os.Stat(imagePath); err != nil {
		return "", done(f, cpi.Errorf(cpi.TypeCloudError, false, "reading stemcell image: %w", err))
	}
	cid := cpi.StemcellCID(f.id("stemcell"))
	f.st.Stemcells[cid] = props
	return cid, done(f, nil)
}

// DeleteStemcell implements cpi.CPI.
func (f *Fake) DeleteStemcell(ctx context.Context, cid cpi.StemcellCID) error {
	if err := f.begin("delete_stemcell", cid); err != nil {
		return done(f, err)
	}
	delete(f.st.Stemcells, cid)
	return done(f, nil)
}

// CreateVM implements cpi.CPI.
func (f *Fake) CreateVM(ctx context.Context, agentID cpi.AgentID, stemcell cpi.StemcellCID, props cpi.Props, networks cpi.Networks, diskCIDs []cpi.DiskCID, env cpi.Env) (cpi.VMCID, cpi.Networks, error) {
	if err := f.begin("create_vm", agentID, stemcell, props, networks, diskCIDs, env); err != nil {
		return "", nil, done(f, err)
	}
	if _, ok := f.st.Stemcells[stemcell]; !ok {
		return "", nil, done(f, cpi.VMCreationFailed(false, cpi.StemcellNotFound(stemcell)))
	}
	out := cpi.Networks{}
	for name, n := range networks {
		if n.Type == "dynamic" && n.IP == "" {
			f.st.NextIP++
			n.IP = fmt.Sprintf("10.254.%d.%d", f.st.NextIP/250, f.st.NextIP%250+2)
			n.Netmask, n.Gateway = "255.255.0.0", "10.254.0.1"
		}
		out[name] = n
	}
	cid := cpi.VMCID(f.id("vm"))
	s, err := cpi.AgentSettings(agentID, string(cid), out, env)
	if err != nil {
		return "", nil, done(f, cpi.VMCreationFailed(false, err))
	}
	f.st.VMs[cid] = &FakeVM{CID: cid, AgentID: agentID, Stemcell: stemcell, Props: props, Networks: out, Env: env, Settings: s}
	return cid, out, done(f, nil)
}

// DeleteVM implements cpi.CPI.
func (f *Fake) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	if err := f.begin("delete_vm", cid); err != nil {
		return done(f, err)
	}
	if vm, ok := f.st.VMs[cid]; ok {
		for _, d := range vm.Disks {
			if disk, ok := f.st.Disks[d]; ok {
				disk.VM = ""
			}
		}
	}
	delete(f.st.VMs, cid)
	return done(f, nil)
}

// HasVM implements cpi.CPI.
func (f *Fake) HasVM(ctx context.Context, cid cpi.VMCID) (bool, error) {
	if err := f.begin("has_vm", cid); err != nil {
		return false, done(f, err)
	}
	_, ok := f.st.VMs[cid]
	return ok, done(f, nil)
}

// RebootVM implements cpi.CPI.
func (f *Fake) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	if err := f.begin("reboot_vm", cid); err != nil {
		return done(f, err)
	}
	if !f.has(cpi.CapReboot) {
		return done(f, cpi.NotSupported("reboot_vm"))
	}
	vm, ok := f.st.VMs[cid]
	if !ok {
		return done(f, cpi.VMNotFound(cid))
	}
	vm.Reboots++
	return done(f, nil)
}

// SetVMMetadata implements cpi.CPI.
func (f *Fake) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	if err := f.begin("set_vm_metadata", cid, md); err != nil {
		return done(f, err)
	}
	if !f.has(cpi.CapVMMetadata) {
		return done(f, cpi.NotSupported("set_vm_metadata"))
	}
	vm, ok := f.st.VMs[cid]
	if !ok {
		return done(f, cpi.VMNotFound(cid))
	}
	vm.Metadata = md
	return done(f, nil)
}

// CreateDisk implements cpi.CPI.
func (f *Fake) CreateDisk(ctx context.Context, sizeMiB int, props cpi.Props, vm cpi.VMCID) (cpi.DiskCID, error) {
	if err := f.begin("create_disk", sizeMiB, props, vm); err != nil {
		return "", done(f, err)
	}
	if sizeMiB <= 0 {
		return "", done(f, cpi.Errorf(cpi.TypeCloudError, false, "disk size must be positive, got %d MiB", sizeMiB))
	}
	cid := cpi.DiskCID(f.id("disk"))
	f.st.Disks[cid] = &FakeDisk{CID: cid, SizeMiB: sizeMiB, Props: props}
	return cid, done(f, nil)
}

// DeleteDisk implements cpi.CPI.
func (f *Fake) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	if err := f.begin("delete_disk", cid); err != nil {
		return done(f, err)
	}
	d, ok := f.st.Disks[cid]
	if ok && d.VM != "" {
		return done(f, cpi.Errorf(cpi.TypeCloudError, false, "disk '%s' is attached to VM '%s'; detach it first", cid, d.VM))
	}
	delete(f.st.Disks, cid)
	return done(f, nil)
}

// AttachDisk implements cpi.CPI.
func (f *Fake) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	if err := f.begin("attach_disk", vm, disk); err != nil {
		return cpi.DiskHint{}, done(f, err)
	}
	v, ok := f.st.VMs[vm]
	if !ok {
		return cpi.DiskHint{}, done(f, cpi.VMNotFound(vm))
	}
	d, ok := f.st.Disks[disk]
	if !ok {
		return cpi.DiskHint{}, done(f, cpi.DiskNotFound(disk))
	}
	if d.VM != "" && d.VM != vm {
		return cpi.DiskHint{}, done(f, cpi.Errorf(cpi.TypeCloudError, false, "disk '%s' is attached to VM '%s'", disk, d.VM))
	}
	if !slices.Contains(v.Disks, disk) {
		v.Disks = append(v.Disks, disk)
	}
	d.VM = vm
	hint := cpi.DiskHint{Path: "/dev/fake/" + string(disk)}
	v.Settings.Disks.Persistent[string(disk)] = hint.Path
	return hint, done(f, nil)
}

// DetachDisk implements cpi.CPI.
func (f *Fake) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	if err := f.begin("detach_disk", vm, disk); err != nil {
		return done(f, err)
	}
	v, ok := f.st.VMs[vm]
	if !ok {
		return done(f, cpi.VMNotFound(vm))
	}
	d, ok := f.st.Disks[disk]
	if !ok {
		return done(f, cpi.DiskNotFound(disk))
	}
	v.Disks = slices.DeleteFunc(v.Disks, func(c cpi.DiskCID) bool { return c == disk })
	delete(v.Settings.Disks.Persistent, string(disk))
	if d.VM == vm {
		d.VM = ""
	}
	return done(f, nil)
}

// HasDisk implements cpi.CPI.
func (f *Fake) HasDisk(ctx context.Context, cid cpi.DiskCID) (bool, error) {
	if err := f.begin("has_disk", cid); err != nil {
		return false, done(f, err)
	}
	_, ok := f.st.Disks[cid]
	return ok, done(f, nil)
}

// GetDisks implements cpi.CPI.
func (f *Fake) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	if err := f.begin("get_disks", vm); err != nil {
		return nil, done(f, err)
	}
	v, ok := f.st.VMs[vm]
	if !ok {
		return nil, done(f, cpi.VMNotFound(vm))
	}
	out := slices.Clone(v.Disks)
	if out == nil {
		out = []cpi.DiskCID{}
	}
	return out, done(f, nil)
}

// SetDiskMetadata implements cpi.CPI.
func (f *Fake) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	if err := f.begin("set_disk_metadata", cid, md); err != nil {
		return done(f, err)
	}
	if !f.has(cpi.CapDiskMetadata) {
		return done(f, cpi.NotSupported("set_disk_metadata"))
	}
	d, ok := f.st.Disks[cid]
	if !ok {
		return done(f, cpi.DiskNotFound(cid))
	}
	d.Metadata = md
	return done(f, nil)
}

// ResizeDisk implements cpi.CPI.
func (f *Fake) ResizeDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int) error {
	if err := f.begin("resize_disk", cid, newSizeMiB); err != nil {
		return done(f, err)
	}
	if !f.has(cpi.CapResizeDisk) {
		return done(f, cpi.NotSupported("resize_disk"))
	}
	d, ok := f.st.Disks[cid]
	if !ok {
		return done(f, cpi.DiskNotFound(cid))
	}
	if newSizeMiB < d.SizeMiB {
		return done(f, cpi.Errorf(cpi.TypeNotSupported, false, "shrinking disk '%s' from %d to %d MiB is not supported", cid, d.SizeMiB, newSizeMiB))
	}
	d.SizeMiB = newSizeMiB
	return done(f, nil)
}

// SnapshotDisk implements cpi.CPI.
func (f *Fake) SnapshotDisk(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	if err := f.begin("snapshot_disk", cid, md); err != nil {
		return "", done(f, err)
	}
	if !f.has(cpi.CapSnapshots) {
		return "", done(f, cpi.NotSupported("snapshot_disk"))
	}
	if _, ok := f.st.Disks[cid]; !ok {
		return "", done(f, cpi.DiskNotFound(cid))
	}
	sid := cpi.SnapshotCID(f.id("snapshot"))
	f.st.Snapshots[sid] = cid
	return sid, done(f, nil)
}

// DeleteSnapshot implements cpi.CPI.
func (f *Fake) DeleteSnapshot(ctx context.Context, cid cpi.SnapshotCID) error {
	if err := f.begin("delete_snapshot", cid); err != nil {
		return done(f, err)
	}
	if !f.has(cpi.CapSnapshots) {
		return done(f, cpi.NotSupported("delete_snapshot"))
	}
	delete(f.st.Snapshots, cid)
	return done(f, nil)
}

var _ cpi.CPI = (*Fake)(nil)

// Vanish removes a VM as if the IaaS lost it (a host died, someone deleted
// it by hand): has_vm turns false and its disks are detached, with no
// delete_vm call recorded. For tests of resurrection and cloud check.
func (f *Fake) Vanish(cid cpi.VMCID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm, ok := f.st.VMs[cid]; ok {
		for _, d := range vm.Disks {
			if disk, ok := f.st.Disks[d]; ok && disk.VM == cid {
				disk.VM = ""
			}
		}
	}
	delete(f.st.VMs, cid)
}
