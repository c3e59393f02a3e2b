package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/internal/statefile"
	"github.com/kpaas/kpaas/pkg/agent/settings"
	"github.com/kpaas/kpaas/pkg/agentclient"
)

// vmRecord is vms/<cid>/vm.json.
type vmRecord struct {
	CID       cpi.VMCID       `json:"cid"`
	AgentID   cpi.AgentID     `json:"agent_id"`
	Stemcell  cpi.StemcellCID `json:"stemcell"`
	Props     cpi.Props       `json:"cloud_properties,omitempty"`
	Networks  cpi.Networks    `json:"networks"`
	NICs      []nic           `json:"nics"`
	Disks     []cpi.DiskCID   `json:"disks"`
	Metadata  cpi.Metadata    `json:"metadata,omitempty"`
	MemMiB    int             `json:"ram"`
	CPUs      int             `json:"cpu"`
	Accel     string          `json:"accel"`
	PID       int             `json:"pid,omitempty"`
	StartTime uint64          `json:"start_time,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

func (q *QEMU) vmDir(cid cpi.VMCID) string { return filepath.Join(q.cfg.Dir, "vms", string(cid)) }

func (q *QEMU) loadVM(cid cpi.VMCID) (*vmRecord, error) {
	if !safeID(string(cid)) {
		return nil, cpi.VMNotFound(cid)
	}
	return statefile.Load[vmRecord](filepath.Join(q.vmDir(cid), "vm.json"), cpi.VMNotFound(cid), "VM "+string(cid))
}

func (q *QEMU) saveVM(rec *vmRecord) error {
	return writeJSON(filepath.Join(q.vmDir(rec.CID), "vm.json"), rec)
}

func (q *QEMU) listVMs() ([]*vmRecord, error) {
	ents, err := os.ReadDir(filepath.Join(q.cfg.Dir, "vms"))
	if err != nil {
		return nil, fmt.Errorf("listing VMs: %w", err)
	}
	var out []*vmRecord
	for _, e := range ents {
		if rec, err := q.loadVM(cpi.VMCID(e.Name())); err == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

func intProp(p cpi.Props, key string, def int) int {
	switch v := p[key].(type) {
	case float64:
		return int(v)
	case int:
		return v
	case int64:
		return int(v)
	}
	return def
}

// CreateVM implements cpi.CPI: plan the NICs, make the root overlay and the
// config drive, start QEMU. On failure everything made is removed.
func (q *QEMU) CreateVM(ctx context.Context, agentID cpi.AgentID, stemcell cpi.StemcellCID, props cpi.Props, networks cpi.Networks, diskCIDs []cpi.DiskCID, env cpi.Env) (cpi.VMCID, cpi.Networks, error) {
	sc, err := q.loadStemcell(stemcell)
	if err != nil {
		return "", nil, cpi.VMCreationFailed(false, err)
	}
	cid := cpi.VMCID(newID("vm-"))
	rec := &vmRecord{CID: cid, AgentID: agentID, Stemcell: stemcell, Props: props, Disks: []cpi.DiskCID{},
		MemMiB: intProp(props, "ram", q.cfg.MemMiB), CPUs: intProp(props, "cpu", q.cfg.CPUs), CreatedAt: time.Now().UTC()}
	rec.Accel = q.accel(ctx, sc)
	fail := func(retry bool, err error) (cpi.VMCID, cpi.Networks, error) {
		q.destroy(rec)
		return "", nil, cpi.VMCreationFailed(retry, fmt.Errorf("creating VM %s: %w", cid, err))
	}
	assigned, err := q.reserve(rec, networks, diskCIDs)
	if err != nil {
		return fail(false, err)
	}
	dir := q.vmDir(cid)
	base := filepath.Join(q.stemcellDir(stemcell), "root.img")
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, filepath.Join(dir, "root.qcow2")).CombinedOutput(); err != nil {
		return fail(false, fmt.Errorf("creating the root overlay: %v: %s", err, bytes.TrimSpace(out)))
	}
	if err := q.writeConfigDrive(ctx, rec, env); err != nil {
		return fail(false, err)
	}
	if err := q.start(ctx, rec, sc); err != nil {
		return fail(true, err)
	}
	return cid, assigned, nil
}

// reserve allocates the IPs and writes vm.json, under the lock.
func (q *QEMU) reserve(rec *vmRecord, networks cpi.Networks, diskCIDs []cpi.DiskCID) (cpi.Networks, error) {
	unlock, err := q.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	vms, err := q.listVMs()
	if err != nil {
		return nil, err
	}
	used := map[string]string{}
	for _, vm := range vms {
		for _, n := range vm.NICs {
			used[n.IP] = string(vm.CID)
		}
	}
	nics, assigned, err := planNICs(string(rec.CID), networks, used)
	if err != nil {
		return nil, err
	}
	rec.NICs, rec.Networks = nics, assigned
	for _, d := range diskCIDs {
		dr, err := q.loadDisk(d)
		if err != nil {
			return nil, err
		}
		if dr.VM != "" {
			return nil, fmt.Errorf("disk %s is attached to VM %s", d, dr.VM)
		}
		dr.VM = rec.CID
		if err := q.saveDisk(dr); err != nil {
			return nil, err
		}
		rec.Disks = append(rec.Disks, d)
	}
	if err := os.MkdirAll(q.vmDir(rec.CID), 0o700); err != nil {
		return nil, err
	}
	if err := q.saveVM(rec); err != nil {
		return nil, err
	}
	return assigned, q.ensureBridges(nics)
}

// writeConfigDrive builds the config drive: an ISO9660 image labelled
// config-2 in OpenStack's layout (openstack/latest/meta_data.json and
// user_data, and the ec2/latest copies the stemcell's agent.json reads), made
// with genisoimage (Rock Ridge + Joliet, as nova does); without genisoimage,
// an ext4 image made by mkfs.ext4 -d.
func (q *QEMU) writeConfigDrive(ctx context.Context, rec *vmRecord, env cpi.Env) error {
	st, err := cpi.AgentSettings(rec.AgentID, string(rec.CID), rec.Networks, env)
	if err != nil {
		return err
	}
	for _, d := range rec.Disks {
		st.Disks.Persistent[string(d)] = diskHint(d)
	}
	if st.Env.Kpaas.HostKey == "" {
		// kpaas always sends the host key it pins; a caller that does not (a
		// BOSH director, the conformance suite) still gets an agent that
		// starts, with a key nobody pins.
		k, err := agentclient.GenerateKey()
		if err != nil {
			return fmt.Errorf("generating the agent's host key: %w", err)
		}
		st.Env.Kpaas.HostKey = k.PrivatePEM
	}
	ud, err := st.Marshal()
	if err != nil {
		return err
	}
	dir := q.vmDir(rec.CID)
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), ud, 0o600); err != nil {
		return err
	}
	md := fmt.Sprintf(`{"uuid":%q,"name":%q,"hostname":%q,"instance-id":%q}`, rec.CID, rec.CID, rec.CID, rec.CID)
	tree, err := os.MkdirTemp(dir, "cd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tree)
	files := map[string][]byte{
		"openstack/latest/meta_data.json": []byte(md), "openstack/latest/user_data": ud,
		"ec2/latest/meta-data.json": []byte(md), "ec2/latest/user-data": ud,
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tree, p), b, 0o644); err != nil {
			return err
		}
	}
	img := filepath.Join(dir, "config-2.img")
	var out []byte
	if _, lerr := exec.LookPath("genisoimage"); lerr == nil {
		out, err = exec.CommandContext(ctx, "genisoimage", "-quiet", "-o", img, "-V", "config-2", "-J", "-r", tree).CombinedOutput()
	} else {
		out, err = exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "config-2", "-d", tree, img, "4M").CombinedOutput()
	}
	if err != nil {
		return fmt.Errorf("building the config drive: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// start launches QEMU paused, puts its taps on the bridges and lets it run.
func (q *QEMU) start(ctx context.Context, rec *vmRecord, sc *stemcellRecord) error {
	dir := q.vmDir(rec.CID)
	sock := filepath.Join(dir, "qmp.sock")
	_ = os.Remove(sock)
	scDir := q.stemcellDir(rec.Stemcell)
	accel := rec.Accel
	if accel == "tcg" {
		accel = "tcg,tb-size=64"
	}
	cmdline := strings.TrimSpace(sc.Cmdline + " panic=10 " + q.cfg.KernelArgs)
	if !strings.Contains(cmdline, "no_timer_check") {
		cmdline += " no_timer_check"
	}
	args := []string{"-name", "kpaas-" + string(rec.CID), "-machine", "pc", "-accel", accel,
		"-m", strconv.Itoa(rec.MemMiB), "-smp", strconv.Itoa(rec.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-S",
		"-serial", "file:" + filepath.Join(dir, "console.log"),
		"-qmp", "unix:" + sock + ",server=on,wait=off",
		"-kernel", filepath.Join(scDir, sc.Kernel), "-initrd", filepath.Join(scDir, sc.Initrd), "-append", cmdline,
		"-drive", "file=" + filepath.Join(dir, "root.qcow2") + ",if=virtio,format=qcow2,cache=unsafe",
		"-drive", "file=" + filepath.Join(dir, "config-2.img") + ",if=virtio,format=raw,readonly=on",
		"-device", "virtio-scsi-pci,id=scsi0",
	}
	for i, n := range rec.NICs {
		args = append(args, "-netdev", fmt.Sprintf("tap,id=n%d,ifname=%s,script=no,downscript=no", i, n.Tap),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=%s", i, n.MAC))
	}
	for _, d := range rec.Disks {
		s := serial(d)
		args = append(args, "-blockdev", fmt.Sprintf("driver=qcow2,node-name=n%s,file.driver=file,file.filename=%s", s, q.diskPath(d, ".qcow2")),
			"-device", fmt.Sprintf("scsi-hd,bus=scsi0.0,drive=n%s,id=d%s,serial=%s", s, s, s))
	}
	logf, err := os.OpenFile(filepath.Join(dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(q.cfg.QEMU, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", q.cfg.QEMU, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // reap it while this process lives
	rec.PID, rec.StartTime = cmd.Process.Pid, procStartTime(cmd.Process.Pid)
	if err := q.saveVM(rec); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	var m *qmp
	for {
		var err error
		if m, err = dialQMP(ctx, sock); err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("QEMU exited at start: %s", tailFile(filepath.Join(dir, "qemu.log")))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("QEMU did not open its QMP socket within 15s")
		}
	}
	defer m.Close()
	if err := plugTaps(rec.NICs); err != nil {
		return err
	}
	if _, err := m.do("cont", nil); err != nil {
		return err
	}
	return nil
}

func tailFile(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func procStartTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0 // gone, or a zombie: QEMU has exited
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// running reports whether the VM's QEMU process is alive.
func running(rec *vmRecord) bool {
	return rec.PID > 0 && rec.StartTime != 0 && procStartTime(rec.PID) == rec.StartTime
}

// qmpFor connects to a running VM's QMP socket.
func (q *QEMU) qmpFor(ctx context.Context, rec *vmRecord) (*qmp, error) {
	return dialQMP(ctx, filepath.Join(q.vmDir(rec.CID), "qmp.sock"))
}

// stop kills the VM's QEMU and waits until it is gone; its taps go with it.
func (q *QEMU) stop(rec *vmRecord) error {
	if running(rec) {
		_ = syscall.Kill(rec.PID, syscall.SIGKILL)
		deadline := time.Now().Add(10 * time.Second)
		for running(rec) {
			if time.Now().After(deadline) {
				return fmt.Errorf("QEMU (pid %d) of VM %s did not exit after SIGKILL", rec.PID, rec.CID)
			}
			time.Sleep(20 * time.Millisecond)
		}
		waitFilesReleased(rec.PID, 10*time.Second)
	}
	deleteTaps(rec.NICs)
	for _, n := range rec.NICs {
		if _, err := netlink.LinkByName(n.Tap); err == nil {
			return fmt.Errorf("tap %s of VM %s is still there", n.Tap, rec.CID)
		}
	}
	return nil
}

// waitFilesReleased waits until a killed QEMU's open files are closed. Its
// main thread shows as a zombie (running() is false) while its other threads
// are still exiting and the image files' locks are still held; attaching the
// VM's persistent disk to the next VM right away then fails with QEMU's
// 'Failed to get "write" lock'. A zombie with no threads left has no fds.
func waitFilesReleased(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil || len(fds) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// destroy removes everything the VM owns: its process, taps, files, its
// IP reservation (vm.json) and its claim on disks; then unused bridges.
func (q *QEMU) destroy(rec *vmRecord) error {
	if err := q.stop(rec); err != nil {
		return err
	}
	unlock, err := q.lock()
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	for _, d := range rec.Disks {
		if dr, err := q.loadDisk(d); err == nil && dr.VM == rec.CID {
			dr.VM = ""
			if err := q.saveDisk(dr); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.RemoveAll(q.vmDir(rec.CID)); err != nil {
		errs = append(errs, err)
	}
	if err := q.releaseBridges(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DeleteVM implements cpi.CPI (a VM already gone is deleted).
func (q *QEMU) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	rec, err := q.loadVM(cid)
	if errors.Is(err, cpi.ErrVMNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := q.destroy(rec); err != nil {
		return cpi.Errorf(cpi.TypeCloudError, true, "deleting VM %s: %w", cid, err)
	}
	return nil
}

// HasVM implements cpi.CPI: a VM whose QEMU process died is gone.
func (q *QEMU) HasVM(ctx context.Context, cid cpi.VMCID) (bool, error) {
	rec, err := q.loadVM(cid)
	if errors.Is(err, cpi.ErrVMNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return running(rec), nil
}

// RebootVM implements cpi.CPI: a system reset through QMP (same process,
// disks, taps); a VM whose QEMU died is started again.
func (q *QEMU) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	rec, err := q.loadVM(cid)
	if err != nil {
		return err
	}
	if running(rec) {
		m, err := q.qmpFor(ctx, rec)
		if err != nil {
			return cpi.Errorf(cpi.TypeCloudError, true, "rebooting VM %s: %w", cid, err)
		}
		defer m.Close()
		// A clean reboot first (ctrl-alt-del: systemd syncs and unmounts, so
		// what the agent wrote is on disk); a hard reset if the guest does
		// not reset itself within RebootTimeout.
		if _, err := m.do("send-key", map[string]any{"keys": []map[string]string{
			{"type": "qcode", "data": "ctrl"}, {"type": "qcode", "data": "alt"}, {"type": "qcode", "data": "delete"}}}); err == nil {
			if err := m.waitEvent("RESET", func(json.RawMessage) bool { return true }, q.rebootTimeout()); err == nil {
				return nil
			}
			q.log.Warn("the guest did not reboot on ctrl-alt-del; resetting it", "vm", cid)
			m.Close()
			if m, err = q.qmpFor(ctx, rec); err != nil {
				return cpi.Errorf(cpi.TypeCloudError, true, "rebooting VM %s: %w", cid, err)
			}
			defer m.Close()
		}
		if _, err := m.do("system_reset", nil); err != nil {
			return cpi.Errorf(cpi.TypeCloudError, true, "rebooting VM %s: %w", cid, err)
		}
		return nil
	}
	sc, err := q.loadStemcell(rec.Stemcell)
	if err != nil {
		return cpi.Errorf(cpi.TypeCloudError, false, "restarting VM %s: %w", cid, err)
	}
	deleteTaps(rec.NICs)
	if err := q.start(ctx, rec, sc); err != nil {
		_ = q.stop(rec)
		return cpi.Errorf(cpi.TypeCloudError, true, "restarting VM %s: %w", cid, err)
	}
	return nil
}

func (q *QEMU) rebootTimeout() time.Duration {
	if q.cfg.RebootTimeout > 0 {
		return q.cfg.RebootTimeout
	}
	return 60 * time.Second
}

// SetVMMetadata implements cpi.CPI.
func (q *QEMU) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	unlock, err := q.lock()
	if err != nil {
		return cerr(err)
	}
	defer unlock()
	rec, err := q.loadVM(cid)
	if err != nil {
		return err
	}
	rec.Metadata = md
	return cerr(q.saveVM(rec))
}

// Settings returns the agent settings on a VM's config drive.
func (q *QEMU) Settings(cid cpi.VMCID) (*settings.Settings, error) {
	if !safeID(string(cid)) {
		return nil, cpi.VMNotFound(cid)
	}
	return settings.Load(filepath.Join(q.vmDir(cid), "settings.json"))
}

// Console returns the VM's serial console output so far.
func (q *QEMU) Console(cid cpi.VMCID) string {
	return tailFile(filepath.Join(q.vmDir(cid), "console.log"))
}

// Inventory lists what the cloud holds, on disk and on the host: VMs, disks,
// stemcells, bridges and taps it made, and QEMU processes running from its
// state directory.
func (q *QEMU) Inventory() ([]string, error) {
	var out []string
	for _, d := range []string{"vms", "disks", "stemcells"} {
		ents, err := os.ReadDir(filepath.Join(q.cfg.Dir, d))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			out = append(out, d+"/"+e.Name())
		}
	}
	recs, err := q.loadBridges()
	if err != nil {
		return nil, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	// Taps count when they hang on one of this cloud's bridges: other clouds
	// on the host (another state dir, a parallel test) have qt* taps too.
	ourBridges := map[int]bool{}
	for _, l := range links {
		if _, ours := recs[l.Attrs().Name]; ours {
			ourBridges[l.Attrs().Index] = true
		}
	}
	for _, l := range links {
		name := l.Attrs().Name
		_, ours := recs[name]
		tap := strings.HasPrefix(name, "qt") && l.Type() == "tuntap" && ourBridges[l.Attrs().MasterIndex]
		if ours || tap {
			out = append(out, "link/"+name)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(filepath.Join(q.cfg.Dir, "vms"))) && bytes.HasPrefix(b, []byte(q.cfg.QEMU)) {
			out = append(out, "qemu/"+filepath.Base(filepath.Dir(p)))
		}
	}
	sort.Strings(out)
	return out, nil
}

// PID is the VM's QEMU process id (0 when unknown).
func (q *QEMU) PID(cid cpi.VMCID) int {
	rec, err := q.loadVM(cid)
	if err != nil {
		return 0
	}
	return rec.PID
}
