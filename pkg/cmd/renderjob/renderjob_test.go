package renderjob

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/ui"
)

const demo = "../../../releases/kpaas-erb-demo"

func run(t *testing.T, jsonOut bool, args ...string) (string, error) {
	t.Helper()
	ios, _, out, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: jsonOut}}
	cmd := NewCmdRenderJob(f, nil)
	cmd.SetArgs(args)
	cmd.SetOut(&strings.Builder{})
	cmd.SetErr(&strings.Builder{})
	err := cmd.Execute()
	return out.String(), err
}

func needRuby(t *testing.T) {
	if _, err := exec.LookPath("ruby"); err != nil {
		t.Skip("ruby is not installed (.ci/setup-ruby.sh installs it)")
	}
}

func write(t *testing.T, name, text string) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
	return p
}

func TestRequiredFlags(t *testing.T) {
	_, err := run(t, false, "--job", "x")
	var fe *cmdutil.FlagError
	require.ErrorAs(t, err, &fe)
	assert.Contains(t, err.Error(), "--release, --job and --out are required")
}

func TestRenderClientFromDirWithLinks(t *testing.T) {
	needRuby(t)
	out := t.TempDir()
	props := write(t, "p.yml", "client: {interval: 012}\nunknown: dropped\n")
	links := write(t, "l.yml", `kv:
  properties: {kv: {port: 7000, realm: lab}}
  instances:
  - {name: kv, index: 0, id: a, az: z1, address: 10.1.0.5, bootstrap: true}
  - {name: kv, index: 3, id: b, az: z2, address: 10.1.0.6}
`)
	inst := write(t, "i.yml", "deployment: lab\nname: poller\nindex: 2\nbootstrap: false\nip: 10.2.0.9\n")
	stdout, err := run(t, true, "--release", demo, "--job", "erb-client", "--properties", props, "--links", links, "--instance", inst, "--out", out)
	require.NoError(t, err)
	var v resultView
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.Equal(t, "erb-client", v.Job)
	assert.Equal(t, "kpaas-erb-demo", v.Release)
	dsts := []string{}
	for _, f := range v.Files {
		dsts = append(dsts, f.Dst)
	}
	assert.ElementsMatch(t, []string{"monit", ".bosh/links.json", "bin/ctl", "config/client.yml"}, dsts)

	client, err := os.ReadFile(filepath.Join(out, "config/client.yml"))
	require.NoError(t, err)
	assert.Equal(t, "---\nrealm: lab\nservers:\n- 10.1.0.5:7000\n- 10.1.0.6:7000\ninterval: 10\nbootstrap: false\n# no cache link\n", string(client), "012 is octal 10 as ruby reads it")
	st, err := os.Stat(filepath.Join(out, "bin/ctl"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	ctl, _ := os.ReadFile(filepath.Join(out, "bin/ctl"))
	assert.Contains(t, string(ctl), `echo "kv/3 unreachable" > "$DATA_DIR/3.html"`)
}

func TestRenderServerFromTarball(t *testing.T) {
	needRuby(t)
	d, err := release.ReadDir(demo)
	require.NoError(t, err)
	tgz := filepath.Join(t.TempDir(), "demo.tgz")
	_, err = d.WriteTarball(tgz, release.CreateOptions{Version: "3"})
	require.NoError(t, err)
	out := t.TempDir()
	stdout, err := run(t, false, "--release", tgz, "--job", "erb-server", "--out", out)
	require.NoError(t, err)
	assert.Contains(t, stdout, "Rendered job 'erb-server' of release kpaas-erb-demo into "+out)
	monit, err := os.ReadFile(filepath.Join(out, "monit"))
	require.NoError(t, err)
	assert.Contains(t, string(monit), "if failed port 8080 then restart")
}

func TestRenderErrors(t *testing.T) {
	needRuby(t)
	_, err := run(t, false, "--release", demo, "--job", "erb-client", "--out", t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Error filling in template 'ctl.erb' (line 10: Can't find link 'kv')")
	assert.Contains(t, err.Error(), "Error filling in template 'client.yml.erb' (line 7: erb-client needs the kv link or client.servers)")

	_, err = run(t, false, "--release", demo, "--job", "nope", "--out", t.TempDir())
	assert.ErrorContains(t, err, "has no job 'nope'")

	props := write(t, "p.yml", "kv: {entries: {a: 1, b: 2}, max_entries: 1}\n")
	_, err = run(t, false, "--release", demo, "--job", "erb-server", "--properties", props, "--out", t.TempDir())
	assert.ErrorContains(t, err, "(line 4: kv.entries has 2 entries, more than kv.max_entries (1))")
}
