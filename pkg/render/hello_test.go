package render

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/kpaas/kpaas/pkg/release"
)

// helloDeployment is a sample deployment of releases/kpaas-hello: two hello
// instances, a greeter, the store writer and the smoke-tests errand.
type helloDeployment struct {
	dir       *release.Dir
	contents  map[string]*release.JobContent
	groups    []LinkGroup
	resolved  *Resolution
	instances map[string][]Instance
}

func loadHello(t testing.TB, helloInstances int, helloProps map[string]any) *helloDeployment {
	t.Helper()
	d, err := release.ReadDir("../../releases/kpaas-hello")
	require.NoError(t, err)
	h := &helloDeployment{dir: d, contents: map[string]*release.JobContent{}, instances: map[string][]Instance{}}
	for _, j := range d.Jobs {
		c, err := j.Content()
		require.NoError(t, err)
		h.contents[j.Name] = c
	}
	mk := func(group string, n int, subnet int) []Instance {
		var out []Instance
		for i := 0; i < n; i++ {
			ip := fmt.Sprintf("10.%d.%d.%d", subnet, i/250, 10+i%250)
			out = append(out, Instance{Deployment: "hello", Group: group, Index: i, ID: fmt.Sprintf("%s-uuid-%d", group, i),
				AZ: []string{"z1", "z2"}[i%2], Bootstrap: i == 0, Address: ip, IP: ip,
				Networks: map[string]Network{"default": {Type: "manual", IP: ip, Netmask: "255.255.0.0", Gateway: fmt.Sprintf("10.%d.0.1", subnet), DNS: []string{"10.0.0.2"}, Default: []string{"dns", "gateway"}}}})
		}
		return out
	}
	groupJobs := []struct {
		group, job string
		n          int
		props      map[string]any
	}{
		{"web", "hello", helloInstances, helloProps},
		{"greeter", "greeter", 1, map[string]any{"greeter": map[string]any{"interval": 2}}},
		{"writer", "store-writer", 1, nil},
		{"smoke-tests", "smoke-tests", 1, nil},
	}
	for i, gj := range groupJobs {
		c := h.contents[gj.job]
		props, err := BindProperties(c.Spec, PropertySources{Job: gj.props})
		require.NoError(t, err)
		insts := mk(gj.group, gj.n, i)
		h.instances[gj.group] = insts
		h.groups = append(h.groups, LinkGroup{Name: gj.group, DefaultNetwork: "default", Instances: insts,
			Jobs: []LinkJob{{Name: gj.job, Release: "kpaas-hello", Spec: c.Spec, Properties: props}}})
	}
	h.resolved, err = ResolveLinks(LinkDeployment{Name: "hello", Groups: h.groups})
	require.NoError(t, err)
	return h
}

func (h *helloDeployment) render(t testing.TB, r *Renderer, group string, index int) *RenderedInstance {
	t.Helper()
	var g *LinkGroup
	for i := range h.groups {
		if h.groups[i].Name == group {
			g = &h.groups[i]
		}
	}
	var jobs []JobInput
	for _, j := range g.Jobs {
		key := JobKey{group, j.Name}
		jobs = append(jobs, JobInput{Content: h.contents[j.Name], Release: ReleaseRef{"kpaas-hello", "0+dev.1"}, Properties: j.Properties,
			Links: h.resolved.Consumed[key], Provides: h.resolved.Provided[key]})
	}
	out, err := r.RenderInstance(h.instances[group][index], jobs)
	require.NoError(t, err)
	return out
}

func shellCheck(t *testing.T, name string, script []byte) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		return
	}
	cmd := exec.Command(sh, "-n")
	cmd.Stdin = strings.NewReader(string(script))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s is not valid sh: %s", name, out)
}

func TestRenderHelloRelease(t *testing.T) {
	h := loadHello(t, 2, map[string]any{"hello": map[string]any{"port": 9000, "greeting": "Hi K-PaaS", "message": "from the test"}})
	r := NewRenderer()

	web1 := h.render(t, r, "web", 1)
	hello := web1.Job("hello")
	var bpm struct {
		Processes []struct {
			Name          string            `yaml:"name"`
			Executable    string            `yaml:"executable"`
			Args          []string          `yaml:"args"`
			Env           map[string]string `yaml:"env"`
			EphemeralDisk bool              `yaml:"ephemeral_disk"`
		} `yaml:"processes"`
	}
	require.NoError(t, yaml.Unmarshal(hello.File("config/bpm.yml").Content, &bpm))
	require.Len(t, bpm.Processes, 1)
	p := bpm.Processes[0]
	assert.Equal(t, "hello", p.Name)
	assert.Equal(t, "/var/vcap/packages/hello-scripts/bin/hello-server", p.Executable)
	assert.Equal(t, []string{"--port", "9000", "--root", "/var/vcap/data/hello/www", "--page", "/var/vcap/jobs/hello/config/index.html"}, p.Args)
	assert.Equal(t, "web/1", p.Env["HELLO_INSTANCE"])
	assert.True(t, p.EphemeralDisk)

	page := string(hello.File("config/index.html").Content)
	assert.Contains(t, page, "<h1>Hi K-PaaS</h1>\n<p class=\"message\">from the test</p>\n")
	assert.Contains(t, page, "web/1 (web-uuid-1) az=z2 deployment=hello address=10.0.0.11 bootstrap=false")
	assert.Contains(t, string(hello.File("bin/post-start").Content), "http://127.0.0.1:9000/health\" 30")
	assert.Equal(t, "echo 0\n", lastLine(hello.File("bin/drain").Content))
	assert.Equal(t, "[\n  {\n    \"name\": \"hello\",\n    \"type\": \"http\",\n    \"group\": \"hello-http\"\n  }\n]\n", string(hello.File(".bosh/links.json").Content))
	assert.Contains(t, string(hello.Monit), "check process hello")

	greeter := h.render(t, r, "greeter", 0).Job("greeter")
	ctl := string(greeter.File("bin/ctl").Content)
	assert.Contains(t, ctl, `"http://10.0.0.10:9000/"`)
	assert.Contains(t, ctl, `"http://10.0.0.11:9000/"`)
	assert.Contains(t, ctl, "sleep 2")

	run := string(h.render(t, r, "smoke-tests", 0).Job("smoke-tests").File("bin/run").Content)
	assert.Contains(t, run, `grep -q "Hello from kpaas"`, "smoke-tests' own default, not hello's property")
	assert.Contains(t, run, "all 2 instance(s) passed")

	writer := h.render(t, r, "writer", 0).Job("store-writer")
	for _, rj := range []*RenderedJob{hello, greeter, writer, h.render(t, r, "smoke-tests", 0).Job("smoke-tests")} {
		for _, f := range rj.Files {
			if f.Executable() {
				shellCheck(t, rj.Name+"/"+f.Dst, f.Content)
			}
		}
	}

	// Instances of one group differ only where the spec says so.
	web0 := h.render(t, r, "web", 0)
	assert.NotEqual(t, web0.ConfigurationHash, web1.ConfigurationHash)
	assert.Equal(t, web0.Job("hello").File("bin/drain").Content, hello.File("bin/drain").Content)
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return lines[len(lines)-1] + "\n"
}

// The store-writer's pre-start really keeps its first record across starts (as
// a recreate with the same persistent disk does).
func TestStoreWriterPreStartKeepsData(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	h := loadHello(t, 1, nil)
	script := h.render(t, NewRenderer(), "writer", 0).Job("store-writer").File("bin/pre-start").Content
	store := t.TempDir()
	runScript := func() {
		cmd := exec.Command(sh, "-c", string(script))
		cmd.Env = append(os.Environ(), "STORE_DIR="+store)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	runScript()
	created, err := os.ReadFile(filepath.Join(store, "created"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(created), "writer-uuid-0 "), string(created))
	runScript()
	again, _ := os.ReadFile(filepath.Join(store, "created"))
	assert.Equal(t, created, again)
	starts, _ := os.ReadFile(filepath.Join(store, "starts"))
	assert.Equal(t, "2\n", string(starts))
}

func TestHelloMissingLinkIsRefused(t *testing.T) {
	d, err := release.ReadDir("../../releases/kpaas-hello")
	require.NoError(t, err)
	greeter := d.Job("greeter").Spec
	_, err = ResolveLinks(LinkDeployment{Name: "hello", Groups: []LinkGroup{{Name: "greeter", Jobs: []LinkJob{{Name: "greeter", Spec: greeter}}}}})
	require.ErrorIs(t, err, ErrLinkUnresolved)
	assert.Contains(t, err.Error(), "job 'greeter' in instance group 'greeter' consumes link 'backend' (type http): no job in deployment 'hello' provides a link of this type")
}

// BenchmarkRenderHello1000 renders the hello job (bpm.yml, a page, three
// lifecycle scripts, monit, links.json, archive and hashes) for 1,000 instances.
func BenchmarkRenderHello1000(b *testing.B) {
	h := loadHello(b, 1000, map[string]any{"hello": map[string]any{"greeting": "bench"}})
	r := NewRenderer()
	g := h.groups[0]
	key := JobKey{"web", "hello"}
	jobs := []JobInput{{Content: h.contents["hello"], Properties: g.Jobs[0].Properties, Links: h.resolved.Consumed[key], Provides: h.resolved.Provided[key]}}
	b.ReportAllocs()
	for b.Loop() {
		for _, in := range g.Instances {
			if _, err := r.RenderInstance(in, jobs); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkRenderGreeter1000 renders, for 1,000 instances, a job whose script
// loops over a link with 100 provider instances: the link-heavy case.
func BenchmarkRenderGreeter1000(b *testing.B) {
	h := loadHello(b, 100, nil)
	r := NewRenderer()
	key := JobKey{"greeter", "greeter"}
	jobs := []JobInput{{Content: h.contents["greeter"], Properties: h.groups[1].Jobs[0].Properties, Links: h.resolved.Consumed[key]}}
	in := h.instances["greeter"][0]
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < 1000; i++ {
			in.Index = i
			if _, err := r.RenderInstance(in, jobs); err != nil {
				b.Fatal(err)
			}
		}
	}
}
