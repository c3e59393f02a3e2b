// Command testinit stands in for kpaas-agent in the local cloud's tests: run
// as a VM's init, it reads the agent settings and answers one-line commands
// on TCP port 6868 (id, pid, hostname, stat PATH, mount DEV DIR, umount DIR,
// write PATH DATA, read PATH, ips, dial HOST:PORT, and for container hosts:
// fstype PATH, mkdir PATH, lines PATH (newlines as ';'), devno PATH, sh
// COMMAND LINE (run by busybox sh; output with newlines as ';')).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

type settings struct {
	AgentID string `json:"agent_id"`
}

func main() {
	var s settings
	if b, err := os.ReadFile("/var/vcap/bosh/settings.json"); err == nil {
		_ = json.Unmarshal(b, &s)
	}
	ln, err := net.Listen("tcp", ":6868")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c, s)
	}
}

func serve(c net.Conn, s settings) {
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	f := strings.Fields(line)
	if len(f) == 0 {
		f = []string{"id"}
	}
	reply := func(format string, args ...any) { fmt.Fprintf(c, format+"\n", args...) }
	switch f[0] {
	case "id":
		reply("%s", s.AgentID)
	case "pid":
		reply("%d", os.Getpid())
	case "resolve":
		addrs, err := net.LookupHost(f[1])
		if err != nil {
			reply("error: %v", err)
			return
		}
		reply("%s", strings.Join(addrs, ","))
	case "hostname":
		h, _ := os.Hostname()
		reply("%s", h)
	case "stat":
		fi, err := os.Stat(f[1])
		switch {
		case err != nil:
			reply("missing")
		case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
			reply("block")
		default:
			reply("other")
		}
	case "mount":
		_ = os.MkdirAll(f[2], 0o755)
		if err := syscall.Mount(f[1], f[2], "ext4", 0, ""); err != nil {
			reply("error: %v", err)
			return
		}
		reply("ok")
	case "umount":
		if err := syscall.Unmount(f[1], 0); err != nil {
			reply("error: %v", err)
			return
		}
		reply("ok")
	case "write":
		if err := os.WriteFile(f[1], []byte(strings.Join(f[2:], " ")), 0o644); err != nil {
			reply("error: %v", err)
			return
		}
		reply("ok")
	case "read":
		b, err := os.ReadFile(f[1])
		if err != nil {
			reply("error: %v", err)
			return
		}
		reply("%s", b)
	case "dial":
		d, err := net.DialTimeout("tcp", f[1], 2*time.Second)
		if err != nil {
			reply("error: %v", err)
			return
		}
		d.Close()
		reply("ok")
	case "fstype":
		var st syscall.Statfs_t
		if err := syscall.Statfs(f[1], &st); err != nil {
			reply("missing")
			return
		}
		names := map[int64]string{0xEF53: "ext4", 0x794c7630: "overlay", 0x01021994: "tmpfs", 0x27e0eb: "cgroup",
			0x63677270: "cgroup2", 0x9fa0: "proc", 0x62656572: "sysfs"}
		if n, ok := names[int64(st.Type)]; ok {
			reply("%s", n)
		} else {
			reply("0x%x", st.Type)
		}
	case "mkdir":
		if err := os.Mkdir(f[1], 0o755); err != nil {
			reply("error: %v", err)
			return
		}
		reply("ok")
	case "lines":
		b, err := os.ReadFile(f[1])
		if err != nil {
			reply("error: %v", err)
			return
		}
		reply("%s", strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", ";"))
	case "devno":
		var st syscall.Stat_t
		if err := syscall.Stat(f[1], &st); err != nil {
			reply("missing")
			return
		}
		kind := "b"
		if st.Mode&syscall.S_IFMT == syscall.S_IFCHR {
			kind = "c"
		}
		reply("%s %d:%d", kind, (st.Rdev>>8)&0xfff, st.Rdev&0xff|(st.Rdev>>12)&0xfff00)
	case "sh":
		cmd := exec.Command("/bin/busybox", "sh", "-c", strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "sh")))
		out, err := cmd.CombinedOutput()
		res := strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", ";")
		if err != nil {
			res += fmt.Sprintf(" (error: %v)", err)
		}
		reply("%s", res)
	case "ips":
		addrs, _ := net.InterfaceAddrs()
		var out []string
		for _, a := range addrs {
			out = append(out, a.String())
		}
		reply("%s", strings.Join(out, ","))
	default:
		reply("unknown command %q", f[0])
	}
}
