package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const erbManifest = `name: erb-demo
releases: [{name: kpaas-erb-demo, version: latest}]
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000-30000, update_watch_time: 1000-30000}
instance_groups:
- name: kv
  azs: [z1, z2]
  instances: 2
  vm_type: small
  stemcell: default
  networks: [{name: net}]
  jobs:
  - name: erb-server
    release: kpaas-erb-demo
    properties:
      kv: {realm: ((realm)), port: 9090, entries: {alpha: on, zeta: 1.0}}
- name: poller
  azs: [z1]
  instances: 1
  vm_type: small
  stemcell: default
  networks: [{name: net}]
  jobs:
  - name: erb-client
    release: kpaas-erb-demo
    properties: {client: {interval: 1, port: 8081}}
`

// A release whose templates are ERB deploys unchanged: the servers' pages and
// the client's polling loop are rendered by ruby, the client finds the servers
// through the kv link between the two instance groups.
func TestDeployERBReleaseWithLinks(t *testing.T) {
	if _, err := exec.LookPath("ruby"); err != nil {
		t.Skip("ruby is not installed (.ci/setup-ruby.sh installs it)")
	}
	e := newEnv(t)
	t.Cleanup(func() { e.kpaas("delete-deployment", "-d", "erb-demo", "--force", "-n") })
	e.setup()
	e.must("upload-release", filepath.Join(moduleDir, "releases", "kpaas-erb-demo"))
	m := e.write("erb.yml", erbManifest)
	r := e.kpaas("plan", m, "-v", "realm=K-PaaS <erb>", "--json")
	var pl planJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &pl), r.stderr)
	ips := map[string]string{}
	for _, in := range pl.Instances {
		require.Len(t, in.IPs, 1, in.Instance)
		ips[in.Instance] = in.IPs[0]
	}
	e.must("deploy", m, "-v", "realm=K-PaaS <erb>", "-n")

	kv := []string{ips["kv/0"], ips["kv/1"]}
	poller := ips["poller/0"]
	require.NotEmpty(t, poller, "plan: %s", r.stdout)
	for i, ip := range kv {
		page := get(t, "http://"+ip+":9090/")
		assert.Contains(t, page, "<h1>K-PaaS &lt;erb&gt; on kv/"+string(rune('0'+i))+"</h1>", ip)
		// on is true (YAML 1.1); 1.0 arrives as 1, as with bosh-cli, whose
		// interpolation re-emits the manifest through yaml.v2 before the director sees it.
		assert.Contains(t, page, "<li>alpha=true</li>\n<li>zeta=1</li>")
	}
	// The client polls each server it got through the link and serves the copies.
	deadline := time.Now().Add(30 * time.Second)
	var got [2]string
	for time.Now().Before(deadline) {
		got[0], got[1] = tryGet("http://"+poller+":8081/0.html"), tryGet("http://"+poller+":8081/1.html")
		if strings.Contains(got[0], "on kv/0") && strings.Contains(got[1], "on kv/1") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	assert.Contains(t, got[0], "<h1>K-PaaS &lt;erb&gt; on kv/0</h1>")
	assert.Contains(t, got[1], "<h1>K-PaaS &lt;erb&gt; on kv/1</h1>")

	// A config the template rejects fails the deploy in the director's words and changes nothing.
	r = e.kpaas("deploy", m, "-v", "realm=x", "-o", e.write("ops.yml", "- type: replace\n  path: /instance_groups/name=kv/jobs/name=erb-server/properties/kv/max_entries?\n  value: 1\n"), "-n")
	require.NotEqual(t, 0, r.code)
	assert.Contains(t, r.stderr, "Error filling in template 'server.json.erb' (line 4: kv.entries has 2 entries, more than kv.max_entries (1))")
	assert.Contains(t, get(t, "http://"+kv[0]+":9090/"), "K-PaaS &lt;erb&gt;", "the failed deploy left the running servers alone")

	e.must("delete-deployment", "-d", "erb-demo", "-n")
}

func tryGet(url string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
