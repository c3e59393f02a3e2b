package manifest

// RuntimeConfig is a BOSH runtime-config: releases and addons applied to
// every deployment they match, tags merged into deployments' tags, and
// variables.
type RuntimeConfig struct {
	Meta      Meta           `yaml:"-"`
	Releases  []Release      `yaml:"releases"`
	Addons    []Addon        `yaml:"addons"`
	Tags      map[string]any `yaml:"tags"`
	Variables []Variable     `yaml:"variables"`
}

// ParseRuntimeConfig parses a runtime-config; see ParseManifest.
func ParseRuntimeConfig(file string, data []byte) (*RuntimeConfig, Warnings, error) {
	c := &RuntimeConfig{}
	w, err := parseDocument(file, data, c, "runtime-config")
	return c, w, err
}

// Addon is a set of jobs colocated on every instance group its rules match.
type Addon struct {
	Meta       Meta           `yaml:"-"`
	Name       string         `yaml:"name"`
	Jobs       []Job          `yaml:"jobs"`
	Include    *PlacementRule `yaml:"include"`
	Exclude    *PlacementRule `yaml:"exclude"`
	Properties map[string]any `yaml:"properties"` // deprecated addon-level properties
}

// PlacementRule is an addon's include or exclude block. Keys are ANDed; the
// items of one list are ORed.
type PlacementRule struct {
	Meta           Meta         `yaml:"-"`
	Stemcell       []StemcellOS `yaml:"stemcell"`
	Deployments    []string     `yaml:"deployments"`
	Jobs           []JobRef     `yaml:"jobs"`
	InstanceGroups []string     `yaml:"instance_groups"`
	Lifecycle      string       `yaml:"lifecycle"`
	Networks       []string     `yaml:"networks"`
	Teams          []string     `yaml:"teams"`
}

// StemcellOS is a stemcell rule item.
type StemcellOS struct {
	Meta Meta   `yaml:"-"`
	OS   string `yaml:"os"`
}

// Placement describes one instance group for addon placement.
type Placement struct {
	Deployment    string
	InstanceGroup string
	Jobs          []JobRef // name and release of each job in the group
	StemcellOS    string
	Networks      []string
	Teams         []string // teams of the deployment
	Lifecycle     string   // service when empty
}

// isEmpty reports whether the rule has no keys (matches everything as an
// include, nothing as an exclude).
func (r *PlacementRule) isEmpty(ignoreDeployments bool) bool {
	if r == nil {
		return true
	}
	return len(r.Stemcell) == 0 && (ignoreDeployments || len(r.Deployments) == 0) && len(r.Jobs) == 0 &&
		len(r.InstanceGroups) == 0 && r.Lifecycle == "" && len(r.Networks) == 0 && len(r.Teams) == 0
}

// matches reports whether every key of the rule matches p (an empty rule
// matches). With ignoreDeployments (addons in a deployment manifest) the
// deployments key is ignored, as BOSH does.
func (r *PlacementRule) matches(p Placement, ignoreDeployments bool) bool {
	if r == nil {
		return true
	}
	if len(r.Stemcell) > 0 && !anyOf(len(r.Stemcell), func(i int) bool { return r.Stemcell[i].OS == p.StemcellOS }) {
		return false
	}
	if !ignoreDeployments && len(r.Deployments) > 0 && !contains(r.Deployments, p.Deployment) {
		return false
	}
	if len(r.Jobs) > 0 && !anyOf(len(r.Jobs), func(i int) bool {
		for _, j := range p.Jobs {
			if j.Name == r.Jobs[i].Name && j.Release == r.Jobs[i].Release {
				return true
			}
		}
		return false
	}) {
		return false
	}
	if len(r.InstanceGroups) > 0 && !contains(r.InstanceGroups, p.InstanceGroup) {
		return false
	}
	if r.Lifecycle != "" {
		lc := p.Lifecycle
		if lc == "" {
			lc = LifecycleService
		}
		if lc != r.Lifecycle {
			return false
		}
	}
	if len(r.Networks) > 0 && !anyOf(len(r.Networks), func(i int) bool { return contains(p.Networks, r.Networks[i]) }) {
		return false
	}
	if len(r.Teams) > 0 && !anyOf(len(r.Teams), func(i int) bool { return contains(p.Teams, r.Teams[i]) }) {
		return false
	}
	return true
}

// AppliesTo reports whether a runtime-config addon applies to the instance group
// p: include matches (an absent or empty include matches all) and exclude does
// not (an absent or empty exclude excludes nothing).
func (a *Addon) AppliesTo(p Placement) bool { return a.applies(p, false) }

// AppliesToInDeployment is AppliesTo for an addon written in a deployment
// manifest, where deployments rules are ignored.
func (a *Addon) AppliesToInDeployment(p Placement) bool { return a.applies(p, true) }

func (a *Addon) applies(p Placement, inDeployment bool) bool {
	if !a.Include.matches(p, inDeployment) {
		return false
	}
	if a.Exclude.isEmpty(inDeployment) {
		return true
	}
	return !a.Exclude.matches(p, inDeployment)
}

// PlacementOf describes instance group g of deployment m for addon placement.
// stemcellOS resolves the group's stemcell alias (m.StemcellOS does).
func (m *Manifest) PlacementOf(g *InstanceGroup, teams []string) Placement {
	p := Placement{Deployment: m.Name, InstanceGroup: g.Name, StemcellOS: m.StemcellOS(g.Stemcell), Teams: teams, Lifecycle: g.LifecycleOrDefault()}
	for _, j := range g.Jobs {
		p.Jobs = append(p.Jobs, JobRef{Name: j.Name, Release: j.Release})
	}
	for _, n := range g.Networks {
		p.Networks = append(p.Networks, n.Name)
	}
	return p
}

// StemcellOS returns the os of the stemcell with the given alias, or "" when
// it is unknown or the stemcell is given by name (the uploaded stemcell then
// tells its os).
func (m *Manifest) StemcellOS(alias string) string {
	for _, s := range m.Stemcells {
		if s.Alias == alias {
			return s.OS
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func anyOf(n int, f func(int) bool) bool {
	for i := 0; i < n; i++ {
		if f(i) {
			return true
		}
	}
	return false
}
