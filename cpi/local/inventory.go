package local

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// Inventory lists everything the local cloud holds, in its state directory
// and on the host: VMs, disks, stemcells, snapshots, and the host resources
// they use (mounts, links, cgroups, loop devices, processes). Leak checks
// compare it before and after.
func (l *Local) Inventory() ([]string, error) {
	var out []string
	for _, sub := range []string{"vms", "disks", "stemcells", "snapshots"} {
		ents, err := os.ReadDir(filepath.Join(l.cfg.Dir, sub))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			out = append(out, sub+"/"+e.Name())
		}
	}
	// Mounts on the host under the state directory.
	if fh, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 4 && (strings.HasPrefix(f[4], l.cfg.Dir+"/") || strings.HasPrefix(f[3], l.cfg.Dir+"/")) {
				out = append(out, "mount"+f[4])
			}
		}
		fh.Close()
	}
	// Links: VM veths and the bridges this cloud created.
	bridges, _ := l.loadBridges()
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	vms, _ := l.listVMs()
	for _, v := range vms {
		for _, n := range v.NICs {
			mine[n.HostVeth] = true
		}
	}
	bridgeIdx := map[int]bool{}
	for _, ln := range links {
		if _, ok := bridges[ln.Attrs().Name]; ok {
			bridgeIdx[ln.Attrs().Index] = true
		}
	}
	for _, ln := range links {
		a := ln.Attrs()
		// This cloud's bridges, its VMs' veths, and any veth left on its bridges.
		if _, ok := bridges[a.Name]; ok || mine[a.Name] || (a.MasterIndex != 0 && bridgeIdx[a.MasterIndex]) {
			out = append(out, "link/"+a.Name)
		}
	}
	for name := range bridges {
		out = append(out, "bridge-record/"+name)
	}
	// cgroups and their processes.
	for _, p := range l.cg.parents() {
		if _, err := os.Stat(p); err == nil {
			out = append(out, "cgroup-group"+p)
		}
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, "cgroup/"+filepath.Base(filepath.Dir(p))+"/"+e.Name())
			}
		}
	}
	for _, v := range vms {
		for _, pid := range l.cg.procs(string(v.CID)) {
			out = append(out, "process/"+string(v.CID)+"/"+strconv.Itoa(pid))
		}
	}
	// Loop devices backed by files here.
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, bf := range loops {
		b, _ := os.ReadFile(bf)
		if strings.HasPrefix(strings.TrimSpace(string(b)), l.cfg.Dir+"/") {
			out = append(out, "loop/"+filepath.Base(filepath.Dir(filepath.Dir(bf))))
		}
	}
	slices.Sort(out)
	return out, nil
}
