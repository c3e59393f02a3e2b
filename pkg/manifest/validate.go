package manifest

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Variable types the director accepts (CredHub's generate types).
var variableTypes = []string{"certificate", "password", "rsa", "ssh", "user", "value", "json"}

// present reports whether a string field has a value (a placeholder counts).
func present(s string) bool { return strings.TrimSpace(s) != "" }

// required reports key as missing unless ok or the value was a placeholder.
func (ps *problems) required(m Meta, key string, ok bool) bool {
	if ok || m.IsVar(key) {
		return true
	}
	if m.Has(key) {
		ps.at(m, key, "must not be empty")
	} else {
		ps.at(m, "", "%s is required", key)
	}
	return false
}

// oneOf reports a string value not in allowed (placeholders and empty pass).
func (ps *problems) oneOf(m Meta, key, value string, allowed ...string) {
	if value == "" || HasVar(value) || contains(allowed, value) {
		return
	}
	ps.at(m, key, "%q is not valid (expected %s)", value, orList(allowed))
}

func orList(l []string) string {
	if len(l) <= 1 {
		return strings.Join(l, "")
	}
	return strings.Join(l[:len(l)-1], ", ") + " or " + l[len(l)-1]
}

// names lists defined names for "is not defined" messages, capped.
func names(list []string) string {
	if len(list) == 0 {
		return "none is defined"
	}
	s := append([]string(nil), list...)
	sort.Strings(s)
	if len(s) > 12 {
		return "defined: " + strings.Join(s[:12], ", ") + fmt.Sprintf(", ... (%d in all)", len(s))
	}
	return "defined: " + strings.Join(s, ", ")
}

// uniqueNames reports items with an empty or duplicate name. get returns the
// name and meta of item i.
func (ps *problems) uniqueNames(n int, get func(i int) (string, Meta), what string) map[string]int {
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		name, m := get(i)
		if m.IsPlaceholder() {
			continue
		}
		if !ps.required(m, "name", present(name)) {
			continue
		}
		if HasVar(name) {
			seen[name] = i // a placeholder name may stand for any name: see has
			continue
		}
		if first, dup := seen[name]; dup {
			_, fm := get(first)
			ps.at(m, "name", "%s %q is defined twice (first at line %d)", what, name, fm.Line)
			continue
		}
		seen[name] = i
	}
	return seen
}

// Validate checks the manifest on its own (no cloud-config): required keys,
// names, references to its own releases and stemcells, update values, static IP
// counts. It reports every problem at once.
func (m *Manifest) Validate() error {
	ps := &problems{}
	createEnv := m.IsCreateEnv()
	ps.required(m.Meta, "name", present(m.Name))

	releases := ps.uniqueNames(len(m.Releases), func(i int) (string, Meta) { return m.Releases[i].Name, m.Releases[i].Meta }, "release")
	ps.required(m.Meta, "releases", len(m.Releases) > 0)
	for i := range m.Releases {
		r := &m.Releases[i]
		if r.Meta.IsPlaceholder() {
			continue
		}
		// a release given by url may leave its version to the tarball's release.MF
		ps.required(r.Meta, "version", present(r.Version) || present(r.URL))
	}

	var stemcells map[string]int
	if !createEnv {
		ps.required(m.Meta, "stemcells", len(m.Stemcells) > 0)
		stemcells = map[string]int{}
		for i := range m.Stemcells {
			s := &m.Stemcells[i]
			if s.Meta.IsPlaceholder() {
				continue
			}
			if ps.required(s.Meta, "alias", present(s.Alias)) || s.Meta.IsVar("alias") {
				if first, dup := stemcells[s.Alias]; dup {
					ps.at(s.Meta, "alias", "stemcell alias %q is defined twice (first at line %d)", s.Alias, m.Stemcells[first].Meta.Line)
				} else {
					stemcells[s.Alias] = i
				}
			}
			switch {
			case present(s.OS) && present(s.Name):
				ps.at(s.Meta, "", "give os or name, not both")
			case !present(s.OS) && !present(s.Name) && !s.Meta.IsVar("os") && !s.Meta.IsVar("name"):
				ps.at(s.Meta, "", "os (or name) is required")
			}
			ps.required(s.Meta, "version", present(s.Version))
		}
		ps.required(m.Meta, "update", m.Update != nil)
		ps.required(m.Meta, "instance_groups", m.Meta.Has("instance_groups"))
	}
	if m.Update != nil {
		ps.updateValues(m.Update)
	}
	var global Update
	if m.Update != nil {
		global = *m.Update
	}

	releaseNames := keys(releases)
	var stemcellAliases []string
	for a := range stemcells {
		stemcellAliases = append(stemcellAliases, a)
	}
	ps.uniqueNames(len(m.InstanceGroups), func(i int) (string, Meta) { return m.InstanceGroups[i].Name, m.InstanceGroups[i].Meta }, "instance group")
	for i := range m.InstanceGroups {
		g := &m.InstanceGroups[i]
		if g.Meta.IsPlaceholder() {
			continue
		}
		m.validateGroup(ps, g, createEnv, global, releases, releaseNames, stemcells, stemcellAliases)
	}

	validateAddons(ps, m.Addons, releases, releaseNames, true)
	validateVariables(ps, m.Variables)
	validateTags(ps, m.Meta, m.Tags)
	if createEnv {
		m.validateCreateEnv(ps)
	}
	return ps.err()
}

// has reports whether name is defined in set, or may be (a name in set is a placeholder).
func has(set map[string]int, name string) bool {
	if _, ok := set[name]; ok {
		return true
	}
	for k := range set {
		if HasVar(k) {
			return true
		}
	}
	return false
}

func keys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// updateValues checks what parsing could not: the strategies. Counts are not
// range-checked, as in the director (max_in_flight 0 or 0% means 1, a
// percentage over 100% is capped at the group size).
func (ps *problems) updateValues(u *Update) {
	ps.oneOf(u.Meta, "vm_strategy", u.VMStrategy, VMStrategyDeleteCreate, VMStrategyCreateSwapDelete)
	ps.oneOf(u.Meta, "initial_deploy_az_update_strategy", u.InitialDeployAZUpdateStrategy, AZUpdateSerial, AZUpdateParallel)
}

func (m *Manifest) validateGroup(ps *problems, g *InstanceGroup, createEnv bool, global Update,
	releases map[string]int, releaseNames []string, stemcells map[string]int, stemcellAliases []string) {
	gm := g.Meta
	if !createEnv {
		if ps.required(gm, "azs", len(g.AZs) > 0) {
			seen := map[string]bool{}
			for j, az := range g.AZs {
				if seen[az] {
					ps.item(gm, "azs", j, 0, "az %q is listed twice", az)
				}
				seen[az] = true
			}
		}
	}
	ps.required(gm, "instances", gm.Has("instances"))
	if g.Instances < 0 {
		ps.at(gm, "instances", "must not be negative")
	}
	ps.required(gm, "jobs", gm.Has("jobs"))
	jobNames := map[string]int{}
	for j := range g.Jobs {
		job := &g.Jobs[j]
		if job.Meta.IsPlaceholder() {
			continue
		}
		if ps.required(job.Meta, "name", present(job.Name)) && !HasVar(job.Name) {
			if first, dup := jobNames[job.Name]; dup {
				ps.at(job.Meta, "name", "job %q is listed twice in this instance group (first at line %d)", job.Name, g.Jobs[first].Meta.Line)
			} else {
				jobNames[job.Name] = j
			}
		}
		if ps.required(job.Meta, "release", present(job.Release)) && !HasVar(job.Release) {
			if !has(releases, job.Release) {
				ps.at(job.Meta, "release", "release %q is not in the manifest's releases (%s)", job.Release, names(releaseNames))
			}
		}
		validateLinks(ps, job)
	}

	if createEnv {
		if ps.required(gm, "resource_pool", present(g.ResourcePool)) && !HasVar(g.ResourcePool) {
			found := false
			var defined []string
			for _, rp := range m.ResourcePools {
				defined = append(defined, rp.Name)
				found = found || rp.Name == g.ResourcePool
			}
			if !found {
				ps.at(gm, "resource_pool", "%q is not defined in resource_pools (%s)", g.ResourcePool, names(defined))
			}
		}
		if present(g.PersistentDiskPool) && !HasVar(g.PersistentDiskPool) {
			found := false
			var defined []string
			for _, dp := range m.DiskPools {
				defined = append(defined, dp.Name)
				found = found || dp.Name == g.PersistentDiskPool
			}
			if !found {
				ps.at(gm, "persistent_disk_pool", "%q is not defined in disk_pools (%s)", g.PersistentDiskPool, names(defined))
			}
		}
	} else {
		hasType := present(g.VMType) || gm.IsVar("vm_type")
		hasRes := g.VMResources != nil || gm.IsVar("vm_resources")
		switch {
		case hasType && hasRes:
			ps.at(gm, "vm_resources", "give vm_type or vm_resources, not both")
		case !hasType && !hasRes:
			ps.at(gm, "", "vm_type (or vm_resources) is required")
		}
		if ps.required(gm, "stemcell", present(g.Stemcell)) && !HasVar(g.Stemcell) {
			if !has(stemcells, g.Stemcell) {
				ps.at(gm, "stemcell", "stemcell alias %q is not defined in stemcells (%s)", g.Stemcell, names(stemcellAliases))
			}
		}
	}
	if r := g.VMResources; r != nil {
		for _, f := range []struct {
			key string
			v   int
		}{{"cpu", r.CPU}, {"ram", r.RAM}, {"ephemeral_disk_size", r.EphemeralDiskSize}} {
			if r.Meta.IsVar(f.key) {
				continue
			}
			if !r.Meta.Has(f.key) {
				ps.at(r.Meta, "", "%s is required", f.key)
			} else if f.v <= 0 {
				ps.at(r.Meta, f.key, "must be greater than 0")
			}
		}
	}
	if g.PersistentDisk < 0 {
		ps.at(gm, "persistent_disk", "must not be negative")
	}
	diskKeys := 0
	for _, k := range []string{"persistent_disk", "persistent_disk_type", "persistent_disk_pool"} {
		if gm.Has(k) {
			diskKeys++
		}
	}
	if diskKeys > 1 {
		ps.at(gm, "persistent_disk_type", "give only one of persistent_disk, persistent_disk_type and persistent_disk_pool")
	}

	if ps.required(gm, "networks", len(g.Networks) > 0) {
		seen := map[string]int{}
		for j := range g.Networks {
			n := &g.Networks[j]
			if n.Meta.IsPlaceholder() {
				continue
			}
			if ps.required(n.Meta, "name", present(n.Name)) && !HasVar(n.Name) {
				if first, dup := seen[n.Name]; dup {
					ps.at(n.Meta, "name", "network %q is listed twice (first at line %d)", n.Name, g.Networks[first].Meta.Line)
				}
				seen[n.Name] = j
			}
			for k, d := range n.Default {
				if d != "dns" && d != "gateway" && d != "addressable" && !HasVar(d) {
					ps.item(n.Meta, "default", k, 0, "%q is not valid (expected dns, gateway or addressable)", d)
				}
			}
			if len(n.StaticIPs) > 0 || n.Meta.IsVar("static_ips") {
				m.checkStaticCount(ps, g, n)
			}
		}
	}

	ps.oneOf(gm, "lifecycle", g.Lifecycle, LifecycleService, LifecycleErrand)
	for j := range g.MigratedFrom {
		mf := &g.MigratedFrom[j]
		if !mf.Meta.IsPlaceholder() {
			ps.required(mf.Meta, "name", present(mf.Name))
			if present(mf.AZ) && !HasVar(mf.AZ) && len(g.AZs) > 0 && !contains(g.AZs, mf.AZ) {
				ps.at(mf.Meta, "az", "az %q is not one of the group's azs (%s)", mf.AZ, strings.Join(g.AZs, ", "))
			}
		}
	}
	if g.Update != nil {
		ps.updateValues(g.Update)
	}
	if !createEnv && !gm.IsVar("update") && !m.Meta.IsVar("update") {
		eff := global.Merge(g.Update)
		var missing []string
		if eff.Canaries == nil && !global.Meta.IsVar("canaries") && (g.Update == nil || !g.Update.Meta.IsVar("canaries")) {
			missing = append(missing, "canaries")
		}
		if eff.MaxInFlight == nil && !global.Meta.IsVar("max_in_flight") && (g.Update == nil || !g.Update.Meta.IsVar("max_in_flight")) {
			missing = append(missing, "max_in_flight")
		}
		if eff.CanaryWatchTime == nil && !global.Meta.IsVar("canary_watch_time") && (g.Update == nil || !g.Update.Meta.IsVar("canary_watch_time")) {
			missing = append(missing, "canary_watch_time")
		}
		if eff.UpdateWatchTime == nil && !global.Meta.IsVar("update_watch_time") && (g.Update == nil || !g.Update.Meta.IsVar("update_watch_time")) {
			missing = append(missing, "update_watch_time")
		}
		if len(missing) > 0 && (m.Update != nil || g.Update != nil) {
			ps.at(gm, "", "update %s not set, neither in the deployment's update block nor in the group's", strings.Join(missing, ", "))
		}
	}
	if g.Env != nil {
		ps.oneOf(g.Env.Meta, "persistent_disk_fs", g.Env.PersistentDiskFS, "ext4", "xfs")
	}
	validateTags(ps, gm, g.Tags)
}

// checkStaticCount: when static IPs are given on a network, every instance
// needs one, so their number equals instances.
func (m *Manifest) checkStaticCount(ps *problems, g *InstanceGroup, n *GroupNetwork) {
	if n.Meta.IsVar("static_ips") || g.Meta.IsVar("instances") {
		return
	}
	seen := map[string]int{}
	count := 0
	for k, ip := range n.StaticIPs {
		if HasVar(ip) {
			return // one placeholder may stand for several addresses
		}
		lo, hi, err := ParseIPEntry(ip)
		if err != nil {
			ps.item(n.Meta, "static_ips", k, 0, "%v", err)
			return
		}
		set := &IPSet{}
		set.AddRange(lo, hi)
		for a := range set.All() {
			if first, dup := seen[a.String()]; dup {
				ps.item(n.Meta, "static_ips", k, 0, "%s is listed twice (also static_ips[%d])", a, first)
			}
			seen[a.String()] = k
			count++
		}
	}
	if count != g.Instances {
		ps.at(n.Meta, "static_ips", "%d static IPs for %d instances: when a network has static_ips, every instance needs exactly one", count, g.Instances)
	}
}

func validateLinks(ps *problems, job *Job) {
	for j := range job.CustomProviderDefinitions {
		d := &job.CustomProviderDefinitions[j]
		if !d.Meta.IsPlaceholder() {
			ps.required(d.Meta, "name", present(d.Name))
			ps.required(d.Meta, "type", present(d.Type))
		}
	}
}

func validateAddons(ps *problems, addons []Addon, releases map[string]int, releaseNames []string, inDeployment bool) {
	ps.uniqueNames(len(addons), func(i int) (string, Meta) { return addons[i].Name, addons[i].Meta }, "addon")
	where := "the manifest's releases"
	if !inDeployment {
		where = "the runtime-config's releases"
	}
	for i := range addons {
		a := &addons[i]
		if a.Meta.IsPlaceholder() {
			continue
		}
		ps.required(a.Meta, "jobs", a.Meta.Has("jobs"))
		for j := range a.Jobs {
			job := &a.Jobs[j]
			if job.Meta.IsPlaceholder() {
				continue
			}
			ps.required(job.Meta, "name", present(job.Name))
			if ps.required(job.Meta, "release", present(job.Release)) && !HasVar(job.Release) {
				if !has(releases, job.Release) {
					ps.at(job.Meta, "release", "release %q is not in %s (%s)", job.Release, where, names(releaseNames))
				}
			}
		}
		for _, r := range []*PlacementRule{a.Include, a.Exclude} {
			if r == nil {
				continue
			}
			ps.oneOf(r.Meta, "lifecycle", r.Lifecycle, LifecycleService, LifecycleErrand)
			for k := range r.Stemcell {
				if !r.Stemcell[k].Meta.IsPlaceholder() {
					ps.required(r.Stemcell[k].Meta, "os", present(r.Stemcell[k].OS))
				}
			}
			for k := range r.Jobs {
				if !r.Jobs[k].Meta.IsPlaceholder() {
					ps.required(r.Jobs[k].Meta, "name", present(r.Jobs[k].Name))
					ps.required(r.Jobs[k].Meta, "release", present(r.Jobs[k].Release))
				}
			}
		}
	}
}

func validateVariables(ps *problems, vars []Variable) {
	ps.uniqueNames(len(vars), func(i int) (string, Meta) { return vars[i].Name, vars[i].Meta }, "variable")
	for i := range vars {
		v := &vars[i]
		if v.Meta.IsPlaceholder() {
			continue
		}
		if ps.required(v.Meta, "type", present(v.Type)) {
			ps.oneOf(v.Meta, "type", v.Type, variableTypes...)
		}
		ps.oneOf(v.Meta, "update_mode", v.UpdateMode, "no-overwrite", "overwrite", "converge")
		if v.Update != nil {
			ps.oneOf(v.Update.Meta, "strategy", v.Update.Strategy, "on-deploy", "on-stemcell-change")
		}
	}
}

func validateTags(ps *problems, m Meta, tags map[string]any) {
	for k, v := range tags {
		switch v.(type) {
		case string, int, float64, bool, nil:
		default:
			ps.at(m, "tags", "tag %q must be a string, got %T", k, v)
		}
	}
}

func (m *Manifest) validateCreateEnv(ps *problems) {
	var nets []string
	for _, n := range m.Networks {
		nets = append(nets, n.Name)
	}
	ps.uniqueNames(len(m.ResourcePools), func(i int) (string, Meta) { return m.ResourcePools[i].Name, m.ResourcePools[i].Meta }, "resource pool")
	for i := range m.ResourcePools {
		rp := &m.ResourcePools[i]
		if present(rp.Network) && !HasVar(rp.Network) && !contains(nets, rp.Network) {
			ps.at(rp.Meta, "network", "%q is not defined in networks (%s)", rp.Network, names(nets))
		}
	}
	ps.uniqueNames(len(m.DiskPools), func(i int) (string, Meta) { return m.DiskPools[i].Name, m.DiskPools[i].Meta }, "disk pool")
	for i := range m.DiskPools {
		dp := &m.DiskPools[i]
		if ps.required(dp.Meta, "disk_size", dp.Meta.Has("disk_size")) && dp.DiskSize <= 0 && !dp.Meta.IsVar("disk_size") {
			ps.at(dp.Meta, "disk_size", "must be greater than 0 (MB)")
		}
	}
	validateNetworks(ps, m.Networks, nil)
	if cp := m.CloudProvider; cp != nil && cp.Template != nil {
		ps.required(cp.Template.Meta, "name", present(cp.Template.Name))
		ps.required(cp.Template.Meta, "release", present(cp.Template.Release))
	}
	// create-env static IPs are checked against the manifest's own networks.
	cc := &CloudConfig{Networks: m.Networks}
	m.checkStaticIPs(ps, cc, false)
	for i := range m.InstanceGroups {
		checkDefaultNetworks(ps, &m.InstanceGroups[i], cc)
	}
}

// ValidateCloud checks the manifest's references into a cloud-config: azs,
// vm_type, vm_extensions, persistent_disk_type, networks (and that they have a
// subnet in each of the group's azs), static IPs (inside a subnet's static
// range, not reserved, not claimed by two groups).
func (m *Manifest) ValidateCloud(cc *CloudConfig) error {
	ps := &problems{}
	if m.IsCreateEnv() {
		return nil
	}
	if cc == nil {
		ps.at(m.Meta, "", "no cloud-config: deployments need one for their azs, vm_types and networks (kpaas update-config --type cloud FILE)")
		return ps.err()
	}
	var azs, vmTypes, exts, disks, nets []string
	for _, a := range cc.AZs {
		azs = append(azs, a.Name)
	}
	for _, v := range cc.VMTypes {
		vmTypes = append(vmTypes, v.Name)
	}
	for _, v := range cc.VMExtensions {
		exts = append(exts, v.Name)
	}
	for _, d := range cc.DiskTypes {
		disks = append(disks, d.Name)
	}
	for _, n := range cc.Networks {
		nets = append(nets, n.Name)
	}
	notDefined := func(meta Meta, key, value, what string, defined []string) {
		ps.at(meta, key, "%q is not defined in the cloud-config's %s (%s)", value, what, names(defined))
	}
	for i := range m.InstanceGroups {
		g := &m.InstanceGroups[i]
		if g.Meta.IsPlaceholder() {
			continue
		}
		for j, az := range g.AZs {
			if !HasVar(az) && cc.AZ(az) == nil {
				ps.item(g.Meta, "azs", j, 0, "az %q is not defined in the cloud-config (%s)", az, names(azs))
			}
		}
		if present(g.VMType) && !HasVar(g.VMType) && cc.VMType(g.VMType) == nil {
			notDefined(g.Meta, "vm_type", g.VMType, "vm_types", vmTypes)
		}
		for j, e := range g.VMExtensions {
			if !HasVar(e) && cc.VMExtension(e) == nil {
				ps.item(g.Meta, "vm_extensions", j, 0, "%q is not defined in the cloud-config's vm_extensions (%s)", e, names(exts))
			}
		}
		if present(g.PersistentDiskType) && !HasVar(g.PersistentDiskType) && cc.DiskType(g.PersistentDiskType) == nil {
			notDefined(g.Meta, "persistent_disk_type", g.PersistentDiskType, "disk_types", disks)
		}
		for j := range g.Networks {
			gn := &g.Networks[j]
			if gn.Meta.IsPlaceholder() || !present(gn.Name) || HasVar(gn.Name) {
				continue
			}
			n := cc.Network(gn.Name)
			if n == nil {
				notDefined(gn.Meta, "name", gn.Name, "networks", nets)
				continue
			}
			if n.TypeOrDefault() == NetworkVIP {
				continue
			}
			if n.TypeOrDefault() == NetworkDynamic && (len(gn.StaticIPs) > 0 || gn.Meta.IsVar("static_ips")) {
				ps.at(gn.Meta, "static_ips", "network %q is dynamic: the IaaS assigns its IPs, static_ips are not allowed", gn.Name)
			}
			// every az of the group needs a subnet of this network in that az
			if len(n.Subnets) == 0 {
				continue // a dynamic network without subnets serves every az
			}
			for _, az := range g.AZs {
				if HasVar(az) {
					continue
				}
				found := false
				for _, s := range n.Subnets {
					if s.Meta.IsPlaceholder() || contains(s.Zones(), az) || s.Meta.IsVar("azs") || s.Meta.IsVar("az") || HasVar(s.AZ) || slices.ContainsFunc(s.AZs, HasVar) {
						found = true
						break
					}
				}
				if !found {
					ps.at(gn.Meta, "name", "network %q has no subnet in az %q, one of the group's azs", gn.Name, az)
				}
			}
		}
	}
	m.checkStaticIPs(ps, cc, true)
	for i := range m.InstanceGroups {
		checkDefaultNetworks(ps, &m.InstanceGroups[i], cc)
	}
	return ps.err()
}

// checkDefaultNetworks: a group on more than one (non-vip) network must name
// exactly one default network for dns and one for gateway.
func checkDefaultNetworks(ps *problems, g *InstanceGroup, cc *CloudConfig) {
	var nets []*GroupNetwork
	for j := range g.Networks {
		gn := &g.Networks[j]
		if gn.Meta.IsPlaceholder() || HasVar(gn.Name) {
			return // cannot tell which are vip networks yet
		}
		if n := cc.Network(gn.Name); n != nil && n.TypeOrDefault() == NetworkVIP {
			continue
		}
		nets = append(nets, gn)
	}
	if len(nets) < 2 {
		return
	}
	for _, what := range []string{"dns", "gateway"} {
		var l []string
		for _, n := range nets {
			if n.IsDefaultFor(what) {
				l = append(l, n.Name)
			}
		}
		switch {
		case len(l) == 0:
			ps.at(g.Meta, "networks", "with more than one network, one of them must be the default for %s (add default: [dns, gateway] to one)", what)
		case len(l) > 1:
			ps.at(g.Meta, "networks", "networks %s are all the default for %s; only one may be", strings.Join(l, ", "), what)
		}
	}
}

type ipClaim struct {
	group   string
	network string
	line    int
}

// checkStaticIPs checks that every static IP is inside a subnet of its network
// (in a subnet serving one of the group's azs when zoned), in that subnet's
// static entries and not reserved, and that no two groups claim the same IP.
func (m *Manifest) checkStaticIPs(ps *problems, cc *CloudConfig, zonedCheck bool) {
	claims := map[netip.Addr]ipClaim{}
	plans := map[*Subnet]*SubnetIPs{}
	subnetIPs := func(s *Subnet) *SubnetIPs {
		if p, ok := plans[s]; ok {
			return p
		}
		var p *SubnetIPs
		if !s.HasVars() {
			p, _ = s.IPs() // malformed subnets are reported by the cloud-config's Validate
		}
		plans[s] = p
		return p
	}
	for i := range m.InstanceGroups {
		g := &m.InstanceGroups[i]
		for j := range g.Networks {
			gn := &g.Networks[j]
			n := cc.Network(gn.Name)
			for k, entry := range gn.StaticIPs {
				if HasVar(entry) {
					continue
				}
				lo, hi, err := ParseIPEntry(entry)
				if err != nil {
					continue // reported by Validate
				}
				set := &IPSet{}
				set.AddRange(lo, hi)
				for ip := range set.All() {
					if prev, dup := claims[ip]; dup && prev.group != g.Name {
						ps.item(gn.Meta, "static_ips", k, 0, "%s is also a static IP of instance group %q (network %s, line %d)", ip, prev.group, prev.network, prev.line)
					} else if !dup {
						claims[ip] = ipClaim{group: g.Name, network: gn.Name, line: gn.Meta.KeyLine("static_ips")}
					}
					if n == nil {
						continue
					}
					m.checkOneStatic(ps, g, gn, k, ip, n, subnetIPs, zonedCheck)
				}
			}
		}
	}
}

func (m *Manifest) checkOneStatic(ps *problems, g *InstanceGroup, gn *GroupNetwork, k int, ip netip.Addr, n *Network,
	subnetIPs func(*Subnet) *SubnetIPs, zonedCheck bool) {
	typ := n.TypeOrDefault()
	if typ == NetworkDynamic {
		return // reported once per network by ValidateCloud
	}
	unknown := false
	var inRange *Subnet
	for si := range n.Subnets {
		s := &n.Subnets[si]
		p := subnetIPs(s)
		if p == nil {
			unknown = true
			continue
		}
		if typ == NetworkVIP {
			if p.Static.Contains(ip) {
				return
			}
			continue
		}
		if p.Range.Contains(ip) {
			inRange = s
			if zonedCheck && len(s.Zones()) > 0 && len(g.AZs) > 0 {
				shared := false
				for _, az := range g.AZs {
					shared = shared || contains(s.Zones(), az) || HasVar(az)
				}
				if !shared {
					ps.item(gn.Meta, "static_ips", k, 0, "%s is in the subnet %s of network %q, which serves azs %s, none of the group's azs (%s)",
						ip, s.Range, n.Name, strings.Join(s.Zones(), ", "), strings.Join(g.AZs, ", "))
					return
				}
			}
			switch {
			case p.Reserved.Contains(ip):
				ps.item(gn.Meta, "static_ips", k, 0, "%s is reserved in the subnet %s of network %q (reserved: %s)", ip, s.Range, n.Name, p.Reserved)
			case p.Restricted.Contains(ip):
				ps.item(gn.Meta, "static_ips", k, 0, "%s is the network, broadcast or gateway address of the subnet %s of network %q", ip, s.Range, n.Name)
			case !p.Static.Contains(ip):
				ps.item(gn.Meta, "static_ips", k, 0, "%s is not in the static IPs of the subnet %s of network %q (static: %s); add it to the subnet's static list", ip, s.Range, n.Name, orNone(p.Static))
			}
			return
		}
	}
	if unknown {
		return // a subnet with placeholders may hold it
	}
	if typ == NetworkVIP {
		if len(n.Subnets) > 0 {
			ps.item(gn.Meta, "static_ips", k, 0, "%s is not in the static IPs of any subnet of vip network %q", ip, n.Name)
		}
		return
	}
	if inRange == nil {
		var ranges []string
		for _, s := range n.Subnets {
			ranges = append(ranges, s.Range)
		}
		ps.item(gn.Meta, "static_ips", k, 0, "%s is not inside any subnet of network %q (%s)", ip, n.Name, strings.Join(ranges, ", "))
	}
}

func orNone(s *IPSet) string {
	if s.IsEmpty() {
		return "none"
	}
	return s.String()
}
