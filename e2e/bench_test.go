package e2e

import (
	"testing"
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
