package plan

import (
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/manifest"
)

const cloud = `
azs: [{name: z1}, {name: z2}]
vm_types: [{name: small, cloud_properties: {ram: 64}}, {name: big, cloud_properties: {ram: 128}}]
disk_types: [{name: d1, disk_size: 100}]
networks:
- name: net
  subnets:
  - {range: 10.0.1.0/24, gateway: 10.0.1.1, reserved: [10.0.1.2-10.0.1.9], static: [10.0.1.10-10.0.1.19], az: z1}
  - {range: 10.0.2.0/24, gateway: 10.0.2.1, reserved: [10.0.2.2-10.0.2.9], static: [10.0.2.10-10.0.2.19], az: z2}
- name: dyn
  type: dynamic
  cloud_properties: {range: 10.9.0.0/24}
`

func manifestFor(t testing.TB, groups string) *manifest.Manifest {
	t.Helper()
	src := "name: dep\nreleases: [{name: r, version: '1'}]\nstemcells: [{alias: default, os: tiny, version: '1'}]\n" +
		"update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000, update_watch_time: 1000}\ninstance_groups:\n" + groups
	m, _, err := manifest.ParseManifest("m.yml", []byte(src))
	require.NoError(t, err)
	return m
}

func cloudConfig(t testing.TB) *manifest.CloudConfig {
	cc, _, err := manifest.ParseCloudConfig("cc.yml", []byte(cloud))
	require.NoError(t, err)
	return cc
}

func input(t testing.TB, groups string, existing []Existing) Input {
	n := 0
	return Input{Manifest: manifestFor(t, groups), Cloud: cloudConfig(t), Existing: existing,
		Stemcells: map[string]StemcellRef{"default": {Name: "sc", Version: "1", OS: "tiny"}},
		NewID:     func() string { n++; return "u" + strconv.Itoa(n) }}
}

func build(t testing.TB, in Input, opts Options) *Plan {
	t.Helper()
	p, err := Place(in)
	require.NoError(t, err)
	for _, i := range p.Instances() {
		if i.Desired != nil {
			i.Desired.Packages = map[string]string{"pkg": "fp1"}
			i.Desired.Jobs = map[string]string{"web": "h1"}
		}
	}
	p.Compare(opts)
	return p
}

func actions(p *Plan) []string {
	var out []string
	for _, i := range p.Instances() {
		s := fmt.Sprintf("%s %s %s", i.Name(), i.AZ, i.Action)
		if i.Desired != nil {
			if n, ok := i.Desired.Networks["net"]; ok {
				s += " " + n.IP
			}
		}
		out = append(out, s)
	}
	return out
}

func webG(n int, vm string) string { return fmt.Sprintf(web, n, vm) }

const web = `- name: web
  azs: [z1, z2]
  instances: %d
  vm_type: %s
  stemcell: default
  jobs: [{name: web, release: r}]
  networks: [{name: net}]
`

func TestFirstDeployPlacesOverAZsAndSkipsReservedIPs(t *testing.T) {
	p := build(t, input(t, webG(3, "small"), nil), Options{})
	assert.Equal(t, []string{
		"web/0 z1 create 10.0.1.20", "web/2 z1 create 10.0.1.21", "web/1 z2 create 10.0.2.20",
	}, actions(p))
	assert.True(t, p.Groups[0].Instances[0].Bootstrap)
	assert.Equal(t, 3, p.Changes())
	assert.Equal(t, "255.255.255.0", p.Groups[0].Instances[0].Desired.Networks["net"].Netmask)
}

func TestChanges(t *testing.T) {
	first := build(t, input(t, webG(3, "small"), nil), Options{})
	existing := first.Applied(func(i *Instance) string { return "vm-" + i.UUID })

	tests := []struct {
		name    string
		groups  string
		opts    Options
		mutate  func(p *Plan)
		want    []string
		reasons map[string]string
	}{
		{name: "no change", groups: webG(3, "small"),
			want: []string{"web/0 z1 none 10.0.1.20", "web/2 z1 none 10.0.1.21", "web/1 z2 none 10.0.2.20"}},
		{name: "vm_type", groups: webG(3, "big"),
			want:    []string{"web/0 z1 recreate 10.0.1.20", "web/2 z1 recreate 10.0.1.21", "web/1 z2 recreate 10.0.2.20"},
			reasons: map[string]string{"web/0": "vm_type changed (small -> big)"}},
		{name: "scale down deletes from the fullest AZ, highest index", groups: webG(2, "small"),
			want:    []string{"web/2 z1 delete", "web/0 z1 none 10.0.1.20", "web/1 z2 none 10.0.2.20"},
			reasons: map[string]string{"web/2": "scaled down to 2 instances"}},
		{name: "scale up keeps existing, fills the emptier AZ", groups: webG(4, "small"),
			want: []string{"web/0 z1 none 10.0.1.20", "web/2 z1 none 10.0.1.21", "web/1 z2 none 10.0.2.20", "web/3 z2 create 10.0.2.21"}},
		{name: "job properties", groups: webG(3, "small"),
			mutate: func(p *Plan) {
				for _, i := range p.Instances() {
					i.Desired.Jobs["web"] = "h2"
				}
			},
			want:    []string{"web/0 z1 update 10.0.1.20", "web/2 z1 update 10.0.1.21", "web/1 z2 update 10.0.2.20"},
			reasons: map[string]string{"web/1": "job web changed (properties, links or templates)"}},
		{name: "package", groups: webG(3, "small"),
			mutate: func(p *Plan) {
				for _, i := range p.Instances() {
					i.Desired.Packages["pkg"] = "fp2"
				}
			},
			want:    []string{"web/0 z1 update 10.0.1.20", "web/2 z1 update 10.0.1.21", "web/1 z2 update 10.0.2.20"},
			reasons: map[string]string{"web/0": "package pkg changed"}},
		{name: "recreate flag", groups: webG(3, "small"), opts: Options{Recreate: true},
			want: []string{"web/0 z1 recreate 10.0.1.20", "web/2 z1 recreate 10.0.1.21", "web/1 z2 recreate 10.0.2.20"}},
		{name: "group removed", groups: strings.Replace(webG(1, "small"), "web", "api", 1),
			want: []string{"web/0 z1 delete", "web/1 z2 delete", "web/2 z1 delete", "api/0 z1 create 10.0.1.22"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups := tt.groups
			in := input(t, groups, existing)
			p, err := Place(in)
			require.NoError(t, err)
			for _, i := range p.Instances() {
				if i.Desired != nil {
					i.Desired.Packages = map[string]string{"pkg": "fp1"}
					i.Desired.Jobs = map[string]string{"web": "h1"}
				}
			}
			if tt.mutate != nil {
				tt.mutate(p)
			}
			p.Compare(tt.opts)
			assert.Equal(t, tt.want, actions(p))
			for name, reason := range tt.reasons {
				for _, i := range p.Instances() {
					if i.Name() == name {
						assert.Contains(t, i.Reasons, reason, name)
					}
				}
			}
		})
	}
}

func TestStaticIPsAndTakenIPs(t *testing.T) {
	groups := `- name: db
  azs: [z1]
  instances: 2
  vm_type: small
  stemcell: default
  persistent_disk_type: d1
  jobs: [{name: web, release: r}]
  networks: [{name: net, static_ips: [10.0.1.10, 10.0.1.11]}]
- name: web
  azs: [z1]
  instances: 2
  vm_type: small
  stemcell: default
  jobs: [{name: web, release: r}]
  networks: [{name: net}, {name: dyn, default: [dns, gateway]}]
`
	in := input(t, groups, nil)
	in.Taken = map[string][]string{"net": {"10.0.1.20", "10.0.1.22"}}
	p := build(t, in, Options{})
	assert.Equal(t, []string{"db/0 z1 create 10.0.1.10", "db/1 z1 create 10.0.1.11", "web/0 z1 create 10.0.1.21", "web/1 z1 create 10.0.1.23"}, actions(p))
	assert.True(t, p.Groups[0].Instances[0].Desired.Networks["net"].Static)
	assert.Equal(t, 100, p.Groups[0].Instances[0].Desired.PersistentDiskMB)
	assert.Equal(t, []string{"dns", "gateway"}, p.Groups[1].Instances[0].Desired.Networks["dyn"].Default)
	assert.Empty(t, p.Groups[1].Instances[0].Desired.Networks["net"].Default)
}

func TestBadInputIsRefused(t *testing.T) {
	in := input(t, strings.ReplaceAll(webG(1, "huge"), "stemcell: default", "stemcell: other"), nil)
	in.Manifest.InstanceGroups[0].Networks[0].Name = "nowhere"
	in.Manifest.InstanceGroups[0].AZs = []string{"z9"}
	_, err := Place(in)
	require.Error(t, err)
	for _, want := range []string{"vm_type 'huge'", "stemcell 'other' is not uploaded", "network 'nowhere'", "az 'z9'"} {
		assert.ErrorContains(t, err, want)
	}
	// Only 10 static IPs in z1 and 10 in z2 outside dynamic: a full network is an error.
	in = input(t, strings.Replace(webG(3, "small"), "[z1, z2]", "[z1]", 1), nil)
	in.Manifest.InstanceGroups[0].Networks[0].StaticIPs = []string{"10.0.1.10", "10.0.1.11"}
	_, err = Place(in)
	assert.ErrorContains(t, err, "no free static IP")
}

// Property: applying a plan, then planning the same manifest again, finds no
// change, whatever the sizes; and no two instances ever share an IP.
func TestPlanApplyPlanAgainFindsNoChange(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var existing []Existing
	for round := 0; round < 40; round++ {
		n := r.IntN(30)
		groups := webG(n, []string{"small", "big"}[r.IntN(2)])
		p := build(t, input(t, groups, existing), Options{})
		seen := map[string]string{}
		for _, i := range p.Instances() {
			if i.Action == ActionDelete {
				continue
			}
			ip := i.Desired.Networks["net"].IP
			require.NotContains(t, seen, ip, "round %d: %s and %s share %s", round, seen[ip], i.Name(), ip)
			seen[ip] = i.Name()
			require.False(t, strings.HasSuffix(ip, ".1") || strings.HasSuffix(ip, ".255"), "gateway or broadcast handed out: %s", ip)
		}
		existing = p.Applied(func(i *Instance) string { return "vm-" + i.UUID })
		// The applied state round-trips through JSON as the state store keeps it.
		for k := range existing {
			b, err := json.Marshal(existing[k].Spec)
			require.NoError(t, err)
			var s Spec
			require.NoError(t, json.Unmarshal(b, &s))
			existing[k].Spec = &s
		}
		again := build(t, input(t, groups, existing), Options{})
		require.Equal(t, 0, again.Changes(), "round %d: %v", round, actions(again))
		require.Len(t, again.Instances(), n)
	}
}

// The plan package does no I/O: its (non-test) imports are from an allow-list.
func TestNoIOImports(t *testing.T) {
	allowed := map[string]bool{"encoding/json": true, "errors": true, "fmt": true, "iter": true, "net/netip": true,
		"reflect": true, "slices": true, "sort": true, "strings": true, "github.com/kpaas/kpaas/pkg/manifest": true}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			assert.True(t, allowed[path], "%s imports %s: the plan must stay pure", f, path)
		}
	}
}

func BenchmarkPlan10000Instances(b *testing.B) {
	const cc = `
azs: [{name: z1}, {name: z2}, {name: z3}]
vm_types: [{name: small}]
networks:
- name: net
  subnets:
  - {range: 10.1.0.0/16, gateway: 10.1.0.1, az: z1}
  - {range: 10.2.0.0/16, gateway: 10.2.0.1, az: z2}
  - {range: 10.3.0.0/16, gateway: 10.3.0.1, az: z3}
`
	var groups strings.Builder
	for g := 0; g < 10; g++ {
		fmt.Fprintf(&groups, "- name: g%d\n  azs: [z1, z2, z3]\n  instances: 1000\n  vm_type: small\n  stemcell: default\n  jobs: [{name: web, release: r}]\n  networks: [{name: net}]\n", g)
	}
	m := manifestFor(b, groups.String())
	cloud, _, err := manifest.ParseCloudConfig("cc.yml", []byte(cc))
	require.NoError(b, err)
	n := 0
	in := Input{Manifest: m, Cloud: cloud, Stemcells: map[string]StemcellRef{"default": {Name: "sc", Version: "1"}},
		NewID: func() string { n++; return strconv.Itoa(n) }}
	first, err := Place(in)
	require.NoError(b, err)
	first.Compare(Options{})
	in.Existing = first.Applied(func(i *Instance) string { return "vm" })
	b.ResetTimer()
	for b.Loop() {
		p, err := Place(in)
		if err != nil {
			b.Fatal(err)
		}
		p.Compare(Options{})
		if p.Changes() != 0 {
			b.Fatal("changes")
		}
	}
}

func TestVMCloudPropertiesAreTheAZsOverriddenByTheVMTypes(t *testing.T) {
	in := input(t, webG(2, "small"), nil)
	cc, _, err := manifest.ParseCloudConfig("cc.yml", []byte(strings.Replace(cloud,
		"azs: [{name: z1}, {name: z2}]",
		"azs: [{name: z1, cloud_properties: {availability_zone: nova-1, ram: 1}}, {name: z2}]", 1)))
	require.NoError(t, err)
	in.Cloud = cc
	p := build(t, in, Options{})
	byAZ := map[string]map[string]any{}
	for _, i := range p.Instances() {
		byAZ[i.AZ] = i.Desired.VMCloudProperties
	}
	assert.Equal(t, map[string]any{"availability_zone": "nova-1", "ram": 64}, byAZ["z1"], "the vm_type's ram wins over the AZ's")
	assert.Equal(t, map[string]any{"ram": 64}, byAZ["z2"])
}

func TestTemplateChangesOfReloadableJobsReload(t *testing.T) {
	place := func(existing []Existing, jobHash, reloadHash, pkg string) *Plan {
		p, err := Place(input(t, webG(2, "small"), existing))
		require.NoError(t, err)
		for _, i := range p.Instances() {
			i.Desired.Packages = map[string]string{"pkg": pkg}
			i.Desired.Jobs = map[string]string{"web": jobHash}
			if reloadHash != "" {
				i.Desired.Reloadable = map[string]string{"web": reloadHash}
			}
		}
		p.Compare(Options{})
		return p
	}
	existing := place(nil, "h1", "b1", "fp1").Applied(func(i *Instance) string { return "vm-" + i.UUID })
	tests := []struct {
		name                     string
		jobHash, reloadHash, pkg string
		want                     Action
		reasons                  []string
	}{
		{"templates only", "h2", "b1", "fp1", ActionReload, []string{"job web changed (templates only; its processes reload in place)"}},
		{"bpm.yml changed too", "h2", "b2", "fp1", ActionUpdate, []string{"job web changed (properties, links or templates)"}},
		{"no longer reloadable", "h2", "", "fp1", ActionUpdate, []string{"job web changed (properties, links or templates)"}},
		{"and a package", "h2", "b1", "fp2", ActionUpdate, []string{"package pkg changed", "job web changed (templates only; its processes reload in place)"}},
		{"nothing", "h1", "b1", "fp1", ActionNone, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := place(existing, tt.jobHash, tt.reloadHash, tt.pkg)
			for _, i := range p.Instances() {
				assert.Equal(t, tt.want, i.Action, i.Name())
				assert.Equal(t, tt.reasons, i.Reasons, i.Name())
			}
		})
	}
	// A state written before Reloadable existed restarts, as it did.
	old := existing
	for k := range old {
		s := *old[k].Spec
		s.Reloadable = nil
		old[k].Spec = &s
	}
	for _, i := range place(old, "h2", "b1", "fp1").Instances() {
		assert.Equal(t, ActionUpdate, i.Action)
	}
}

func TestVMExtensionsAddToTheVMTypesCloudProperties(t *testing.T) {
	in := input(t, strings.Replace(webG(1, "small"), "  stemcell: default\n", "  stemcell: default\n  vm_extensions: [k8s-node]\n", 1), nil)
	cc, _, err := manifest.ParseCloudConfig("cc.yml", []byte(cloud+"vm_extensions: [{name: k8s-node, cloud_properties: {container_host: true}}]\n"))
	require.NoError(t, err)
	in.Cloud = cc
	p := build(t, in, Options{})
	require.Len(t, p.Instances(), 1)
	assert.Equal(t, map[string]any{"ram": 64, "container_host": true}, p.Instances()[0].Desired.VMCloudProperties,
		"the local cloud's container_host reaches create_vm from a vm_extension, as a boolean")
}
