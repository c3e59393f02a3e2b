package e2e

import (
	"testing"
	"time"
)

// BenchmarkDeploy20Instances: a 20-instance deployment from nothing to all
// running on the local cloud (the delete after each round is not timed).
func BenchmarkDeploy20Instances(b *testing.B) {
	e := newEnv(b)
	e.setup()
	m := e.write("hello.yml", helloManifest)
	for b.Loop() {
		e.must("deploy", m, "-v", "instances=20", "-v", "greeting=hi", "-n", "--max-in-flight", "10")
		b.StopTimer()
		e.must("delete-deployment", "-d", "hello", "-n")
		b.StartTimer()
	}
}

// BenchmarkNoopRedeploy: deploying a 20-instance deployment again with nothing changed.
func BenchmarkNoopRedeploy(b *testing.B) {
	e := newEnv(b)
	e.setup()
	m := e.write("hello.yml", helloManifest)
	e.must("deploy", m, "-v", "instances=20", "-v", "greeting=hi", "-n", "--max-in-flight", "10")
	for b.Loop() {
		e.must("deploy", m, "-v", "instances=20", "-v", "greeting=hi", "-n")
	}
}

// BenchmarkKilledVMReplaced: `kpaas monitor` with default settings (10 s
// interval, 30 s agent timeout) watching a one-instance deployment with a
// persistent disk; each round kills the VM's processes behind kpaas's back
// and times until the monitor reports the replacement done (the engine
// waited for all jobs running). Reports seconds per replacement.
func BenchmarkKilledVMReplaced(b *testing.B) {
	needNsenter(b)
	e := newEnv(b)
	e.setup()
	e.must("deploy", e.write("db.yml", dbManifest), "-n")
	m := startMonitor(b, e)
	m.until(b, "leader", 10*time.Second)
	for b.Loop() {
		b.StopTimer()
		vms := vmDirs(b, e)
		b.StartTimer()
		killVM(b, e, vms[0])
		m.until(b, "remediated", 120*time.Second)
	}
}
