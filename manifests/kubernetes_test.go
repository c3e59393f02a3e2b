package manifests_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agent"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/render"
)

// dirJob reads a job of a release directory (spec, monit, templates) without
// the release's packages, whose binaries are built, not committed.
func dirJob(releaseName, jobName string) (*release.JobContent, render.ReleaseRef, error) {
	dir := filepath.Join("..", "releases", releaseName, "jobs", jobName)
	data, err := os.ReadFile(filepath.Join(dir, "spec"))
	if err != nil {
		return nil, render.ReleaseRef{}, err
	}
	spec, err := release.ParseJobSpec(data, filepath.Join(dir, "spec"))
	if err != nil {
		return nil, render.ReleaseRef{}, err
	}
	c := &release.JobContent{Name: jobName, Spec: spec, Templates: map[string][]byte{}}
	if c.Monit, err = os.ReadFile(filepath.Join(dir, "monit")); err != nil {
		return nil, render.ReleaseRef{}, err
	}
	for _, src := range spec.TemplateSources() {
		if c.Templates[src], err = os.ReadFile(filepath.Join(dir, "templates", src)); err != nil {
			return nil, render.ReleaseRef{}, err
		}
	}
	return c, render.ReleaseRef{Name: releaseName, Version: "0+dev.1"}, nil
}

// renderKubernetes interpolates manifests/k-paas/kubernetes with the local
// cloud's vars and renders every job of every instance, as `kpaas deploy`
// does before it ships them to the agents (workers at .30, .31, ...).
func renderKubernetes(t *testing.T) (map[string][]*render.RenderedInstance, map[string]string) {
	t.Helper()
	dep, ccFile, vars := "k-paas/kubernetes/kubernetes.yml", "k-paas/kubernetes/local/cloud-config.yml", "k-paas/kubernetes/local/vars.yml"
	store := filepath.Join(t.TempDir(), "creds.yml")
	cc, _, err := manifest.ParseCloudConfig(ccFile, interpolateFile(t, ccFile, vars, store))
	require.NoError(t, err)
	m, _, err := manifest.ParseManifest(dep, interpolateFile(t, dep, vars, store))
	require.NoError(t, err)

	in := render.DeploymentInput{Manifest: m, CloudConfig: cc, Instances: map[string][]render.Instance{}, Jobs: render.JobSourceFunc(dirJob)}
	dynamic := 30
	for _, g := range m.InstanceGroups {
		for i := 0; i < g.Instances; i++ {
			ip := ""
			if s := g.Networks[0].StaticIPs; i < len(s) {
				ip = s[i]
			} else {
				ip = fmt.Sprintf("10.232.0.%d", dynamic)
				dynamic++
			}
			in.Instances[g.Name] = append(in.Instances[g.Name], render.Instance{
				Deployment: m.Name, Group: g.Name, Index: i, ID: fmt.Sprintf("%s-%d-id", g.Name, i), AZ: "z1",
				Bootstrap: i == 0, Address: ip, IP: ip,
				Networks: map[string]render.Network{"default": {Type: "manual", IP: ip, Netmask: "255.255.255.0", Gateway: "10.232.0.1"}},
			})
		}
	}
	out, err := render.NewRenderer().RenderDeployment(in)
	require.NoError(t, err, "rendering %s", dep)
	ips := map[string]string{}
	for g, insts := range in.Instances {
		for i, inst := range insts {
			ips[fmt.Sprintf("%s/%d", g, i)] = inst.IP
		}
	}
	return out.Instances, ips
}

func file(t *testing.T, inst *render.RenderedInstance, job, dst string) string {
	t.Helper()
	j := inst.Job(job)
	require.NotNil(t, j, "job %s", job)
	f := j.File(dst)
	require.NotNil(t, f, "job %s has no %s", job, dst)
	return string(f.Content)
}

// Every Kubernetes job renders with the manifest's properties and links, the
// workers find the API server at the master's static IP, and every process
// of the release has a health check (the agent and `kpaas monitor` see an
// unhealthy node).
func TestKPaaSKubernetesRendersOnTheLocalCloud(t *testing.T) {
	insts, ips := renderKubernetes(t)
	require.Len(t, insts["master"], 1)
	require.Len(t, insts["worker"], 2)
	master := insts["master"][0]
	assert.Equal(t, "10.232.0.10", ips["master/0"])

	api := file(t, master, "kube-apiserver", "config/bpm.yml")
	assert.Contains(t, api, "--advertise-address=10.232.0.10")
	assert.Contains(t, api, "--authorization-mode=Node,RBAC")
	assert.Contains(t, api, "--enable-admission-plugins=NodeRestriction")
	assert.Contains(t, api, "--kubelet-certificate-authority=")
	assert.Contains(t, api, "--service-cluster-ip-range=10.96.0.0/24")
	assert.Contains(t, file(t, master, "kube-apiserver", "config/ca.crt"), "BEGIN CERTIFICATE")
	assert.Contains(t, file(t, master, "kube-apiserver", "config/sa.pub"), "BEGIN PUBLIC KEY")
	assert.Contains(t, file(t, master, "kube-controller-manager", "config/bpm.yml"), "--cluster-cidr=10.200.0.0/16")
	assert.Contains(t, file(t, master, "kube-controller-manager", "config/kubeconfig"), "server: https://10.232.0.10:6443")
	assert.Contains(t, file(t, master, "pod-routes", "bin/sync"), "kc=/var/vcap/jobs/kube-controller-manager/config/kubeconfig")

	for i, w := range insts["worker"] {
		ip := ips[fmt.Sprintf("worker/%d", i)]
		env := file(t, w, "kubelet", "config/env.sh")
		assert.Contains(t, env, "API_SERVER=https://10.232.0.10:6443")
		assert.Contains(t, env, "NODE_NAME="+ip+"\n")
		kc := file(t, w, "kubelet", "config/kubelet-config.yaml")
		for _, want := range []string{"failCgroupV1: false", "cgroupDriver: cgroupfs", "address: " + ip} {
			assert.Contains(t, kc, want)
		}
		assert.Contains(t, file(t, w, "kubelet", "config/ca.key"), "PRIVATE KEY")
		ct := file(t, w, "containerd", "config/config.toml")
		assert.Contains(t, ct, "version = 3")
		assert.Contains(t, ct, "restrict_oom_score_adj = true")
		assert.Contains(t, ct, `sandbox = "kpaas.local/pause:1"`)
		// the CNI template keeps containerd's own placeholder
		assert.Contains(t, file(t, w, "containerd", "config/cni.conflist.template"), `"subnet": "{{.PodCIDR}}"`)
		kp := file(t, w, "kube-proxy", "config/config.yaml")
		for _, want := range []string{"mode: nftables", "maxPerCore: 0", "hostnameOverride: " + ip, "clusterCIDR: 10.200.0.0/16"} {
			assert.Contains(t, kp, want)
		}
		assert.Contains(t, file(t, w, "kube-proxy", "config/kubeconfig"), "server: https://10.232.0.10:6443")
		assert.Contains(t, file(t, w, "kubelet", "bin/drain"), "delete node")
	}

	// every bpm.yml of the kubernetes release loads, and each process has a health check
	dir := t.TempDir()
	checked := 0
	for _, g := range []string{"master", "worker"} {
		for _, inst := range insts[g] {
			for _, j := range inst.Jobs {
				f := j.File("config/bpm.yml")
				require.NotNil(t, f, "%s: job %s has no bpm.yml", g, j.Name)
				path := filepath.Join(dir, g+"-"+j.Name+".yml")
				require.NoError(t, os.WriteFile(path, f.Content, 0o644))
				b, err := agent.LoadBPM(path)
				require.NoError(t, err, "%s/%s", g, j.Name)
				for _, p := range b.Processes {
					hc := p.HealthCheck
					if assert.NotNil(t, hc, "%s: %s/%s has no health_check", g, j.Name, p.Name) {
						assert.NotEmpty(t, strings.Join([]string{hc.TCP, hc.HTTP, hc.Command}, ""), "%s/%s", j.Name, p.Name)
					}
					checked++
				}
			}
		}
	}
	assert.Equal(t, 5+2*4, checked, "processes checked: master 5, 2 workers x 4")
}
