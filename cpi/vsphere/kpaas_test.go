package vsphere_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware/govmomi/simulator"
	"gopkg.in/yaml.v3"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/vsphere"
	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
)

// corpus locates ../shared/compat/corpus ($KPAAS_SHARED overrides ../shared).
func corpus(t *testing.T) string {
	shared := os.Getenv("KPAAS_SHARED")
	if shared == "" {
		_, file, _, _ := runtime.Caller(0)
		shared = filepath.Join(filepath.Dir(file), "..", "..", "..", "shared")
	}
	dir := filepath.Join(shared, "compat", "corpus")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no compat corpus at %s (set KPAAS_SHARED)", dir)
	}
	return dir
}

// interpolate replaces ((name)) with the vars file's values (enough for the
// flat vars K-PaaS's vsphere-vars.yml holds).
func interpolate(t *testing.T, doc string, vars map[string]any) string {
	return regexp.MustCompile(`\(\(([a-z_]+)\)\)`).ReplaceAllStringFunc(doc, func(m string) string {
		v, ok := vars[m[2:len(m)-2]]
		require.True(t, ok, "var %s", m)
		return strings.TrimSpace(yamlString(t, v))
	})
}

func yamlString(t *testing.T, v any) string {
	b, err := yaml.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// TestKPaaSConfigs reads K-PaaS's vSphere cpi.yml (the vcenter block the
// director's CPI job gets) with its vars, and every AZ and vm_type of its
// vSphere cloud-configs, the way the driver will be given them.
func TestKPaaSConfigs(t *testing.T) {
	dir := filepath.Join(corpus(t), "K-PaaS_ap-deployment")
	varsDoc, err := os.ReadFile(filepath.Join(dir, "bosh", "vsphere-vars.yml"))
	require.NoError(t, err)
	var vars map[string]any
	require.NoError(t, yaml.Unmarshal(varsDoc, &vars))
	cpiDoc, err := os.ReadFile(filepath.Join(dir, "bosh", "vsphere", "cpi.yml"))
	require.NoError(t, err)
	var ops []struct {
		Path  string `yaml:"path"`
		Value any    `yaml:"value"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(interpolate(t, string(cpiDoc), vars)), &ops))
	var vcenter any
	for _, op := range ops {
		if op.Path == "/cloud_provider/properties/vcenter?" {
			vcenter = op.Value
		}
	}
	require.NotNil(t, vcenter, "cpi.yml sets cloud_provider.properties.vcenter")
	b, err := json.Marshal(vcenter)
	require.NoError(t, err)
	c, err := vsphere.ParseConfig(b)
	require.NoError(t, err)
	assert.Equal(t, vars["vcenter_ip"], c.Host)
	dc := c.Datacenters[0]
	assert.Equal(t, vars["vcenter_dc"], dc.Name)
	assert.Equal(t, []vsphere.Cluster{{Name: vars["vcenter_cluster"].(string)}}, dc.Clusters)
	assert.Equal(t, vars["vcenter_vms"], dc.VMFolder)
	assert.Equal(t, vars["vcenter_templates"], dc.TemplateFolder)
	assert.Equal(t, vars["vcenter_disks"], dc.DiskPath)
	assert.Equal(t, vars["vcenter_ds"], dc.PersistentDatastorePattern)

	for _, f := range []string{"cloud-config/vsphere-cloud-config.yml", "bosh/vsphere/cloud-config.yml"} {
		doc, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		var cc struct {
			AZs []struct {
				Name            string         `yaml:"name"`
				CloudProperties map[string]any `yaml:"cloud_properties"`
			} `yaml:"azs"`
			VMTypes []struct {
				Name            string         `yaml:"name"`
				CloudProperties map[string]any `yaml:"cloud_properties"`
			} `yaml:"vm_types"`
		}
		require.NoError(t, yaml.Unmarshal([]byte(interpolate(t, string(doc), map[string]any{
			"vcenter_cluster": "AP", "private_cidr": "10.0.1.0/24", "private_gw": "10.0.1.1", "network_name": "AP"})), &cc), f)
		require.NotEmpty(t, cc.VMTypes, f)
		for _, vt := range cc.VMTypes {
			p, err := vsphere.DecodeVMProps(vt.CloudProperties)
			require.NoError(t, err, "%s vm_type %s", f, vt.Name)
			assert.Positive(t, p.CPU, "%s vm_type %s cpu", f, vt.Name)
			assert.Positive(t, p.RAM, "%s vm_type %s ram", f, vt.Name)
			assert.Positive(t, p.Disk, "%s vm_type %s disk", f, vt.Name)
		}
		for _, az := range cc.AZs {
			p, err := vsphere.DecodeVMProps(az.CloudProperties)
			require.NoError(t, err, "%s az %s", f, az.Name)
			require.Len(t, p.Datacenters, 1, "%s az %s", f, az.Name)
			require.NotEmpty(t, p.Datacenters[0].Clusters, "%s az %s", f, az.Name)
		}
	}
}

// logs collects log records.
type logs struct {
	mu  sync.Mutex
	out []map[string]any
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	l.mu.Lock()
	l.out = append(l.out, m)
	l.mu.Unlock()
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func TestStemcellUploadProgressAndAgentProperties(t *testing.T) {
	s := vspheretest.Start(t, func(_ *simulator.Model, c *vsphere.Config) {
		c.Agent = map[string]any{"ntp": []any{"0.pool.ntp.org"}, "mbus": "https://mbus:secret@0.0.0.0:6868"}
	})
	l := &logs{}
	d, err := vsphere.NewWithOptions(s.Config, slog.New(l), vsphere.Options{})
	require.NoError(t, err)
	sc, err := d.CreateStemcell(ctx, vspheretest.StemcellImage(t), nil)
	require.NoError(t, err)
	var done bool
	l.mu.Lock()
	for _, r := range l.out {
		if r["msg"] == "vsphere: uploading stemcell" && r["percent"] == int64(100) {
			done = true
		}
	}
	l.mu.Unlock()
	assert.True(t, done, "the NFC upload reports its progress up to 100%%: %v", l.out)

	vm, _, err := d.CreateVM(ctx, "a", sc, vmType, vspheretest.Manual(1), nil, nil)
	require.NoError(t, err)
	st, err := s.Settings(t, vm)
	require.NoError(t, err)
	assert.Equal(t, []string{"0.pool.ntp.org"}, st.NTP, "the CPI's agent.ntp reaches the settings")
	assert.Equal(t, "https://mbus:secret@0.0.0.0:6868", st.Mbus)
	require.NoError(t, d.DeleteVM(ctx, vm))
	_ = cpi.Props{}
}
