package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkKubernetesBuild: scripts/build-kubernetes.sh (the release's
// binaries from the Go module proxy, the images, the Debian .debs).
//   - uptodate: nothing changed since the last build: the script checks and
//     does nothing;
//   - warm: FORCE=1 with the machine's Go build cache (compiled packages
//     reused: mostly linking and the version checks);
//   - cold: FORCE=1 with an empty GOCACHE (the module cache stays: the
//     downloads are not timed); about 6 minutes and 4 GB of temporary
//     cache on 2 cores, so only with KPAAS_BENCH_K8S_COLD=1.
//
// The first round builds the binaries if they are absent (not timed).
func BenchmarkKubernetesBuild(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("scripts/build-kubernetes.sh fetches Debian packages with apt (root)")
	}
	build := func(b *testing.B, env ...string) {
		cmd := exec.Command("sh", "scripts/build-kubernetes.sh")
		cmd.Dir = moduleDir
		cmd.Env = append(os.Environ(), append([]string{"GO=" + filepath.Join(runtime.GOROOT(), "bin", "go")}, env...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(b, err, "%s", out)
	}
	build(b)
	b.Run("uptodate", func(b *testing.B) {
		for b.Loop() {
			build(b)
		}
	})
	b.Run("warm", func(b *testing.B) {
		for b.Loop() {
			build(b, "FORCE=1")
		}
	})
	b.Run("cold", func(b *testing.B) {
		if os.Getenv("KPAAS_BENCH_K8S_COLD") != "1" {
			b.Skip("set KPAAS_BENCH_K8S_COLD=1 to time a build from an empty Go build cache (~6 min, 4 GB)")
		}
		for b.Loop() {
			b.StopTimer()
			cache := b.TempDir()
			b.StartTimer()
			build(b, "FORCE=1", "GOCACHE="+cache)
			b.StopTimer()
			require.NoError(b, os.RemoveAll(cache))
			b.StartTimer()
		}
	})
}

// The Speed figures of the Kubernetes release (issue 13). Each needs the
// release built (scripts/build-kubernetes.sh) and skips as TestKubernetes
// does. Run one at a time, e.g.
//
//	go test -run '^$' -bench BenchmarkKubernetes -benchtime 1x -timeout 60m -v ./e2e/
//
// BenchmarkKubernetesBuild times scripts/build-kubernetes.sh.

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
		var rels []struct{ Name, Version string }
		require.NoError(b, json.Unmarshal([]byte(e.must("releases", "--json").stdout), &rels))
		for _, r := range rels {
			e.must("delete-release", r.Name+"/"+r.Version, "--force", "-n")
		}
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

// BenchmarkKubernetesKilledWorkerReplaced: `kpaas monitor` with its default
// settings (10 s interval, 30 s agent timeout) watching the cluster; each
// round kills worker/0's VM (its PID 1) behind kpaas's back and times until
// its node is Ready again on the new VM (a heartbeat from the new kubelet).
func BenchmarkKubernetesKilledWorkerReplaced(b *testing.B) {
	k := newK8s(b)
	k.setup(b)
	k.deploy(b, 2)
	k.writeKubeconfig(b)
	k.waitNodes(b, k8sReadyWithin)
	m := startMonitor(b, k.e)
	m.until(b, "leader", 15*time.Second)
	for b.Loop() {
		b.StopTimer()
		victim := k.instances(b, k8sWorker)[0]
		b.StartTimer()
		killVM(b, k.e, victim.VMCID)
		m.until(b, "remediated", 5*time.Minute)
		k.waitNodes(b, k8sReadyWithin)
	}
}
