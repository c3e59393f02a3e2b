package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSharedLinkAcrossDeployments deploys hello sharing its http link, then
// deployment "greet" whose greeter consumes it with `deployment: hello` and
// fetches every hello page through it.
func TestSharedLinkAcrossDeployments(t *testing.T) {
	e := newEnv(t)
	t.Cleanup(func() { e.kpaas("delete-deployment", "-d", "greet", "--force", "-n") })
	e.setup()
	greet := e.write("greet.yml", `name: greet
releases: [{name: kpaas-hello, version: latest}]
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000-30000, update_watch_time: 1000-30000}
instance_groups:
- name: client
  azs: [z1]
  instances: 1
  vm_type: small
  stemcell: default
  networks: [{name: net}]
  jobs:
  - name: greeter
    release: kpaas-hello
    consumes: {backend: {from: web, deployment: hello}}
    properties: {greeter: {interval: 1}}
`)
	// Before hello is deployed: refused, nothing created.
	r := e.kpaas("deploy", greet, "-n")
	require.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "job 'greeter' in instance group 'client' consumes link 'backend'")
	assert.Contains(t, r.stderr, "deployment 'hello' has not been deployed successfully")
	assert.Empty(t, vmDirs(t, e))

	hello := e.write("hello.yml", strings.Replace(helloManifest, "    release: kpaas-hello\n    properties:", "    release: kpaas-hello\n    provides: {hello: {as: web, shared: true}}\n    properties:", 1))
	e.must("deploy", hello, "-v", "instances=2", "-v", "greeting=hi", "-n")
	before := vmDirs(t, e)
	e.must("deploy", greet, "-n")
	var client string
	for _, vm := range vmDirs(t, e) {
		if !contains(before, vm) {
			client = vm
		}
	}
	require.NotEmpty(t, client)
	deadline := time.Now().Add(30 * time.Second)
	var log string
	for time.Now().Before(deadline) {
		log = inVM(t, e, client, "sh", "-c", "cat /var/vcap/sys/log/greeter/greeter.log 2>/dev/null; true")
		if strings.Contains(log, "fetched web/0 at "+e.subnet+".20") && strings.Contains(log, "fetched web/1 at "+e.subnet+".21") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	assert.Contains(t, log, "fetched web/0 at "+e.subnet+".20")
	assert.Contains(t, log, "fetched web/1 at "+e.subnet+".21")
	assert.Contains(t, inVM(t, e, client, "cat", "/var/vcap/data/greeter/1.html"), "<h1>hi</h1>")
	e.must("delete-deployment", "-d", "greet", "-n")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
