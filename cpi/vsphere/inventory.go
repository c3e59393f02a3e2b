package vsphere

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kpaas/kpaas/cpi"
)

// inventory caches what does not change under a running driver: the
// datacenter and its folders, clusters with their resource pools and
// datastores, port groups, templates; and, with a TTL, datastore free space.
type inventory struct {
	d  *Driver
	mu sync.Mutex

	dc       *object.Datacenter
	dcFolder *object.DatacenterFolders
	folders  map[string]*object.Folder
	clusters map[string]*clusterInfo
	networks map[string]types.BaseVirtualDeviceBackingInfo
	stores   map[types.ManagedObjectReference]*dsInfo
	storesAt time.Time
	tmpls    map[cpi.StemcellCID]*templateInfo
	vms      map[cpi.VMCID]types.ManagedObjectReference
	disks    map[cpi.DiskCID]string // datastore name
	diskDirs map[string]bool        // datastore name -> disk_path made
	fields   map[string]int32       // custom attribute keys
}

type clusterInfo struct {
	ref        types.ManagedObjectReference
	pool       types.ManagedObjectReference
	datastores []types.ManagedObjectReference
	name       string
}

type dsInfo struct {
	ref        types.ManagedObjectReference
	name       string
	free       int64 // bytes
	capacity   int64
	accessible bool
	maint      bool
}

type templateInfo struct {
	ref       types.ManagedObjectReference
	snapshot  *types.ManagedObjectReference
	devices   object.VirtualDeviceList
	datastore types.ManagedObjectReference
}

func newInventory(d *Driver) *inventory {
	return &inventory{
		d: d, folders: map[string]*object.Folder{}, clusters: map[string]*clusterInfo{},
		networks: map[string]types.BaseVirtualDeviceBackingInfo{}, stores: map[types.ManagedObjectReference]*dsInfo{},
		tmpls: map[cpi.StemcellCID]*templateInfo{}, vms: map[cpi.VMCID]types.ManagedObjectReference{},
		disks: map[cpi.DiskCID]string{}, diskDirs: map[string]bool{},
	}
}

// datacenter returns the configured datacenter (cached): one inventory path
// lookup and one read of its folders.
func (iv *inventory) datacenter(ctx context.Context, c *vim25.Client) (*object.Datacenter, *object.DatacenterFolders, error) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if iv.dc != nil {
		return iv.dc, iv.dcFolder, nil
	}
	name := iv.d.cfg.datacenter().Name
	var dc *object.Datacenter
	ref, err := object.NewSearchIndex(c).FindByInventoryPath(ctx, "/"+strings.TrimPrefix(name, "/"))
	if err == nil && ref != nil && ref.Reference().Type == "Datacenter" {
		dc = object.NewDatacenter(c, ref.Reference())
		dc.InventoryPath = "/" + strings.TrimPrefix(name, "/")
	} else if dc, err = find.NewFinder(c, false).Datacenter(ctx, name); err != nil {
		return nil, nil, cpi.Errorf(cpi.TypeCloudError, transient(err), "vsphere: finding datacenter %q (datacenters[0].name): %w", name, err)
	}
	var m mo.Datacenter
	if err := dc.Properties(ctx, dc.Reference(), []string{"vmFolder", "hostFolder", "datastoreFolder", "networkFolder"}, &m); err != nil {
		return nil, nil, classify(fmt.Errorf("vsphere: reading the folders of datacenter %q: %w", name, err))
	}
	folders := &object.DatacenterFolders{
		VmFolder: object.NewFolder(c, m.VmFolder), HostFolder: object.NewFolder(c, m.HostFolder),
		DatastoreFolder: object.NewFolder(c, m.DatastoreFolder), NetworkFolder: object.NewFolder(c, m.NetworkFolder),
	}
	folders.VmFolder.InventoryPath = dc.InventoryPath + "/vm"
	folders.HostFolder.InventoryPath = dc.InventoryPath + "/host"
	folders.DatastoreFolder.InventoryPath = dc.InventoryPath + "/datastore"
	folders.NetworkFolder.InventoryPath = dc.InventoryPath + "/network"
	iv.dc, iv.dcFolder = dc, folders
	return dc, folders, nil
}

// byPath looks an object up by inventory path (one round trip); nil when
// there is none.
func byPath(ctx context.Context, c *vim25.Client, p string) (object.Reference, error) {
	ref, err := object.NewSearchIndex(c).FindByInventoryPath(ctx, p)
	if err != nil {
		return nil, classify(fmt.Errorf("vsphere: looking up %s: %w", p, err))
	}
	return ref, nil
}

// folder returns (creating it when missing) a folder under the datacenter's
// vm folder, e.g. "BOSH_VMs" or "a/b".
func (iv *inventory) folder(ctx context.Context, c *vim25.Client, rel string) (*object.Folder, error) {
	_, folders, err := iv.datacenter(ctx, c)
	if err != nil {
		return nil, err
	}
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if f, ok := iv.folders[rel]; ok {
		return f, nil
	}
	parent := folders.VmFolder
	si := object.NewSearchIndex(c)
	for _, part := range strings.Split(strings.Trim(rel, "/"), "/") {
		if part == "" {
			continue
		}
		ref, err := si.FindChild(ctx, parent, part)
		if err != nil {
			return nil, classify(fmt.Errorf("vsphere: looking up folder %q: %w", rel, err))
		}
		if ref != nil {
			f, ok := ref.(*object.Folder)
			if !ok {
				return nil, cpi.Errorf(cpi.TypeCloudError, false, "vsphere: %q under the vm folder is a %s, not a folder", part, ref.Reference().Type)
			}
			parent = f
			continue
		}
		f, err := parent.CreateFolder(ctx, part)
		if err != nil && !isDuplicate(err) {
			return nil, classify(fmt.Errorf("vsphere: creating folder %q: %w", rel, err))
		}
		if err != nil { // created meanwhile by another process
			ref, err = si.FindChild(ctx, parent, part)
			if err != nil || ref == nil {
				return nil, classify(fmt.Errorf("vsphere: looking up folder %q after a concurrent create: %v", rel, err))
			}
			f = ref.(*object.Folder)
		}
		parent = f
	}
	iv.folders[rel] = parent
	return parent, nil
}

func isDuplicate(err error) bool {
	return fault.Is(err, &types.DuplicateName{})
}

// cluster returns the cluster, its resource pool and its datastores.
func (iv *inventory) cluster(ctx context.Context, c *vim25.Client, cl Cluster) (*clusterInfo, error) {
	dc, _, err := iv.datacenter(ctx, c)
	if err != nil {
		return nil, err
	}
	key := cl.Name + "\x00" + cl.ResourcePool
	iv.mu.Lock()
	if ci, ok := iv.clusters[key]; ok {
		iv.mu.Unlock()
		return ci, nil
	}
	iv.mu.Unlock()
	f := find.NewFinder(c, false).SetDatacenter(dc)
	var cc *object.ClusterComputeResource
	if ref, err := byPath(ctx, c, dc.InventoryPath+"/host/"+cl.Name); err != nil {
		return nil, err
	} else if r, ok := ref.(*object.ClusterComputeResource); ok {
		cc = r
		cc.InventoryPath = dc.InventoryPath + "/host/" + cl.Name
	} else if cc, err = f.ClusterComputeResource(ctx, cl.Name); err != nil { // in a host folder
		return nil, cpi.Errorf(cpi.TypeCloudError, transient(err), "vsphere: finding cluster %q in datacenter %q: %w", cl.Name, iv.d.cfg.datacenter().Name, err)
	}
	var mcc mo.ClusterComputeResource
	if err := cc.Properties(ctx, cc.Reference(), []string{"resourcePool", "datastore"}, &mcc); err != nil {
		return nil, classify(fmt.Errorf("vsphere: reading cluster %q: %w", cl.Name, err))
	}
	ci := &clusterInfo{ref: cc.Reference(), datastores: mcc.Datastore, name: cl.Name}
	if mcc.ResourcePool != nil {
		ci.pool = *mcc.ResourcePool
	}
	if cl.ResourcePool != "" {
		base := cc.InventoryPath + "/Resources"
		ref, err := byPath(ctx, c, base+"/"+cl.ResourcePool)
		if err != nil {
			return nil, err
		}
		if rp, ok := ref.(*object.ResourcePool); ok {
			ci.pool = rp.Reference()
		} else { // nested deeper
			rps, err := f.ResourcePoolList(ctx, base+"/.../"+cl.ResourcePool)
			if err != nil || len(rps) == 0 {
				return nil, cpi.Errorf(cpi.TypeCloudError, transient(err), "vsphere: resource pool %q not found in cluster %q (clusters[].%s.resource_pool)", cl.ResourcePool, cl.Name, cl.Name)
			}
			ci.pool = rps[0].Reference()
		}
	}
	iv.mu.Lock()
	iv.clusters[key] = ci
	iv.mu.Unlock()
	return ci, nil
}

// datastores returns the given datastores with their free space, refreshed
// from vCenter when older than datastore_cache_ttl.
func (iv *inventory) datastores(ctx context.Context, c *vim25.Client, refs []types.ManagedObjectReference) ([]*dsInfo, error) {
	iv.mu.Lock()
	fresh := iv.d.now().Sub(iv.storesAt) < time.Duration(iv.d.cfg.DatastoreCacheTTL)
	var missing bool
	out := make([]*dsInfo, 0, len(refs))
	for _, r := range refs {
		ds, ok := iv.stores[r]
		if !ok {
			missing = true
			break
		}
		out = append(out, ds)
	}
	iv.mu.Unlock()
	if fresh && !missing {
		return out, nil
	}
	all := make([]types.ManagedObjectReference, 0, len(refs)+len(iv.stores))
	all = append(all, refs...)
	iv.mu.Lock()
	for r := range iv.stores {
		all = append(all, r)
	}
	iv.mu.Unlock()
	all = uniqRefs(all)
	var mds []mo.Datastore
	if err := property.DefaultCollector(c).Retrieve(ctx, all, []string{"name", "summary"}, &mds); err != nil {
		return nil, classify(fmt.Errorf("vsphere: reading datastores: %w", err))
	}
	iv.mu.Lock()
	defer iv.mu.Unlock()
	for _, m := range mds {
		iv.stores[m.Reference()] = &dsInfo{
			ref: m.Reference(), name: m.Name, free: m.Summary.FreeSpace, capacity: m.Summary.Capacity,
			accessible: m.Summary.Accessible, maint: m.Summary.MaintenanceMode == string(types.DatastoreSummaryMaintenanceModeStateInMaintenance),
		}
	}
	iv.storesAt = iv.d.now()
	out = out[:0]
	for _, r := range refs {
		if ds, ok := iv.stores[r]; ok {
			out = append(out, ds)
		}
	}
	return out, nil
}

// reserve counts space this process just took on a datastore until the
// next refresh.
func (iv *inventory) reserve(ds *dsInfo, bytes int64) {
	iv.mu.Lock()
	ds.free -= bytes
	iv.mu.Unlock()
}

// forgetStores makes the next datastores call read vCenter.
func (iv *inventory) forgetStores() {
	iv.mu.Lock()
	iv.storesAt = time.Time{}
	iv.mu.Unlock()
}

func uniqRefs(in []types.ManagedObjectReference) []types.ManagedObjectReference {
	seen := map[types.ManagedObjectReference]bool{}
	out := in[:0]
	for _, r := range in {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// errNoDatastore says no datastore matched with enough space.
var errNoDatastore = errors.New("no datastore with enough free space")

// pickDatastore returns the matching datastore with the most free space that
// can hold need bytes. names (vm_type/disk_type datastores) override pattern.
func (iv *inventory) pickDatastore(ctx context.Context, c *vim25.Client, refs []types.ManagedObjectReference, pattern string, names []string, need int64) (*dsInfo, error) {
	stores, err := iv.datastores(ctx, c, refs)
	if err != nil {
		return nil, err
	}
	match, err := datastoreMatcher(pattern, names)
	if err != nil {
		return nil, err
	}
	var cands []*dsInfo
	var seen []string
	for _, ds := range stores {
		if !match(ds.name) || !ds.accessible || ds.maint {
			continue
		}
		iv.mu.Lock()
		free := ds.free
		iv.mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s (%d MiB free)", ds.name, free>>20))
		if free >= need {
			cands = append(cands, ds)
		}
	}
	if len(cands) == 0 {
		if len(seen) == 0 {
			return nil, cpi.Errorf(cpi.TypeCloudError, false, "vsphere: no accessible datastore matches %s", describeMatch(pattern, names))
		}
		return nil, fmt.Errorf("vsphere: %w: need %d MiB on a datastore matching %s; candidates: %s (free space, or widen the datastore pattern)",
			errNoDatastore, need>>20, describeMatch(pattern, names), strings.Join(seen, ", "))
	}
	iv.mu.Lock()
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].free > cands[j].free })
	iv.mu.Unlock()
	return cands[0], nil
}

func describeMatch(pattern string, names []string) string {
	if len(names) > 0 {
		return fmt.Sprintf("datastores %v", names)
	}
	return fmt.Sprintf("pattern %q", pattern)
}

func datastoreMatcher(pattern string, names []string) (func(string) bool, error) {
	if len(names) > 0 {
		var res []*regexp.Regexp
		for _, n := range names {
			re, err := regexp.Compile("^(?:" + n + ")$")
			if err != nil {
				return nil, cpi.Errorf(cpi.TypeCloudError, false, "vsphere: datastores entry %q is not a valid pattern: %w", n, err)
			}
			res = append(res, re)
		}
		return func(s string) bool {
			for _, re := range res {
				if re.MatchString(s) {
					return true
				}
			}
			return false
		}, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, cpi.Errorf(cpi.TypeCloudError, false, "vsphere: datastore pattern %q: %w", pattern, err)
	}
	return re.MatchString, nil
}

// network returns the NIC backing of a port group (standard or distributed),
// by name or inventory path under the datacenter's network folder.
func (iv *inventory) network(ctx context.Context, c *vim25.Client, name string) (types.BaseVirtualDeviceBackingInfo, error) {
	dc, _, err := iv.datacenter(ctx, c)
	if err != nil {
		return nil, err
	}
	iv.mu.Lock()
	if b, ok := iv.networks[name]; ok {
		iv.mu.Unlock()
		return b, nil
	}
	iv.mu.Unlock()
	var b types.BaseVirtualDeviceBackingInfo
	ref, err := byPath(ctx, c, dc.InventoryPath+"/network/"+name)
	if err != nil {
		return nil, err
	}
	switch n := ref.(type) {
	case *object.Network: // a standard port group: its name is the backing
		b = &types.VirtualEthernetCardNetworkBackingInfo{VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: path.Base(name)}}
	case object.NetworkReference:
		if b, err = n.EthernetCardBackingInfo(ctx); err != nil {
			return nil, classify(fmt.Errorf("vsphere: reading port group %q: %w", name, err))
		}
	default: // in a network folder, or given by a path the finder knows
		nr, err := find.NewFinder(c, false).SetDatacenter(dc).Network(ctx, name)
		if err != nil {
			var nf *find.NotFoundError
			if errors.As(err, &nf) {
				return nil, &cpi.Error{Type: cpi.TypeNetworkNotFound, Message: fmt.Sprintf("vsphere: port group %q not found in datacenter %q (network cloud_properties.name)", name, iv.d.cfg.datacenter().Name), Err: err}
			}
			return nil, classify(fmt.Errorf("vsphere: finding port group %q: %w", name, err))
		}
		if b, err = nr.EthernetCardBackingInfo(ctx); err != nil {
			return nil, classify(fmt.Errorf("vsphere: reading port group %q: %w", name, err))
		}
	}
	iv.mu.Lock()
	iv.networks[name] = b
	iv.mu.Unlock()
	return b, nil
}

// template returns the stemcell's template (cached; stemcells are immutable).
func (iv *inventory) template(ctx context.Context, c *vim25.Client, cid cpi.StemcellCID) (*templateInfo, error) {
	iv.mu.Lock()
	if t, ok := iv.tmpls[cid]; ok {
		iv.mu.Unlock()
		return t, nil
	}
	iv.mu.Unlock()
	uuid, ok := strings.CutPrefix(string(cid), stemcellPrefix)
	if !ok {
		return nil, cpi.StemcellNotFound(cid)
	}
	ref, err := iv.findByUUID(ctx, c, uuid)
	if err != nil {
		return nil, err
	}
	if ref == nil {
		return nil, cpi.StemcellNotFound(cid)
	}
	var m mo.VirtualMachine
	if err := property.DefaultCollector(c).RetrieveOne(ctx, *ref, []string{"snapshot", "config.hardware.device", "datastore"}, &m); err != nil {
		if notFound(err) {
			return nil, cpi.StemcellNotFound(cid)
		}
		return nil, classify(fmt.Errorf("vsphere: reading stemcell %s: %w", cid, err))
	}
	t := &templateInfo{ref: *ref}
	if m.Snapshot != nil && m.Snapshot.CurrentSnapshot != nil {
		t.snapshot = m.Snapshot.CurrentSnapshot
	}
	if m.Config != nil {
		t.devices = object.VirtualDeviceList(m.Config.Hardware.Device)
	}
	if len(m.Datastore) > 0 {
		t.datastore = m.Datastore[0]
	}
	iv.mu.Lock()
	iv.tmpls[cid] = t
	iv.mu.Unlock()
	return t, nil
}

func (iv *inventory) forgetTemplate(cid cpi.StemcellCID) {
	iv.mu.Lock()
	delete(iv.tmpls, cid)
	iv.mu.Unlock()
}

// findByUUID finds a VM or template by instance UUID in the datacenter.
func (iv *inventory) findByUUID(ctx context.Context, c *vim25.Client, uuid string) (*types.ManagedObjectReference, error) {
	dc, _, err := iv.datacenter(ctx, c)
	if err != nil {
		return nil, err
	}
	yes := true
	res, err := object.NewSearchIndex(c).FindByUuid(ctx, dc, uuid, true, &yes)
	if err != nil {
		return nil, classify(fmt.Errorf("vsphere: searching for VM %s: %w", uuid, err))
	}
	if res == nil {
		return nil, nil
	}
	ref := res.Reference()
	return &ref, nil
}

// vm returns the VM of a CID; (nil, nil) when it does not exist.
func (iv *inventory) vm(ctx context.Context, c *vim25.Client, cid cpi.VMCID) (*types.ManagedObjectReference, error) {
	iv.mu.Lock()
	if r, ok := iv.vms[cid]; ok {
		iv.mu.Unlock()
		return &r, nil
	}
	iv.mu.Unlock()
	uuid, ok := strings.CutPrefix(string(cid), vmPrefix)
	if !ok {
		return nil, nil
	}
	ref, err := iv.findByUUID(ctx, c, uuid)
	if err != nil || ref == nil {
		return ref, err
	}
	iv.mu.Lock()
	iv.vms[cid] = *ref
	iv.mu.Unlock()
	return ref, nil
}

func (iv *inventory) rememberVM(cid cpi.VMCID, ref types.ManagedObjectReference) {
	iv.mu.Lock()
	iv.vms[cid] = ref
	iv.mu.Unlock()
}

func (iv *inventory) forgetVM(cid cpi.VMCID) {
	iv.mu.Lock()
	delete(iv.vms, cid)
	iv.mu.Unlock()
}

// dsPath renders "[ds] a/b".
func dsPath(ds string, parts ...string) string {
	return fmt.Sprintf("[%s] %s", ds, path.Join(parts...))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
