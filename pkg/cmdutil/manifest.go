package cmdutil

import (
	"gopkg.in/yaml.v3"
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
