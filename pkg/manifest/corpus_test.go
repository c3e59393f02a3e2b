package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sharedDir locates ../shared: $KPAAS_SHARED, else <module root>/../shared.
func sharedDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("KPAAS_SHARED"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("module root not found")
		}
		dir = parent
	}
	return filepath.Join(dir, "..", "shared")
}

func compatDir(t testing.TB) string {
	d := filepath.Join(sharedDir(t), "compat")
	if _, err := os.Stat(filepath.Join(d, "corpus")); err != nil {
		t.Skip("no ../shared/compat/corpus here (set KPAAS_SHARED)")
	}
	return d
}

// kind guesses a corpus file's document type from its top-level keys.
func kind(data []byte) string {
	has := func(k string) bool {
		return bytes.HasPrefix(data, []byte(k+":")) || bytes.Contains(data, []byte("\n"+k+":"))
	}
	switch {
	case has("instance_groups"):
		return "manifest"
	case has("vm_types") || has("compilation"):
		return "cloud"
	case has("cpis"):
		return "cpi"
	case has("addons") && !has("name"):
		return "runtime"
	}
	return ""
}

// TestCorpusParsesAndValidates: every real deployment manifest, cloud-config,
// runtime-config and cpi-config of cf-deployment, bosh-deployment, K-PaaS and
// PaaS-TA parses and validates on its own with no error. They still hold
// ((vars)): placeholders are accepted where typed values are expected.
func TestCorpusParsesAndValidates(t *testing.T) {
	corpus := filepath.Join(compatDir(t), "corpus")
	counts := map[string]int{}
	err := filepath.WalkDir(corpus, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(corpus, p)
		if d.IsDir() {
			if rel == filepath.Join("_fixtures", "bad") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".yml") && !strings.HasSuffix(p, ".yaml") {
			return nil
		}
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		k := kind(data)
		if k == "" {
			return nil
		}
		counts[k]++
		var perr, verr error
		switch k {
		case "manifest":
			var m *Manifest
			m, _, perr = ParseManifest(rel, data)
			if perr == nil {
				verr = m.Validate()
			}
		case "cloud":
			var c *CloudConfig
			c, _, perr = ParseCloudConfig(rel, data)
			if perr == nil {
				verr = c.Validate()
			}
		case "runtime":
			var c *RuntimeConfig
			c, _, perr = ParseRuntimeConfig(rel, data)
			if perr == nil {
				verr = c.Validate()
			}
		case "cpi":
			var c *CPIConfig
			c, _, perr = ParseCPIConfig(rel, data)
			if perr == nil {
				verr = c.Validate()
			}
		}
		assert.NoError(t, perr, "parsing %s as %s", rel, k)
		assert.NoError(t, verr, "validating %s as %s", rel, k)
		return nil
	})
	require.NoError(t, err)
	t.Logf("checked %v", counts)
	assert.GreaterOrEqual(t, counts["manifest"], 20)
	assert.GreaterOrEqual(t, counts["cloud"], 40)
	assert.GreaterOrEqual(t, counts["runtime"], 5)
	assert.GreaterOrEqual(t, counts["cpi"], 1)
}

func lineOf(t *testing.T, data []byte, needle string) int {
	t.Helper()
	i := bytes.Index(data, []byte(needle))
	require.GreaterOrEqual(t, i, 0, "%q not in file", needle)
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// TestCorpusWarnings: keys BOSH ignores are reported as warnings, with lines.
func TestCorpusWarnings(t *testing.T) {
	rel := "PaaS-TA_service-deployment/redis/redis.yml"
	data, err := os.ReadFile(filepath.Join(compatDir(t), "corpus", rel))
	require.NoError(t, err)
	_, w, err := ParseManifest(rel, data)
	require.NoError(t, err)
	// redis.yml gives its groups a syslog_aggregator key, which BOSH v2 does not know.
	require.Len(t, w, 2)
	assert.Equal(t, lineOf(t, data, "syslog_aggregator"), w[0].Line)
	assert.Equal(t, "instance_groups[0] (mariadb).syslog_aggregator", w[0].Path)
	assert.Contains(t, w[0].Error(), rel+":")
	assert.Contains(t, w.String(), "warning: ")
}

// TestCorpusCrossValidation checks the BOSH CLI's own interpolation outputs
// (golden files) of the K-PaaS AP manifest and cloud-config against each
// other. ap-deployment.yml keeps cf-deployment's ephemeral-disk vm_extensions
// on api and diego-cell, and the K-PaaS OpenStack cloud-config does not define
// them (operations/openstack.yml removes them in the real deploy script): those
// two references, and nothing else, are wrong.
func TestCorpusCrossValidation(t *testing.T) {
	cases := filepath.Join(compatDir(t), "cases")
	md, err := os.ReadFile(filepath.Join(cases, "041-kpaas-ap-plain", "stdout"))
	require.NoError(t, err)
	cd, err := os.ReadFile(filepath.Join(cases, "045-kpaas-ap-cloud-config-openstack", "stdout"))
	require.NoError(t, err)
	m, w, err := ParseManifest("ap.yml", md)
	require.NoError(t, err)
	assert.Empty(t, w)
	cc, w, err := ParseCloudConfig("cloud.yml", cd)
	require.NoError(t, err)
	assert.Empty(t, w)

	err = Configs{Manifest: m, Cloud: cc}.Validate()
	ps := Problems(err)
	require.Len(t, ps, 2, "%v", err)
	assert.Equal(t, "instance_groups[6] (api).vm_extensions[0]", ps[0].Path)
	assert.Equal(t, lineOf(t, md, "- 50GB_ephemeral_disk"), ps[0].Line)
	assert.Contains(t, ps[0].Message, `"50GB_ephemeral_disk" is not defined in the cloud-config's vm_extensions`)
	assert.Equal(t, "instance_groups[13] (diego-cell).vm_extensions[0]", ps[1].Path)
	assert.Equal(t, lineOf(t, md, "- 100GB_ephemeral_disk"), ps[1].Line)
	assert.Equal(t, "ap.yml", ps[1].File)

	// With the two extensions removed (what operations/openstack.yml does), it is clean.
	fixed := bytes.ReplaceAll(md, []byte("  vm_extensions:\n  - 50GB_ephemeral_disk\n"), nil)
	fixed = bytes.ReplaceAll(fixed, []byte("  vm_extensions:\n  - 100GB_ephemeral_disk\n"), nil)
	require.NotEqual(t, md, fixed)
	m, _, err = ParseManifest("ap.yml", fixed)
	require.NoError(t, err)
	require.NoError(t, Configs{Manifest: m, Cloud: cc}.Validate())

	// The AP update block is the one section 9.2 of the reference describes.
	require.NotNil(t, m.Update)
	assert.Equal(t, WatchTime{Min: 30000, Max: 1200000}, *m.Update.CanaryWatchTime)
	assert.Equal(t, WatchTime{Min: 5000, Max: 1200000}, *m.Update.UpdateWatchTime)
	assert.Equal(t, CountOrPercent{N: 1}, *m.Update.MaxInFlight)
	assert.False(t, m.Update.IsSerial())
	assert.Equal(t, "smoke-tests", m.InstanceGroups[0].Name)
	assert.Equal(t, LifecycleErrand, m.InstanceGroups[0].Lifecycle)
}

// TestCorpusPlaceholders: the raw AP manifest has every az, instance count and
// vm_type as a ((var)); they are recorded, not errors.
func TestCorpusPlaceholders(t *testing.T) {
	rel := "K-PaaS_ap-deployment/ap/ap-deployment.yml"
	data, err := os.ReadFile(filepath.Join(compatDir(t), "corpus", rel))
	require.NoError(t, err)
	m, _, err := ParseManifest(rel, data)
	require.NoError(t, err)
	var nats *InstanceGroup
	for i := range m.InstanceGroups {
		if m.InstanceGroups[i].Name == "nats" {
			nats = &m.InstanceGroups[i]
		}
	}
	require.NotNil(t, nats)
	assert.Equal(t, "((nats_azs))", nats.Meta.Var("azs"))
	assert.Equal(t, "((nats_instances))", nats.Meta.Var("instances"))
	assert.Nil(t, nats.AZs)
	assert.Equal(t, 0, nats.Instances)
	assert.Equal(t, "((nats_vm_type))", nats.VMType, "a placeholder in a string field stays as written")
	require.NoError(t, m.Validate())
}

// BenchmarkParseValidateCFDeployment parses and validates cf-deployment.yml.
func BenchmarkParseValidateCFDeployment(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(compatDir(b), "corpus", "cf-deployment", "cf-deployment.yml"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		m, _, err := ParseManifest("cf-deployment.yml", data)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
