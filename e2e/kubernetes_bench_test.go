package e2e

import (
	"path/filepath"
	"testing"
	"time"
)

// The Speed figures of the Kubernetes release (issue 13). Each needs the
// release built (scripts/build-kubernetes.sh) and skips as TestKubernetes
// does. Run one at a time, e.g.
//
//	go test -run '^$' -bench BenchmarkKubernetes -benchtime 1x -timeout 60m -v ./e2e/
//
// The build itself (cold and warm Go cache) is timed by
// scripts/bench-kubernetes-build.sh.

// BenchmarkKubernetesUploadRelease: `kpaas upload-release releases/kubernetes`
// into a state that does not have it: the release created from its
// directory (the built binaries hashed and packed) and stored.
func BenchmarkKubernetesUploadRelease(b *testing.B) {
	k8sPrereqs(b)
	e := newEnv(b)
	dir := filepath.Join(moduleDir, "releases", "kubernetes")
	for b.Loop() {
		e.must("upload-release", dir)
		b.StopTimer()
		e.must("delete-release", "kubernetes", "--force", "-n")
		b.StartTimer()
	}
}

// BenchmarkKubernetesDeploy: the container platform (1 master, 2 workers
// and the support VMs) from nothing to every node Ready. The packages were
// compiled by an untimed first deploy (its time is logged); each round's
// delete-deployment is not timed.
func BenchmarkKubernetesDeploy(b *testing.B) {
	k := newK8s(b)
	k.setup(b)
	start := time.Now()
	k.deploy(b, 2)
	k.writeKubeconfig(b)
	k.waitNodes(b, k8sReadyWithin)
	b.Logf("first deploy (compiling the packages) -> all nodes Ready: %s", time.Since(start).Round(time.Millisecond))
	k.e.must("delete-deployment", "-d", k8sDeployment, "-n")
	for b.Loop() {
		k.deploy(b, 2)
		k.writeKubeconfig(b)
		k.waitNodes(b, k8sReadyWithin)
		b.StopTimer()
		k.e.must("delete-deployment", "-d", k8sDeployment, "-n")
		b.StartTimer()
	}
}

// BenchmarkKubernetesWorkerRecreate: `kpaas recreate` of one worker until
// its node (a new VM) is Ready again.
func BenchmarkKubernetesWorkerRecreate(b *testing.B) {
	k := newK8s(b)
	k.setup(b)
	k.deploy(b, 2)
	k.writeKubeconfig(b)
	k.waitNodes(b, k8sReadyWithin)
	for b.Loop() {
		k.e.must("recreate", "-d", k8sDeployment, k8sWorker+"/0", "-n")
		k.waitNodes(b, k8sReadyWithin)
	}
}
