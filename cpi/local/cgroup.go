package local

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cgroups places VMs in cgroups for their cpu and ram limits and to find every
// process of a VM. It supports a unified v2 hierarchy and v1 controllers
// (this machine kind has v1 controllers with a nearly empty v2 mount beside
// them). An ordinary VM gets a cgroup in the pids, memory and cpu
// controllers; a container host gets one in every hierarchy the host has, so
// that inside its cgroup namespace it is the root of each. It never needs
// CAP_SYS_RESOURCE.
type cgroups struct {
	root  string      // /sys/fs/cgroup
	v2    bool        // unified hierarchy only
	v1    []string    // v1 controllers an ordinary VM uses: memory, cpu, pids
	hier  []hierarchy // every cgroup filesystem mounted in root (for container hosts)
	group string      // parent group name
}

// hierarchy is one cgroup filesystem mounted at root/Name on the host.
type hierarchy struct {
	Name string `json:"name"` // directory in /sys/fs/cgroup ("" when cgroup2 is /sys/fs/cgroup itself)
	Type string `json:"type"` // cgroup or cgroup2
	// Opts are the mount options naming a v1 hierarchy: its controllers
	// and name=, as the host mounted it ("cpu,cpuacct", "none,name=systemd").
	Opts string `json:"opts,omitempty"`
	// Links are other names of it in /sys/fs/cgroup (cpu and cpuacct for cpu,cpuacct).
	Links []string `json:"links,omitempty"`
}

// controllers of a v1 hierarchy (not name=), to apply the limits.
func (h hierarchy) controllers() []string {
	var out []string
	for _, o := range strings.Split(h.Opts, ",") {
		if o != "" && o != "none" && !strings.HasPrefix(o, "name=") {
			out = append(out, o)
		}
	}
	return out
}

func detectCgroups(dir string) cgroups {
	h := sha1.Sum([]byte(dir))
	c := cgroups{root: "/sys/fs/cgroup", group: "kpaas-" + hex.EncodeToString(h[:4])}
	c.hier = readHierarchies("/proc/self/mountinfo", c.root)
	if _, err := os.Stat(filepath.Join(c.root, "cgroup.controllers")); err == nil {
		c.v2 = true
		return c
	}
	for _, ctrl := range []string{"pids", "memory", "cpu"} {
		if _, err := os.Stat(filepath.Join(c.root, ctrl, "cgroup.procs")); err == nil {
			c.v1 = append(c.v1, ctrl)
		}
	}
	return c
}

// readHierarchies lists the cgroup filesystems mounted at root or directly in
// it, from a mountinfo file, each hierarchy once, with the symlinks in root
// that name them.
func readHierarchies(mountinfo, root string) []hierarchy {
	fh, err := os.Open(mountinfo)
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []hierarchy
	seen := map[string]bool{} // superblocks (major:minor)
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		// 35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if sep < 5 || len(f) < sep+4 {
			continue
		}
		fstype, mp, super := f[sep+1], f[4], f[sep+3]
		if fstype != "cgroup" && fstype != "cgroup2" || seen[f[2]] {
			continue
		}
		var name string
		switch {
		case mp == root:
		case filepath.Dir(mp) == root:
			name = filepath.Base(mp)
		default:
			continue
		}
		seen[f[2]] = true
		h := hierarchy{Name: name, Type: fstype}
		if fstype == "cgroup" {
			var opts []string
			for _, o := range strings.Split(super, ",") {
				switch {
				case o == "rw" || o == "ro" || o == "xattr" || o == "noprefix" || o == "clone_children" ||
					o == "cpuset_v2_mode" || o == "favordynmods" || strings.HasPrefix(o, "release_agent="):
				default:
					opts = append(opts, o)
				}
			}
			if len(opts) == 1 && strings.HasPrefix(opts[0], "name=") {
				opts = append([]string{"none"}, opts...)
			}
			h.Opts = strings.Join(opts, ",")
		}
		out = append(out, h)
	}
	// cpu -> cpu,cpuacct and the like, as the host has them, and one per
	// controller of a combined hierarchy.
	for i := range out {
		h := &out[i]
		if h.Name == "" {
			continue
		}
		for _, ctrl := range h.controllers() {
			if ctrl != h.Name && !slices.Contains(h.Links, ctrl) && !hasHierarchy(out, ctrl) {
				h.Links = append(h.Links, ctrl)
			}
		}
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(filepath.Join(root, e.Name()))
		if err != nil {
			continue
		}
		for i := range out {
			if out[i].Name != "" && filepath.Base(target) == out[i].Name && !slices.Contains(out[i].Links, e.Name()) {
				out[i].Links = append(out[i].Links, e.Name())
			}
		}
	}
	return out
}

func hasHierarchy(hs []hierarchy, name string) bool {
	return slices.ContainsFunc(hs, func(h hierarchy) bool { return h.Name == name })
}

// cgdir is one cgroup directory of a VM.
type cgdir struct {
	path  string
	ctrls []string // v1 controllers of its hierarchy
	v2    bool     // in a cgroup2 hierarchy
}

// vmDirs are the VM's cgroup directories: one per v1 controller an ordinary
// VM uses (or one in v2); with every, one in each hierarchy of the host.
func (c cgroups) vmDirs(vm string, every bool) []cgdir {
	if c.v2 && !every {
		return []cgdir{{path: filepath.Join(c.root, c.group, vm), v2: true}}
	}
	var out []cgdir
	if every && len(c.hier) > 0 {
		for _, h := range c.hier {
			out = append(out, cgdir{path: filepath.Join(c.root, h.Name, c.group, vm), ctrls: h.controllers(), v2: h.Type == "cgroup2"})
		}
		return out
	}
	for _, ctrl := range c.v1 {
		out = append(out, cgdir{path: filepath.Join(c.root, ctrl, c.group, vm), ctrls: []string{ctrl}})
	}
	return out
}

// dirs are every directory a VM of either kind may have, for finding its
// processes and removing it.
func (c cgroups) dirs(vm string) []string {
	var out []string
	for _, every := range []bool{false, true} {
		for _, d := range c.vmDirs(vm, every) {
			if !slices.Contains(out, d.path) {
				out = append(out, d.path)
			}
		}
	}
	return out
}

// limits of a VM from its vm_type cloud_properties.
type limits struct {
	CPU    float64 `json:"cpu,omitempty"` // CPUs
	MemMiB int     `json:"ram,omitempty"` // MiB
}

// create makes the VM's cgroups with its limits and moves pid into them;
// with every, in every hierarchy of the host (a container host).
func (c cgroups) create(vm string, pid int, lim limits, every bool) error {
	if c.v2 {
		_ = os.WriteFile(filepath.Join(c.root, "cgroup.subtree_control"), []byte("+cpu +memory +pids"), 0o644)
		if err := os.MkdirAll(filepath.Join(c.root, c.group), 0o755); err != nil {
			return fmt.Errorf("creating cgroup: %w", err)
		}
		_ = os.WriteFile(filepath.Join(c.root, c.group, "cgroup.subtree_control"), []byte("+cpu +memory +pids"), 0o644)
	}
	for _, d := range c.vmDirs(vm, every) {
		for _, p := range []string{filepath.Dir(d.path), d.path} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("creating cgroup %s: %w", p, err)
			}
			// A new v1 cpuset takes no process until it has CPUs and memory nodes.
			if slices.Contains(d.ctrls, "cpuset") {
				if err := inheritCpuset(p); err != nil {
					return err
				}
			}
		}
		files := map[string]string{}
		switch {
		case d.v2 && c.v2:
			if lim.MemMiB > 0 {
				files["memory.max"] = strconv.FormatInt(int64(lim.MemMiB)<<20, 10)
			}
			if lim.CPU > 0 {
				files["cpu.max"] = fmt.Sprintf("%d 100000", int64(lim.CPU*100000))
			}
		case d.v2:
		default:
			if slices.Contains(d.ctrls, "memory") && lim.MemMiB > 0 {
				files["memory.limit_in_bytes"] = strconv.FormatInt(int64(lim.MemMiB)<<20, 10)
			}
			if slices.Contains(d.ctrls, "cpu") && lim.CPU > 0 {
				files["cpu.cfs_period_us"] = "100000"
				files["cpu.cfs_quota_us"] = strconv.FormatInt(int64(lim.CPU*100000), 10)
			}
		}
		for _, f := range []string{"memory.max", "cpu.max", "memory.limit_in_bytes", "cpu.cfs_period_us", "cpu.cfs_quota_us"} {
			v, ok := files[f]
			if !ok {
				continue
			}
			if err := os.WriteFile(filepath.Join(d.path, f), []byte(v), 0o644); err != nil {
				return fmt.Errorf("setting %s=%s on cgroup %s: %w", f, v, d.path, err)
			}
		}
		if err := os.WriteFile(filepath.Join(d.path, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("moving pid %d into cgroup %s: %w", pid, d.path, err)
		}
	}
	return nil
}

// inheritCpuset copies cpuset.cpus and cpuset.mems from the parent when a
// cgroup has none yet.
func inheritCpuset(dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || strings.TrimSpace(string(b)) != "" {
			continue
		}
		v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			return fmt.Errorf("reading %s of the parent of cgroup %s: %w", f, dir, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
			return fmt.Errorf("setting %s of cgroup %s from its parent: %w", f, dir, err)
		}
	}
	return nil
}

// parents are the group directories holding the VMs' cgroups.
func (c cgroups) parents() []string {
	var out []string
	for _, d := range c.dirs("x") {
		out = append(out, filepath.Dir(d))
	}
	return out
}

// subtree lists dir and every cgroup below it, children before parents.
func subtree(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	slices.Reverse(out)
	return out
}

// procs lists the pids in the VM's cgroups and every cgroup nested in them
// (a container host's kubepods, runc's containers).
func (c cgroups) procs(vm string) []int {
	seen := map[int]bool{}
	var out []int
	for _, d := range c.dirs(vm) {
		for _, sub := range subtree(d) {
			b, err := os.ReadFile(filepath.Join(sub, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if p, err := strconv.Atoi(f); err == nil && !seen[p] {
					seen[p] = true
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// thaw unfreezes the cgroups nested in a VM's freezer cgroup (runc freezes
// containers while it updates them; a frozen process does not die).
func (c cgroups) thaw(vm string) {
	for _, d := range c.dirs(vm) {
		for _, sub := range subtree(d) {
			if b, err := os.ReadFile(filepath.Join(sub, "freezer.state")); err == nil && strings.TrimSpace(string(b)) != "THAWED" {
				_ = os.WriteFile(filepath.Join(sub, "freezer.state"), []byte("THAWED"), 0o644)
			}
			if b, err := os.ReadFile(filepath.Join(sub, "cgroup.freeze")); err == nil && strings.TrimSpace(string(b)) == "1" {
				_ = os.WriteFile(filepath.Join(sub, "cgroup.freeze"), []byte("0"), 0o644)
			}
		}
	}
}

// remove deletes the VM's cgroups, and every cgroup made inside them,
// depth-first, once they are empty (waiting up to timeout).
func (c cgroups) remove(vm string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var errs []error
	for _, d := range c.dirs(vm) {
		for {
			var err error
			for _, sub := range subtree(d) {
				if e := os.Remove(sub); e != nil && !os.IsNotExist(e) {
					err = e
				}
			}
			if _, serr := os.Stat(d); os.IsNotExist(serr) {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		_ = os.Remove(filepath.Dir(d)) // the state dir's group, once its last VM is gone
	}
	return errors.Join(errs...)
}
