package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
	"gopkg.in/yaml.v3"
)

// The Kubernetes stage: releases/kubernetes built by scripts/build-kubernetes.sh,
// deployed with manifests/k-paas/kubernetes (the container platform: the
// cluster beside the support VMs) on the local cloud.
const (
	k8sDeployment  = "k8s-e2e"
	k8sMaster      = "master"
	k8sWorker      = "worker"
	k8sEchoImage   = "kpaas.local/echo:1"
	k8sBuildHint   = "run scripts/build-kubernetes.sh (or make kubernetes-release; ~6 min from a cold Go cache) first"
	k8sReadyWithin = 5 * time.Minute
	k8sManifestDir = "manifests/k-paas/kubernetes"
	k8sAdminVar    = "kubernetes_admin"
)

// k8sPrereqs skips (or, for missing binaries under CI=true, fails) when the
// Kubernetes stage cannot run here; it returns the built kubectl.
func k8sPrereqs(t testing.TB) string {
	if os.Geteuid() != 0 {
		t.Skip("the Kubernetes e2e stage needs root (namespaces, bridges, cgroups, loop devices)")
	}
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	if out, err := exec.Command("unshare", "--net", "--mount", "--pid", "--uts", "--ipc", "--cgroup", "--fork", "true").CombinedOutput(); err != nil {
		t.Skipf("Linux namespaces are unavailable here (unshare: %v %s)", err, bytes.TrimSpace(out))
	}
	needNsenter(t)
	require.NoError(t, buildErr)
	rel := filepath.Join(moduleDir, "releases", "kubernetes")
	for _, bin := range []string{"kube-apiserver/bin/kube-apiserver", "kubelet/bin/kubelet", "kubectl/bin/kubectl"} {
		if !exists(filepath.Join(rel, "src", bin)) {
			msg := fmt.Sprintf("the Kubernetes binaries are not built (no releases/kubernetes/src/%s): %s", bin, k8sBuildHint)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg + " (CI=true: .ci/setup-kubernetes.sh should have built them)")
			}
			t.Skip(msg)
		}
	}
	for _, f := range []string{k8sManifestDir + "/kubernetes.yml", k8sManifestDir + "/local/cloud-config.yml", k8sManifestDir + "/local/vars.yml"} {
		if !exists(filepath.Join(moduleDir, f)) {
			t.Fatalf("%s is missing", f)
		}
	}
	return filepath.Join(rel, "src", "kubectl", "bin", "kubectl")
}

// k8s is one container-platform deployment on an e2e environment.
type k8s struct {
	e          *env
	kubectl    string
	manifest   string
	vars       string
	kubeconfig string
	vmIDs      map[string]bool // every VM CID seen, for the host leak check
}

// newK8s prepares an environment for the container platform: the stemcell
// its manifest names, every release it uses, the local cloud-config and vars
// moved onto the environment's own /24. The deployment is deleted when the
// test ends, whatever happened.
func newK8s(t testing.TB) *k8s {
	kubectl := k8sPrereqs(t)
	e := newEnv(t)
	k := &k8s{e: e, kubectl: kubectl, vmIDs: map[string]bool{},
		manifest: filepath.Join(moduleDir, k8sManifestDir, "kubernetes.yml")}
	t.Cleanup(func() {
		e.kpaas("delete-deployment", "-d", k8sDeployment, "--force", "-n")
		var scs []struct{ Name, Version string }
		_ = json.Unmarshal([]byte(e.kpaas("stemcells", "--json").stdout), &scs)
		for _, sc := range scs {
			e.kpaas("delete-stemcell", sc.Name+"/"+sc.Version, "--force", "-n")
		}
	})
	k.vars = k.localVars(t)
	return k
}

// localVars rewrites the manifest's local/vars.yml for this environment:
// every address of the local example's /24 moves to e.subnet, and the
// deployment gets the test's name.
func (k *k8s) localVars(t testing.TB) string {
	b, err := os.ReadFile(filepath.Join(moduleDir, k8sManifestDir, "local", "vars.yml"))
	require.NoError(t, err)
	var vars map[string]any
	require.NoError(t, yaml.Unmarshal(b, &vars))
	gw, ok := vars["internal_gw"].(string)
	require.True(t, ok, "%s/local/vars.yml has no internal_gw", k8sManifestDir)
	prefix := gw[:strings.LastIndex(gw, ".")+1] // e.g. 10.244.1.
	text := strings.ReplaceAll(string(b), prefix, k.e.subnet+".")
	require.NoError(t, yaml.Unmarshal([]byte(text), &vars))
	vars["deployment_name"] = k8sDeployment
	out, err := yaml.Marshal(vars)
	require.NoError(t, err)
	return k.e.write("k8s-vars.yml", string(out))
}

// interpolate returns the manifest's value at path (YAML).
func (k *k8s) interpolate(t testing.TB, path string) string {
	return k.e.must("interpolate", k.manifest, "-l", k.vars, "--path", path).stdout
}

// setup uploads the stemcell and releases and saves the cloud-config; it
// returns how long the releases took to upload (created from their
// directories, the Kubernetes binaries hashed and packed).
func (k *k8s) setup(t testing.TB) time.Duration {
	e := k.e
	var sc []struct{ OS string }
	require.NoError(t, yaml.Unmarshal([]byte(k.interpolate(t, "/stemcells")), &sc))
	require.Len(t, sc, 1)
	e.must("upload-stemcell", cachedStemcell(t, e, sc[0].OS))

	var rels []struct{ Name string }
	require.NoError(t, yaml.Unmarshal([]byte(k.interpolate(t, "/releases")), &rels))
	var names []string
	for _, r := range rels {
		names = append(names, r.Name)
	}
	require.Contains(t, names, "kubernetes", "the container platform deploys the kubernetes release")
	prepareReleases(t, names)
	start := time.Now()
	for _, n := range names {
		e.must("upload-release", filepath.Join(moduleDir, "releases", n))
	}
	took := time.Since(start)
	t.Logf("uploaded releases %v in %s", names, took.Round(time.Millisecond))
	e.must("update-cloud-config", filepath.Join(moduleDir, k8sManifestDir, "local", "cloud-config.yml"), "-l", k.vars, "-n")
	return took
}

// prepareReleases fetches what the support releases package (Debian .debs,
// the registry's htpasswd tool) as `make releases` does; releases/kubernetes
// is built beforehand (k8sPrereqs).
func prepareReleases(t testing.TB, names []string) {
	for _, n := range names {
		dir := filepath.Join(moduleDir, "releases", n)
		if n == "kubernetes" {
			continue
		}
		if exists(filepath.Join(dir, "config", "blobs.yml")) {
			cmd := exec.Command("sh", "scripts/sync-debs.sh", "releases/"+n)
			cmd.Dir = moduleDir
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "sync-debs.sh releases/%s: %s", n, out)
		}
		if src := filepath.Join(dir, "src", n+"-htpasswd"); exists(src) {
			goBuild(t, filepath.Join(src, "bin", n+"-htpasswd"), "./releases/"+n+"/src/"+n+"-htpasswd")
		}
	}
}

func goBuild(t testing.TB, out, pkg string) {
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %s: %s", pkg, b)
}

// cachedStemcell is a local-cloud stemcell of os (debian-*, or busybox) with
// this run's agent. Debian ones take a minute of debootstrap, so they are
// kept in $KPAAS_STEMCELL_CACHE (default /var/cache/kpaas) under the digest
// of the agent and of the kpaas that builds them: a change builds a new one.
func cachedStemcell(t testing.TB, e *env, osName string) string {
	agent := filepath.Join(binDir, "kpaas-agent")
	if osName == "busybox" {
		out := filepath.Join(e.work, "stemcell.tgz")
		e.must("create-stemcell", "--os", "busybox", "--agent", agent, "-o", out)
		return out
	}
	suite, ok := strings.CutPrefix(osName, "debian-")
	require.True(t, ok, "stemcell os %q: the local cloud builds debian-<suite> or busybox", osName)
	h := sha256.New()
	for _, f := range []string{agent, filepath.Join(binDir, "kpaas")} { // what goes in, what builds it
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		h.Write(b)
	}
	sum := h.Sum(nil)
	dir := os.Getenv("KPAAS_STEMCELL_CACHE")
	if dir == "" {
		dir = "/var/cache/kpaas"
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	out := filepath.Join(dir, fmt.Sprintf("local-%s-%s.tgz", osName, hex.EncodeToString(sum[:6])))
	if exists(out) {
		return out
	}
	start := time.Now()
	tmp := out + fmt.Sprintf(".%d.tmp", os.Getpid())
	e.must("create-stemcell", "--os", "debian", "--suite", suite, "--agent", agent, "-o", tmp)
	require.NoError(t, os.Rename(tmp, out))
	t.Logf("built the %s stemcell in %s (cached at %s)", osName, time.Since(start).Round(time.Second), out)
	// Older stemcells of this os (other agents) are of no more use.
	olds, _ := filepath.Glob(filepath.Join(dir, "local-"+osName+"-*.tgz"))
	for _, o := range olds {
		if o != out {
			os.Remove(o)
		}
	}
	return out
}

// deploy deploys the container platform with workers worker instances (as
// the manifest's README says: the name from the vars, no -d) and returns
// the instances it touched.
func (k *k8s) deploy(t testing.TB, workers int) []string {
	ops := k.e.write("k8s-workers.yml", fmt.Sprintf("- type: replace\n  path: /instance_groups/name=%s/instances\n  value: %d\n", k8sWorker, workers))
	r := k.e.must("deploy", k.manifest, "-l", k.vars, "-o", ops, "-n", "--json")
	k.noteVMs(t)
	touched := map[string]bool{}
	for _, ev := range events(r.stderr) {
		if ev.Object != "" && !strings.HasPrefix(ev.Object, "compilation/") {
			touched[strings.Fields(ev.Object)[0]] = true
		}
	}
	var out []string
	for in := range touched {
		out = append(out, in)
	}
	sort.Strings(out)
	return out
}

type k8sInstance struct {
	Group string   `json:"group"`
	Index int      `json:"index"`
	IPs   []string `json:"ips"`
	VMCID string   `json:"vm_cid"`
}

func (k *k8s) instances(t testing.TB, group string) []k8sInstance {
	var all, out []k8sInstance
	require.NoError(t, json.Unmarshal([]byte(k.e.must("instances", "-d", k8sDeployment, "--json").stdout), &all))
	for _, in := range all {
		if in.Group == group {
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

type k8sVM struct {
	Group       string    `json:"group"`
	Index       int       `json:"index"`
	IPs         []string  `json:"ips"`
	VMCID       string    `json:"vm_cid"`
	VMCreatedAt time.Time `json:"vm_created_at"`
}

// vms are the group's VMs by index, with their creation times.
func (k *k8s) vms(t testing.TB, group string) []k8sVM {
	var all, out []k8sVM
	require.NoError(t, json.Unmarshal([]byte(k.e.must("vms", "-d", k8sDeployment, "--json").stdout), &all))
	for _, v := range all {
		if v.Group == group {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// noteVMs remembers every VM of the deployment for the leak check.
func (k *k8s) noteVMs(t testing.TB) {
	for _, id := range vmDirs(t, k.e) {
		k.vmIDs[id] = true
	}
}

// writeKubeconfig assembles an admin kubeconfig from the deployment's
// generated variables: the admin certificate (kubernetes_admin, which must
// be in system:masters), its CA, and the master's address.
func (k *k8s) writeKubeconfig(t testing.TB) {
	cmd := exec.Command(filepath.Join(binDir, "kpaas"), "state", "export", "--include-secrets")
	cmd.Env = append(os.Environ(), "KPAAS_STATE="+k.e.state)
	out, err := cmd.Output()
	require.NoError(t, err)
	var exp struct {
		Variables []struct{ Deployment, Name, Value string }
	}
	require.NoError(t, json.Unmarshal(out, &exp))
	var admin *struct{ CA, Certificate, PrivateKey string }
	var names []string
	for _, v := range exp.Variables { // oldest first: the last one is the current value
		if v.Deployment != k8sDeployment {
			continue
		}
		names = append(names, v.Name)
		if v.Name != k8sAdminVar {
			continue
		}
		var c struct {
			CA          string `json:"ca"`
			Certificate string `json:"certificate"`
			PrivateKey  string `json:"private_key"`
		}
		require.NoError(t, json.Unmarshal([]byte(v.Value), &c), "variable %s", v.Name)
		blk, _ := pem.Decode([]byte(c.Certificate))
		require.NotNil(t, blk, "variable %s holds no PEM certificate", v.Name)
		crt, err := x509.ParseCertificate(blk.Bytes)
		require.NoError(t, err)
		require.Contains(t, crt.Subject.Organization, "system:masters", "variable %s is the cluster's admin", v.Name)
		admin = &struct{ CA, Certificate, PrivateKey string }{c.CA, c.Certificate, c.PrivateKey}
	}
	require.NotNil(t, admin, "no variable %s among the deployment's %v", k8sAdminVar, names)
	masters := k.instances(t, k8sMaster)
	require.Len(t, masters, 1)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8s-e2e
  cluster: {server: "https://%s:6443", certificate-authority-data: %s}
users:
- name: admin
  user: {client-certificate-data: %s, client-key-data: %s}
contexts:
- name: admin
  context: {cluster: k8s-e2e, user: admin}
current-context: admin
`, masters[0].IPs[0], b64(admin.CA), b64(admin.Certificate), b64(admin.PrivateKey))
	k.kubeconfig = k.e.write("admin.kubeconfig", cfg)
	require.NoError(t, os.Chmod(k.kubeconfig, 0o600))
}

// kc runs the built kubectl with the admin kubeconfig.
func (k *k8s) kc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.kubectl, append([]string{"--kubeconfig", k.kubeconfig, "--request-timeout", "20s"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, nil
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (k *k8s) mustKC(t testing.TB, args ...string) string {
	t.Helper()
	out, err := k.kc(args...)
	require.NoError(t, err)
	return out
}

func (k *k8s) apply(t testing.TB, yml string) {
	t.Helper()
	p := k.e.write("apply.yml", yml)
	k.mustKC(t, "apply", "-f", p)
}

type k8sNode struct {
	Name  string
	IP    string
	Ready bool
	// Heartbeat is when a kubelet last posted the Ready condition: a new
	// kubelet posts it at once, so a node whose VM was replaced at T is
	// known to be back (not a stale Ready of the old kubelet) once this is
	// at or after T.
	Heartbeat     time.Time
	Unschedulable bool
}

func (k *k8s) nodes() ([]k8sNode, error) {
	out, err := k.kc("get", "nodes", "-o", "json")
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ Unschedulable bool }
			Status   struct {
				Addresses  []struct{ Type, Address string }
				Conditions []struct {
					Type, Status      string
					LastHeartbeatTime time.Time
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return nil, err
	}
	var ns []k8sNode
	for _, it := range l.Items {
		n := k8sNode{Name: it.Metadata.Name, Unschedulable: it.Spec.Unschedulable}
		for _, a := range it.Status.Addresses {
			if a.Type == "InternalIP" {
				n.IP = a.Address
			}
		}
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" {
				n.Ready = c.Status == "True"
				n.Heartbeat = c.LastHeartbeatTime
			}
		}
		ns = append(ns, n)
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i].IP < ns[j].IP })
	return ns, nil
}

// waitFor polls cond every half second until it holds or within passes;
// cond's text says what was seen last, for the failure message.
func waitFor(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, within, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitNodes waits until the cluster's nodes are exactly the worker
// instances (by InternalIP), every one Ready and schedulable, each posted
// by a kubelet of the instance's current VM (a heartbeat at or after the
// VM's creation), and returns them by IP.
func (k *k8s) waitNodes(t testing.TB, within time.Duration) map[string]k8sNode {
	t.Helper()
	var want []string
	born := map[string]time.Time{}
	for _, w := range k.vms(t, k8sWorker) {
		want = append(want, w.IPs[0])
		born[w.IPs[0]] = w.VMCreatedAt.Truncate(time.Second)
	}
	sort.Strings(want)
	byIP := map[string]k8sNode{}
	waitFor(t, within, fmt.Sprintf("nodes %v all Ready", want), func() (bool, string) {
		ns, err := k.nodes()
		if err != nil {
			return false, err.Error()
		}
		var got []string
		ready := true
		byIP = map[string]k8sNode{}
		for _, n := range ns {
			got = append(got, n.IP)
			ready = ready && n.Ready && !n.Unschedulable && !n.Heartbeat.Before(born[n.IP])
			byIP[n.IP] = n
		}
		return ready && slices.Equal(got, want), fmt.Sprintf("%+v (VMs created %v)", ns, born)
	})
	return byIP
}

type k8sPod struct {
	Name, Node, IP string
	Ready          bool
	StartedAt      time.Time // the latest start of its containers
}

func (k *k8s) echoPods(t testing.TB) []k8sPod {
	out := k.mustKC(t, "get", "pods", "-l", "app=echo", "-o", "json")
	var l struct {
		Items []struct {
			Metadata struct {
				Name              string
				DeletionTimestamp *time.Time
			}
			Spec   struct{ NodeName string }
			Status struct {
				PodIP      string
				Conditions []struct{ Type, Status string }
				Containers []struct {
					State struct {
						Running *struct{ StartedAt time.Time }
					}
				} `json:"containerStatuses"`
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &l))
	var ps []k8sPod
	for _, it := range l.Items {
		if it.Metadata.DeletionTimestamp != nil {
			continue
		}
		p := k8sPod{Name: it.Metadata.Name, Node: it.Spec.NodeName, IP: it.Status.PodIP}
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" {
				p.Ready = c.Status == "True"
			}
		}
		for _, c := range it.Status.Containers {
			if c.State.Running != nil && c.State.Running.StartedAt.After(p.StartedAt) {
				p.StartedAt = c.State.Running.StartedAt
			}
		}
		ps = append(ps, p)
	}
	return ps
}

// waitEcho waits until n echo pods are Ready, spread over every node in
// nodes (each node runs at least one), and returns them.
func (k *k8s) waitEcho(t testing.TB, n int, nodes []string, within time.Duration) []k8sPod {
	t.Helper()
	var ps []k8sPod
	waitFor(t, within, fmt.Sprintf("%d echo pods Ready on nodes %v", n, nodes), func() (bool, string) {
		ps = k.echoPods(t)
		per := map[string]int{}
		ready := 0
		for _, p := range ps {
			if p.Ready {
				ready++
				per[p.Node]++
			}
		}
		ok := ready == n && len(ps) == n
		for _, nd := range nodes {
			ok = ok && per[nd] > 0
		}
		return ok, fmt.Sprintf("%d pods, %d Ready, per node %v", len(ps), ready, per)
	})
	return ps
}

const echoApp = `apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: default}
spec:
  replicas: %d
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: echo}}}
      terminationGracePeriodSeconds: 2
      containers:
      - name: echo
        image: ` + k8sEchoImage + `
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  type: ClusterIP
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
`

// getInNetns sends GET / to addr from inside the network namespace of pid
// (a worker VM's PID 1: the request leaves that node as a pod's would go
// through kube-proxy's rules there) and returns the body.
func getInNetns(pid int, addr string) (string, error) {
	type res struct {
		body string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		// The thread is never unlocked: it exits with this goroutine, so no
		// other goroutine ever runs in the VM's namespace.
		runtime.LockOSThread()
		ns, err := netns.GetFromPid(pid)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- res{err: err}
			return
		}
		conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
			ch <- res{err: err}
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		ch <- res{body: string(b), err: err}
	}()
	r := <-ch
	return r.body, r.err
}

// checkService asks the echo Service's ClusterIP from inside every worker VM
// until, from each, answers came from pods on every worker node (each
// answer names one of pods); kube-proxy follows the endpoints within
// seconds, so it has 30 s.
func (k *k8s) checkService(t testing.TB, pods []k8sPod) {
	t.Helper()
	ip := strings.TrimSpace(k.mustKC(t, "get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}"))
	require.NotEmpty(t, ip)
	nodeOf := map[string]string{}
	for _, p := range pods {
		nodeOf[p.Name] = p.Node
	}
	workers := k.instances(t, k8sWorker)
	start := time.Now()
	waitFor(t, 30*time.Second, "the echo Service answering from pods on every worker, from every worker", func() (bool, string) {
		ok := true
		var seen []string
		for _, w := range workers {
			pid := vmPID(t, k.e, w.VMCID)
			fromNodes := map[string]int{}
			var errs []string
			for i := 0; i < 16; i++ {
				body, err := getInNetns(pid, net.JoinHostPort(ip, "80"))
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				name := strings.TrimSpace(body)
				node, known := nodeOf[name]
				require.True(t, known, "worker/%d got %q from the Service: not one of the echo pods %v", w.Index, name, nodeOf)
				fromNodes[node]++
			}
			ok = ok && len(fromNodes) == len(workers) && len(errs) == 0
			seen = append(seen, fmt.Sprintf("from worker/%d: answers by node %v, errors %v", w.Index, fromNodes, errs))
		}
		return ok, strings.Join(seen, "; ")
	})
	if d := time.Since(start); d > time.Second {
		t.Logf("the Service answered from pods on every worker after %s", d.Round(100*time.Millisecond))
	}
}

// hostView is what the host shows of an environment, read with the
// system's tools: links, named netns, mounts and loop devices mentioning the
// environment or its VMs, its local cloud's cgroups (nested ones too), and
// the global sysctls the kubelet and CNI plugins write.
type hostView struct {
	Links, Netns, Mounts, Loops, Cgroups []string
	Sysctls                              map[string]string
}

var k8sSysctls = []string{"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward"}

func (k *k8s) hostView(t testing.TB) hostView {
	var v hostView
	// The environment's bridge MAC is derived from its gateway (02:4b:<ip>).
	var gw [4]byte
	_, err := fmt.Sscanf(k.e.subnet+".1", "%d.%d.%d.%d", &gw[0], &gw[1], &gw[2], &gw[3])
	require.NoError(t, err)
	brMAC := fmt.Sprintf("02:4b:%02x:%02x:%02x:%02x", gw[0], gw[1], gw[2], gw[3])
	var marks []string // VM IDs and the tails the host veths are named by
	for id := range k.vmIDs {
		marks = append(marks, strings.TrimPrefix(id, "vm-"))
		if len(id) > 8 {
			marks = append(marks, id[len(id)-8:])
		}
	}
	mentions := func(line string) bool {
		for _, m := range marks {
			if m != "" && strings.Contains(line, m) {
				return true
			}
		}
		return false
	}
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	require.NoError(t, err)
	links := strings.Split(string(out), "\n")
	linkName := func(line string) string {
		f := strings.Fields(line)
		if len(f) < 2 {
			return ""
		}
		return strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
	}
	bridge := ""
	for _, line := range links {
		if strings.Contains(line, "link/ether "+brMAC) && strings.HasPrefix(linkName(line), "kb") {
			bridge = linkName(line)
		}
	}
	for _, line := range links {
		name := linkName(line)
		if !strings.HasPrefix(name, "kb") && !strings.HasPrefix(name, "kv") {
			continue
		}
		if name == bridge || bridge != "" && strings.Contains(line, " master "+bridge+" ") || mentions(name) {
			v.Links = append(v.Links, name)
		}
	}
	nss, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(nss), "\n") {
		if mentions(line) {
			v.Netns = append(v.Netns, line)
		}
	}
	mounts, err := os.ReadFile("/proc/mounts")
	require.NoError(t, err)
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, k.e.state) || strings.Contains(line, k.e.work) {
			v.Mounts = append(v.Mounts, line)
		}
	}
	loops, _ := exec.Command("losetup", "-a").Output()
	for _, line := range strings.Split(string(loops), "\n") {
		if strings.Contains(line, k.e.state) {
			v.Loops = append(v.Loops, line)
		}
	}
	// The local cloud's cgroup parent is kpaas-<sha1(its dir)[:4]>; every
	// directory below it, in every hierarchy, is one of this environment's.
	h := sha1.Sum([]byte(filepath.Join(k.e.state, "local")))
	group := "kpaas-" + hex.EncodeToString(h[:4])
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + group)
	if exists("/sys/fs/cgroup/" + group) {
		roots = append(roots, "/sys/fs/cgroup/"+group)
	}
	for _, r := range roots {
		_ = filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != r {
				v.Cgroups = append(v.Cgroups, p)
			}
			return nil
		})
	}
	v.Sysctls = map[string]string{}
	for _, s := range k8sSysctls {
		b, _ := os.ReadFile("/proc/sys/" + s)
		v.Sysctls[s] = strings.TrimSpace(string(b))
	}
	return v
}

// nested counts cgroups at least two levels below a VM's own (the kubelet's
// kubepods/... inside the VM's cgroup namespace).
func (v hostView) nested() int {
	n := 0
	for _, c := range v.Cgroups {
		_, rest, ok := strings.Cut(c, "/vm-")
		if ok && strings.Count(rest, "/") >= 2 {
			n++
		}
	}
	return n
}

// TestKubernetes deploys the container platform (1 master, 2 workers and
// the support VMs) on the local cloud and proves the cluster works and heals:
// every node Ready; a Deployment spread over both workers and its ClusterIP
// Service answering from every worker with pods of every worker, and through
// the API server's service proxy; kubectl logs of every pod; the worker
// group scaled to 3 (the new node Ready and running pods) and back to 2 (the
// removed node's pods run on the others, its Node is gone); a worker VM killed
// under `kpaas monitor` comes back Ready with its pods; `kpaas recreate` of a
// worker brings it back Ready; delete-deployment leaves the host as before
// (links, netns, mounts, loop devices, cgroups incl. the kubelet's nested
// ones, the global sysctls).
func TestKubernetes(t *testing.T) {
	k := newK8s(t)
	k.setup(t)
	before := k.hostView(t)

	start := time.Now()
	k.deploy(t, 2)
	deployed := time.Since(start)
	k.writeKubeconfig(t)
	nodes := k.waitNodes(t, k8sReadyWithin)
	t.Logf("TIMING deploy 1 master + 2 workers -> all nodes Ready: %s (kpaas deploy %s)", time.Since(start).Round(time.Millisecond), deployed.Round(time.Millisecond))
	require.Len(t, nodes, 2)

	during := k.hostView(t)
	assert.Equal(t, before.Sysctls, during.Sysctls, "the kubelet's and CNI's sysctl writes stay inside the VMs")
	assert.NotEmpty(t, during.Links, "the VMs' bridge and veths show on the host (else the leak check looks for the wrong names)")
	assert.NotEmpty(t, during.Cgroups, "the VMs show as cgroups under the local cloud's parent (else the leak check looks in the wrong place)")
	t.Logf("while running: %d links, %d mounts, %d loop devices, %d cgroups (%d nested below VM cgroups)",
		len(during.Links), len(during.Mounts), len(during.Loops), len(during.Cgroups), during.nested())

	// A Deployment spread over both workers and its Service.
	names := func(m map[string]k8sNode) []string {
		var out []string
		for _, n := range m {
			out = append(out, n.Name)
		}
		sort.Strings(out)
		return out
	}
	k.apply(t, fmt.Sprintf(echoApp, 4))
	pods := k.waitEcho(t, 4, names(nodes), 2*time.Minute)
	k.checkService(t, pods)
	// The API server reaches the pods (its service proxy, through the
	// master's pod routes) and the kubelets (logs).
	var podNames []string
	for _, p := range pods {
		podNames = append(podNames, p.Name)
	}
	waitFor(t, 30*time.Second, "the echo Service through the API server's service proxy", func() (bool, string) {
		out, err := k.kc("get", "--raw", "/api/v1/namespaces/default/services/echo:80/proxy/")
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(podNames, strings.TrimSpace(out)), out
	})
	for _, p := range pods {
		_, err := k.kc("logs", p.Name)
		assert.NoError(t, err, "kubectl logs of %s on %s", p.Name, p.Node)
	}

	// Scale the workers up: the new node is Ready and takes pods.
	start = time.Now()
	assert.Equal(t, []string{k8sWorker + "/2"}, k.deploy(t, 3), "scaling the workers touches only the new worker")
	nodes = k.waitNodes(t, k8sReadyWithin)
	t.Logf("TIMING worker group 2 -> 3, the new node Ready: %s", time.Since(start).Round(time.Millisecond))
	require.Len(t, nodes, 3)
	k.mustKC(t, "scale", "deployment", "echo", "--replicas", "6")
	k.waitEcho(t, 6, names(nodes), 2*time.Minute)

	// And down: worker/2 leaves (its drain script evicts its pods and
	// deletes its Node): its Node is gone, all six pods run on the others.
	gone := k.instances(t, k8sWorker)[2].IPs[0]
	assert.Equal(t, []string{k8sWorker + "/2"}, k.deploy(t, 2), "scaling down touches only the removed worker")
	nodes = k.waitNodes(t, 2*time.Minute)
	require.NotContains(t, nodes, gone)
	pods = k.waitEcho(t, 6, names(nodes), 2*time.Minute)
	k.mustKC(t, "scale", "deployment", "echo", "--replicas", "4")
	pods = k.waitEcho(t, 4, names(nodes), 2*time.Minute)

	// A worker VM killed behind kpaas's back: the monitor replaces it and
	// the node is Ready again with its pods running anew.
	m := startMonitor(t, k.e, "--interval", "2s", "--agent-timeout", "5s", "--refused-timeout", "3s")
	m.until(t, "leader", 15*time.Second)
	victim := k.instances(t, k8sWorker)[0]
	victimNode := nodes[victim.IPs[0]].Name
	killed := time.Now()
	killVM(t, k.e, victim.VMCID)
	m.until(t, "remediated", 5*time.Minute)
	remediated := time.Since(killed)
	k.noteVMs(t)
	replaced := k.instances(t, k8sWorker)[0]
	require.NotEqual(t, victim.VMCID, replaced.VMCID, "worker/0 is on a new VM")
	nodes = k.waitNodes(t, k8sReadyWithin)
	waitFor(t, 2*time.Minute, "echo pods on "+victimNode+" running again after the kill", func() (bool, string) {
		n := 0
		for _, p := range k.echoPods(t) {
			if p.Node == victimNode && p.Ready && p.StartedAt.After(killed.Add(-time.Second)) {
				n++
			}
		}
		return n > 0, fmt.Sprintf("%d fresh Ready pods on %s", n, victimNode)
	})
	t.Logf("TIMING worker VM killed -> monitor remediated: %s; -> node Ready with its pods running: %s",
		remediated.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	require.NoError(t, m.cmd.Process.Signal(os.Interrupt))
	_ = m.cmd.Wait()
	pods = k.waitEcho(t, 4, names(nodes), 2*time.Minute)
	k.checkService(t, pods)

	// kpaas recreate of a worker: a new VM, the node Ready again. Its pods
	// were drained to the other worker (Kubernetes does not move them back
	// by itself): a rollout spreads them over both again.
	old := k.instances(t, k8sWorker)[1]
	start = time.Now()
	k.e.must("recreate", "-d", k8sDeployment, fmt.Sprintf("%s/%d", k8sWorker, old.Index), "-n")
	k.noteVMs(t)
	require.NotEqual(t, old.VMCID, k.instances(t, k8sWorker)[1].VMCID, "worker/1 is on a new VM")
	nodes = k.waitNodes(t, k8sReadyWithin)
	t.Logf("TIMING kpaas recreate worker/1 -> node Ready: %s", time.Since(start).Round(time.Millisecond))
	k.mustKC(t, "rollout", "restart", "deployment/echo")
	k.mustKC(t, "rollout", "status", "deployment/echo", "--timeout", "2m")
	pods = k.waitEcho(t, 4, names(nodes), 2*time.Minute)
	k.checkService(t, pods)

	// Delete: the host is as before.
	k.noteVMs(t)
	k.e.must("delete-deployment", "-d", k8sDeployment, "-n")
	var after hostView
	waitFor(t, 10*time.Second, "the host as before the deploy", func() (bool, string) {
		after = k.hostView(t)
		return equalViews(before, after), fmt.Sprintf("%+v", after)
	})
	assert.Equal(t, before, after, "delete-deployment leaves no link, netns, mount, loop device, cgroup or sysctl change")
}

func equalViews(a, b hostView) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
