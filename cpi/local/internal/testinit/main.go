// Command testinit stands in for kpaas-agent in the local cloud's tests: run
// as a VM's init, it reads the agent settings and answers one-line commands
// on TCP port 6868 (id, pid, hostname, stat PATH, mount DEV DIR, umount DIR,
// write PATH DATA, read PATH, ips, dial HOST:PORT).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
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
