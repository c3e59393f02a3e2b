package agent

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

const clockTicks = 100 // USER_HZ on Linux

// procStat is what get_state needs about one process.
type procStat struct {
	cpuTicks uint64 // utime+stime
	rssKB    int64
	zombie   bool
}

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return procStat{}, false
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return procStat{cpuTicks: ut + st, rssKB: rss * int64(os.Getpagesize()) / 1024, zombie: f[0] == "Z"}, true
}

// pidAlive reports whether pid is a live (non-zombie) process.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && err != syscall.EPERM {
		return false
	}
	st, ok := readProcStat(pid)
	return ok && !st.zombie
}

// memInfo reads /proc/meminfo (kB values).
func memInfo() map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		out[k] = n
	}
	return out
}

// cpuTimes is the aggregate line of /proc/stat.
type cpuTimes struct{ user, nice, sys, idle, iowait, irq, softirq, steal uint64 }

func (c cpuTimes) total() uint64 {
	return c.user + c.nice + c.sys + c.idle + c.iowait + c.irq + c.softirq + c.steal
}

func readCPUTimes() (cpuTimes, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, false
	}
	n := make([]uint64, 8)
	for i := range n {
		n[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	return cpuTimes{n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]}, true
}
