package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/release"
)

// A release compiled by one kpaas (deploy, then export-release) uploads into
// a fresh state and deploys with no compile VM; on a stemcell it was not
// compiled for, the deploy is refused before anything changes.
func TestCompiledReleaseDeploysWithoutCompiling(t *testing.T) {
	a := newEnv(t)
	// The source release as an older CLI writes it: bare SHA-1 digests.
	rd, err := release.ReadDir(filepath.Join(moduleDir, "releases", "kpaas-hello"))
	require.NoError(t, err)
	_, err = rd.WriteTarball(filepath.Join(a.work, "hello.tgz"), release.CreateOptions{Version: "5"})
	require.NoError(t, err)
	mf, err := release.RewriteDigests(filepath.Join(a.work, "hello.tgz"), filepath.Join(a.work, "hello-sha1.tgz"), true)
	require.NoError(t, err)
	require.Len(t, mf.Jobs[0].SHA1, 40)
	a.must("create-stemcell", "--os", "busybox", "--agent", filepath.Join(binDir, "kpaas-agent"), "-o", filepath.Join(a.work, "stemcell.tgz"))
	a.must("upload-stemcell", filepath.Join(a.work, "stemcell.tgz"))
	a.must("upload-release", filepath.Join(a.work, "hello-sha1.tgz"))
	a.cloudConfig()
	m := a.write("hello.yml", helloManifest)
	r := a.must("deploy", m, "-v", "instances=1", "-v", "greeting=hi", "-n", "--json")
	compiled := false
	for _, ev := range events(r.stderr) {
		compiled = compiled || strings.HasPrefix(ev.Object, "compilation/") && ev.Step == "create_vm"
	}
	require.True(t, compiled, "the first deploy compiles on a compile VM")
	assert.Contains(t, get(t, "http://"+a.subnet+".10:8080/"), "<h1>hi</h1>", "the bare SHA-1 release deployed")
	var rels []struct{ Name, Version string }
	require.NoError(t, json.Unmarshal([]byte(a.must("releases", "--json").stdout), &rels))
	var scs []struct{ Name, Version, OS string }
	require.NoError(t, json.Unmarshal([]byte(a.must("stemcells", "--json").stdout), &scs))
	require.Len(t, rels, 1)
	require.Equal(t, "5", rels[0].Version)
	require.NotEmpty(t, scs)
	stemcell := scs[0].OS + "/" + scs[0].Version
	r = a.must("export-release", rels[0].Name+"/"+rels[0].Version, stemcell, "-o", a.work, "--json")
	var exp struct {
		Path             string
		CompiledPackages []string `json:"compiled_packages"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &exp))
	require.Len(t, exp.CompiledPackages, 2)
	a.must("delete-deployment", "-d", "hello", "-n")

	// A fresh state on another network: stemcell, the compiled release, no source.
	b := newEnv(t)
	stc := filepath.Join(b.work, "stemcell.tgz")
	data, err := os.ReadFile(filepath.Join(a.work, "stemcell.tgz"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(stc, data, 0o644))
	b.must("upload-stemcell", stc)
	r = b.must("upload-release", exp.Path, "--json")
	var up struct {
		CompiledPackages []struct{ Name, Stemcell string } `json:"compiled_packages"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &up))
	require.Len(t, up.CompiledPackages, 2)
	assert.Equal(t, stemcell, up.CompiledPackages[0].Stemcell)
	b.cloudConfig()
	mb := b.write("hello.yml", helloManifest)
	r = b.must("deploy", mb, "-v", "instances=2", "-v", "greeting=compiled", "-n", "--json")
	creates := 0
	for _, ev := range events(r.stderr) {
		assert.False(t, strings.HasPrefix(ev.Object, "compilation/"), "no compile VM: %+v", ev)
		if ev.Step == "create_vm" && ev.Status == "done" {
			creates++
		}
	}
	assert.Equal(t, 2, creates, "one create_vm per instance, none for compiling")
	assert.Len(t, vmDirs(t, b), 2)
	for _, ip := range []string{b.subnet + ".10", b.subnet + ".11"} {
		assert.Contains(t, get(t, "http://"+ip+":8080/"), "<h1>compiled</h1>", ip)
	}

	// Another stemcell version (major 99): refused before any change,
	// naming the release, its packages and both stemcells.
	b.must("create-stemcell", "--os", "busybox", "--version", "99", "--agent", filepath.Join(binDir, "kpaas-agent"), "-o", filepath.Join(b.work, "stemcell-99.tgz"))
	b.must("upload-stemcell", filepath.Join(b.work, "stemcell-99.tgz"))
	vms := vmDirs(t, b)
	m99 := b.write("hello-99.yml", strings.Replace(helloManifest, "os: busybox, version: latest", "os: busybox, version: '99'", 1))
	r = b.kpaas("deploy", m99, "-v", "instances=2", "-v", "greeting=never", "-n")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Can't use release '"+rels[0].Name+"/"+rels[0].Version+"'. It references packages without source code and are not compiled against stemcell 'busybox/99'")
	assert.Contains(t, r.stderr, " - 'hello-lib/")
	assert.Contains(t, r.stderr, " - 'hello-scripts/")
	assert.Contains(t, r.stderr, "compiled against stemcell '"+stemcell+"'")
	assert.Equal(t, vms, vmDirs(t, b), "no VM touched")
	assert.Contains(t, get(t, "http://"+b.subnet+".10:8080/"), "<h1>compiled</h1>", "the deployment is as it was")
}

// cloudConfig saves a cloud-config for the local cloud on e.subnet.0/24.
func (e *env) cloudConfig() {
	e.t.Helper()
	e.write("cloud.yml", fmt.Sprintf(`
azs: [{name: z1}, {name: z2}]
vm_types: [{name: small}]
networks:
- name: net
  subnets: [{range: %[1]s.0/24, gateway: %[1]s.1, reserved: [%[1]s.2-%[1]s.9], azs: [z1, z2]}]
compilation: {workers: 2, az: z1, network: net, vm_type: small}
`, e.subnet))
	e.must("update-cloud-config", "cloud.yml", "-n")
}
