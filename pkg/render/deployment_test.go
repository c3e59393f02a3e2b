package render

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/release"
)

const helloManifest = `
name: hello
releases: [{name: kpaas-hello, version: latest}]
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: web
  instances: %d
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - name: hello
    release: kpaas-hello
    properties:
      hello: {greeting: ((greeting))}
- name: greeter
  instances: 1
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: [{name: greeter, release: kpaas-hello}]
- name: smoke-tests
  lifecycle: errand
  instances: 1
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: [{name: smoke-tests, release: kpaas-hello, properties: {smoke_tests: {expect: ((greeting))}}}]
`

func helloTarball(t testing.TB) *release.Tarball {
	t.Helper()
	d, err := release.ReadDir("../../releases/kpaas-hello")
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "hello.tgz")
	_, err = d.WriteTarball(p, release.CreateOptions{Version: "7"})
	require.NoError(t, err)
	tb, err := release.ReadTarball(p, release.ReadOptions{})
	require.NoError(t, err)
	return tb
}

func helloInput(t testing.TB, webInstances int, greeting string) DeploymentInput {
	t.Helper()
	text := fmt.Sprintf(helloManifest, webInstances)
	text = strings.ReplaceAll(text, "((greeting))", greeting)
	m, _, err := manifest.ParseManifest("hello.yml", []byte(text))
	require.NoError(t, err)
	insts := map[string][]Instance{}
	for gi, g := range m.InstanceGroups {
		for i := 0; i < g.Instances; i++ {
			ip := fmt.Sprintf("10.%d.%d.%d", gi, i/200, 10+i%200)
			insts[g.Name] = append(insts[g.Name], Instance{Index: i, ID: fmt.Sprintf("%s-%d", g.Name, i), AZ: "z1", Bootstrap: i == 0, Address: ip, IP: ip,
				Networks: map[string]Network{"default": {Type: "manual", IP: ip}}})
		}
	}
	return DeploymentInput{Manifest: m, Instances: insts, Jobs: TarballSource(helloTarball(t))}
}

func TestRenderDeploymentFromTarball(t *testing.T) {
	out, err := NewRenderer().RenderDeployment(helloInput(t, 3, `"Hi there"`))
	require.NoError(t, err)
	require.Len(t, out.Instances["web"], 3)
	web2 := out.Instances["web"][2].Job("hello")
	assert.Contains(t, string(web2.File("config/index.html").Content), "<h1>Hi there</h1>")
	assert.Contains(t, string(web2.File("config/index.html").Content), "web/2 (web-2) az=z1 deployment=hello address=10.0.0.12")
	ctl := string(out.Instances["greeter"][0].Job("greeter").File("bin/ctl").Content)
	for i := 0; i < 3; i++ {
		assert.Contains(t, ctl, fmt.Sprintf(`"http://10.0.0.%d:8080/"`, 10+i))
	}
	run := string(out.Instances["smoke-tests"][0].Job("smoke-tests").File("bin/run").Content)
	assert.Contains(t, run, `grep -q "Hi there"`)
	assert.Equal(t, "default", out.Links.Consumed[JobKey{"greeter", "greeter"}]["backend"].Network)
	assert.NotEqual(t, out.Instances["web"][0].ArchiveSHA1, out.Instances["web"][1].ArchiveSHA1)
}

func TestRenderDeploymentErrors(t *testing.T) {
	in := helloInput(t, 3, "null")
	// hello's greeting has a default, so null is fine; make the errand's template need a missing one.
	in.Manifest.InstanceGroups[2].Jobs[0].Properties = map[string]any{"smoke_tests": map[string]any{"expect": nil}}
	_, err := NewRenderer().RenderDeployment(in)
	require.NoError(t, err, "null takes the spec default")

	in = helloInput(t, 3, `"x"`)
	tb := helloTarball(t)
	hello := *tb.Job("hello")
	spec := *hello.Spec
	spec.Properties = map[string]release.PropertyDef{"hello.port": {}, "hello.greeting": {}, "hello.title": {}, "hello.drain_seconds": {}, "hello.post_start_timeout": {}}
	hello.Spec = &spec
	in.Jobs = JobSourceFunc(func(rel, job string) (*release.JobContent, ReleaseRef, error) {
		if job == "hello" {
			return &hello, ReleaseRef{Name: rel, Version: "7"}, nil
		}
		if job == "greeter" {
			return nil, ReleaseRef{}, fmt.Errorf("release '%s' has no job '%s'", rel, job)
		}
		return TarballSource(tb).Job(rel, job)
	})
	_, err = NewRenderer().RenderDeployment(in)
	require.ErrorContains(t, err, "instance group 'greeter' job 'greeter': release 'kpaas-hello' has no job 'greeter'")

	in.Manifest.InstanceGroups = in.Manifest.InstanceGroups[:1]
	_, err = NewRenderer().RenderDeployment(in)
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, "rendering job 'hello' in instance group 'web' (web/0 and 2 more): template 'bpm.yml' line 7: property 'hello.port' is required and has no value")
	assert.Contains(t, msg, "template 'index.html' line 3: property 'hello.title' is required")
	assert.Equal(t, 1, strings.Count(msg, "template 'bpm.yml'"), msg)
}

// BenchmarkRenderDeployment1000 renders the hello deployment with 1,000 web
// instances (and its greeter consuming all of them, and the errand): binding,
// links and every instance on all CPUs.
func BenchmarkRenderDeployment1000(b *testing.B) {
	in := helloInput(b, 1000, `"bench"`)
	r := NewRenderer()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.RenderDeployment(in); err != nil {
			b.Fatal(err)
		}
	}
}
