package local_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/local"
)

// kubeletBinaries finds a kubelet and containerd (with its runc shim and
// ctr): $KPAAS_TEST_KUBELET and $KPAAS_TEST_CONTAINERD_DIR, else what the
// kubernetes release build leaves in releases/kubernetes/src/*/bin.
func kubeletBinaries(t *testing.T) (kubelet, containerdDir string) {
	kubelet = os.Getenv("KPAAS_TEST_KUBELET")
	if kubelet == "" {
		kubelet = "../../releases/kubernetes/src/kubelet/bin/kubelet"
	}
	containerdDir = os.Getenv("KPAAS_TEST_CONTAINERD_DIR")
	if containerdDir == "" {
		containerdDir = "../../releases/kubernetes/src/containerd/bin"
	}
	for _, f := range []string{kubelet, filepath.Join(containerdDir, "containerd"), filepath.Join(containerdDir, "containerd-shim-runc-v2"), filepath.Join(containerdDir, "ctr")} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("no %s: build the kubernetes release, or set KPAAS_TEST_KUBELET and KPAAS_TEST_CONTAINERD_DIR", f)
		}
	}
	return kubelet, containerdDir
}

// TestKubeletRunsAPodInAContainerHost runs a real kubelet (standalone, a
// static pod) with containerd and runc in a container_host VM: the pod's
// cgroups, with its memory limit, appear under the VM's on the host, the
// kubelet's sysctl writes stay in the VM, and delete_vm leaves nothing.
func TestKubeletRunsAPodInAContainerHost(t *testing.T) {
	kubelet, containerdDir := kubeletBinaries(t)
	l := newCloud(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is not installed (apt-get install runc; .ci/setup-local-cloud.sh does)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err != nil {
		t.Skip("this test checks a cgroup v1 host's memory hierarchy; this host has none")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	st, err := l.CreateStemcell(ctx, stemcellImage(t), nil)
	require.NoError(t, err)
	hostOvercommit, hostPanic := readSysctl(t, "vm/overcommit_memory"), readSysctl(t, "kernel/panic")
	vm, _, err := l.CreateVM(ctx, "node", st, cpi.Props{local.ContainerHostProperty: true, "ram": 1024}, cpi.Networks{"n": net214(5, 10)}, nil, nil)
	require.NoError(t, err)
	const ip = "10.214.5.10"
	_, err = waitAnswer(ctx, ip, "id")
	require.NoError(t, err)

	// The binaries go to /var/vcap/data/bin; the shared libraries the
	// dynamic ones need (the tiny stemcell has no libc) to their paths.
	data := filepath.Join(l.Dir(), "vms", string(vm), "data")
	bins := []string{kubelet, runc}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr"} {
		bins = append(bins, filepath.Join(containerdDir, b))
	}
	for _, b := range bins {
		copyHostFile(t, b, filepath.Join(data, "bin", filepath.Base(b)), 0o755)
		out, _ := exec.Command("ldd", b).Output() // fails for static binaries
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "/") {
				copyHostFile(t, f, filepath.Join(data, "libs", f), 0o755)
			}
		}
	}
	// The image: busybox in one layer, as a docker archive.
	img := t.TempDir()
	copyHostFile(t, "/bin/busybox", filepath.Join(img, "l/bin/busybox"), 0o755)
	script := `set -e; cd "$1"; tar -C l -cf layer.tar bin; sha=$(sha256sum layer.tar | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/busybox","sleep","3600"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' $sha > config.json
printf '[{"Config":"config.json","RepoTags":["kpaas.local/busybox:1"],"Layers":["layer.tar"]}]' > manifest.json
tar -cf "$2" manifest.json config.json layer.tar`
	out, err := exec.Command("/bin/sh", "-c", script, "sh", img, filepath.Join(data, "image.tar")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	files := map[string]string{
		"etc/containerd.toml": `version = 2
root = "/var/vcap/data/containerd/root"
state = "/var/vcap/data/containerd/state"
[grpc]
  address = "/var/vcap/data/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "kpaas.local/busybox:1"
  restrict_oom_score_adj = true
`,
		"etc/kubelet.yaml": `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///var/vcap/data/containerd/containerd.sock
staticPodPath: /var/vcap/data/manifests
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
address: 127.0.0.1
readOnlyPort: 0
failSwapOn: false
protectKernelDefaults: false
`,
		"manifests/probe.yaml": `apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: default}
spec:
  hostNetwork: true
  containers:
  - name: c
    image: kpaas.local/busybox:1
    imagePullPolicy: Never
    command: ["/bin/busybox", "sleep", "3600"]
    resources: {limits: {memory: 32Mi}}
`,
	}
	for p, c := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(data, p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(data, p), []byte(c), 0o644))
	}
	sh := func(cmd string) string {
		out, err := ask(ctx, ip, "sh export PATH=/var/vcap/data/bin:$PATH; "+cmd)
		require.NoError(t, err, cmd)
		return out
	}
	sh("if [ -d /var/vcap/data/libs ]; then cp -a /var/vcap/data/libs/. /; fi; mkdir -p /run /var/lib /var/log")
	sh("(containerd --config /var/vcap/data/etc/containerd.toml > /var/vcap/data/containerd.log 2>&1 </dev/null &)")
	ctrImport := "ctr -n k8s.io --address /var/vcap/data/containerd/containerd.sock images import /var/vcap/data/image.tar 2>&1"
	// containerd 1.6 prints "unpacking ... done", 2.x "... saved": both name the image
	require.Eventually(t, func() bool {
		out := sh(ctrImport + "; echo rc=$?")
		return strings.Contains(out, "rc=0") && strings.Contains(out, "kpaas.local/busybox:1")
	}, 30*time.Second, 200*time.Millisecond,
		"containerd imports the image (log: %s)", filepath.Join(data, "containerd.log"))
	sh("(kubelet --config /var/vcap/data/etc/kubelet.yaml --root-dir /var/vcap/data/kubelet --hostname-override node > /var/vcap/data/kubelet.log 2>&1 </dev/null &)")

	var podCgroups []string
	ok := assert.Eventually(t, func() bool {
		out, _ := exec.Command("/bin/sh", "-c", "grep -l '^33554432$' /sys/fs/cgroup/memory/kpaas-*/"+string(vm)+"/kubepods/*/pod*/*/memory.limit_in_bytes").Output()
		podCgroups = strings.Fields(string(out))
		return len(podCgroups) == 1
	}, 90*time.Second, 250*time.Millisecond, "the pod's container runs with its 32Mi limit in a cgroup under the VM's (kubelet log: %s)", filepath.Join(data, "kubelet.log"))
	if !ok {
		b, _ := os.ReadFile(filepath.Join(data, "kubelet.log"))
		lines := strings.Split(string(b), "\n")
		t.Logf("kubelet log tail:\n%s", strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
	procs, _ := os.ReadFile(filepath.Join(filepath.Dir(podCgroups[0]), "cgroup.procs"))
	assert.NotEmpty(t, strings.TrimSpace(string(procs)), "the container's process is in it")
	assert.Equal(t, "ok", sh("wget -q -O - http://127.0.0.1:10248/healthz"), "the kubelet is healthy")
	assert.Equal(t, "1", sh("cat /proc/sys/vm/overcommit_memory"), "the kubelet set vm.overcommit_memory in the VM")
	assert.Equal(t, "10", sh("cat /proc/sys/kernel/panic"), "and kernel.panic")
	assert.Equal(t, hostOvercommit, readSysctl(t, "vm/overcommit_memory"), "not on the host")
	assert.Equal(t, hostPanic, readSysctl(t, "kernel/panic"))

	require.NoError(t, l.DeleteVM(ctx, vm))
	for _, h := range hostHierarchies(t) {
		assert.Empty(t, vmCgroup(h, vm), "delete_vm removes the kubelet's cgroups in %s", h)
	}
}
