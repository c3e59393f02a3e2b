package cmdutil

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kpaas/kpaas/pkg/release"
)

// ManifestSummary is what listings show of a stored manifest: the releases,
// stemcells and instance groups it names.
type ManifestSummary struct {
	Releases []struct {
		Name    string `yaml:"name"`
		Version string `yaml:"version"`
	} `yaml:"releases"`
	Stemcells []struct {
		Alias   string `yaml:"alias"`
		OS      string `yaml:"os"`
		Name    string `yaml:"name"`
		Version string `yaml:"version"`
	} `yaml:"stemcells"`
	InstanceGroups []struct {
		Name      string `yaml:"name"`
		Lifecycle string `yaml:"lifecycle"`
		Instances int    `yaml:"instances"`
		Jobs      []struct {
			Name    string `yaml:"name"`
			Release string `yaml:"release"`
		} `yaml:"jobs"`
	} `yaml:"instance_groups"`
}

// SummarizeManifest reads a stored manifest leniently: a manifest that does
// not parse summarises as empty (listings still show the deployment).
func SummarizeManifest(manifest string) ManifestSummary {
	var s ManifestSummary
	if yaml.Unmarshal([]byte(manifest), &s) != nil {
		return ManifestSummary{}
	}
	return s
}

// CompareVersions orders release and stemcell versions as bosh-cli does
// (numbers as numbers); versions that do not parse compare as text.
func CompareVersions(a, b string) int {
	va, errA := release.ParseVersion(a)
	vb, errB := release.ParseVersion(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	return va.Compare(vb)
}

// ResolveVersion picks what a manifest's version means among the versions
// present: "latest" (or "") is the highest, anything else itself when present.
func ResolveVersion(want string, have []string) (string, bool) {
	if want != "latest" && want != "" {
		for _, h := range have {
			if h == want {
				return h, true
			}
		}
		return "", false
	}
	best := ""
	for _, h := range have {
		if best == "" || CompareVersions(h, best) > 0 {
			best = h
		}
	}
	return best, best != ""
}
