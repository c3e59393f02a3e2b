package agent

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// vitals reads the VM's load, CPU (since the previous call), memory, swap
// and the use of the system, ephemeral and persistent disks.
func (a *Agent) vitals() *protocol.Vitals {
	v := &protocol.Vitals{Load: []string{"0.00", "0.00", "0.00"}, Disk: map[string]protocol.VitalsDisk{}}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			v.Load = f[:3]
		}
	}
	if now, ok := readCPUTimes(); ok {
		a.mu.Lock()
		prev := a.cpuPrev
		a.cpuPrev = now
		a.mu.Unlock()
		dt := float64(now.total() - prev.total())
		if dt > 0 {
			pct := func(x, y uint64) string { return fmt.Sprintf("%.1f", float64(x-y)*100/dt) }
			v.CPU = protocol.VitalsCPU{User: pct(now.user+now.nice, prev.user+prev.nice), Sys: pct(now.sys+now.irq+now.softirq, prev.sys+prev.irq+prev.softirq), Wait: pct(now.iowait, prev.iowait)}
		}
	}
	mi := memInfo()
	if total := mi["MemTotal"]; total > 0 {
		used := total - mi["MemAvailable"]
		v.Mem = protocol.VitalsMem{KB: fmt.Sprint(used), Percent: fmt.Sprintf("%.0f", float64(used)*100/float64(total))}
	}
	if total := mi["SwapTotal"]; total > 0 {
		used := total - mi["SwapFree"]
		v.Swap = protocol.VitalsMem{KB: fmt.Sprint(used), Percent: fmt.Sprintf("%.0f", float64(used)*100/float64(total))}
	} else {
		v.Swap = protocol.VitalsMem{KB: "0", Percent: "0"}
	}
	if d, ok := diskUse(a.layout.Path("/")); ok {
		v.Disk["system"] = d
	}
	if d, ok := diskUse(a.layout.Data()); ok && a.isMountPoint(a.layout.Data()) {
		v.Disk["ephemeral"] = d
	}
	if d, ok := diskUse(a.layout.Store()); ok && a.isMountPoint(a.layout.Store()) {
		v.Disk["persistent"] = d
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		var up float64
		fmt.Sscanf(string(b), "%f", &up)
		v.Uptime.Secs = int64(up)
	}
	return v
}

func diskUse(path string) (protocol.VitalsDisk, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil || st.Blocks == 0 {
		return protocol.VitalsDisk{}, false
	}
	used := float64(st.Blocks-st.Bfree) * 100 / float64(st.Blocks-st.Bfree+st.Bavail)
	d := protocol.VitalsDisk{Percent: fmt.Sprintf("%.0f", used), InodePercent: "0"}
	if st.Files > 0 {
		d.InodePercent = fmt.Sprintf("%.0f", float64(st.Files-st.Ffree)*100/float64(st.Files))
	}
	return d, true
}

// isMountPoint reports whether path is a mount point (its device differs
// from its parent's).
func (a *Agent) isMountPoint(path string) bool {
	var st, pst syscall.Stat_t
	if syscall.Stat(path, &st) != nil || syscall.Stat(path+"/..", &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev
}

var bootTime = time.Now()
