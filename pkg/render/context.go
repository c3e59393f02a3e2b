package render

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Instance is what the director knows of one instance when it renders (4.1).
type Instance struct {
	Deployment     string
	Group          string // instance group name (spec.name)
	Index          int
	ID             string // instance UUID
	AZ             string
	Bootstrap      bool
	Address        string // default network's address (an IP unless DNS addresses are used)
	IP             string
	DNSDomainName  string // "bosh" when empty
	Networks       map[string]Network
	PersistentDisk int // MB
}

// Network is an instance's network as templates see it (spec.networks.<name>).
type Network struct {
	Type            string // manual, dynamic, vip
	IP              string
	Netmask         string
	Gateway         string
	Prefix          string
	DNS             []string
	Default         []string // sorted subset of dns, gateway, addressable
	CloudProperties map[string]any
}

// ReleaseRef names the release that provides the job being rendered.
type ReleaseRef struct {
	Name    string
	Version string
}

// Context is everything a template of one job on one instance can see.
type Context struct {
	Instance   Instance
	Job        string
	Release    ReleaseRef
	Properties map[string]any   // bound properties (BindProperties)
	Links      map[string]*Link // consumer link name -> link
	// JobTemplates feeds spec.job.templates: the instance group's jobs.
	JobTemplates []JobTemplateRef

	spec map[string]any
}

// JobTemplateRef is an entry of spec.job.templates.
type JobTemplateRef struct {
	Name, Version, SHA1 string
}

// Spec is the BOSH spec hash of section 4.1, with lower-case keys, as templates
// see it through `spec` (and as an ERB engine hands it to ruby).
func (c *Context) Spec() map[string]any {
	if c.spec != nil {
		return c.spec
	}
	in := c.Instance
	domain := in.DNSDomainName
	if domain == "" {
		domain = "bosh"
	}
	nets := map[string]any{}
	for name, n := range in.Networks {
		def := n.Default
		if def == nil {
			def = []string{}
		}
		dns := n.DNS
		if dns == nil {
			dns = []string{}
		}
		cp := n.CloudProperties
		if cp == nil {
			cp = map[string]any{}
		}
		nets[name] = map[string]any{
			"type": n.Type, "ip": n.IP, "netmask": n.Netmask, "gateway": n.Gateway, "prefix": n.Prefix,
			"dns": toAnyList(dns), "default": toAnyList(def), "cloud_properties": cp,
			"dns_record_name": fmt.Sprintf("%d.%s.%s.%s.%s", in.Index, dnsLabel(in.Group), dnsLabel(name), dnsLabel(in.Deployment), domain),
		}
	}
	templates := make([]any, 0, len(c.JobTemplates))
	first := ""
	for i, t := range c.JobTemplates {
		if i == 0 {
			first = t.Name
		}
		templates = append(templates, map[string]any{"name": t.Name, "version": t.Version, "sha1": t.SHA1})
	}
	links := map[string]any{}
	for name, l := range c.Links {
		links[name] = linkView(l)
	}
	c.spec = map[string]any{
		"deployment":                in.Deployment,
		"name":                      in.Group,
		"index":                     in.Index,
		"id":                        in.ID,
		"az":                        in.AZ,
		"bootstrap":                 in.Bootstrap,
		"address":                   in.Address,
		"ip":                        in.IP,
		"dns_domain_name":           domain,
		"networks":                  nets,
		"persistent_disk":           in.PersistentDisk,
		"job":                       map[string]any{"name": in.Group, "template": first, "templates": templates},
		"release":                   map[string]any{"name": c.Release.Name, "version": c.Release.Version},
		"properties":                c.Properties,
		"properties_need_filtering": true,
		"links":                     links,
	}
	return c.spec
}

func toAnyList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// PropertyError is a p() of a property that has no value.
type PropertyError struct {
	Names    []string
	Declared bool // false: the job spec does not declare it, so it is never bound
}

// ErrPropertyMissing is wrapped by every *PropertyError.
var ErrPropertyMissing = errors.New("property missing")

func (e *PropertyError) Error() string {
	q := make([]string, len(e.Names))
	for i, n := range e.Names {
		q[i] = "'" + n + "'"
	}
	if !e.Declared {
		return fmt.Sprintf("property %s is not declared in the job spec, so it is never bound: declare it under properties in the job's spec", strings.Join(q, " or "))
	}
	return fmt.Sprintf("property %s is required and has no value: set it in the manifest under the job's properties, or give it a default in the job spec", strings.Join(q, " or "))
}
func (e *PropertyError) Unwrap() error { return ErrPropertyMissing }

// property walks the bound properties for the first name with a non-nil value.
func property(props map[string]any, names []string) (any, bool) {
	for _, n := range names {
		if v, found, err := lookup(props, n); err == nil && found && v != nil {
			return v, true
		}
	}
	return nil, false
}

// p implements `p "name"` and `p "name" default`: the first non-nil bound value,
// else the default, else an error. false and 0 are values; nil is absent.
func (c *Context) p(name string, def ...any) (any, error) {
	if v, ok := property(c.Properties, []string{name}); ok {
		return v, nil
	}
	if len(def) > 0 {
		return def[0], nil
	}
	_, declared := lookupDeclared(c.Properties, name)
	return nil, &PropertyError{Names: []string{name}, Declared: declared}
}

// lookupDeclared reports whether name was bound at all (declared in the spec,
// possibly with a nil value).
func lookupDeclared(props map[string]any, name string) (any, bool) {
	v, found, _ := lookup(props, name)
	return v, found
}

// ifP implements `if_p "a" "b"`: true when every named property has a value.
func (c *Context) ifP(names ...string) bool {
	for _, n := range names {
		if _, ok := property(c.Properties, []string{n}); !ok {
			return false
		}
	}
	return len(names) > 0
}

// LinkView is a link as templates see it: map keys address, deployment_name,
// domain, default_network, instance_group, instances, properties, group_name,
// and methods P and IfP over the link's properties.
type LinkView map[string]any

// P is `(link "x").P "name" [default]`.
func (l LinkView) P(name string, def ...any) (any, error) {
	props, _ := l["properties"].(map[string]any)
	if v, ok := property(props, []string{name}); ok {
		return v, nil
	}
	if len(def) > 0 {
		return def[0], nil
	}
	return nil, fmt.Errorf("link '%s' has no property '%s' (a link carries only the properties its provider lists under provides)", l["name"], name)
}

// IfP is `(link "x").IfP "a" "b"`: true when every named link property has a value.
func (l LinkView) IfP(names ...string) bool {
	props, _ := l["properties"].(map[string]any)
	for _, n := range names {
		if _, ok := property(props, []string{n}); !ok {
			return false
		}
	}
	return len(names) > 0
}

func linkView(l *Link) LinkView {
	l.viewOnce.Do(func() { l.view = buildLinkView(l) })
	return l.view
}

func buildLinkView(l *Link) LinkView {
	insts := make([]any, len(l.Instances))
	for i, in := range l.Instances {
		addrs := map[string]any{}
		for k, v := range in.Addresses {
			addrs[k] = v
		}
		insts[i] = map[string]any{"name": in.Name, "id": in.ID, "index": in.Index, "az": in.AZ, "address": in.Address, "bootstrap": in.Bootstrap, "addresses": addrs}
	}
	return LinkView{
		"name": l.Name, "type": l.Type, "address": l.Address, "deployment_name": l.Deployment, "domain": l.Domain,
		"default_network": l.Network, "instance_group": l.InstanceGroup, "instances": insts,
		"properties": l.Properties, "group_name": l.Name + "-" + l.Type,
	}
}

// LinkMissingError is a link() of a link the job does not consume or that was
// not resolved (an optional link nobody provides).
type LinkMissingError struct{ Name string }

func (e *LinkMissingError) Error() string {
	return fmt.Sprintf("can't find link '%s': the job spec must consume it and a job in the deployment must provide it (use if_link for optional links)", e.Name)
}

func (c *Context) link(name string) (LinkView, error) {
	l, ok := c.Links[name]
	if !ok {
		return nil, &LinkMissingError{Name: name}
	}
	return linkView(l), nil
}

func (c *Context) ifLink(name string) bool {
	_, ok := c.Links[name]
	return ok
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
