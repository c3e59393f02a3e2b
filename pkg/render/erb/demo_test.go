package erb

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/render"
)

const demoManifest = `
name: erb-demo
releases: [{name: kpaas-erb-demo, version: latest}]
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: kv
  instances: 2
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - name: erb-server
    release: kpaas-erb-demo
    properties:
      kv: {realm: "K-PaaS <demo>", port: 9090, entries: {zeta: 1.0, alpha: on}%s}
- name: poller
  instances: 1
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: [{name: erb-client, release: kpaas-erb-demo, properties: {client: {interval: 2}}}]
`

func demoInput(t testing.TB, extra string) render.DeploymentInput {
	t.Helper()
	d, err := release.ReadDir("../../../releases/kpaas-erb-demo")
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "demo.tgz")
	_, err = d.WriteTarball(p, release.CreateOptions{Version: "1"})
	require.NoError(t, err)
	tb, err := release.ReadTarball(p, release.ReadOptions{})
	require.NoError(t, err)
	m, _, err := manifest.ParseManifest("demo.yml", []byte(fmt.Sprintf(demoManifest, extra)))
	require.NoError(t, err)
	insts := map[string][]render.Instance{}
	for gi, g := range m.InstanceGroups {
		for i := 0; i < g.Instances; i++ {
			ip := fmt.Sprintf("10.0.%d.%d", gi, 10+i)
			insts[g.Name] = append(insts[g.Name], render.Instance{Index: i, ID: fmt.Sprintf("%s-uuid-%d", g.Name, i), AZ: g.AZs[i%len(g.AZs)], Bootstrap: i == 0,
				Address: ip, IP: ip, Networks: map[string]render.Network{"default": {Type: "manual", IP: ip}}})
		}
	}
	return render.DeploymentInput{Manifest: m, Instances: insts, Jobs: render.TarballSource(tb)}
}

// The ERB demo release renders as a deployment of two instance groups: the
// client consumes the servers' kv link, monit files with ERB tags go to ruby.
func TestDemoReleaseRendersWithLinks(t *testing.T) {
	needRuby(t)
	r := render.NewRenderer()
	e, err := Register(r, Options{})
	require.NoError(t, err)
	defer e.Close()

	out, err := r.RenderDeployment(demoInput(t, ""))
	require.NoError(t, err)
	client := out.Instances["poller"][0].Job("erb-client")
	assert.Equal(t, "---\nrealm: K-PaaS <demo>\nservers:\n- 10.0.0.10:9090\n- 10.0.0.11:9090\ninterval: 2\nbootstrap: true\n# no cache link\n",
		string(client.File("config/client.yml").Content))
	ctl := string(client.File("bin/ctl").Content)
	assert.Contains(t, ctl, `busybox wget -q -O "$DATA_DIR/1.html" "http://10.0.0.11:9090/" || echo "kv/1 unreachable" > "$DATA_DIR/1.html"`)
	assert.Contains(t, ctl, "sleep 2\n")

	server := out.Instances["kv"][1].Job("erb-server")
	assert.Contains(t, string(server.Monit), "if failed port 9090 then restart")
	assert.Equal(t, "{\n  \"realm\": \"K-PaaS <demo>\",\n  \"listen\": \"10.0.0.11:9090\",\n  \"bootstrap\": false,\n  \"az\": \"z2\",\n  \"entries\": {\n    \"alpha\": true,\n    \"zeta\": 1.0\n  }\n}\n",
		string(server.File("config/server.json").Content))
	assert.Contains(t, string(server.File("www/index.html").Content), "<h1>K-PaaS &lt;demo&gt; on kv/1</h1>\n<ul>\n<li>alpha=true</li>\n<li>zeta=1.0</li>\n</ul>")
	assert.Equal(t, "[\n  {\n    \"name\": \"kv\",\n    \"type\": \"kv\",\n    \"group\": \"kv-kv\"\n  }\n]\n", string(server.File(".bosh/links.json").Content))
}

// A config the template rejects with abort fails the deploy with the
// director's wording, once for the group.
func TestDemoReleaseAbortIsTemplateError(t *testing.T) {
	needRuby(t)
	r := render.NewRenderer()
	e, err := Register(r, Options{})
	require.NoError(t, err)
	defer e.Close()
	in := demoInput(t, "")
	in.Manifest.InstanceGroups[0].Jobs[0].Properties["kv"].(map[string]any)["max_entries"] = 1
	_, err = r.RenderDeployment(in)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rendering job 'erb-server' in instance group 'kv' (kv/0 and 1 more): template 'server.json.erb' line 4: Error filling in template 'server.json.erb' (line 4: kv.entries has 2 entries, more than kv.max_entries (1))")
}
