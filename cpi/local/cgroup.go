package local

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cgroups places VMs in cgroups for their cpu and ram limits and to find every
// process of a VM. It supports a unified v2 hierarchy and v1 controllers
// (this machine kind has v1 controllers with an empty v2 mount beside them).
// It never needs CAP_SYS_RESOURCE.
type cgroups struct {
	root  string   // /sys/fs/cgroup
	v2    bool     // unified hierarchy
	v1    []string // v1 controllers present: memory, cpu, pids
	group string   // parent group name
}

func detectCgroups(dir string) cgroups {
	h := sha1.Sum([]byte(dir))
	c := cgroups{root: "/sys/fs/cgroup", group: "kpaas-" + hex.EncodeToString(h[:4])}
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

// dirs are the VM's cgroup directories (one per v1 controller, or one in v2).
func (c cgroups) dirs(vm string) []string {
	if c.v2 {
		return []string{filepath.Join(c.root, c.group, vm)}
	}
	var out []string
	for _, ctrl := range c.v1 {
		out = append(out, filepath.Join(c.root, ctrl, c.group, vm))
	}
	return out
}

// limits of a VM from its vm_type cloud_properties.
type limits struct {
	CPU    float64 `json:"cpu,omitempty"` // CPUs
	MemMiB int     `json:"ram,omitempty"` // MiB
}

// create makes the VM's cgroups with its limits and moves pid into them.
func (c cgroups) create(vm string, pid int, lim limits) error {
	if c.v2 {
		_ = os.WriteFile(filepath.Join(c.root, "cgroup.subtree_control"), []byte("+cpu +memory +pids"), 0o644)
		if err := os.MkdirAll(filepath.Join(c.root, c.group), 0o755); err != nil {
			return fmt.Errorf("creating cgroup: %w", err)
		}
		_ = os.WriteFile(filepath.Join(c.root, c.group, "cgroup.subtree_control"), []byte("+cpu +memory +pids"), 0o644)
	}
	for _, d := range c.dirs(vm) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", d, err)
		}
		ctrl := filepath.Base(filepath.Dir(filepath.Dir(d)))
		var files map[string]string
		switch {
		case c.v2:
			files = map[string]string{}
			if lim.MemMiB > 0 {
				files["memory.max"] = strconv.FormatInt(int64(lim.MemMiB)<<20, 10)
			}
			if lim.CPU > 0 {
				files["cpu.max"] = fmt.Sprintf("%d 100000", int64(lim.CPU*100000))
			}
		case ctrl == "memory" && lim.MemMiB > 0:
			files = map[string]string{"memory.limit_in_bytes": strconv.FormatInt(int64(lim.MemMiB)<<20, 10)}
		case ctrl == "cpu" && lim.CPU > 0:
			files = map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": strconv.FormatInt(int64(lim.CPU*100000), 10)}
		}
		for f, v := range files {
			if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0o644); err != nil {
				return fmt.Errorf("setting %s=%s on cgroup %s: %w", f, v, d, err)
			}
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("moving pid %d into cgroup %s: %w", pid, d, err)
		}
	}
	return nil
}

// parents are the group directories holding the VMs' cgroups.
func (c cgroups) parents() []string {
	if c.v2 {
		return []string{filepath.Join(c.root, c.group)}
	}
	var out []string
	for _, ctrl := range c.v1 {
		out = append(out, filepath.Join(c.root, ctrl, c.group))
	}
	return out
}

// procs lists the pids in the VM's cgroups.
func (c cgroups) procs(vm string) []int {
	seen := map[int]bool{}
	var out []int
	for _, d := range c.dirs(vm) {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
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
	return out
}

// remove deletes the VM's cgroups once they are empty (waiting up to timeout).
func (c cgroups) remove(vm string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var errs []error
	for _, d := range c.dirs(vm) {
		for {
			err := os.Remove(d)
			if err == nil || os.IsNotExist(err) {
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
