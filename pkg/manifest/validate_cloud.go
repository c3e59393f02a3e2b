package manifest

import (
	"net/netip"
	"strconv"
	"strings"
)

// Validate checks a cloud-config on its own: names, subnets (range, gateway,
// reserved and static entries inside the range, static not reserved), azs
// referenced by subnets and compilation, compilation's vm_type and network.
func (c *CloudConfig) Validate() error {
	ps := &problems{}
	azs := ps.uniqueNames(len(c.AZs), func(i int) (string, Meta) { return c.AZs[i].Name, c.AZs[i].Meta }, "az")
	ps.uniqueNames(len(c.VMTypes), func(i int) (string, Meta) { return c.VMTypes[i].Name, c.VMTypes[i].Meta }, "vm_type")
	ps.uniqueNames(len(c.VMExtensions), func(i int) (string, Meta) { return c.VMExtensions[i].Name, c.VMExtensions[i].Meta }, "vm_extension")
	ps.uniqueNames(len(c.DiskTypes), func(i int) (string, Meta) { return c.DiskTypes[i].Name, c.DiskTypes[i].Meta }, "disk_type")
	for i := range c.DiskTypes {
		d := &c.DiskTypes[i]
		if d.Meta.IsPlaceholder() {
			continue
		}
		if ps.required(d.Meta, "disk_size", d.Meta.Has("disk_size")) && d.DiskSize <= 0 && !d.Meta.IsVar("disk_size") {
			ps.at(d.Meta, "disk_size", "must be greater than 0 (MB)")
		}
	}
	validateNetworks(ps, c.Networks, azs)

	if ps.required(c.Meta, "compilation", c.Compilation != nil) {
		cm := c.Compilation
		m := cm.Meta
		if ps.required(m, "workers", m.Has("workers")) && cm.Workers < 1 && !m.IsVar("workers") {
			ps.at(m, "workers", "must be at least 1")
		}
		if ps.required(m, "az", present(cm.AZ)) && !HasVar(cm.AZ) && len(azs) > 0 {
			if _, ok := azs[cm.AZ]; !ok {
				ps.at(m, "az", "az %q is not defined in azs (%s)", cm.AZ, names(keys(azs)))
			}
		}
		if ps.required(m, "network", present(cm.Network)) && !HasVar(cm.Network) && c.Network(cm.Network) == nil {
			var nets []string
			for _, n := range c.Networks {
				nets = append(nets, n.Name)
			}
			ps.at(m, "network", "%q is not defined in networks (%s)", cm.Network, names(nets))
		}
		kinds := 0
		for _, k := range []string{"vm_type", "vm_resources", "cloud_properties"} {
			if m.Has(k) {
				kinds++
			}
		}
		if kinds > 1 {
			ps.at(m, "", "give only one of vm_type, vm_resources and cloud_properties")
		}
		if present(cm.VMType) && !HasVar(cm.VMType) && c.VMType(cm.VMType) == nil {
			var defined []string
			for _, v := range c.VMTypes {
				defined = append(defined, v.Name)
			}
			ps.at(m, "vm_type", "%q is not defined in vm_types (%s)", cm.VMType, names(defined))
		}
		for j, e := range cm.VMExtensions {
			if !HasVar(e) && c.VMExtension(e) == nil {
				ps.item(m, "vm_extensions", j, 0, "%q is not defined in vm_extensions", e)
			}
		}
	}
	return ps.err()
}

// validateNetworks checks networks and their subnets; azs (nil for create-env
// manifests) are the defined az names.
func validateNetworks(ps *problems, nets []Network, azs map[string]int) {
	ps.uniqueNames(len(nets), func(i int) (string, Meta) { return nets[i].Name, nets[i].Meta }, "network")
	for i := range nets {
		n := &nets[i]
		if n.Meta.IsPlaceholder() {
			continue
		}
		ps.oneOf(n.Meta, "type", n.Type, NetworkManual, NetworkDynamic, NetworkVIP)
		typ := n.TypeOrDefault()
		if typ == NetworkManual {
			ps.required(n.Meta, "subnets", len(n.Subnets) > 0)
		}
		for j := range n.Subnets {
			s := &n.Subnets[j]
			if s.Meta.IsPlaceholder() {
				continue
			}
			sm := s.Meta
			if sm.Has("az") && sm.Has("azs") {
				ps.at(sm, "azs", "give az or azs, not both")
			} else if sm.Has("azs") && len(s.AZs) == 0 && !sm.IsVar("azs") {
				ps.at(sm, "azs", "must not be empty (remove it, or list the subnet's azs)")
			}
			if azs != nil {
				for _, key := range []string{"az", "azs"} {
					zones := s.AZs
					if key == "az" {
						zones = nil
						if present(s.AZ) {
							zones = []string{s.AZ}
						}
					}
					for k, z := range zones {
						if HasVar(z) {
							continue
						}
						if _, ok := azs[z]; !ok {
							if key == "az" {
								ps.at(sm, key, "az %q is not defined in azs (%s)", z, names(keys(azs)))
							} else {
								ps.item(sm, key, k, 0, "az %q is not defined in azs (%s)", z, names(keys(azs)))
							}
						}
					}
				}
			}
			if typ != NetworkManual {
				continue
			}
			if !ps.required(sm, "range", present(s.Range)) {
				continue
			}
			ps.required(sm, "gateway", present(s.Gateway))
			validateSubnetIPs(ps, s)
		}
	}
}

// validateSubnetIPs checks a manual subnet's addresses when none is a placeholder.
func validateSubnetIPs(ps *problems, s *Subnet) {
	sm := s.Meta
	if HasVar(s.Range) {
		return
	}
	rng, err := ParseRange(s.Range)
	if err != nil {
		ps.at(sm, "range", "%v", err)
		return
	}
	lo, hi, _ := prefixBounds(rng)
	if lo == hi {
		ps.at(sm, "range", "range %s holds a single address; a subnet needs at least 2", rng)
		return
	}
	restricted := &IPSet{}
	restricted.Add(lo)
	restricted.Add(hi)
	if present(s.Gateway) && !HasVar(s.Gateway) {
		ip, err := netip.ParseAddr(strings.TrimSpace(s.Gateway))
		switch {
		case err != nil:
			ps.at(sm, "gateway", "%q is not an IP address", s.Gateway)
		case !rng.Contains(ip):
			ps.at(sm, "gateway", "%s is outside the subnet range %s", ip, rng)
		case ip == lo || ip == hi:
			ps.at(sm, "gateway", "%s is the network or broadcast address of %s", ip, rng)
		default:
			restricted.Add(ip)
		}
	}
	if present(s.Prefix) && !HasVar(s.Prefix) {
		n, err := strconv.Atoi(strings.TrimSpace(s.Prefix))
		switch {
		case err != nil:
			ps.at(sm, "prefix", "expected a prefix length such as 28, got %q", s.Prefix)
		case n < rng.Bits() || n > rng.Addr().BitLen():
			ps.at(sm, "prefix", "prefix /%d does not fit in the range %s", n, rng)
		}
	}
	sets := map[string]*IPSet{}
	for _, key := range []string{"reserved", "static"} {
		list := s.Reserved
		if key == "static" {
			list = s.Static
		}
		set := &IPSet{}
		ok := !sm.IsVar(key)
		for k, e := range list {
			if HasVar(e) {
				ok = false
				continue
			}
			lo, hi, err := ParseIPEntry(e)
			if err != nil {
				ps.item(sm, key, k, 0, "%v", err)
				ok = false
				continue
			}
			if !rng.Contains(lo) || !rng.Contains(hi) {
				ps.item(sm, key, k, 0, "%s is outside the subnet range %s", strings.TrimSpace(e), rng)
			}
			set.AddRange(lo, hi)
		}
		if ok {
			sets[key] = set
		}
	}
	if r := sets["reserved"]; r != nil {
		restricted.AddSet(r)
	}
	if st := sets["static"]; st != nil && restricted.Intersects(st) {
		overlap := st.Subtract(st.Subtract(restricted))
		ps.at(sm, "static", "static IPs %s are reserved (or the network, broadcast or gateway address); an address is either reserved or static", overlap)
	}
}

// ValidateCPIs checks that every az's cpi is defined in the cpi-config (nil
// when there is none).
func (c *CloudConfig) ValidateCPIs(cpi *CPIConfig) error {
	ps := &problems{}
	var defined []string
	if cpi != nil {
		for _, x := range cpi.CPIs {
			defined = append(defined, x.Name)
		}
	}
	for i := range c.AZs {
		az := &c.AZs[i]
		if !present(az.CPI) || HasVar(az.CPI) {
			continue
		}
		if cpi == nil {
			ps.at(az.Meta, "cpi", "az %q selects cpi %q but there is no cpi-config (kpaas update-cpi-config FILE)", az.Name, az.CPI)
		} else if cpi.CPI(az.CPI) == nil {
			ps.at(az.Meta, "cpi", "cpi %q is not defined in the cpi-config (%s)", az.CPI, names(defined))
		}
	}
	return ps.err()
}

// Validate checks a cpi-config: names unique, type required.
func (c *CPIConfig) Validate() error {
	ps := &problems{}
	ps.required(c.Meta, "cpis", c.Meta.Has("cpis"))
	ps.uniqueNames(len(c.CPIs), func(i int) (string, Meta) { return c.CPIs[i].Name, c.CPIs[i].Meta }, "cpi")
	for i := range c.CPIs {
		if !c.CPIs[i].Meta.IsPlaceholder() {
			ps.required(c.CPIs[i].Meta, "type", present(c.CPIs[i].Type))
		}
	}
	return ps.err()
}

// Validate checks a runtime-config: releases (versions given and never
// latest), addons (jobs from its own releases, valid placement rules),
// variables, tags.
func (c *RuntimeConfig) Validate() error {
	ps := &problems{}
	releases := ps.uniqueNames(len(c.Releases), func(i int) (string, Meta) { return c.Releases[i].Name, c.Releases[i].Meta }, "release")
	for i := range c.Releases {
		r := &c.Releases[i]
		if r.Meta.IsPlaceholder() {
			continue
		}
		if ps.required(r.Meta, "version", present(r.Version)) && r.Version == "latest" {
			ps.at(r.Meta, "version", "a runtime-config release needs an exact version, not latest")
		}
	}
	validateAddons(ps, c.Addons, releases, keys(releases), false)
	validateVariables(ps, c.Variables)
	validateTags(ps, c.Meta, c.Tags)
	return ps.err()
}

// Configs are the documents a deploy checks together; nil members are skipped.
type Configs struct {
	Manifest *Manifest
	Cloud    *CloudConfig
	Runtime  *RuntimeConfig
	CPI      *CPIConfig
}

// Validate runs every check of every document present and of the manifest
// against the cloud-config, and returns all problems at once.
func (c Configs) Validate() error {
	var errs []error
	if c.Manifest != nil {
		errs = append(errs, c.Manifest.Validate())
		if !c.Manifest.IsCreateEnv() {
			errs = append(errs, c.Manifest.ValidateCloud(c.Cloud))
		}
	}
	if c.Cloud != nil {
		errs = append(errs, c.Cloud.Validate(), c.Cloud.ValidateCPIs(c.CPI))
	}
	if c.Runtime != nil {
		errs = append(errs, c.Runtime.Validate())
	}
	if c.CPI != nil {
		errs = append(errs, c.CPI.Validate())
	}
	return joinErrors(errs...)
}
