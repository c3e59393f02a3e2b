package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/kpaas/kpaas/pkg/manifest"
)

// Options change how instances are compared.
type Options struct {
	Recreate bool // recreate every instance (--recreate)
}

// Place resolves the manifest against the cloud-config and the existing
// instances: which instances exist after the deploy, in which AZ, with which
// IPs and specs (Packages and Jobs left for the caller). Actions are set by
// Compare. Every problem is returned at once.
func Place(in Input) (*Plan, error) {
	m := in.Manifest
	if m == nil || in.Cloud == nil {
		return nil, errors.New("plan: a manifest and a cloud-config are needed")
	}
	if in.NewID == nil {
		n := 0
		in.NewID = func() string { n++; return fmt.Sprintf("new-%d", n) }
	}
	mm := withAddons(m, in.Runtime)
	p := &Plan{Deployment: m.Name, Manifest: mm}
	alloc, err := newAllocator(in.Cloud, in.Taken, in.Existing)
	if err != nil {
		return nil, err
	}
	p.alloc = alloc
	byGroup := map[string][]*Existing{}
	for i := range in.Existing {
		e := &in.Existing[i]
		byGroup[e.Group] = append(byGroup[e.Group], e)
	}
	var errs []error
	seen := map[string]bool{}
	for gi := range mm.InstanceGroups {
		g := &mm.InstanceGroups[gi]
		seen[g.Name] = true
		gp, err := placeGroup(mm, g, in, byGroup[g.Name], alloc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.Groups = append(p.Groups, gp)
	}
	// Groups no longer in the manifest: every instance is deleted.
	var gone []string
	for name := range byGroup {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		gp := &Group{Name: name}
		for _, e := range sortedByIndex(byGroup[name]) {
			gp.Instances = append(gp.Instances, &Instance{Group: name, Index: e.Index, UUID: e.UUID, AZ: e.AZ, Existing: e,
				Action: ActionDelete, Reasons: []string{"instance group " + name + " removed from the manifest"}})
		}
		p.Groups = append([]*Group{gp}, p.Groups...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func sortedByIndex(es []*Existing) []*Existing {
	out := slices.Clone(es)
	sort.Slice(out, func(a, b int) bool { return out[a].Index < out[b].Index })
	return out
}

// withAddons returns a copy of m whose groups carry the runtime-config's and
// the manifest's addon jobs where their placement rules match.
func withAddons(m *manifest.Manifest, rc *manifest.RuntimeConfig) *manifest.Manifest {
	if (rc == nil || len(rc.Addons) == 0) && len(m.Addons) == 0 {
		return m
	}
	cp := *m
	cp.InstanceGroups = make([]manifest.InstanceGroup, len(m.InstanceGroups))
	for i := range m.InstanceGroups {
		g := m.InstanceGroups[i]
		g.Jobs = slices.Clone(g.Jobs)
		pl := m.PlacementOf(&m.InstanceGroups[i], nil)
		add := func(a *manifest.Addon) {
			for _, j := range a.Jobs {
				if slices.ContainsFunc(g.Jobs, func(x manifest.Job) bool { return x.Name == j.Name && x.Release == j.Release }) {
					continue
				}
				if j.Properties == nil && a.Properties != nil {
					j.Properties = a.Properties
				}
				g.Jobs = append(g.Jobs, j)
			}
		}
		if rc != nil {
			for ai := range rc.Addons {
				if rc.Addons[ai].AppliesTo(pl) {
					add(&rc.Addons[ai])
				}
			}
		}
		for ai := range m.Addons {
			if m.Addons[ai].AppliesToInDeployment(pl) {
				add(&m.Addons[ai])
			}
		}
		cp.InstanceGroups[i] = g
	}
	if rc != nil {
		for _, r := range rc.Releases {
			if cp.Release(r.Name) == nil {
				cp.Releases = append(cp.Releases, r)
			}
		}
	}
	return &cp
}

func placeGroup(m *manifest.Manifest, g *manifest.InstanceGroup, in Input, existing []*Existing, alloc *allocator) (*Group, error) {
	cc := in.Cloud
	gp := &Group{Name: g.Name, Lifecycle: g.LifecycleOrDefault(), Update: m.UpdateFor(g), Manifest: g}
	azs := g.AZs
	if len(azs) == 0 {
		azs = []string{""}
	}
	// Instances in an AZ the group no longer lists are deleted.
	var keep, del []*Existing
	for _, e := range sortedByIndex(existing) {
		if slices.Contains(azs, e.AZ) || (len(g.AZs) == 0) {
			keep = append(keep, e)
		} else {
			del = append(del, e)
		}
	}
	delReason := map[*Existing]string{}
	for _, e := range del {
		delReason[e] = fmt.Sprintf("az %s removed from the instance group", e.AZ)
	}
	// Scale down: from the AZ with the most instances, highest index first.
	for len(keep) > g.Instances {
		count := map[string]int{}
		for _, e := range keep {
			count[e.AZ]++
		}
		best := -1
		for i, e := range keep {
			if best < 0 || count[e.AZ] > count[keep[best].AZ] || (count[e.AZ] == count[keep[best].AZ] && e.Index > keep[best].Index) {
				best = i
			}
		}
		delReason[keep[best]] = fmt.Sprintf("scaled down to %d instances", g.Instances)
		del = append(del, keep[best])
		keep = slices.Delete(keep, best, best+1)
	}
	for _, e := range del {
		alloc.release(e)
	}
	stemcell, stemcellOK := in.Stemcells[g.Stemcell]
	var errs []error
	if !stemcellOK {
		errs = append(errs, fmt.Errorf("instance group '%s': stemcell '%s' is not uploaded (kpaas upload-stemcell)", g.Name, g.Stemcell))
	}
	vmType := cc.VMType(g.VMType)
	var vmProps map[string]any
	if vmType != nil {
		vmProps = mergeProps(vmType.CloudProperties)
	} else if g.VMType != "" {
		errs = append(errs, fmt.Errorf("instance group '%s': vm_type '%s' is not in the cloud-config", g.Name, g.VMType))
	}
	for _, ext := range g.VMExtensions {
		e := cc.VMExtension(ext)
		if e == nil {
			errs = append(errs, fmt.Errorf("instance group '%s': vm_extension '%s' is not in the cloud-config", g.Name, ext))
			continue
		}
		vmProps = mergeProps(vmProps, e.CloudProperties)
	}
	diskMB, diskProps := g.PersistentDisk, map[string]any(nil)
	if g.PersistentDiskType != "" {
		dt := cc.DiskType(g.PersistentDiskType)
		if dt == nil {
			errs = append(errs, fmt.Errorf("instance group '%s': persistent_disk_type '%s' is not in the cloud-config", g.Name, g.PersistentDiskType))
		} else {
			diskMB, diskProps = dt.DiskSize, dt.CloudProperties
		}
	}
	for _, az := range g.AZs {
		if cc.AZ(az) == nil {
			errs = append(errs, fmt.Errorf("instance group '%s': az '%s' is not in the cloud-config", g.Name, az))
		}
	}
	for _, n := range g.Networks {
		if cc.Network(n.Name) == nil {
			errs = append(errs, fmt.Errorf("instance group '%s': network '%s' is not in the cloud-config", g.Name, n.Name))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var env map[string]any
	if g.Env != nil && len(g.Env.Raw) > 0 {
		env = g.Env.Raw
	}
	base := Spec{
		Stemcell: stemcell.Name + "/" + stemcell.Version, StemcellOS: stemcell.OS,
		VMType: g.VMType, VMCloudProperties: vmProps, PersistentDiskMB: diskMB, DiskCloudProperties: diskProps, Env: env,
	}

	// New instances go to the AZ with the fewest, in the group's AZ order.
	type slot struct {
		e  *Existing
		az string
	}
	slots := make([]slot, 0, g.Instances)
	count := map[string]int{}
	used := map[int]bool{}
	for _, e := range keep {
		slots = append(slots, slot{e: e, az: e.AZ})
		count[e.AZ]++
		used[e.Index] = true
	}
	for len(slots) < g.Instances {
		az := azs[0]
		for _, z := range azs[1:] {
			if count[z] < count[az] {
				az = z
			}
		}
		count[az]++
		slots = append(slots, slot{az: az})
	}
	nextIndex := 0
	insts := make([]*Instance, 0, len(slots))
	for _, s := range slots {
		inst := &Instance{Group: g.Name, AZ: s.az, Existing: s.e}
		if s.e != nil {
			inst.Index, inst.UUID = s.e.Index, s.e.UUID
		} else {
			for used[nextIndex] {
				nextIndex++
			}
			used[nextIndex] = true
			inst.Index, inst.UUID = nextIndex, in.NewID()
		}
		insts = append(insts, inst)
	}
	sort.SliceStable(insts, func(a, b int) bool { return insts[a].Index < insts[b].Index })
	// Networks: existing instances first, so they keep their addresses.
	order := make([]*Instance, 0, len(insts))
	for _, i := range insts {
		if i.Existing != nil {
			order = append(order, i)
		}
	}
	for _, i := range insts {
		if i.Existing == nil {
			order = append(order, i)
		}
	}
	for _, inst := range order {
		spec := base
		// As the director does: the AZ's cloud_properties (the vSphere
		// datacenter/cluster, the OpenStack availability_zone), overridden
		// by the vm_type's and the vm_extensions'.
		if z := cc.AZ(inst.AZ); z != nil && len(z.CloudProperties) > 0 {
			spec.VMCloudProperties = mergeProps(z.CloudProperties, base.VMCloudProperties)
		}
		spec.Networks = make(map[string]NetSpec, len(g.Networks))
		for ni := range g.Networks {
			gn := &g.Networks[ni]
			var prev *NetSpec
			if inst.Existing != nil && inst.Existing.Spec != nil {
				if ns, ok := inst.Existing.Spec.Networks[gn.Name]; ok {
					prev = &ns
				}
			}
			ns, err := alloc.assign(g, gn, inst.AZ, prev)
			if err != nil {
				errs = append(errs, fmt.Errorf("instance group '%s' instance %d: %w", g.Name, inst.Index, err))
				continue
			}
			if def := defaultsFor(g, gn, cc); len(def) > 0 {
				ns.Default = def
			}
			spec.Networks[gn.Name] = ns
		}
		inst.Desired = &spec
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Bootstrap: keep the existing bootstrap instance, else the lowest index.
	var boot *Instance
	for _, i := range insts {
		if i.Existing != nil && i.Existing.Bootstrap {
			boot = i
			break
		}
	}
	if boot == nil && len(insts) > 0 {
		boot = insts[0]
	}
	if boot != nil {
		boot.Bootstrap = true
	}
	// Processing order: deletes, then AZ by AZ in the group's order, then index.
	for _, e := range sortedByIndex(del) {
		gp.Instances = append(gp.Instances, &Instance{Group: g.Name, Index: e.Index, UUID: e.UUID, AZ: e.AZ, Existing: e,
			Action: ActionDelete, Reasons: []string{delReason[e]}})
	}
	for _, az := range azs {
		for _, i := range insts {
			if i.AZ == az {
				gp.Instances = append(gp.Instances, i)
			}
		}
	}
	return gp, nil
}

func defaultsFor(g *manifest.InstanceGroup, gn *manifest.GroupNetwork, cc *manifest.CloudConfig) []string {
	var out []string
	for _, what := range []string{"dns", "gateway"} {
		if g.DefaultNetworkFor(what, cc) == gn.Name {
			out = append(out, what)
		}
	}
	return out
}

func mergeProps(ms ...map[string]any) map[string]any {
	var out map[string]any
	for _, m := range ms {
		for k, v := range m {
			if out == nil {
				out = map[string]any{}
			}
			out[k] = v
		}
	}
	return out
}

// --- IP allocation -----------------------------------------------------------

type subnetState struct {
	sn   *manifest.Subnet
	ips  *manifest.SubnetIPs
	next func() (netip.Addr, bool)
	stop func()
}

type allocator struct {
	cc      *manifest.CloudConfig
	taken   map[string]map[netip.Addr]bool // network -> IPs in use
	subnets map[string][]*subnetState      // network -> subnets
}

func newAllocator(cc *manifest.CloudConfig, taken map[string][]string, existing []Existing) (*allocator, error) {
	a := &allocator{cc: cc, taken: map[string]map[netip.Addr]bool{}, subnets: map[string][]*subnetState{}}
	for net, ips := range taken {
		for _, s := range ips {
			if ip, err := netip.ParseAddr(s); err == nil {
				a.take(net, ip)
			}
		}
	}
	// Existing instances' addresses are theirs until they are released.
	for _, e := range existing {
		if e.Spec == nil {
			continue
		}
		for net, ns := range e.Spec.Networks {
			if ip, err := netip.ParseAddr(ns.IP); err == nil && ns.Type != manifest.NetworkDynamic {
				a.take(net, ip)
			}
		}
	}
	var errs []error
	for ni := range cc.Networks {
		n := &cc.Networks[ni]
		if n.TypeOrDefault() != manifest.NetworkManual {
			continue
		}
		for si := range n.Subnets {
			ips, err := n.Subnets[si].IPs()
			if err != nil {
				errs = append(errs, fmt.Errorf("cloud-config network '%s' subnet %d: %w", n.Name, si, err))
				continue
			}
			a.subnets[n.Name] = append(a.subnets[n.Name], &subnetState{sn: &n.Subnets[si], ips: ips})
		}
	}
	return a, errors.Join(errs...)
}

func (a *allocator) take(net string, ip netip.Addr) {
	m := a.taken[net]
	if m == nil {
		m = map[netip.Addr]bool{}
		a.taken[net] = m
	}
	m[ip] = true
}

func (a *allocator) release(e *Existing) {
	if e.Spec == nil {
		return
	}
	for net, ns := range e.Spec.Networks {
		if ip, err := netip.ParseAddr(ns.IP); err == nil {
			delete(a.taken[net], ip)
		}
	}
}

func (a *allocator) subnetFor(net string, ip netip.Addr, az string) *subnetState {
	for _, s := range a.subnets[net] {
		if s.ips.Range.Contains(ip) && (az == "" || len(s.sn.Zones()) == 0 || slices.Contains(s.sn.Zones(), az)) {
			return s
		}
	}
	return nil
}

func netSpec(s *subnetState, typ string, ip netip.Addr, static bool) NetSpec {
	ns := NetSpec{Type: typ, IP: ip.String(), DNS: s.sn.DNS, Static: static, CloudProperties: s.sn.CloudProperties}
	if s.ips.Gateway.IsValid() {
		ns.Gateway = s.ips.Gateway.String()
	}
	if ip.Is4() {
		bits := s.ips.Range.Bits()
		mask := netip.PrefixFrom(netip.IPv4Unspecified(), bits)
		_ = mask
		var m [4]byte
		for i := 0; i < bits; i++ {
			m[i/8] |= 0x80 >> (i % 8)
		}
		ns.Netmask = netip.AddrFrom4(m).String()
	}
	return ns
}

// assign gives an instance its address on one of its group's networks.
func (a *allocator) assign(g *manifest.InstanceGroup, gn *manifest.GroupNetwork, az string, prev *NetSpec) (NetSpec, error) {
	n := a.cc.Network(gn.Name)
	switch n.TypeOrDefault() {
	case manifest.NetworkDynamic:
		ns := NetSpec{Type: manifest.NetworkDynamic, DNS: n.DNS, CloudProperties: n.CloudProperties}
		if subs := n.SubnetsIn(az); len(subs) > 0 {
			ns.DNS, ns.CloudProperties = subs[0].DNS, subs[0].CloudProperties
		}
		return ns, nil
	case manifest.NetworkVIP:
		ns := NetSpec{Type: manifest.NetworkVIP, CloudProperties: n.CloudProperties, Static: true}
		for _, s := range gn.StaticIPs {
			ip, err := netip.ParseAddr(s)
			if err == nil && (prev != nil && prev.IP == s || !a.taken[gn.Name][ip]) {
				a.take(gn.Name, ip)
				ns.IP = s
				return ns, nil
			}
		}
		return ns, fmt.Errorf("network '%s': no free static IP left for the vip network (static_ips: %s)", gn.Name, strings.Join(gn.StaticIPs, ", "))
	}
	// Manual network.
	if len(gn.StaticIPs) > 0 {
		static, err := manifest.ParseIPSet(gn.StaticIPs)
		if err != nil {
			return NetSpec{}, fmt.Errorf("network '%s': static_ips: %w", gn.Name, err)
		}
		if prev != nil {
			if ip, err := netip.ParseAddr(prev.IP); err == nil && static.Contains(ip) {
				if s := a.subnetFor(gn.Name, ip, az); s != nil {
					a.take(gn.Name, ip)
					return netSpec(s, manifest.NetworkManual, ip, true), nil
				}
			}
		}
		for ip := range static.All() {
			if a.taken[gn.Name][ip] {
				continue
			}
			s := a.subnetFor(gn.Name, ip, az)
			if s == nil {
				continue
			}
			a.take(gn.Name, ip)
			return netSpec(s, manifest.NetworkManual, ip, true), nil
		}
		return NetSpec{}, fmt.Errorf("network '%s': no free static IP left in az '%s' (static_ips: %s)", gn.Name, az, strings.Join(gn.StaticIPs, ", "))
	}
	if prev != nil && !prev.Static {
		if ip, err := netip.ParseAddr(prev.IP); err == nil {
			if s := a.subnetFor(gn.Name, ip, az); s != nil && s.ips.Dynamic.Contains(ip) {
				a.take(gn.Name, ip)
				return netSpec(s, manifest.NetworkManual, ip, false), nil
			}
		}
	}
	for _, s := range a.subnets[gn.Name] {
		if az != "" && len(s.sn.Zones()) > 0 && !slices.Contains(s.sn.Zones(), az) {
			continue
		}
		if s.next == nil {
			s.next, s.stop = iter.Pull(s.ips.Dynamic.All())
		}
		for {
			ip, ok := s.next()
			if !ok {
				// Exhausted once: start over, earlier IPs may have been released.
				s.next, s.stop = iter.Pull(s.ips.Dynamic.All())
				var found bool
				for ip2 := range s.ips.Dynamic.All() {
					if !a.taken[gn.Name][ip2] {
						ip, found = ip2, true
						break
					}
				}
				if !found {
					break
				}
				a.take(gn.Name, ip)
				return netSpec(s, manifest.NetworkManual, ip, false), nil
			}
			if a.taken[gn.Name][ip] {
				continue
			}
			a.take(gn.Name, ip)
			return netSpec(s, manifest.NetworkManual, ip, false), nil
		}
	}
	return NetSpec{}, fmt.Errorf("network '%s': no free IP left in az '%s' (all of the subnets' ranges are reserved, static or taken)", gn.Name, az)
}

// --- comparing ---------------------------------------------------------------

// Compare sets each placed instance's action and reasons, comparing its
// desired spec (with Packages and Jobs filled in) with the last applied one.
func (p *Plan) Compare(opts Options) {
	for _, g := range p.Groups {
		for _, i := range g.Instances {
			if i.Action == ActionDelete || i.Swap {
				continue // a swapped instance keeps its new addresses
			}
			i.Action, i.Reasons = compare(i, g, opts)
			if i.Action == ActionRecreate && g.Update.Strategy() == manifest.VMStrategyCreateSwapDelete && p.alloc != nil {
				p.swap(g, i)
			}
		}
	}
}

// swap gives a recreated instance new addresses on its manual networks so
// its new VM can run beside the old one (create-swap-delete). Instances with
// static or vip addresses are recreated delete-create.
func (p *Plan) swap(g *Group, i *Instance) {
	if g.Manifest == nil {
		return
	}
	for _, gn := range g.Manifest.Networks {
		ns := i.Desired.Networks[gn.Name]
		if ns.Static || ns.Type == manifest.NetworkVIP {
			return
		}
	}
	nets := make(map[string]NetSpec, len(i.Desired.Networks))
	var moved []string
	for gi := range g.Manifest.Networks {
		gn := &g.Manifest.Networks[gi]
		ns := i.Desired.Networks[gn.Name]
		if ns.Type != manifest.NetworkManual {
			nets[gn.Name] = ns
			continue
		}
		fresh, err := p.alloc.assign(g.Manifest, gn, i.AZ, nil)
		if err != nil {
			return // no spare address: delete-create
		}
		fresh.Default = ns.Default
		nets[gn.Name] = fresh
		moved = append(moved, gn.Name+" "+ns.IP+" -> "+fresh.IP)
	}
	i.Desired.Networks = nets
	i.Swap = true
	i.Reasons = append(i.Reasons, "create-swap-delete: the new VM starts before the old one is deleted ("+strings.Join(moved, ", ")+")")
}

func compare(i *Instance, g *Group, opts Options) (Action, []string) {
	e, d := i.Existing, i.Desired
	if g.Lifecycle == manifest.LifecycleErrand {
		return ActionNone, nil // errands get VMs when they run
	}
	if e == nil {
		return ActionCreate, []string{"new instance"}
	}
	if e.Detached && e.VMCID == "" && !opts.Recreate {
		return ActionNone, nil // kpaas start brings it back
	}
	if e.VMCID == "" {
		return ActionCreate, []string{"instance has no VM"}
	}
	if e.Spec == nil {
		return ActionRecreate, []string{"instance was never fully deployed"}
	}
	s := e.Spec
	var recreate, update, reload []string
	if opts.Recreate {
		recreate = append(recreate, "recreate requested")
	}
	if s.Stemcell != d.Stemcell {
		recreate = append(recreate, fmt.Sprintf("stemcell changed (%s -> %s)", s.Stemcell, d.Stemcell))
	}
	if s.VMType != d.VMType {
		recreate = append(recreate, fmt.Sprintf("vm_type changed (%s -> %s)", s.VMType, d.VMType))
	} else if !sameJSON(s.VMCloudProperties, d.VMCloudProperties) {
		recreate = append(recreate, "vm cloud_properties changed")
	}
	if !sameJSON(s.Env, d.Env) {
		recreate = append(recreate, "env changed")
	}
	for _, n := range unionKeys(s.Networks, d.Networks) {
		a, okA := s.Networks[n]
		b, okB := d.Networks[n]
		switch {
		case !okA:
			recreate = append(recreate, fmt.Sprintf("network %s added", n))
		case !okB:
			recreate = append(recreate, fmt.Sprintf("network %s removed", n))
		case a.IP != b.IP && b.Type != manifest.NetworkDynamic:
			recreate = append(recreate, fmt.Sprintf("network %s changed (ip %s -> %s)", n, a.IP, b.IP))
		case !sameJSON(a, b):
			recreate = append(recreate, fmt.Sprintf("network %s changed", n))
		}
	}
	if s.PersistentDiskMB != d.PersistentDiskMB {
		update = append(update, fmt.Sprintf("disk resized (%d MB -> %d MB)", s.PersistentDiskMB, d.PersistentDiskMB))
	} else if !sameJSON(s.DiskCloudProperties, d.DiskCloudProperties) {
		update = append(update, "disk cloud_properties changed")
	}
	for _, n := range unionKeys(s.Packages, d.Packages) {
		a, okA := s.Packages[n]
		b, okB := d.Packages[n]
		switch {
		case !okA:
			update = append(update, fmt.Sprintf("package %s added", n))
		case !okB:
			update = append(update, fmt.Sprintf("package %s removed", n))
		case a != b:
			update = append(update, fmt.Sprintf("package %s changed", n))
		}
	}
	for _, n := range unionKeys(s.Jobs, d.Jobs) {
		a, okA := s.Jobs[n]
		b, okB := d.Jobs[n]
		switch {
		case !okA:
			update = append(update, fmt.Sprintf("job %s added", n))
		case !okB:
			update = append(update, fmt.Sprintf("job %s removed", n))
		case a != b && s.Reloadable[n] != "" && s.Reloadable[n] == d.Reloadable[n]:
			reload = append(reload, fmt.Sprintf("job %s changed (templates only; its processes reload in place)", n))
		case a != b:
			update = append(update, fmt.Sprintf("job %s changed (properties, links or templates)", n))
		}
	}
	if i.Bootstrap != e.Bootstrap {
		update = append(update, "bootstrap changed")
	}
	if i.Index != e.Index {
		update = append(update, "index changed")
	}
	switch {
	case len(recreate) > 0:
		return ActionRecreate, append(append(recreate, update...), reload...)
	case len(update) > 0:
		return ActionUpdate, append(update, reload...)
	case len(reload) > 0:
		return ActionReload, reload
	}
	return ActionNone, nil
}

func unionKeys[V any](a, b map[string]V) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// sameJSON compares two values as their JSON forms do (a map[string]any
// read back from the state compares equal to the one from YAML).
func sameJSON(a, b any) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	if string(ja) == string(jb) {
		return true
	}
	isEmpty := func(s []byte) bool { return string(s) == "null" || string(s) == "{}" }
	return isEmpty(ja) && isEmpty(jb)
}

// Applied returns the existing instances a successful deploy of p leaves
// behind: what the engine records. Planning again with them finds no change.
func (p *Plan) Applied(vmCID func(*Instance) string) []Existing {
	var out []Existing
	for _, g := range p.Groups {
		for _, i := range g.Instances {
			if i.Action == ActionDelete || i.Desired == nil {
				continue
			}
			if g.Lifecycle == manifest.LifecycleErrand {
				continue
			}
			spec := *i.Desired
			ex := Existing{Group: i.Group, Index: i.Index, UUID: i.UUID, AZ: i.AZ, Bootstrap: i.Bootstrap,
				VMCID: vmCID(i), DiskMB: spec.PersistentDiskMB, Spec: &spec}
			if i.Existing != nil {
				ex.Stopped, ex.Detached = i.Existing.Stopped, i.Existing.Detached
				if ex.Detached && i.Action == ActionNone {
					ex.VMCID = ""
				}
			}
			out = append(out, ex)
		}
	}
	return out
}
