package render

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/release"
)

func mustSpec(t testing.TB, y string) *release.JobSpec {
	t.Helper()
	s, err := release.ParseJobSpec([]byte(y), "test spec")
	require.NoError(t, err)
	return s
}

func webInstance() Instance {
	return Instance{
		Deployment: "demo", Group: "web_tier", Index: 2, ID: "8f1c-uuid", AZ: "z1", Bootstrap: false,
		Address: "10.0.0.12", IP: "10.0.0.12",
		Networks: map[string]Network{"default": {Type: "manual", IP: "10.0.0.12", Netmask: "255.255.255.0", Gateway: "10.0.0.1", DNS: []string{"10.0.0.2"}, Default: []string{"dns", "gateway"}}},
	}
}

const webSpec = `
name: web
templates: {t: config/t}
properties:
  port: {default: 8080}
  greeting: {description: no default}
  tls.enabled: {default: false}
  tls.cert: {}
  tuning.workers: {default: 4}
  tuning.limits: {default: {open_files: 1024}}
  list: {default: [a, b]}
consumes:
  - {name: db, type: database}
  - {name: cache, type: redis, optional: true}
`

func TestTemplates(t *testing.T) {
	spec := mustSpec(t, webSpec)
	db := &Link{Name: "db", Type: "database", Deployment: "demo", Domain: "bosh", InstanceGroup: "pg", Network: "default",
		Address:    "q-s0.pg.default.demo.bosh",
		Properties: map[string]any{"port": 5432, "tls": map[string]any{"enabled": true}},
		Instances: []LinkInstance{
			{Name: "pg", ID: "a", Index: 0, AZ: "z1", Address: "10.0.1.10", Bootstrap: true},
			{Name: "pg", ID: "b", Index: 1, AZ: "z2", Address: "10.0.1.11"},
		}}
	cases := []struct {
		name    string
		props   map[string]any // manifest job properties
		tmpl    string
		want    string
		wantErr string
	}{
		{name: "default", tmpl: `{{ p "port" }}`, want: "8080"},
		{name: "manifest over default", props: map[string]any{"port": 9090}, tmpl: `{{ p "port" }}`, want: "9090"},
		{name: "nested dotted", props: map[string]any{"tuning": map[string]any{"workers": 16}}, tmpl: `{{ p "tuning.workers" }}/{{ p "tuning.limits.open_files" }}`, want: "16/1024"},
		{name: "false is a value", props: map[string]any{"tls": map[string]any{"enabled": false}}, tmpl: `{{ p "tls.enabled" "fallback" }}`, want: "false"},
		{name: "default argument", tmpl: `{{ p "greeting" "hello" }}`, want: "hello"},
		{name: "required missing", tmpl: "line1\n{{ p \"greeting\" }}", wantErr: "rendering job 'web' in instance group 'web_tier' (web_tier/2): template 't' line 2: property 'greeting' is required and has no value"},
		{name: "undeclared", props: map[string]any{"secret": "x"}, tmpl: `{{ p "secret" }}`, wantErr: "property 'secret' is not declared in the job spec"},
		{name: "if_p set", props: map[string]any{"greeting": "hi"}, tmpl: `{{ if if_p "greeting" }}{{ p "greeting" }}{{ else }}none{{ end }}`, want: "hi"},
		{name: "if_p unset", tmpl: `{{ if if_p "greeting" "port" }}yes{{ else }}none{{ end }}`, want: "none"},
		{name: "if_p nil nested", tmpl: `{{ if if_p "tls.cert" }}cert{{ else }}nocert{{ end }}`, want: "nocert"},
		{name: "list", tmpl: `{{ range p "list" }}[{{ . }}]{{ end }} {{ join "," (p "list") }}`, want: "[a][b] a,b"},
		{name: "json", tmpl: `{{ json (p "tuning") }}`, want: `{"limits":{"open_files":1024},"workers":4}`},
		{name: "spec fields", tmpl: `{{ spec.deployment }} {{ spec.name }}/{{ spec.index }} {{ spec.id }} {{ spec.az }} {{ spec.bootstrap }} {{ spec.address }} {{ spec.ip }}`, want: "demo web_tier/2 8f1c-uuid z1 false 10.0.0.12 10.0.0.12"},
		{name: "spec networks", tmpl: `{{ spec.networks.default.ip }} {{ spec.networks.default.gateway }} {{ spec.networks.default.dns_record_name }} {{ range $n, $_ := spec.networks }}{{ $n }}{{ end }}`, want: "10.0.0.12 10.0.0.1 2.web-tier.default.demo.bosh default"},
		{name: "dot is spec", tmpl: `{{ .name }} {{ .properties.port }}`, want: "web_tier 8080"},
		{name: "spec typo", tmpl: `{{ spec.adress }}`, wantErr: `map has no entry for key "adress"`},
		{name: "link", tmpl: `{{ with link "db" }}{{ .P "port" }} {{ .address }} {{ .instance_group }}{{ range .instances }} {{ .address }}/{{ .index }}/{{ .bootstrap }}{{ end }}{{ end }}`, want: "5432 q-s0.pg.default.demo.bosh pg 10.0.1.10/0/true 10.0.1.11/1/false"},
		{name: "link p default and nested", tmpl: `{{ (link "db").P "user" "admin" }} {{ (link "db").P "tls.enabled" }} {{ (link "db").IfP "tls.enabled" }} {{ (link "db").IfP "nope" }}`, want: "admin true true false"},
		{name: "link p missing", tmpl: `{{ (link "db").P "user" }}`, wantErr: "link 'db' has no property 'user'"},
		{name: "if_link", tmpl: `{{ if if_link "cache" }}cache{{ else }}nocache{{ end }} {{ if if_link "db" }}db{{ end }}`, want: "nocache db"},
		{name: "link missing", tmpl: `{{ (link "cache").address }}`, wantErr: "can't find link 'cache'"},
		{name: "parse error", tmpl: `{{ p "port" `, wantErr: "template 't'"},
	}
	r := NewRenderer()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			props, err := BindProperties(spec, PropertySources{Job: c.props})
			require.NoError(t, err)
			job := JobInput{
				Content:    &release.JobContent{Name: "web", Spec: spec, Templates: map[string][]byte{"t": []byte(c.tmpl)}},
				Properties: props, Links: map[string]*Link{"db": db},
			}
			out, err := r.RenderInstance(webInstance(), []JobInput{job})
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, string(out.Jobs[0].File("config/t").Content))
		})
	}
}

func TestMissingPropertyErrorIsTyped(t *testing.T) {
	spec := mustSpec(t, webSpec)
	props, err := BindProperties(spec, PropertySources{})
	require.NoError(t, err)
	_, err = NewRenderer().RenderInstance(webInstance(), []JobInput{{
		Content:    &release.JobContent{Name: "web", Spec: spec, Templates: map[string][]byte{"t": []byte(`{{ p "greeting" }}`)}},
		Properties: props,
	}})
	var te *TemplateError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "web", te.Job)
	assert.Equal(t, "web_tier", te.Group)
	var pe *PropertyError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, []string{"greeting"}, pe.Names)
	assert.True(t, errors.Is(err, ErrPropertyMissing))
}

func TestBindProperties(t *testing.T) {
	spec := mustSpec(t, webSpec)
	cases := []struct {
		name    string
		src     PropertySources
		want    map[string]any
		wantErr string
	}{
		{
			name: "job block replaces group and global",
			src:  PropertySources{Job: map[string]any{"port": 1}, Group: map[string]any{"greeting": "group"}, Global: map[string]any{"greeting": "global"}},
			want: map[string]any{"port": 1, "greeting": nil, "tls": map[string]any{"enabled": false, "cert": nil}, "tuning": map[string]any{"workers": 4, "limits": map[string]any{"open_files": 1024}}, "list": []any{"a", "b"}},
		},
		{
			name: "group over global when the job has no block; undeclared dropped",
			src:  PropertySources{Group: map[string]any{"greeting": "group", "extra": 1, "tuning": map[string]any{"workers": 2}}, Global: map[string]any{"greeting": "global", "port": 7, "tuning": map[string]any{"limits": "x"}}},
			want: map[string]any{"port": 7, "greeting": "group", "tls": map[string]any{"enabled": false, "cert": nil}, "tuning": map[string]any{"workers": 2, "limits": "x"}, "list": []any{"a", "b"}},
		},
		{
			name: "null in the manifest takes the default",
			src:  PropertySources{Job: map[string]any{"port": nil}},
			want: map[string]any{"port": 8080, "greeting": nil, "tls": map[string]any{"enabled": false, "cert": nil}, "tuning": map[string]any{"workers": 4, "limits": map[string]any{"open_files": 1024}}, "list": []any{"a", "b"}},
		},
		{
			name:    "intermediate not a hash",
			src:     PropertySources{Job: map[string]any{"tls": "on"}},
			wantErr: "property 'tls' expects a hash, but received 'String'",
		},
		{
			name: "yaml.v2 maps are accepted",
			src:  PropertySources{Job: map[string]any{"tuning": map[any]any{"workers": 3}}},
			want: map[string]any{"port": 8080, "greeting": nil, "tls": map[string]any{"enabled": false, "cert": nil}, "tuning": map[string]any{"workers": 3, "limits": map[string]any{"open_files": 1024}}, "list": []any{"a", "b"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := BindProperties(spec, c.src)
			if c.wantErr != "" {
				require.ErrorContains(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
	// Defaults are copied: changing one binding leaves the spec alone.
	a, _ := BindProperties(spec, PropertySources{})
	a["tuning"].(map[string]any)["limits"].(map[string]any)["open_files"] = 1
	b, _ := BindProperties(spec, PropertySources{})
	assert.Equal(t, 1024, b["tuning"].(map[string]any)["limits"].(map[string]any)["open_files"])
}

func untar(t *testing.T, data []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		b, _ := io.ReadAll(tr)
		out[h.Name] = string(b)
	}
}

func sha1hex(parts ...string) string {
	h := sha1.New()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// The archive layout and the hashes of section 4.4, recomputed by hand.
func TestRenderedOutputAndHashes(t *testing.T) {
	alpha := &release.JobContent{Name: "alpha", Spec: mustSpec(t, "name: alpha\ntemplates: {z.sh: bin/run, a.conf: config/a.conf}\nproperties: {n: {default: 1}}\nprovides: [{name: api, type: http}, {name: admin, type: http}]\n"),
		Monit:     []byte("check process alpha # {{ spec.index }}\n"),
		Templates: map[string][]byte{"z.sh": []byte("#!/bin/sh\necho {{ p \"n\" }}\n"), "a.conf": []byte("n={{ p \"n\" }}\n")}}
	beta := &release.JobContent{Name: "beta", Spec: mustSpec(t, "name: beta\ntemplates: {b.erb.txt: config/b}\n"), Templates: map[string][]byte{"b.erb.txt": []byte("b")}}
	props, err := BindProperties(alpha.Spec, PropertySources{})
	require.NoError(t, err)
	in := webInstance()
	out, err := NewRenderer().RenderInstance(in, []JobInput{
		{Content: beta},
		{Content: alpha, Properties: props, Provides: []ProvidedLink{{Name: "admin", Type: "http", Group: "admin-http"}, {Name: "api", Type: "http", Group: "api-http"}}},
	})
	require.NoError(t, err)
	linksAlpha := "[\n  {\n    \"name\": \"admin\",\n    \"type\": \"http\",\n    \"group\": \"admin-http\"\n  },\n  {\n    \"name\": \"api\",\n    \"type\": \"http\",\n    \"group\": \"api-http\"\n  }\n]\n"
	files := untar(t, out.Archive)
	assert.Equal(t, map[string]string{
		"alpha/monit":            "check process alpha # 2\n",
		"alpha/bin/run":          "#!/bin/sh\necho 1\n",
		"alpha/config/a.conf":    "n=1\n",
		"alpha/.bosh/links.json": linksAlpha,
		"beta/monit":             "",
		"beta/config/b":          "b",
		"beta/.bosh/links.json":  "[]\n",
	}, files)
	assert.Equal(t, sha1hex(string(out.Archive)), out.ArchiveSHA1)
	assert.Equal(t, sha1hex("check process alpha # 2\n", linksAlpha, "n=1\n", "#!/bin/sh\necho 1\n"), out.TemplateHashes["alpha"])
	assert.Equal(t, sha1hex("[]\n", "b"), out.TemplateHashes["beta"])
	assert.Equal(t, sha1hex(
		"check process alpha # 2\n", "alpha", linksAlpha, ".bosh/links.json", "n=1\n", "config/a.conf", "#!/bin/sh\necho 1\n", "bin/run",
		"", "beta", "[]\n", ".bosh/links.json", "b", "config/b",
	), out.ConfigurationHash)
	assert.True(t, out.Job("alpha").File("bin/run").Executable())
	assert.False(t, out.Job("alpha").File("config/a.conf").Executable())

	// Same input, same bytes; another index changes monit and so both hashes.
	again, err := NewRenderer().RenderInstance(in, []JobInput{{Content: beta}, {Content: alpha, Properties: props, Provides: []ProvidedLink{{Name: "admin", Type: "http", Group: "admin-http"}, {Name: "api", Type: "http", Group: "api-http"}}}})
	require.NoError(t, err)
	assert.Equal(t, out.ArchiveSHA1, again.ArchiveSHA1)
	in.Index = 3
	other, err := NewRenderer().RenderInstance(in, []JobInput{{Content: beta}, {Content: alpha, Properties: props}})
	require.NoError(t, err)
	assert.NotEqual(t, out.ConfigurationHash, other.ConfigurationHash)
	assert.Equal(t, out.TemplateHashes["beta"], other.TemplateHashes["beta"])
}

type upperEngine struct{}

func (upperEngine) Render(name string, src []byte, ctx *Context) ([]byte, error) {
	return bytes.ToUpper(append(src, []byte(" "+ctx.Spec()["name"].(string))...)), nil
}

func TestEngineByExtension(t *testing.T) {
	job := &release.JobContent{Name: "j", Spec: mustSpec(t, "name: j\ntemplates: {a.erb: config/a, b: config/b}\n"),
		Templates: map[string][]byte{"a.erb": []byte("<%= p('x') %>"), "b": []byte("{{ spec.name }}")}}
	r := NewRenderer()
	_, err := r.RenderInstance(webInstance(), []JobInput{{Content: job}})
	require.ErrorIs(t, err, ErrNoEngine)
	assert.Contains(t, err.Error(), "template 'a.erb'")

	r.Register(".ERB", upperEngine{})
	out, err := r.RenderInstance(webInstance(), []JobInput{{Content: job}})
	require.NoError(t, err)
	assert.Equal(t, "<%= P('X') %> WEB_TIER", string(out.Job("j").File("config/a").Content))
	assert.Equal(t, "web_tier", string(out.Job("j").File("config/b").Content))
}

func TestResolveLinks(t *testing.T) {
	pgSpec := mustSpec(t, "name: postgres\nproperties: {port: {default: 5432}, password: {}}\nprovides: [{name: db, type: database, properties: [port]}]\n")
	apiSpec := mustSpec(t, "name: api\nconsumes: [{name: database, type: database}, {name: cache, type: redis, optional: true}]\n")
	pgProps, err := BindProperties(pgSpec, PropertySources{Job: map[string]any{"password": "secret"}})
	require.NoError(t, err)
	pgInstances := []Instance{
		{Group: "pg", Index: 0, ID: "p0", AZ: "z1", Bootstrap: true, Address: "10.0.1.10", Networks: map[string]Network{"default": {IP: "10.0.1.10"}, "backend": {IP: "10.9.0.10"}}},
		{Group: "pg", Index: 1, ID: "p1", AZ: "z2", Address: "10.0.1.11", Networks: map[string]Network{"default": {IP: "10.0.1.11"}, "backend": {IP: "10.9.0.11"}}},
	}
	base := func() LinkDeployment {
		return LinkDeployment{Name: "demo", Groups: []LinkGroup{
			{Name: "pg", DefaultNetwork: "default", Instances: pgInstances, Jobs: []LinkJob{{Name: "postgres", Spec: pgSpec, Properties: pgProps}}},
			{Name: "api", DefaultNetwork: "default", Jobs: []LinkJob{{Name: "api", Spec: apiSpec}}},
		}}
	}

	t.Run("implicit", func(t *testing.T) {
		res, err := ResolveLinks(base())
		require.NoError(t, err)
		l := res.Consumed[JobKey{"api", "api"}]["database"]
		require.NotNil(t, l)
		assert.Equal(t, map[string]any{"port": 5432}, l.Properties, "only the provided properties, no password")
		assert.Equal(t, "q-s0.pg.default.demo.bosh", l.Address)
		assert.Equal(t, []string{"10.0.1.10", "10.0.1.11"}, []string{l.Instances[0].Address, l.Instances[1].Address})
		assert.NotContains(t, res.Consumed[JobKey{"api", "api"}], "cache", "optional link nobody provides is absent")
		assert.Equal(t, []ProvidedLink{{Name: "db", Type: "database", Group: "db-database"}}, res.Provided[JobKey{"pg", "postgres"}])
	})
	t.Run("explicit from, alias and network", func(t *testing.T) {
		d := base()
		d.Groups[0].Jobs[0].Manifest = manifest.Job{Provides: map[string]manifest.ProvideLink{"db": {As: "primary"}}}
		d.Groups = append(d.Groups, LinkGroup{Name: "pg2", Jobs: []LinkJob{{Name: "postgres", Spec: pgSpec, Properties: pgProps}}})
		d.Groups[1].Jobs[0].Manifest = manifest.Job{Consumes: map[string]manifest.ConsumeLink{"database": {From: "primary", Network: "backend"}}}
		res, err := ResolveLinks(d)
		require.NoError(t, err)
		l := res.Consumed[JobKey{"api", "api"}]["database"]
		assert.Equal(t, "pg", l.InstanceGroup)
		assert.Equal(t, "primary", l.Name)
		assert.Equal(t, "10.9.0.11", l.Instances[1].Address)
		assert.Equal(t, "q-s0.pg.backend.demo.bosh", l.Address)
	})
	t.Run("network not on the provider", func(t *testing.T) {
		d := base()
		d.Groups[0].Networks = []string{"default", "backend"}
		d.Groups[1].Jobs[0].Manifest = manifest.Job{Consumes: map[string]manifest.ConsumeLink{"database": {Network: "nope"}}}
		_, err := ResolveLinks(d)
		assert.ErrorContains(t, err, "network 'nope' is not one of the networks of instance group 'pg' that provides it (default, backend)")
	})
	t.Run("ambiguous", func(t *testing.T) {
		d := base()
		d.Groups = append(d.Groups, LinkGroup{Name: "pg2", Jobs: []LinkJob{{Name: "postgres", Spec: pgSpec, Properties: pgProps}}})
		_, err := ResolveLinks(d)
		require.ErrorIs(t, err, ErrLinkUnresolved)
		assert.Contains(t, err.Error(), "job 'api' in instance group 'api' consumes link 'database' (type database): multiple link providers found: pg.postgres.db, pg2.postgres.db")
	})
	t.Run("nobody provides", func(t *testing.T) {
		d := base()
		d.Groups = d.Groups[1:]
		_, err := ResolveLinks(d)
		var le *LinkError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, JobKey{"api", "api"}, le.Key)
		assert.Equal(t, "database", le.Link)
		assert.Contains(t, err.Error(), "job 'api' in instance group 'api' consumes link 'database' (type database): no job in deployment 'demo' provides a link of this type")
	})
	t.Run("blocked provider and consumer", func(t *testing.T) {
		d := base()
		d.Groups[0].Jobs[0].Manifest = manifest.Job{Provides: map[string]manifest.ProvideLink{"db": {Blocked: true}}}
		_, err := ResolveLinks(d)
		require.ErrorIs(t, err, ErrLinkUnresolved)
		d.Groups[1].Jobs[0].Manifest = manifest.Job{Consumes: map[string]manifest.ConsumeLink{"database": {Blocked: true}}}
		res, err := ResolveLinks(d)
		require.NoError(t, err)
		assert.Empty(t, res.Consumed[JobKey{"api", "api"}])
	})
	t.Run("from names a wrong type or nothing", func(t *testing.T) {
		d := base()
		d.Groups[1].Jobs[0].Manifest = manifest.Job{Consumes: map[string]manifest.ConsumeLink{"database": {From: "nothing"}}}
		_, err := ResolveLinks(d)
		assert.ErrorContains(t, err, "no job in deployment 'demo' provides a link named 'nothing'")
		d.Groups[0].Jobs[0].Manifest = manifest.Job{CustomProviderDefinitions: []manifest.CustomProviderDefinition{{Name: "nothing", Type: "redis"}}}
		_, err = ResolveLinks(d)
		assert.ErrorContains(t, err, "has type redis, not database")
	})
	t.Run("provided property not declared", func(t *testing.T) {
		d := base()
		d.Groups[0].Jobs[0].Spec = mustSpec(t, "name: postgres\nprovides: [{name: db, type: database, properties: [port]}]\n")
		_, err := ResolveLinks(d)
		assert.ErrorContains(t, err, "provides link 'db' with property 'port', which its job spec does not declare")
	})
}

func TestSourcesForManifest(t *testing.T) {
	data := []byte(`
name: demo
properties: {port: 1, greeting: global}
instance_groups:
- name: a
  properties: {greeting: group}
  jobs:
  - {name: web, release: r}
  - {name: web2, release: r, properties: {}}
`)
	m, _, err := manifest.ParseManifest("demo.yml", data)
	require.NoError(t, err)
	spec := mustSpec(t, "name: web\nproperties: {port: {default: 80}, greeting: {}}\n")
	g := m.InstanceGroup("a")
	got, err := BindProperties(spec, SourcesFor(m, g, &g.Jobs[0]))
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"port": 1, "greeting": "group"}, got)
	got, err = BindProperties(spec, SourcesFor(m, g, &g.Jobs[1]))
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"port": 80, "greeting": nil}, got, "an empty job block hides group and global properties")
}

func TestMonitWithERBGoesToTheERBEngine(t *testing.T) {
	job := &release.JobContent{Name: "j", Spec: mustSpec(t, "name: j\n"), Monit: []byte("check process j <%= spec.index %>")}
	r := NewRenderer()
	_, err := r.RenderInstance(webInstance(), []JobInput{{Content: job}})
	require.ErrorIs(t, err, ErrNoEngine)
	r.Register(".erb", upperEngine{})
	out, err := r.RenderInstance(webInstance(), []JobInput{{Content: job}})
	require.NoError(t, err)
	assert.Equal(t, "CHECK PROCESS J <%= SPEC.INDEX %> WEB_TIER", string(out.Jobs[0].Monit))
}
