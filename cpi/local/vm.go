package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/internal/statefile"
	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// vmRecord is what the local cloud keeps about a VM (vms/<cid>/vm.json).
type vmRecord struct {
	CID       cpi.VMCID       `json:"cid"`
	AgentID   cpi.AgentID     `json:"agent_id"`
	Stemcell  cpi.StemcellCID `json:"stemcell"`
	Props     cpi.Props       `json:"cloud_properties,omitempty"`
	Networks  cpi.Networks    `json:"networks"`
	NICs      []nic           `json:"nics"`
	Disks     []cpi.DiskCID   `json:"disks"`
	Metadata  cpi.Metadata    `json:"metadata,omitempty"`
	Limits    limits          `json:"limits"`
	PID       int             `json:"pid,omitempty"`
	StartTime uint64          `json:"start_time,omitempty"` // of PID, to tell a reused PID apart
	CreatedAt time.Time       `json:"created_at"`

	// ContainerHost is cloud_properties.container_host: the VM can run
	// containers (a Kubernetes node); see containerHostSpec.
	ContainerHost bool `json:"container_host,omitempty"`
}

// initSpec is what the launcher (VMInit) needs to become the VM's PID 1.
type initSpec struct {
	Lower    string   `json:"lower"`
	Upper    string   `json:"upper"`
	Work     string   `json:"work"`
	Merged   string   `json:"merged"`
	DevDisks string   `json:"dev_disks"`
	Hostname string   `json:"hostname"`
	Init     string   `json:"init"`
	Args     []string `json:"args,omitempty"`
	// ContainerHost is set for a VM with cloud_properties.container_host.
	ContainerHost *containerHostSpec `json:"container_host,omitempty"`
}

// containerHostSpec is what a container host's launcher sets up besides an
// ordinary VM's root: a real filesystem at /var/vcap/data, the global
// sysctls the kubelet writes kept in the VM, /dev/kmsg, and (after the go
// signal, once its PID 1 is in its cgroups) its own cgroup namespace with
// every hierarchy mounted at /sys/fs/cgroup.
type containerHostSpec struct {
	// Data is the host directory bound at /var/vcap/data (the host's
	// filesystem, so containerd's overlayfs snapshotter works there).
	Data string `json:"data"`
	// Sysctls maps a /proc/sys path in the VM to the host file bound over it.
	Sysctls map[string]string `json:"sysctls"`
	// Cgroups are the host's cgroup hierarchies, mounted the same way at
	// /sys/fs/cgroup in the VM's cgroup namespace.
	Cgroups []hierarchy `json:"cgroups"`
}

// ContainerHostProperty is the vm_type/vm_extension cloud property that makes
// a local VM able to run containers (a Kubernetes node).
const ContainerHostProperty = "container_host"

// globalSysctls are the sysctls a kubelet (protectKernelDefaults: false)
// writes that are global to the host; a container host keeps them in a file
// of its own. The per-netns ones (net.ipv4.ip_forward, net.bridge.*) are the
// VM's already.
var globalSysctls = []string{
	"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// containerHostFrom reads cloud_properties.container_host (a boolean).
func containerHostFrom(p cpi.Props) (bool, error) {
	v, ok := p[ContainerHostProperty]
	if !ok || v == nil {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("cloud_properties.%s must be true or false, not %T %v: fix the vm_type or vm_extension", ContainerHostProperty, v, v)
	}
	return b, nil
}

func (l *Local) vmDir(cid cpi.VMCID) string { return filepath.Join(l.cfg.Dir, "vms", string(cid)) }

func (l *Local) loadVM(cid cpi.VMCID) (*vmRecord, error) {
	if !safeID(string(cid)) {
		return nil, cpi.VMNotFound(cid)
	}
	return statefile.Load[vmRecord](filepath.Join(l.vmDir(cid), "vm.json"), cpi.VMNotFound(cid), "VM "+string(cid))
}

func (l *Local) saveVM(rec *vmRecord) error {
	return writeJSON(filepath.Join(l.vmDir(rec.CID), "vm.json"), rec)
}

func (l *Local) listVMs() ([]*vmRecord, error) {
	ents, err := os.ReadDir(filepath.Join(l.cfg.Dir, "vms"))
	if err != nil {
		return nil, fmt.Errorf("listing VMs: %w", err)
	}
	var out []*vmRecord
	for _, e := range ents {
		rec, err := l.loadVM(cpi.VMCID(e.Name()))
		if err != nil {
			continue // a VM being created or deleted
		}
		out = append(out, rec)
	}
	return out, nil
}

func limitsFrom(p cpi.Props) limits {
	var lim limits
	switch v := p["cpu"].(type) {
	case float64:
		lim.CPU = v
	case int:
		lim.CPU = float64(v)
	}
	switch v := p["ram"].(type) {
	case float64:
		lim.MemMiB = int(v)
	case int:
		lim.MemMiB = v
	}
	return lim
}

// CreateVM implements cpi.CPI: allocate the NICs, write the settings into the
// VM's upper layer, start the VM. On failure everything made is removed.
func (l *Local) CreateVM(ctx context.Context, agentID cpi.AgentID, stemcell cpi.StemcellCID, props cpi.Props, networks cpi.Networks, diskCIDs []cpi.DiskCID, env cpi.Env) (cpi.VMCID, cpi.Networks, error) {
	if !safeID(string(stemcell)) {
		return "", nil, cpi.VMCreationFailed(false, cpi.StemcellNotFound(stemcell))
	}
	if _, err := os.Stat(filepath.Join(l.stemcellDir(stemcell), "stemcell.json")); err != nil {
		return "", nil, cpi.VMCreationFailed(false, cpi.StemcellNotFound(stemcell))
	}
	containerHost, err := containerHostFrom(props)
	if err != nil {
		return "", nil, cpi.VMCreationFailed(false, fmt.Errorf("creating VM: %w", err))
	}
	cid := cpi.VMCID(newID("vm-"))
	rec := &vmRecord{CID: cid, AgentID: agentID, Stemcell: stemcell, Props: props, Disks: []cpi.DiskCID{},
		Limits: limitsFrom(props), ContainerHost: containerHost, CreatedAt: time.Now().UTC()}

	assigned, err := l.reserve(rec, networks)
	if err != nil {
		l.destroy(rec)
		return "", nil, cpi.VMCreationFailed(false, fmt.Errorf("creating VM: %w", err))
	}
	if err := l.writeSettings(rec, env); err != nil {
		l.destroy(rec)
		return "", nil, cpi.VMCreationFailed(false, fmt.Errorf("creating VM %s: %w", cid, err))
	}
	if err := l.start(ctx, rec); err != nil {
		l.destroy(rec)
		return "", nil, cpi.VMCreationFailed(true, fmt.Errorf("starting VM %s: %w", cid, err))
	}
	return cid, assigned, nil
}

// reserve allocates the VM's IPs and bridges and records the VM, under the lock.
func (l *Local) reserve(rec *vmRecord, networks cpi.Networks) (cpi.Networks, error) {
	unlock, err := l.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	vms, err := l.listVMs()
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
	dir := l.vmDir(rec.CID)
	for _, d := range []string{"upper", "work", "rootfs", "devdisks"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := l.saveVM(rec); err != nil {
		return nil, err
	}
	if err := l.ensureBridges(nics); err != nil {
		return nil, err
	}
	return assigned, nil
}

// writeSettings puts the agent settings (and resolv.conf, hostname) into the
// VM's upper layer before it starts.
func (l *Local) writeSettings(rec *vmRecord, env cpi.Env) error {
	s, err := cpi.AgentSettings(rec.AgentID, string(rec.CID), rec.Networks, env)
	if err != nil {
		return err
	}
	s.VM.ID = string(rec.CID)
	s.Disks.System = "/"
	for _, d := range rec.Disks {
		s.Disks.Persistent[string(d)] = diskHint(d).Path
	}
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	upper := filepath.Join(l.vmDir(rec.CID), "upper")
	if err := os.MkdirAll(filepath.Join(upper, "var/vcap/bosh"), 0o755); err != nil {
		return err
	}
	for _, name := range []string{"settings.json", "warden-cpi-agent-env.json"} {
		if err := os.WriteFile(filepath.Join(upper, "var/vcap/bosh", name), b, 0o600); err != nil {
			return fmt.Errorf("writing agent settings: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(upper, "etc"), 0o755); err != nil {
		return err
	}
	var resolv strings.Builder
	if _, n, ok := s.DefaultNetwork(); ok {
		for _, d := range n.DNS {
			fmt.Fprintf(&resolv, "nameserver %s\n", d)
		}
	}
	hosts := "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
	if _, n, ok := s.DefaultNetwork(); ok && n.IP != "" {
		hosts += fmt.Sprintf("%s %s\n", n.IP, hostname(rec))
	}
	files := map[string]string{"etc/hostname": hostname(rec) + "\n", "etc/resolv.conf": resolv.String(), "etc/hosts": hosts}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(upper, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func hostname(rec *vmRecord) string {
	h := string(rec.AgentID)
	if h == "" || len(h) > 63 || strings.ContainsAny(h, " /") {
		h = string(rec.CID)
	}
	return h
}

// start launches the VM: the launcher enters new namespaces, mounts the
// overlay root and waits; meanwhile cgroups and NICs are set up; then the
// launcher pivots into the root and execs the agent.
func (l *Local) start(ctx context.Context, rec *vmRecord) (err error) {
	dir := l.vmDir(rec.CID)
	t0 := time.Now()
	defer func() { l.log.Debug("vm started", "vm", rec.CID, "elapsed", time.Since(t0), "err", err) }()
	spec := initSpec{
		Lower: filepath.Join(l.stemcellDir(rec.Stemcell), "rootfs"), Upper: filepath.Join(dir, "upper"),
		Work: filepath.Join(dir, "work"), Merged: filepath.Join(dir, "rootfs"), DevDisks: filepath.Join(dir, "devdisks"),
		Hostname: hostname(rec), Init: l.cfg.AgentPath, Args: l.cfg.AgentArgs,
	}
	if _, err := os.Stat(spec.Lower); err != nil {
		return fmt.Errorf("stemcell %s of the VM: %w", rec.Stemcell, err)
	}
	if rec.ContainerHost {
		if spec.ContainerHost, err = l.prepareContainerHost(dir); err != nil {
			return err
		}
	}
	specPath := filepath.Join(dir, "init.json")
	if err := writeJSONSync(specPath, spec, false); err != nil {
		return err
	}
	if err := l.attachAll(rec); err != nil {
		return err
	}
	console, err := os.OpenFile(filepath.Join(dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer console.Close()
	goR, goW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer goW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		goR.Close()
		return err
	}
	defer statusR.Close()

	args := append(append([]string{}, l.cfg.InitCommand[1:]...), specPath)
	cmd := exec.Command(l.cfg.InitCommand[0], args...)
	cmd.Env = []string{"KPAAS_LOCAL_VM_INIT=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = console, console
	cmd.ExtraFiles = []*os.File{goR, statusW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		Setsid:     true,
	}
	if err := cmd.Start(); err != nil {
		goR.Close()
		statusW.Close()
		return fmt.Errorf("starting the VM launcher %s: %w", l.cfg.InitCommand[0], err)
	}
	goR.Close()
	statusW.Close()
	pid := cmd.Process.Pid
	// Reap the launcher/agent when it exits while this process lives; when
	// this process exits first, the VM lives on (reparented).
	go func() { _ = cmd.Wait() }()
	rec.PID, rec.StartTime = pid, procStartTime(pid)
	defer func() {
		if err != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	// The PID matters only while the host is up: no fsync.
	if err := writeJSONSync(filepath.Join(dir, "vm.json"), rec, false); err != nil {
		return err
	}
	if err := l.cg.create(string(rec.CID), pid, rec.Limits, rec.ContainerHost); err != nil {
		return err
	}
	l.log.Debug("vm launcher started, cgroups set", "vm", rec.CID, "elapsed", time.Since(t0))
	if err := plugNICs(pid, rec.NICs); err != nil {
		return fmt.Errorf("plugging NICs: %w", err)
	}
	l.log.Debug("vm nics plugged", "vm", rec.CID, "elapsed", time.Since(t0))
	if _, err := goW.Write([]byte{'g'}); err != nil {
		// The launcher is gone; its status says why.
		l.log.Debug("launcher did not take the go signal", "vm", rec.CID, "err", err)
	}
	goW.Close()
	type result struct {
		msg []byte
		err error
	}
	ch := make(chan result, 1)
	go func() { b, err := io.ReadAll(statusR); ch <- result{b, err} }()
	timer := time.NewTimer(l.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if len(bytes.TrimSpace(r.msg)) > 0 {
			return fmt.Errorf("VM launcher: %s (console: %s)", bytes.TrimSpace(r.msg), filepath.Join(dir, "console.log"))
		}
	case <-timer.C:
		return fmt.Errorf("VM launcher did not start the agent within %s (console: %s)", l.cfg.StartTimeout, filepath.Join(dir, "console.log"))
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// prepareContainerHost makes a container host's /var/vcap/data directory and
// its sysctl files (holding the host's values, as a fresh boot would) under
// the VM's directory.
func (l *Local) prepareContainerHost(dir string) (*containerHostSpec, error) {
	if len(l.cg.hier) == 0 {
		return nil, fmt.Errorf("cloud_properties.%s: no cgroup hierarchy is mounted in %s on this host to give the VM", ContainerHostProperty, l.cg.root)
	}
	spec := &containerHostSpec{Data: filepath.Join(dir, "data"), Sysctls: map[string]string{}, Cgroups: l.cg.hier}
	if err := os.MkdirAll(spec.Data, 0o755); err != nil {
		return nil, err
	}
	sysctlDir := filepath.Join(dir, "sysctl")
	if err := os.MkdirAll(sysctlDir, 0o755); err != nil {
		return nil, err
	}
	for _, name := range globalSysctls {
		host := "/proc/sys/" + name
		v, err := os.ReadFile(host)
		if err != nil {
			continue // not in this kernel
		}
		file := filepath.Join(sysctlDir, strings.ReplaceAll(name, "/", "."))
		if err := os.WriteFile(file, v, 0o644); err != nil {
			return nil, fmt.Errorf("writing the VM's copy of %s: %w", host, err)
		}
		spec.Sysctls[host] = file
	}
	return spec, nil
}

// procStartTime reads the start time of pid (field 22 of /proc/PID/stat).
func procStartTime(pid int) uint64 {
	st, _ := procStat(pid)
	return st.start
}

type pstat struct {
	state byte
	start uint64
}

func procStat(pid int) (pstat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return pstat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return pstat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return pstat{}, false
	}
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return pstat{state: f[0][0], start: start}, true
}

// running reports whether the VM's init is alive (not a zombie, not a reused PID).
func running(rec *vmRecord) bool {
	if rec.PID <= 0 {
		return false
	}
	st, ok := procStat(rec.PID)
	return ok && st.state != 'Z' && st.start == rec.StartTime
}

// Running reports whether a VM's processes are up (false after a host reboot
// until reboot_vm starts it again).
func (l *Local) Running(ctx context.Context, cid cpi.VMCID) (bool, error) {
	rec, err := l.loadVM(cid)
	if err != nil {
		return false, err
	}
	return running(rec), nil
}

// stop kills every process of the VM and removes its NICs and cgroups. The
// mounts go with its mount namespace; its loop devices stay (disks stay attached).
func (l *Local) stop(rec *vmRecord) error {
	var errs []error
	if running(rec) {
		_ = syscall.Kill(rec.PID, syscall.SIGKILL)
	}
	l.cg.thaw(string(rec.CID))
	for _, p := range l.cg.procs(string(rec.CID)) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for running(rec) || len(l.cg.procs(string(rec.CID))) > 0 {
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("VM %s: processes still alive 10s after SIGKILL", rec.CID))
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	l.log.Debug("vm processes gone", "vm", rec.CID)
	if err := unplugNICs(rec.NICs); err != nil {
		errs = append(errs, err)
	}
	l.log.Debug("vm nics gone", "vm", rec.CID)
	if err := l.cg.remove(string(rec.CID), 5*time.Second); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// destroy removes everything of a VM: processes, NICs, cgroups, its
// directory, loop devices of its disks (the disks stay), unused bridges.
func (l *Local) destroy(rec *vmRecord) error {
	var errs []error
	t0 := time.Now()
	defer func() { l.log.Debug("vm destroyed", "vm", rec.CID, "elapsed", time.Since(t0)) }()
	if err := l.stop(rec); err != nil {
		errs = append(errs, err)
	}
	l.log.Debug("vm stopped", "vm", rec.CID, "elapsed", time.Since(t0))
	unlock, err := l.lock()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer unlock()
	for _, d := range rec.Disks {
		if err := l.releaseDisk(d, rec.CID); err != nil {
			errs = append(errs, err)
		}
	}
	// A mount left on the host by a crashed older launcher would keep the dir busy.
	_ = syscall.Unmount(filepath.Join(l.vmDir(rec.CID), "rootfs"), syscall.MNT_DETACH)
	if err := os.RemoveAll(l.vmDir(rec.CID)); err != nil {
		errs = append(errs, fmt.Errorf("removing VM directory: %w", err))
	}
	if err := l.releaseBridges(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DeleteVM implements cpi.CPI; deleting a VM that is gone succeeds.
func (l *Local) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	rec, err := l.loadVM(cid)
	if errors.Is(err, cpi.ErrVMNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := l.destroy(rec); err != nil {
		return cpi.Errorf(cpi.TypeCloudError, true, "deleting VM %s: %w", cid, err)
	}
	return nil
}

// HasVM implements cpi.CPI: true while the VM's record exists, running or not.
func (l *Local) HasVM(ctx context.Context, cid cpi.VMCID) (bool, error) {
	_, err := l.loadVM(cid)
	if errors.Is(err, cpi.ErrVMNotFound) {
		return false, nil
	}
	return err == nil, err
}

// RebootVM implements cpi.CPI: stop and start with the same root, NICs and disks.
// It also starts a VM whose processes are gone (after a host reboot).
func (l *Local) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	rec, err := l.loadVM(cid)
	if err != nil {
		return err
	}
	if err := l.stop(rec); err != nil {
		return cpi.Errorf(cpi.TypeCloudError, true, "rebooting VM %s: %w", cid, err)
	}
	unlock, err := l.lock()
	if err != nil {
		return cerr(err)
	}
	err = l.ensureBridges(rec.NICs)
	unlock()
	if err != nil {
		return cpi.Errorf(cpi.TypeCloudError, true, "rebooting VM %s: %w", cid, err)
	}
	if err := l.start(ctx, rec); err != nil {
		_ = l.stop(rec)
		return cpi.Errorf(cpi.TypeCloudError, true, "rebooting VM %s: %w", cid, err)
	}
	return nil
}

// SetVMMetadata implements cpi.CPI.
func (l *Local) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	unlock, err := l.lock()
	if err != nil {
		return cerr(err)
	}
	defer unlock()
	rec, err := l.loadVM(cid)
	if err != nil {
		return err
	}
	rec.Metadata = md
	return cerr(l.saveVM(rec))
}

// Settings reads the agent settings delivered to a VM.
func (l *Local) Settings(cid cpi.VMCID) (*settings.Settings, error) {
	if _, err := l.loadVM(cid); err != nil {
		return nil, err
	}
	return settings.Load(filepath.Join(l.vmDir(cid), "upper/var/vcap/bosh/settings.json"))
}

// VMInfo is what `kpaas` shows about a local VM.
type VMInfo struct {
	CID      cpi.VMCID    `json:"cid"`
	AgentID  cpi.AgentID  `json:"agent_id"`
	IPs      []string     `json:"ips"`
	PID      int          `json:"pid"`
	Running  bool         `json:"running"`
	Disks    []string     `json:"disks"`
	Metadata cpi.Metadata `json:"metadata,omitempty"`
}

// VMs lists the local cloud's VMs.
func (l *Local) VMs() ([]VMInfo, error) {
	recs, err := l.listVMs()
	if err != nil {
		return nil, err
	}
	out := make([]VMInfo, 0, len(recs))
	for _, r := range recs {
		v := VMInfo{CID: r.CID, AgentID: r.AgentID, PID: r.PID, Running: running(r), Metadata: r.Metadata, IPs: []string{}, Disks: []string{}}
		for _, n := range r.NICs {
			v.IPs = append(v.IPs, n.IP)
		}
		for _, d := range r.Disks {
			v.Disks = append(v.Disks, string(d))
		}
		out = append(out, v)
	}
	return out, nil
}
