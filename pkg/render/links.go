package render

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/release"
)

// LinkDeployment is what link resolution needs of one deployment.
type LinkDeployment struct {
	Name   string
	Domain string // DNS root domain, "bosh" when empty
	Groups []LinkGroup
	// Remote returns the shared links another deployment recorded at its last
	// successful deploy, for consumers that name it with `deployment:`. Nil:
	// no other deployment is known.
	Remote func(deployment string) ([]*Link, error)
}

// LinkGroup is an instance group: its instances and its jobs.
type LinkGroup struct {
	Name           string
	DefaultNetwork string
	Networks       []string // the group's networks; when known, a consumer's `network` must be one of them
	Instances      []Instance
	Jobs           []LinkJob
}

// LinkJob is a job of an instance group with its release spec, its manifest
// entry (consumes, provides, custom_provider_definitions) and its bound
// properties (BindProperties).
type LinkJob struct {
	Name       string
	Release    string
	Spec       *release.JobSpec
	Manifest   manifest.Job
	Properties map[string]any
}

// JobKey names a job of an instance group.
type JobKey struct{ Group, Job string }

func (k JobKey) String() string {
	return fmt.Sprintf("job '%s' in instance group '%s'", k.Job, k.Group)
}

// Link is a resolved link as a consumer sees it.
type Link struct {
	Name          string         `json:"name"` // the provider's link name (its alias when `as` is set)
	Type          string         `json:"type"`
	Deployment    string         `json:"deployment"`
	Domain        string         `json:"domain"`
	InstanceGroup string         `json:"instance_group"`
	Network       string         `json:"network"`
	Properties    map[string]any `json:"properties"`
	Instances     []LinkInstance `json:"instances"`
	// Address is the BOSH DNS query address of the providing group
	// (q-s0.<group>.<network>.<deployment>.<domain>).
	Address string `json:"address"`

	viewOnce sync.Once
	view     LinkView // what templates see, built once: a link is shared by every consumer instance
}

// LinkInstance is one providing instance.
type LinkInstance struct {
	Name      string            `json:"name"` // instance group
	ID        string            `json:"id"`
	Index     int               `json:"index"`
	AZ        string            `json:"az"`
	Address   string            `json:"address"`
	Bootstrap bool              `json:"bootstrap"`
	Addresses map[string]string `json:"addresses"` // network -> address
}

// ProvidedLink is an entry of a job's .bosh/links.json.
type ProvidedLink struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Group string `json:"group"`
}

// Resolution is the outcome of ResolveLinks.
type Resolution struct {
	// Consumed maps each job to its links, keyed by the consumer's link name.
	Consumed map[JobKey]map[string]*Link
	// Provided maps each job to the links it provides (for .bosh/links.json).
	Provided map[JobKey][]ProvidedLink
	// Shared are the links of providers marked `shared: true`, on their
	// group's default network: what other deployments may consume once this
	// one deployed successfully.
	Shared []*Link
}

// LinkError is a consumer link that could not be resolved.
type LinkError struct {
	Key    JobKey
	Link   string
	Type   string
	Reason string
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("%s consumes link '%s' (type %s): %s", e.Key, e.Link, e.Type, e.Reason)
}

// ErrLinkUnresolved is wrapped by every *LinkError.
var ErrLinkUnresolved = errors.New("link not resolved")

func (e *LinkError) Unwrap() error { return ErrLinkUnresolved }

type provider struct {
	key      JobKey
	group    *LinkGroup
	job      *LinkJob
	name     string // alias or spec name
	specName string
	typ      string
	props    []string
}

// ResolveLinks resolves every consumes entry of every job in one deployment, as
// the director does: an explicit `from` names a provider (by its alias or link
// name) of the same type; otherwise the one provider of that type in the
// deployment is taken. No provider is an error unless the consumer is optional;
// more than one is an error naming them. A consumer or provider set to nil in the
// manifest is blocked. Every problem is returned at once.
func ResolveLinks(d LinkDeployment) (*Resolution, error) {
	if d.Domain == "" {
		d.Domain = "bosh"
	}
	res := &Resolution{Consumed: map[JobKey]map[string]*Link{}, Provided: map[JobKey][]ProvidedLink{}}
	var providers []*provider
	var errs []error
	for gi := range d.Groups {
		g := &d.Groups[gi]
		for ji := range g.Jobs {
			j := &g.Jobs[ji]
			key := JobKey{g.Name, j.Name}
			var defs []release.LinkDef
			if j.Spec != nil {
				defs = append(defs, j.Spec.Provides...)
			}
			for _, c := range j.Manifest.CustomProviderDefinitions {
				defs = append(defs, release.LinkDef{Name: c.Name, Type: c.Type, Properties: c.Properties})
			}
			for _, def := range defs {
				name := def.Name
				if mp, ok := j.Manifest.Provides[def.Name]; ok {
					if mp.Blocked {
						continue
					}
					if mp.As != "" {
						name = mp.As
					}
				}
				for _, prop := range def.Properties {
					if j.Spec == nil || !declared(j.Spec, prop) {
						errs = append(errs, fmt.Errorf("%s provides link '%s' with property '%s', which its job spec does not declare", key, def.Name, prop))
					}
				}
				p := &provider{key: key, group: g, job: j, name: name, specName: def.Name, typ: def.Type, props: def.Properties}
				providers = append(providers, p)
				if mp, ok := j.Manifest.Provides[def.Name]; ok && mp.Shared != nil && *mp.Shared {
					if l, err := buildLink(d, p, ""); err != nil {
						errs = append(errs, fmt.Errorf("%s provides shared link '%s': %w", key, name, err))
					} else {
						res.Shared = append(res.Shared, l)
					}
				}
				res.Provided[key] = append(res.Provided[key], ProvidedLink{Name: name, Type: def.Type, Group: name + "-" + def.Type})
			}
			sort.Slice(res.Provided[key], func(a, b int) bool { return res.Provided[key][a].Group < res.Provided[key][b].Group })
		}
	}
	for gi := range d.Groups {
		g := &d.Groups[gi]
		for ji := range g.Jobs {
			j := &g.Jobs[ji]
			if j.Spec == nil {
				continue
			}
			key := JobKey{g.Name, j.Name}
			for _, c := range j.Spec.Consumes {
				mc, explicit := j.Manifest.Consumes[c.Name]
				if explicit && mc.Blocked {
					continue
				}
				fail := func(reason string) {
					errs = append(errs, &LinkError{Key: key, Link: c.Name, Type: c.Type, Reason: reason})
				}
				if explicit && mc.Deployment != "" && mc.Deployment != d.Name {
					link, reason := resolveRemote(d, c, mc)
					if reason != "" {
						fail(reason)
						continue
					}
					if link == nil { // optional, nothing shared
						continue
					}
					if res.Consumed[key] == nil {
						res.Consumed[key] = map[string]*Link{}
					}
					res.Consumed[key][c.Name] = link
					continue
				}
				var candidates []*provider
				for _, p := range providers {
					if explicit && mc.From != "" {
						if p.name == mc.From {
							candidates = append(candidates, p)
						}
					} else if p.typ == c.Type {
						candidates = append(candidates, p)
					}
				}
				if explicit && mc.From != "" {
					var sameType []*provider
					for _, p := range candidates {
						if p.typ == c.Type {
							sameType = append(sameType, p)
						}
					}
					if len(candidates) > 0 && len(sameType) == 0 {
						fail(fmt.Sprintf("the link '%s' it names in `from` has type %s, not %s", mc.From, candidates[0].typ, c.Type))
						continue
					}
					candidates = sameType
				}
				switch len(candidates) {
				case 0:
					if c.Optional {
						continue
					}
					if explicit && mc.From != "" {
						fail(fmt.Sprintf("no job in deployment '%s' provides a link named '%s' (check `from`, or the provider's `as`)", d.Name, mc.From))
					} else {
						fail(fmt.Sprintf("no job in deployment '%s' provides a link of this type: add a job that provides it, or mark the link optional in the job spec", d.Name))
					}
					continue
				case 1:
				default:
					var names []string
					for _, p := range candidates {
						names = append(names, fmt.Sprintf("%s.%s.%s", p.key.Group, p.key.Job, p.name))
					}
					fail(fmt.Sprintf("multiple link providers found: %s; name one with `from` under consumes", strings.Join(names, ", ")))
					continue
				}
				network := ""
				if explicit {
					network = mc.Network
				}
				if pg := candidates[0].group; network != "" && len(pg.Networks) > 0 && !contains(pg.Networks, network) {
					fail(fmt.Sprintf("network '%s' is not one of the networks of instance group '%s' that provides it (%s)", network, pg.Name, strings.Join(pg.Networks, ", ")))
					continue
				}
				link, err := buildLink(d, candidates[0], network)
				if err != nil {
					fail(err.Error())
					continue
				}
				if res.Consumed[key] == nil {
					res.Consumed[key] = map[string]*Link{}
				}
				res.Consumed[key][c.Name] = link
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return res, nil
}

// resolveRemote resolves a consumer naming another deployment from the links
// that deployment shared: by `from` (alias or link name) when given, else by
// type. It returns the link, or why it cannot (a nil link and no reason: an
// optional link nobody shares). Implicit links never get here.
func resolveRemote(d LinkDeployment, c release.LinkDef, mc manifest.ConsumeLink) (*Link, string) {
	dep := mc.Deployment
	if d.Remote == nil {
		return nil, fmt.Sprintf("deployment '%s' is not known here: deploy it first, with the provider marked `shared: true`", dep)
	}
	shared, err := d.Remote(dep)
	if err != nil {
		return nil, fmt.Sprintf("the shared links of deployment '%s' are not available: %v", dep, err)
	}
	var candidates []*Link
	for _, l := range shared {
		if mc.From != "" && l.Name != mc.From {
			continue
		}
		if mc.From == "" && l.Type != c.Type {
			continue
		}
		candidates = append(candidates, l)
	}
	if mc.From != "" && len(candidates) > 0 {
		var sameType []*Link
		for _, l := range candidates {
			if l.Type == c.Type {
				sameType = append(sameType, l)
			}
		}
		if len(sameType) == 0 {
			return nil, fmt.Sprintf("the link '%s' deployment '%s' shares has type %s, not %s", mc.From, dep, candidates[0].Type, c.Type)
		}
		candidates = sameType
	}
	switch len(candidates) {
	case 0:
		if c.Optional {
			return nil, ""
		}
		what := "a link of this type"
		if mc.From != "" {
			what = fmt.Sprintf("a link named '%s'", mc.From)
		}
		return nil, fmt.Sprintf("deployment '%s' shares no provider of %s: mark the provider `shared: true` in that deployment's manifest (check `from` and its `as`) and deploy it", dep, what)
	case 1:
	default:
		var names []string
		for _, l := range candidates {
			names = append(names, l.InstanceGroup+"."+l.Name)
		}
		return nil, fmt.Sprintf("deployment '%s' shares multiple providers: %s; name one with `from` under consumes", dep, strings.Join(names, ", "))
	}
	src := candidates[0]
	l := &Link{Name: src.Name, Type: src.Type, Deployment: src.Deployment, Domain: src.Domain, InstanceGroup: src.InstanceGroup,
		Network: src.Network, Properties: copyValue(src.Properties).(map[string]any), Address: src.Address, Instances: []LinkInstance{}}
	if l.Domain == "" {
		l.Domain = "bosh"
	}
	if mc.Network != "" && mc.Network != src.Network {
		l.Network = mc.Network
		l.Address = fmt.Sprintf("q-s0.%s.%s.%s.%s", dnsLabel(l.InstanceGroup), dnsLabel(l.Network), dnsLabel(l.Deployment), l.Domain)
	}
	for _, in := range src.Instances {
		li := in
		li.Addresses = map[string]string{}
		for n, a := range in.Addresses {
			li.Addresses[n] = a
		}
		if a, ok := in.Addresses[l.Network]; ok && a != "" {
			li.Address = a
		} else if l.Network != src.Network {
			return nil, fmt.Sprintf("network '%s' is not a network of instance group '%s' in deployment '%s' that shares it", l.Network, l.InstanceGroup, dep)
		}
		l.Instances = append(l.Instances, li)
	}
	return l, ""
}

func declared(spec *release.JobSpec, name string) bool {
	_, ok := spec.Properties[name]
	return ok
}

func buildLink(d LinkDeployment, p *provider, network string) (*Link, error) {
	g := p.group
	if network == "" {
		network = g.DefaultNetwork
	}
	props := map[string]any{}
	for _, name := range p.props {
		v, _, err := lookup(p.job.Properties, name)
		if err != nil {
			return nil, err
		}
		if err := setPath(props, name, copyValue(v)); err != nil {
			return nil, err
		}
	}
	l := &Link{
		Name: p.name, Type: p.typ, Deployment: d.Name, Domain: d.Domain, InstanceGroup: g.Name, Network: network,
		Properties: props,
		Address:    fmt.Sprintf("q-s0.%s.%s.%s.%s", dnsLabel(g.Name), dnsLabel(network), dnsLabel(d.Name), d.Domain),
		Instances:  []LinkInstance{},
	}
	for _, inst := range g.Instances {
		li := LinkInstance{Name: g.Name, ID: inst.ID, Index: inst.Index, AZ: inst.AZ, Bootstrap: inst.Bootstrap, Address: inst.Address, Addresses: map[string]string{}}
		for n, net := range inst.Networks {
			li.Addresses[n] = net.IP
		}
		if net, ok := inst.Networks[network]; ok && net.IP != "" {
			li.Address = net.IP
		}
		l.Instances = append(l.Instances, li)
	}
	return l, nil
}

// dnsLabel lower-cases a name and turns '_' into '-', as BOSH DNS names do.
func dnsLabel(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "-") }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
