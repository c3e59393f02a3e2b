// Package renderjob implements `kpaas render-job`: render one job of a release
// as it would land in /var/vcap/jobs/<job>, for release authors to check their
// templates (ERB or Go) without deploying.
package renderjob

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/render"
	"github.com/kpaas/kpaas/pkg/render/erb"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Options of `kpaas render-job`.
type Options struct {
	IO   *ui.IOStreams
	JSON bool

	Release    string // release directory or tarball
	Job        string
	Properties string // YAML: the job's properties block
	Links      string // YAML: consumed link name -> {instances, properties, address, ...}
	Instance   string // YAML: the instance's spec facts
	Out        string
	Ruby       string
}

// NewCmdRenderJob builds `kpaas render-job`. runF replaces the run function in tests.
func NewCmdRenderJob(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "render-job --release DIR|TARBALL --job NAME --out DIR",
		Short: "Render one job of a release as it would land in /var/vcap/jobs/NAME",
		Long: `Render one job's monit file and templates (ERB with ruby, as the BOSH director
renders them, or Go templates) into --out, with .bosh/links.json, without deploying.

--properties is a YAML file holding what the manifest gives the job under
properties (bound against the job spec: undeclared ones dropped, defaults filled
in). --links is a YAML map of the links the job consumes:
  db: {address: db.example, properties: {port: 5432},
       instances: [{name: db, index: 0, id: abc, az: z1, address: 10.0.0.5, bootstrap: true}]}
--instance is a YAML map of the instance's spec: deployment, name, index, id, az,
bootstrap, address, ip, persistent_disk, networks. YAML is typed as ruby reads it
(YAML 1.1: on is true, 012 is octal, 1.0 a float).`,
		Example: `  kpaas render-job --release releases/kpaas-erb-demo --job erb-server --out /tmp/server
  kpaas render-job --release demo-1.tgz --job erb-client --properties props.yml --links links.yml --out /tmp/client
  kpaas render-job --release . --job web --instance instance.yml --out /tmp/web --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if opts.Release == "" || opts.Job == "" || opts.Out == "" {
				return cmdutil.FlagErrorf("--release, --job and --out are required")
			}
			if runF != nil {
				return runF(opts)
			}
			return renderJobRun(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Release, "release", "", "release directory or tarball")
	cmd.Flags().StringVar(&opts.Job, "job", "", "job to render")
	cmd.Flags().StringVar(&opts.Properties, "properties", "", "YAML file of the job's properties")
	cmd.Flags().StringVar(&opts.Links, "links", "", "YAML file of the links the job consumes")
	cmd.Flags().StringVar(&opts.Instance, "instance", "", "YAML file of the instance's spec")
	cmd.Flags().StringVar(&opts.Out, "out", "", "directory to write the rendered job into")
	cmd.Flags().StringVar(&opts.Ruby, "ruby", "", "ruby interpreter for ERB templates (default: ruby on PATH)")
	return cmd
}

type fileView struct {
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Bytes int    `json:"bytes"`
}

type resultView struct {
	Job          string     `json:"job"`
	Release      string     `json:"release"`
	Out          string     `json:"out"`
	TemplateHash string     `json:"template_hash"`
	Files        []fileView `json:"files"`
}

func loadJob(path, name string) (*release.JobContent, render.ReleaseRef, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, render.ReleaseRef{}, fmt.Errorf("reading release %s: %w", path, err)
	}
	if st.IsDir() {
		d, err := release.ReadDir(path)
		if err != nil {
			return nil, render.ReleaseRef{}, err
		}
		j := d.Job(name)
		if j == nil {
			return nil, render.ReleaseRef{}, fmt.Errorf("release directory %s has no job '%s'", path, name)
		}
		c, err := j.Content()
		return c, render.ReleaseRef{Name: d.Name(), Version: "0+dev"}, err
	}
	t, err := release.ReadTarball(path, release.ReadOptions{})
	if err != nil {
		return nil, render.ReleaseRef{}, err
	}
	c := t.Job(name)
	if c == nil {
		return nil, render.ReleaseRef{}, fmt.Errorf("release %s/%s (%s) has no job '%s'", t.Manifest.Name, t.Manifest.Version, path, name)
	}
	return c, render.ReleaseRef{Name: t.Manifest.Name, Version: t.Manifest.Version}, nil
}

func readYAMLMap(path, what string) (map[string]any, error) {
	if path == "" {
		return map[string]any{}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s file: %w", what, err)
	}
	v, err := erb.DecodeYAML11(data)
	if err != nil {
		return nil, fmt.Errorf("parsing %s file %s: %w", what, path, err)
	}
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s file %s must hold a YAML map", what, path)
	}
	return m, nil
}

func str(m map[string]any, k string) string {
	if v, ok := m[k]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

func num(m map[string]any, k string) int {
	if v, ok := m[k].(int); ok {
		return v
	}
	return 0
}

func boolean(m map[string]any, k string, def bool) bool {
	if v, ok := m[k].(bool); ok {
		return v
	}
	return def
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m
}

func instanceFrom(m map[string]any, job string) render.Instance {
	in := render.Instance{
		Deployment: str(m, "deployment"), Group: str(m, "name"), Index: num(m, "index"), ID: str(m, "id"), AZ: str(m, "az"),
		Bootstrap: boolean(m, "bootstrap", true), Address: str(m, "address"), IP: str(m, "ip"), PersistentDisk: num(m, "persistent_disk"),
		Networks: map[string]render.Network{},
	}
	if in.Deployment == "" {
		in.Deployment = "render-job"
	}
	if in.Group == "" {
		in.Group = job
	}
	if in.ID == "" {
		in.ID = "00000000-0000-0000-0000-000000000000"
	}
	if in.AZ == "" {
		in.AZ = "z1"
	}
	if in.IP == "" {
		in.IP = "10.0.0.10"
	}
	if in.Address == "" {
		in.Address = in.IP
	}
	for name, v := range asMap(m["networks"]) {
		n := asMap(v)
		var dns, def []string
		for _, d := range asList(n["dns"]) {
			dns = append(dns, fmt.Sprint(d))
		}
		for _, d := range asList(n["default"]) {
			def = append(def, fmt.Sprint(d))
		}
		in.Networks[name] = render.Network{Type: str(n, "type"), IP: str(n, "ip"), Netmask: str(n, "netmask"), Gateway: str(n, "gateway"), Prefix: str(n, "prefix"), DNS: dns, Default: def, CloudProperties: asMap(n["cloud_properties"])}
	}
	if len(in.Networks) == 0 {
		in.Networks["default"] = render.Network{Type: "manual", IP: in.IP, Netmask: "255.255.255.0", Default: []string{"dns", "gateway"}}
	}
	return in
}

func asList(v any) []any { l, _ := v.([]any); return l }

func linksFrom(m map[string]any, deployment string) map[string]*render.Link {
	out := map[string]*render.Link{}
	for name, v := range m {
		lm := asMap(v)
		l := &render.Link{Name: name, Type: str(lm, "type"), Deployment: deployment, Domain: "bosh", InstanceGroup: str(lm, "instance_group"),
			Network: str(lm, "default_network"), Properties: asMap(lm["properties"]), Address: str(lm, "address")}
		if l.Type == "" {
			l.Type = name
		}
		if l.Network == "" {
			l.Network = "default"
		}
		for i, iv := range asList(lm["instances"]) {
			im := asMap(iv)
			li := render.LinkInstance{Name: str(im, "name"), ID: str(im, "id"), Index: i, AZ: str(im, "az"), Address: str(im, "address"), Bootstrap: boolean(im, "bootstrap", i == 0)}
			if _, ok := im["index"]; ok {
				li.Index = num(im, "index")
			}
			if li.Name == "" {
				li.Name = l.InstanceGroup
			}
			l.Instances = append(l.Instances, li)
		}
		if l.InstanceGroup == "" && len(l.Instances) > 0 {
			l.InstanceGroup = l.Instances[0].Name
		}
		out[name] = l
	}
	return out
}

func renderJobRun(opts *Options) error {
	content, ref, err := loadJob(opts.Release, opts.Job)
	if err != nil {
		return err
	}
	props, err := readYAMLMap(opts.Properties, "properties")
	if err != nil {
		return err
	}
	linkMap, err := readYAMLMap(opts.Links, "links")
	if err != nil {
		return err
	}
	instMap, err := readYAMLMap(opts.Instance, "instance")
	if err != nil {
		return err
	}
	bound, err := render.BindProperties(content.Spec, render.PropertySources{Job: props})
	if err != nil {
		return err
	}
	inst := instanceFrom(instMap, opts.Job)
	links := linksFrom(linkMap, inst.Deployment)

	r := render.NewRenderer()
	if needsERB(content) {
		e, err := erb.Register(r, erb.Options{Ruby: opts.Ruby, Procs: 1, Stderr: opts.IO.ErrOut})
		if err != nil {
			return err
		}
		defer e.Close()
	}
	ri, err := r.RenderInstance(inst, []render.JobInput{{Content: content, Release: ref, Properties: bound, Links: links}})
	if err != nil {
		return fmt.Errorf("job '%s' of release %s did not render:\n%w", opts.Job, opts.Release, err)
	}
	rj := ri.Job(opts.Job)
	view := resultView{Job: rj.Name, Release: ref.Name, Out: opts.Out, TemplateHash: rj.TemplateHash}
	write := func(dst string, data []byte, mode os.FileMode) error {
		p := filepath.Join(opts.Out, filepath.FromSlash(dst))
		if !strings.HasPrefix(p, filepath.Clean(opts.Out)+string(os.PathSeparator)) {
			return fmt.Errorf("template destination %q leaves the output directory", dst)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, mode)
	}
	if err := write("monit", rj.Monit, 0o644); err != nil {
		return fmt.Errorf("writing rendered job: %w", err)
	}
	view.Files = append(view.Files, fileView{Src: "monit", Dst: "monit", Bytes: len(rj.Monit)})
	for _, f := range rj.Files {
		mode := os.FileMode(0o644)
		if f.Executable() {
			mode = 0o755
		}
		if err := write(f.Dst, f.Content, mode); err != nil {
			return fmt.Errorf("writing rendered job: %w", err)
		}
		view.Files = append(view.Files, fileView{Src: f.Src, Dst: f.Dst, Bytes: len(f.Content)})
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, view)
	}
	fmt.Fprintf(opts.IO.Out, "Rendered job '%s' of release %s into %s:\n", rj.Name, ref.Name, opts.Out)
	for _, f := range view.Files {
		fmt.Fprintf(opts.IO.Out, "  %-30s %6d bytes  (from %s)\n", f.Dst, f.Bytes, f.Src)
	}
	return nil
}

func needsERB(c *release.JobContent) bool {
	if strings.Contains(string(c.Monit), "<%") {
		return true
	}
	for src := range c.Spec.Templates {
		if strings.EqualFold(filepath.Ext(src), ".erb") {
			return true
		}
	}
	return false
}
