package health

// Resurrection is the resurrection config (as BOSH's `--type resurrection`
// config): Enabled is the global switch (`kpaas update-resurrection on|off`);
// rules turn resurrection on or off per deployment and instance group.
// When no rule matches, resurrection is enabled; any matching rule with
// enabled: false disables it.
type Resurrection struct {
	Enabled *bool  `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	Rules   []Rule `yaml:"rules,omitempty" json:"rules,omitempty"`
}

// Rule is one resurrection rule.
type Rule struct {
	Enabled bool      `yaml:"enabled" json:"enabled"`
	Include *Selector `yaml:"include,omitempty" json:"include,omitempty"`
	Exclude *Selector `yaml:"exclude,omitempty" json:"exclude,omitempty"`
}

// Selector picks deployments and instance groups; an empty list matches all.
type Selector struct {
	Deployments    []string `yaml:"deployments,omitempty" json:"deployments,omitempty"`
	InstanceGroups []string `yaml:"instance_groups,omitempty" json:"instance_groups,omitempty"`
}

func (s *Selector) match(dep, group string) bool {
	in := func(l []string, x string) bool {
		if len(l) == 0 {
			return true
		}
		for _, y := range l {
			if y == x {
				return true
			}
		}
		return false
	}
	return in(s.Deployments, dep) && in(s.InstanceGroups, group)
}

func (r Rule) matches(dep, group string) bool {
	if r.Include != nil && !r.Include.match(dep, group) {
		return false
	}
	if r.Exclude != nil && r.Exclude.match(dep, group) {
		return false
	}
	return true
}

// Allows says whether instances of group in dep may be resurrected.
func (c Resurrection) Allows(dep, group string) bool {
	if c.Enabled != nil && !*c.Enabled {
		return false
	}
	for _, r := range c.Rules {
		if !r.Enabled && r.matches(dep, group) {
			return false
		}
	}
	return true
}
