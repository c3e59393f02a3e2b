package local

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// VMInit is the VM launcher, run as PID 1 of the VM's new namespaces (by the
// hidden `kpaas cpi local-vm-init SPEC`, or a test binary's TestMain when
// KPAAS_LOCAL_VM_INIT=1). It mounts the overlay root, /proc, /dev (with the
// disks directory at /dev/kpaas) and /sys, pivots into the root, waits for the
// go signal on fd 3 (cgroups and NICs are ready), then execs the agent. A
// container host also gets /var/vcap/data, its sysctl files and /dev/kmsg
// before the pivot, and after the go signal its own cgroup namespace with the
// hierarchies mounted at /sys/fs/cgroup. Errors
// go to fd 4, which the CPI reads; on success fd 4 closes on exec. It returns
// only on failure, with the exit code.
func VMInit(specPath string) int {
	// unshare(CLONE_NEWCGROUP), the cgroup mounts made in that namespace and
	// the exec must all happen on one thread.
	runtime.LockOSThread()
	status := os.NewFile(4, "status")
	fail := func(err error) int {
		fmt.Fprintf(status, "%v", err)
		fmt.Fprintf(os.Stderr, "kpaas vm init: %v\n", err)
		return 1
	}
	var spec initSpec
	b, err := os.ReadFile(specPath)
	if err != nil {
		return fail(fmt.Errorf("reading spec: %w", err))
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return fail(fmt.Errorf("parsing spec: %w", err))
	}
	if err := setupRoot(spec); err != nil {
		return fail(err)
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return fail(fmt.Errorf("setting hostname: %w", err))
	}
	gof := os.NewFile(3, "go")
	buf := make([]byte, 1)
	if n, _ := gof.Read(buf); n != 1 {
		return fail(fmt.Errorf("the CPI went away before the VM was ready"))
	}
	gof.Close()
	if spec.ContainerHost != nil {
		if err := mountCgroups(spec.ContainerHost.Cgroups); err != nil {
			return fail(err)
		}
	}
	syscall.CloseOnExec(4)
	env := []string{"PATH=/var/vcap/bosh/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "container=kpaas"}
	err = syscall.Exec(spec.Init, append([]string{spec.Init}, spec.Args...), env)
	return fail(fmt.Errorf("starting the VM's init %s: %w (is the agent in the stemcell?)", spec.Init, err))
}

func setupRoot(s initSpec) error {
	m := s.Merged
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", s.Lower, s.Upper, s.Work)
	if err := unix.Mount("overlay", m, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting the overlay root (%s): %w", opts, err)
	}
	for _, d := range []string{"proc", "dev", "sys", "tmp", ".oldroot"} {
		if err := os.MkdirAll(filepath.Join(m, d), 0o755); err != nil {
			return err
		}
	}
	type mnt struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}
	const nsd = unix.MS_NOSUID | unix.MS_NODEV
	mounts := []mnt{
		{"proc", "proc", "proc", nsd | unix.MS_NOEXEC, ""},
		{"tmpfs", "dev", "tmpfs", unix.MS_NOSUID, "mode=755,size=65536k"},
		{"sysfs", "sys", "sysfs", nsd | unix.MS_NOEXEC | unix.MS_RDONLY, ""},
	}
	for _, x := range mounts {
		if err := unix.Mount(x.src, filepath.Join(m, x.dst), x.fstype, x.flags, x.data); err != nil {
			return fmt.Errorf("mounting /%s: %w", x.dst, err)
		}
	}
	dev := filepath.Join(m, "dev")
	for _, n := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		if err := unix.Mknod(filepath.Join(dev, n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("creating /dev/%s: %w", n.name, err)
		}
		_ = os.Chmod(filepath.Join(dev, n.name), 0o666)
	}
	for _, d := range []string{"pts", "shm", "kpaas"} {
		if err := os.MkdirAll(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"); err != nil {
		return fmt.Errorf("mounting /dev/pts: %w", err)
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", nsd, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mounting /dev/shm: %w", err)
	}
	if err := unix.Mount(s.DevDisks, filepath.Join(dev, "kpaas"), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding the disks directory: %w", err)
	}
	for link, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		_ = os.Symlink(target, filepath.Join(dev, link))
	}
	if s.ContainerHost != nil {
		if err := setupContainerHost(m, *s.ContainerHost); err != nil {
			return err
		}
	}
	old := filepath.Join(m, ".oldroot")
	if err := unix.PivotRoot(m, old); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", m, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting the host root: %w", err)
	}
	_ = os.Remove("/.oldroot")
	return nil
}

// setupContainerHost adds, in the new root m before the pivot: /dev/kmsg
// (the kubelet's OOM watcher reads it), the host directory at
// /var/vcap/data, and the VM's sysctl files bound over the global /proc/sys
// entries so writes to them stay in the VM.
func setupContainerHost(m string, h containerHostSpec) error {
	kmsg := filepath.Join(m, "dev/kmsg")
	if err := unix.Mknod(kmsg, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 11))); err != nil {
		return fmt.Errorf("creating /dev/kmsg: %w", err)
	}
	data := filepath.Join(m, "var/vcap/data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return fmt.Errorf("creating /var/vcap/data: %w", err)
	}
	if err := unix.Mount(h.Data, data, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding %s at /var/vcap/data: %w", h.Data, err)
	}
	for path, file := range h.Sysctls {
		if err := unix.Mount(file, filepath.Join(m, path), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding the VM's %s over %s: %w", file, path, err)
		}
	}
	return nil
}

// mountCgroups enters a new cgroup namespace (PID 1 is in the VM's cgroups
// by now, so they become its root) and mounts each hierarchy the way the
// host does: a tmpfs at /sys/fs/cgroup with one cgroup mount per v1
// hierarchy (and cgroup2 at unified), or cgroup2 at /sys/fs/cgroup itself.
// The kubelet and runc then make their cgroups under the VM's.
func mountCgroups(hs []hierarchy) error {
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("entering a new cgroup namespace: %w", err)
	}
	const root = "/sys/fs/cgroup"
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if len(hs) == 1 && hs[0].Name == "" {
		if err := unix.Mount("cgroup2", root, "cgroup2", flags, ""); err != nil {
			return fmt.Errorf("mounting cgroup2 at %s: %w", root, err)
		}
		return delegateV2(root)
	}
	if err := unix.Mount("cgroup", root, "tmpfs", flags, "mode=755,size=64k"); err != nil {
		return fmt.Errorf("mounting a tmpfs at %s: %w", root, err)
	}
	for _, h := range hs {
		if h.Name == "" {
			continue
		}
		dir := filepath.Join(root, h.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("cgroup", dir, h.Type, flags, h.Opts); err != nil {
			return fmt.Errorf("mounting the %s hierarchy (%s) at %s: %w", h.Type, h.Opts, dir, err)
		}
		for _, link := range h.Links {
			if err := os.Symlink(h.Name, filepath.Join(root, link)); err != nil {
				return fmt.Errorf("linking %s to %s: %w", link, h.Name, err)
			}
		}
	}
	return nil
}

// delegateV2 lets the VM's cgroup2 root hand its controllers to the cgroups
// made under it (the kubelet's): a cgroup2 cgroup with processes in it cannot
// enable controllers for its children, so the VM's init moves into a child
// "init" first, as container runtimes do for nested containers. (Only on a
// cgroup2-only host; this machine kind is v1.)
func delegateV2(root string) error {
	if err := os.Mkdir(filepath.Join(root, "init"), 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("creating the VM's init cgroup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "init", "cgroup.procs"), []byte("0"), 0o644); err != nil {
		return fmt.Errorf("moving the VM's init into %s/init: %w", root, err)
	}
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return err
	}
	var enable []string
	for _, c := range strings.Fields(string(b)) {
		enable = append(enable, "+"+c)
	}
	if len(enable) > 0 {
		if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644); err != nil {
			return fmt.Errorf("enabling %s for the VM's cgroups: %w", strings.Join(enable, " "), err)
		}
	}
	return nil
}
