package main

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// childEnv marks the agent process started by the init reaper.
const childEnv = "KPAAS_AGENT_INIT_CHILD"

// runAsInit is used when the agent is PID 1 (a container-style VM): orphaned
// daemons (monit start programs, shells' background jobs) are re-parented to
// PID 1 and must be reaped, which the agent cannot do without stealing its
// own children's exit statuses. So PID 1 becomes a small reaper that runs
// the agent as its child, forwards signals to it, reaps every orphan, and
// exits with the agent's status. It returns false when not PID 1.
func runAsInit() bool {
	if os.Getpid() != 1 || os.Getenv(childEnv) != "" {
		return false
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGCHLD)
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		os.Stderr.WriteString("kpaas-agent init: starting the agent: " + err.Error() + "\n")
		os.Exit(1)
	}
	child := cmd.Process.Pid
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			syscall.Kill(child, sig.(syscall.Signal))
			continue
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err != nil || pid <= 0 {
				break
			}
			if pid == child {
				code := ws.ExitStatus()
				if ws.Signaled() {
					code = 128 + int(ws.Signal())
				}
				os.Exit(code)
			}
		}
	}
	return true
}
