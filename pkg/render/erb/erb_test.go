package erb

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/render"
)

func needRuby(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("ruby"); err != nil {
		t.Skip("ruby is not installed (.ci/setup-ruby.sh installs it)")
	}
}

func newEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	needRuby(t)
	e, err := New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func selfSignedPEM(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242),
		Subject:      pkix.Name{CommonName: "router.service.internal", Organization: []string{"kpaas"}},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2036, 1, 2, 0, 0, 0, 0, time.UTC),
		DNSNames:     []string{"router.service.internal", "*.apps.example.com"},
		IPAddresses:  []net.IP{net.ParseIP("10.0.0.5")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func gzB64(t testing.TB, s string) string {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write([]byte(s))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// propertiesYAML is typed as ruby types it: on is true, 0644 octal, 1.0 a float.
const propertiesYAML = `
srv:
  name: edge
  ratio: 1.0
  enabled: on
  mode: 0644
  ports: {http: "8080", https: 8443}
  tls: {key: KEY}
net:
  cidrs: [10.0.0.0/16, 192.168.1.0/24, 8.8.8.0/24]
app:
  settings: {b: [1, 2.5, "x"], a: {nested: yes, none: ~}}
  ratio: 0.5
  list: [a, 1, 1.0, off]
  motto: "it's a \"test\" & more"
  greeting: "grüß dich, 世界 ✓"
shadow: {hash: 7, display: shown, format: f}
`

func testContext(t testing.TB) *render.Context {
	t.Helper()
	v, err := DecodeYAML11([]byte(propertiesYAML))
	require.NoError(t, err)
	props := v.(map[string]any)
	props["srv"].(map[string]any)["tls"].(map[string]any)["cert"] = "-----BEGIN CERT-----\nabc\n"
	props["tls"] = map[string]any{"cert": selfSignedPEM(t)}
	props["acl"] = map[string]any{"cidrs_gz_b64": gzB64(t, "10.1.0.0/16\n 10.2.0.0/16\n\n172.16.0.0/12\n")}
	return &render.Context{
		Instance: render.Instance{Deployment: "cf", Group: "router", Index: 1, ID: "6f0c7e0a-uuid", AZ: "z2", Bootstrap: false,
			Address: "10.0.0.21", IP: "10.0.0.21", PersistentDisk: 1024,
			Networks: map[string]render.Network{"default": {Type: "manual", IP: "10.0.0.21", Netmask: "255.255.255.0", Gateway: "10.0.0.1", Default: []string{"dns", "gateway"}}}},
		Job:        "gorouter",
		Release:    render.ReleaseRef{Name: "routing", Version: "0.300.0"},
		Properties: props,
		Links: map[string]*render.Link{"db": {Name: "db", Type: "database", Deployment: "cf", Domain: "bosh", InstanceGroup: "database", Network: "default",
			Address:    "q-s0.database.default.cf.bosh",
			Properties: map[string]any{"db": map[string]any{"port": 5432, "tls": true}},
			Instances: []render.LinkInstance{{Name: "database", ID: "db-0", Index: 0, AZ: "z1", Address: "10.0.1.10", Bootstrap: true},
				{Name: "database", ID: "db-1", Index: 1, AZ: "z2", Address: "10.0.1.11"}}}},
	}
}

// Every conformance template renders byte for byte as plain ruby ERB renders
// it from the same context with an independent p/if_p/link/spec.
func TestMatchesPlainRubyERB(t *testing.T) {
	e := newEngine(t, Options{})
	ctx := testContext(t)
	spec, err := MarshalContext(ctx.Spec())
	require.NoError(t, err)
	ctxFile := filepath.Join(t.TempDir(), "context.json")
	require.NoError(t, os.WriteFile(ctxFile, spec, 0o600))
	files, err := filepath.Glob("testdata/conformance/*.erb")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 7)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			require.NoError(t, err)
			cmd := exec.Command("ruby", "testdata/reference.rb", ctxFile, f)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			want, err := cmd.Output()
			require.NoError(t, err, "reference ruby: %s", stderr.String())
			got, err := e.Render(filepath.Base(f), src, ctx)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got))
			assert.NotEmpty(t, strings.TrimSpace(string(got)))
		})
	}
}

// Spot checks that do not depend on the reference: the conformance output is
// what the director's contract says.
func TestConformanceValues(t *testing.T) {
	e := newEngine(t, Options{})
	ctx := testContext(t)
	render := func(f string) string {
		src, err := os.ReadFile("testdata/conformance/" + f)
		require.NoError(t, err)
		out, err := e.Render(f, src, ctx)
		require.NoError(t, err)
		return string(out)
	}
	h := render("helpers.erb")
	assert.Contains(t, h, "mode: server-only (-----BEGIN CERT-----)\nhttp: 8080\nratio: 1.0 (Float)\nenabled: true\nmode_octal: 420\nhttps: 8443\nnames: edge / fallback / nil\n")
	assert.Contains(t, render("x509.erb"), "sans: *.apps.example.com 10.0.0.5 router.service.internal\nserial: 4242\nnot_after: 2036-01-02")
	assert.Contains(t, render("gzcidrs.erb"), "acl allow src 10.1.0.0/16\nacl allow src 10.2.0.0/16\nacl allow src 172.16.0.0/12\ntotal 3\n")
	assert.Contains(t, render("netcalc.erb"), "192.168.1.0/24: first=192.168.1.0 mask=255.255.255.0 private=true includes_10_0_0_5=false")
	l := render("links.erb")
	assert.Contains(t, l, "server database-0 10.0.1.10:5432 az=z1 id=db-0 primary\nserver database-1 10.0.1.11:5432 az=z2 id=db-1\ndb address: q-s0.database.default.cf.bosh\ndb user: admin\nno cache\ntls: true\n")
	em := render("emitters.erb")
	assert.Contains(t, em, `"job": "router"`)
	assert.Contains(t, em, `"networks": [`+"\n    \"default\"\n  ]")
	assert.Contains(t, em, `["a",1,1.0,false]`)
	assert.Contains(t, em, `shell: it\'s\ a\ \"test\"\ \&\ more`)
}

func renderString(t *testing.T, e *Engine, name, src string, ctx *render.Context) (string, error) {
	t.Helper()
	out, err := e.Render(name, []byte(src), ctx)
	return string(out), err
}

func TestDirectorHelpers(t *testing.T) {
	e := newEngine(t, Options{Procs: 1})
	ctx := testContext(t)
	cases := []struct{ src, want string }{
		{`<%= p("srv.enabled") %>|<%= p("srv.tls.missing", false) %>`, "true|false"},
		{`<%= p(["srv.x", "srv.y"], 7) %>`, "7"},
		{`<% if_p("srv.name", "srv.ratio") do |n, r| %><%= n %>=<%= r %><% end %>`, "edge=1.0"},
		{`<% if_p("srv.name", "srv.nope") do |n| %>x<% end.else do %>else<% end %>`, "else"},
		{`<% if_p("srv.nope") do %>x<% end.else_if_p("srv.mode") do |m| %><%= m %><% end.else do %>z<% end %>`, "420"},
		{`<% if_p("srv.name") do %>a<% end.else_if_p("srv.mode") do %>b<% end.else do %>c<% end %>`, "a"},
		{`<% if_link("nope") do %>x<% end.else_if_link("db") do |db| %><%= db.instances.map(&:index).join(",") %><% end %>`, "0,1"},
		{`<%= spec.networks.methods(false).sort.inspect %>`, "[:default, :default=]"},
		{`<%= spec.job.name %> <%= spec.release.version %> <%= spec.bootstrap %> <%= spec.index %> <%= spec.persistent_disk %> <%= name %> <%= index %>`, "router 0.300.0 false 1 1024 router 1"},
		{`<%= properties.srv.ports.https %> <%= raw_properties["srv"]["name"] %>`, "8443 edge"},
		// keys that shadow Object's methods read as properties, as with OpenStruct
		{`<%= properties.shadow.hash %> <%= properties.shadow.display %> <%= properties.shadow.format %> <%= properties.shadow.nope.inspect %>`, "7 shown f nil"},
		{`<%= link("db").instances.first.p("db.port") %> <%= link("db").address(azs: ["z1"]) %>`, "5432 q-s0.database.default.cf.bosh"},
		{`<%= p("net.cidrs").first.blank? %> <%= "".blank? %> <%= nil.present? %>`, "false true false"},
	}
	for _, c := range cases {
		got, err := renderString(t, e, "t.erb", c.src, ctx)
		require.NoError(t, err, c.src)
		assert.Equal(t, c.want, got, c.src)
	}
}

func TestDirectorErrors(t *testing.T) {
	e := newEngine(t, Options{Procs: 1})
	ctx := testContext(t)
	cases := []struct {
		src, want string
		line      int
	}{
		{"a\n<%= p(['srv.x', 'srv.y']) %>", `Error filling in template 't.erb' (line 2: Can't find property '["srv.x", "srv.y"]')`, 2},
		{"<%= p('srv.nope') %>", `Error filling in template 't.erb' (line 1: Can't find property '["srv.nope"]')`, 1},
		{"\n\n<%= link('cache') %>", `Error filling in template 't.erb' (line 3: Can't find link 'cache')`, 3},
		{"<% raise 'bad config: ports clash' %>", `Error filling in template 't.erb' (line 1: bad config: ports clash)`, 1},
		{"x\n<% abort 'conflicting frontends' %>", `Error filling in template 't.erb' (line 2: conflicting frontends)`, 2},
		{"<%= p('srv.name').no_such_method %>", "Error filling in template 't.erb' (line 1: undefined method `no_such_method' for an instance of String)", 1},
		{"<% if %>", `Error filling in template 't.erb' (line 1: `, 1},
	}
	for _, c := range cases {
		_, err := renderString(t, e, "t.erb", c.src, ctx)
		var te *TemplateError
		require.ErrorAs(t, err, &te, c.src)
		assert.Contains(t, te.Error(), c.want, c.src)
		assert.Equal(t, c.line, te.Line, c.src)
	}
	// after every error (abort included) the same process still renders
	got, err := renderString(t, e, "t.erb", "ok <%= Process.pid > 0 %>", ctx)
	require.NoError(t, err)
	assert.Equal(t, "ok true", got)
}

// No property value reaches an error message through a library error.
func TestNoSecretsInErrors(t *testing.T) {
	e := newEngine(t, Options{Procs: 1})
	ctx := testContext(t)
	ctx.Properties["db"] = map[string]any{"password": "hunter2-s3cret", "creds": `{"user": "admin", "password": "hunter2-s3cret"`}
	for _, src := range []string{
		`<%= p("db.password").frobnicate %>`,
		`<%= p("db").frobnicate %>`,
		`<%= JSON.parse(p("db.creds")) %>`,
		`<%= Integer(p("db.password")) %>`,
		`<%= spec.properties.db.frobnicate(1) %>`,
		`<%= properties.db.password.undefined_thing %>`,
	} {
		_, err := renderString(t, e, "s.erb", src, ctx)
		require.Error(t, err, src)
		assert.NotContains(t, err.Error(), "hunter2", src)
		assert.Contains(t, err.Error(), "Error filling in template 's.erb' (line 1: ", src)
	}
}

// Each template gets a fresh context: helper methods and mutations do not leak.
func TestFreshContextPerTemplate(t *testing.T) {
	e := newEngine(t, Options{Procs: 1})
	ctx := testContext(t)
	_, err := renderString(t, e, "a.erb", `<% def helper; "leaked"; end; p("net.cidrs") << "mutated"; p("srv")["name"] = "changed" %>`, ctx)
	require.NoError(t, err)
	got, err := renderString(t, e, "b.erb", `<%= respond_to?(:helper) %> <%= p("net.cidrs").size %> <%= p("srv.name") %>`, ctx)
	require.NoError(t, err)
	assert.Equal(t, "false 3 edge", got)
}

// What templates print, to fd 1 or from a child process, never reaches the protocol.
func TestTemplateOutputCannotCorruptProtocol(t *testing.T) {
	var stderr bytes.Buffer
	e := newEngine(t, Options{Procs: 1, Stderr: &stderr})
	ctx := testContext(t)
	src := "<% puts '{\"id\":1,\"ok\":true}'; STDOUT.puts 'x'; $stdout.write \"\\n\\n\"; system('echo from-child'); IO.new(1).write('fd1') -%>\nreal <%= \"\\n\" %>\x00\xff"
	got, err := renderString(t, e, "noise.erb", src, ctx)
	require.NoError(t, err)
	assert.Equal(t, "real \n\x00\xff", got)
	got, err = renderString(t, e, "stdin.erb", "<%= STDIN.read.inspect %> <%= $stdin.gets.inspect %>", ctx)
	require.NoError(t, err)
	assert.Equal(t, `"" nil`, got, "stdin is /dev/null, not the request stream")
	got, err = renderString(t, e, "after.erb", "<%= 1 %>", ctx)
	require.NoError(t, err)
	assert.Equal(t, "1", got)
	require.NoError(t, e.Close())
	assert.Contains(t, stderr.String(), "from-child")
}

// A template that kills its process or never ends costs that template only.
func TestRendererProcessFailures(t *testing.T) {
	e := newEngine(t, Options{Procs: 1, Timeout: 1500 * time.Millisecond})
	ctx := testContext(t)
	_, err := renderString(t, e, "exit.erb", `<% exit! 3 %>`, ctx)
	require.ErrorIs(t, err, ErrRenderer)
	_, err = renderString(t, e, "loop.erb", `<% loop {} %>`, ctx)
	require.ErrorIs(t, err, ErrRenderer)
	assert.Contains(t, err.Error(), "did not finish within 1.5s")
	got, err := renderString(t, e, "ok.erb", `<%= p("srv.name") %>`, ctx)
	require.NoError(t, err)
	assert.Equal(t, "edge", got)
}

// As root, ruby runs as nobody in its own scratch directory with a bare environment.
func TestRunsUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the renderer runs as the calling user")
	}
	e := newEngine(t, Options{Procs: 1})
	t.Setenv("KPAAS_TEST_SECRET", "do-not-leak")
	got, err := renderString(t, e, "who.erb", `<%= Process.uid %>:<%= Process.gid %> <%= File.basename(Dir.pwd).start_with?("kpaas-erb-") %> <%= ENV.keys.sort.join(",") %> <%= File.writable?("/etc/passwd") %>`, testContext(t))
	require.NoError(t, err)
	assert.Equal(t, "65534:65534 true HOME,LANG,PATH,TMPDIR false", got)
}

func TestNoRuby(t *testing.T) {
	_, err := New(Options{Ruby: "/nonexistent/ruby"})
	require.ErrorIs(t, err, ErrNoRuby)
	assert.Contains(t, err.Error(), "apt-get install")
}

// Go templates keep working beside ERB in one job, through render.Renderer.
func TestRendererMixesEngines(t *testing.T) {
	needRuby(t)
	r := render.NewRenderer()
	e, err := Register(r, Options{Procs: 1})
	require.NoError(t, err)
	defer e.Close()
	ctx := testContext(t)
	goOut, err := r.EngineFor("a.yml").Render("a.yml", []byte(`{{ p "srv.name" }}`), ctx)
	require.NoError(t, err)
	erbOut, err := r.EngineFor("b.yml.erb").Render("b.yml.erb", []byte(`<%= p("srv.name") %>`), ctx)
	require.NoError(t, err)
	assert.Equal(t, "edge", string(goOut))
	assert.Equal(t, "edge", string(erbOut))
	assert.False(t, errors.Is(err, render.ErrNoEngine))
}

// Many goroutines share a pool of two processes; every reply reaches the
// render that asked for it.
func TestConcurrentRendersGetTheirOwnReplies(t *testing.T) {
	e := newEngine(t, Options{Procs: 2})
	errs := make(chan error, 40)
	base := testContext(t)
	for i := 0; i < 40; i++ {
		ctx := &render.Context{Instance: base.Instance, Job: base.Job, Release: base.Release, Properties: base.Properties}
		ctx.Instance.Index = i
		go func(i int) {
			out, err := e.Render("c.erb", []byte(fmt.Sprintf("<%%= spec.index %%>-%d<%% sleep 0.01 if spec.index.even? %%>", i)), ctx)
			if err == nil && string(out) != fmt.Sprintf("%d-%d", i, i) {
				err = fmt.Errorf("render %d got %q", i, out)
			}
			errs <- err
		}(i)
	}
	for i := 0; i < 40; i++ {
		require.NoError(t, <-errs)
	}
}
