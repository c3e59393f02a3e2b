package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/kpaas/kpaas/cpi"
)

// fipPrefix marks floating IPs the driver allocated itself (their description),
// so delete_vm releases them; floating IPs the operator allocated are only
// disassociated.
const fipPrefix = "kpaas vm "

// vmCreation is what one create_vm made so far, to undo on failure.
type vmCreation struct {
	ports  []string
	fips   []string
	server string
	group  string // auto anti-affinity server group, deleted when left empty
}

// CreateVM creates a Nova server on Neutron ports, waits for ACTIVE, binds the
// vip network's floating IP and returns the networks as assigned. On any
// failure it deletes what it made (server, ports, floating IP) first.
func (o *CPI) CreateVM(ctx context.Context, agentID cpi.AgentID, stemcell cpi.StemcellCID, props cpi.Props, networks cpi.Networks, diskCIDs []cpi.DiskCID, env cpi.Env) (cpi.VMCID, cpi.Networks, error) {
	var vp vmProps
	if err := decodeProps(props, "vm", &vp); err != nil {
		return "", nil, cpi.VMCreationFailed(false, err)
	}
	if len(vp.LoadbalancerPools) > 0 {
		return "", nil, cpi.VMCreationFailed(false, errors.New("cloud_properties.loadbalancer_pools (Octavia) is not supported by the kpaas openstack cpi"))
	}
	plan, err := planNetworks(networks)
	if err != nil {
		return "", nil, cpi.VMCreationFailed(false, err)
	}

	// Look everything up before making anything.
	img, err := images.Get(ctx, o.c.image, imageID(stemcell)).Extract()
	if err != nil {
		if isNotFound(err) {
			return "", nil, cpi.StemcellNotFound(stemcell)
		}
		return "", nil, apiErr("getting stemcell image "+imageID(stemcell), err)
	}
	if img.Status != images.ImageStatusActive {
		return "", nil, cloudErr(fmt.Sprintf("stemcell image %s is %s, not active", img.ID, img.Status), nil, "upload the stemcell again", false)
	}
	flavor, err := o.findFlavor(ctx, vp)
	if err != nil {
		return "", nil, err
	}
	sgIDs, err := o.securityGroups(ctx, vp, plan)
	if err != nil {
		return "", nil, err
	}

	if err := o.diskLocality(ctx, &vp, diskCIDs); err != nil {
		return "", nil, err
	}

	name := "vm-" + newUUID()
	var made vmCreation
	vm, nets, err := o.createVM(ctx, name, agentID, img.ID, flavor, vp, plan, sgIDs, env, &made)
	if err != nil {
		cctx, cancel := o.cleanupCtx(ctx)
		defer cancel()
		if cerr := o.undo(cctx, made); cerr != nil {
			o.log.Error("cleaning up after a failed create_vm", "server", made.server, "ports", made.ports, "error", cerr)
			err = fmt.Errorf("%w (cleanup also failed, delete by hand: %v)", err, cerr)
		}
		var ce *cpi.Error
		if errors.As(err, &ce) && ce.Type == cpi.TypeVMCreationFail {
			return "", nil, err
		}
		return "", nil, cpi.VMCreationFailed(transient(err) || cpi.Retryable(err), err)
	}
	return vm, nets, nil
}

// diskLocality puts the VM in the availability zone of the persistent disks
// it will get (create_vm's disk_cids), as bosh-openstack-cpi does, unless
// openstack.ignore_server_availability_zone. Disks in different zones, or a
// vm_type zone that differs from theirs, are refused.
func (o *CPI) diskLocality(ctx context.Context, vp *vmProps, diskCIDs []cpi.DiskCID) error {
	if o.cfg.OpenStack.IgnoreServerAvailabilityZone || len(diskCIDs) == 0 {
		return nil
	}
	zone := ""
	for _, d := range diskCIDs {
		v, err := o.getVolume(ctx, d)
		if err != nil {
			return err
		}
		if zone != "" && v.AvailabilityZone != zone {
			return cpi.VMCreationFailed(false, fmt.Errorf("persistent disks %v are in different availability zones (%s, %s)", diskCIDs, zone, v.AvailabilityZone))
		}
		zone = v.AvailabilityZone
	}
	if vp.AvailabilityZone != "" && vp.AvailabilityZone != zone {
		return cpi.VMCreationFailed(false, fmt.Errorf("the VM's availability zone %s differs from its persistent disks' zone %s; move the disks or set openstack.ignore_server_availability_zone", vp.AvailabilityZone, zone))
	}
	vp.AvailabilityZone = zone
	return nil
}

// netPlan is create_vm's networks sorted into what they need.
type netPlan struct {
	names    []string // manual and dynamic, sorted; each gets a port
	vip      string   // the vip network's name, if any
	gateway  string   // the network the vip's floating IP goes to
	networks cpi.Networks
	props    map[string]netProps
}

func planNetworks(networks cpi.Networks) (*netPlan, error) {
	p := &netPlan{networks: networks, props: map[string]netProps{}}
	for _, name := range networks.NetworkNames() {
		n := networks[name]
		var np netProps
		if err := decodeProps(n.CloudProperties, "network "+name, &np); err != nil {
			return nil, err
		}
		p.props[name] = np
		switch n.Type {
		case "vip":
			if p.vip != "" {
				return nil, fmt.Errorf("networks %s and %s are both vip: only one vip network per VM", p.vip, name)
			}
			p.vip = name
			if n.IP == "" && np.FloatingNetworkID == "" {
				return nil, fmt.Errorf("vip network %s has no ip and no cloud_properties.floating_network_id to allocate one from", name)
			}
		case "manual", "", "dynamic":
			if np.NetID == "" {
				return nil, fmt.Errorf("network %s: cloud_properties.net_id is required (the Neutron network ID)", name)
			}
			if n.Type != "dynamic" && n.IP == "" {
				return nil, fmt.Errorf("manual network %s has no ip", name)
			}
			p.names = append(p.names, name)
			if slices.Contains(n.Default, "gateway") {
				p.gateway = name
			}
		default:
			return nil, fmt.Errorf("network %s: type %q is not one of manual, dynamic, vip", name, n.Type)
		}
	}
	if len(p.names) == 0 {
		return nil, errors.New("at least one manual or dynamic network is required")
	}
	if p.gateway == "" {
		p.gateway = p.names[0]
	}
	return p, nil
}

func (o *CPI) findFlavor(ctx context.Context, vp vmProps) (*flavors.Flavor, error) {
	if vp.InstanceType == "" && vp.CPU == 0 && vp.RAM == 0 {
		return nil, cpi.VMCreationFailed(false, errors.New("vm cloud_properties: instance_type (a flavor name) or cpu/ram is required"))
	}
	pages, err := flavors.ListDetail(o.c.compute, flavors.ListOpts{AccessType: flavors.AllAccess}).AllPages(ctx)
	if err != nil {
		return nil, apiErr("listing flavors", err)
	}
	all, err := flavors.ExtractFlavors(pages)
	if err != nil {
		return nil, apiErr("listing flavors", err)
	}
	if vp.InstanceType != "" {
		for i := range all {
			if all[i].Name == vp.InstanceType || all[i].ID == vp.InstanceType {
				return &all[i], nil
			}
		}
		names := make([]string, len(all))
		for i, f := range all {
			names[i] = f.Name
		}
		sort.Strings(names)
		return nil, cpi.VMCreationFailed(false, fmt.Errorf("flavor %q not found; flavors this project can use: %s", vp.InstanceType, strings.Join(names, ", ")))
	}
	var fit []flavors.Flavor
	for _, f := range all {
		if f.VCPUs >= vp.CPU && f.RAM >= vp.RAM && (f.Disk+f.Ephemeral)*1024 >= vp.EphemeralDiskSize {
			fit = append(fit, f)
		}
	}
	if len(fit) == 0 {
		return nil, cpi.VMCreationFailed(false, fmt.Errorf("no flavor has at least %d vCPUs, %d MiB RAM and %d MiB disk", vp.CPU, vp.RAM, vp.EphemeralDiskSize))
	}
	sort.Slice(fit, func(i, j int) bool {
		a, b := fit[i], fit[j]
		if a.RAM != b.RAM {
			return a.RAM < b.RAM
		}
		if a.VCPUs != b.VCPUs {
			return a.VCPUs < b.VCPUs
		}
		return a.Disk+a.Ephemeral < b.Disk+b.Ephemeral
	})
	return &fit[0], nil
}

// securityGroups resolves the security groups for the VM's ports: the
// vm_type's, else the networks', else openstack.default_security_groups
// (names or IDs). None at all: Neutron's "default" group.
func (o *CPI) securityGroups(ctx context.Context, vp vmProps, plan *netPlan) ([]string, error) {
	want := vp.SecurityGroups
	if len(want) == 0 {
		for _, name := range plan.networks.NetworkNames() {
			for _, sg := range plan.props[name].SecurityGroups {
				if !slices.Contains(want, sg) {
					want = append(want, sg)
				}
			}
		}
	}
	if len(want) == 0 {
		want = o.cfg.OpenStack.DefaultSecurityGroups
	}
	if len(want) == 0 {
		return nil, nil
	}
	pages, err := groups.List(o.c.network, groups.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, apiErr("listing security groups", err)
	}
	all, err := groups.ExtractGroups(pages)
	if err != nil {
		return nil, apiErr("listing security groups", err)
	}
	var ids []string
	for _, w := range want {
		var match []string
		for _, g := range all {
			if g.ID == w {
				match = []string{g.ID}
				break
			}
			if g.Name == w {
				match = append(match, g.ID)
			}
		}
		switch len(match) {
		case 0:
			return nil, cpi.VMCreationFailed(false, fmt.Errorf("security group %q not found in this project", w))
		case 1:
			ids = append(ids, match[0])
		default:
			return nil, cpi.VMCreationFailed(false, fmt.Errorf("security group name %q is ambiguous (%s): use its ID", w, strings.Join(match, ", ")))
		}
	}
	return ids, nil
}

func (o *CPI) createVM(ctx context.Context, name string, agentID cpi.AgentID, image string, flavor *flavors.Flavor, vp vmProps, plan *netPlan, sgIDs []string, env cpi.Env, made *vmCreation) (cpi.VMCID, cpi.Networks, error) {
	result := cpi.Networks{}
	portIDs := map[string]string{}
	for _, netName := range plan.names {
		n := plan.networks[netName]
		np := plan.props[netName]
		opts := ports.CreateOpts{
			NetworkID:   np.NetID,
			Name:        name + "-" + netName,
			Description: "kpaas agent " + string(agentID),
		}
		if sgIDs != nil {
			opts.SecurityGroups = &sgIDs
		}
		if n.IP != "" {
			opts.FixedIPs = []ports.IP{{IPAddress: n.IP}}
		}
		if vp.AllowedAddressPairs != "" && netName == plan.gateway {
			opts.AllowedAddressPairs = []ports.AddressPair{{IPAddress: vp.AllowedAddressPairs}}
		}
		port, err := ports.Create(ctx, o.c.network, opts).Extract()
		if err != nil && statusOf(err) == http.StatusConflict && n.IP != "" && o.deleteOrphanPort(ctx, np.NetID, n.IP) {
			port, err = ports.Create(ctx, o.c.network, opts).Extract()
		}
		if err != nil {
			return "", nil, o.portError(ctx, netName, n, np, err)
		}
		made.ports = append(made.ports, port.ID)
		portIDs[netName] = port.ID
		got := n
		got.MAC = port.MACAddress
		if len(port.FixedIPs) > 0 {
			got.IP = port.FixedIPs[0].IPAddress
			if n.Type == "dynamic" && (got.Netmask == "" || got.Gateway == "") {
				if sn, err := subnets.Get(ctx, o.c.network, port.FixedIPs[0].SubnetID).Extract(); err == nil {
					if _, cidr, perr := net.ParseCIDR(sn.CIDR); perr == nil && got.Netmask == "" {
						got.Netmask = net.IP(cidr.Mask).String()
					}
					if got.Gateway == "" {
						got.Gateway = sn.GatewayIP
					}
					if len(got.DNS) == 0 {
						got.DNS = sn.DNSNameservers
					}
				}
			}
		}
		result[netName] = got
	}
	if plan.vip != "" {
		result[plan.vip] = plan.networks[plan.vip]
	}

	userData, err := o.userData(name, agentID, result, env, flavor)
	if err != nil {
		return "", nil, err
	}
	var nics []servers.Network
	for _, netName := range plan.names {
		nics = append(nics, servers.Network{Port: portIDs[netName]})
	}
	az := vp.AvailabilityZone
	if az == "" && len(vp.AvailabilityZones) > 0 {
		az = vp.AvailabilityZones[0]
	}
	metadata := map[string]string{"agent_id": string(agentID), "created_by": "kpaas"}
	for k, v := range vp.Metadata {
		metadata[k] = fmt.Sprint(v)
	}
	create := servers.CreateOpts{
		Name: name, ImageRef: image, FlavorRef: flavor.ID, UserData: userData,
		AvailabilityZone: az, Networks: nics, Metadata: metadata,
	}
	if o.cfg.OpenStack.ConfigDrive != "" {
		t := true
		create.ConfigDrive = &t
	}
	bfv := o.cfg.OpenStack.BootFromVolume
	if vp.BootFromVolume != nil {
		bfv = *vp.BootFromVolume
	}
	if bfv {
		size := flavor.Disk
		volType := propString(o.cfg.OpenStack.BootVolumeCloudProperties, "type")
		if vp.RootDisk != nil {
			if vp.RootDisk.Size > 0 {
				size = vp.RootDisk.Size
			}
			if vp.RootDisk.Type != "" {
				volType = vp.RootDisk.Type
			}
		}
		if size <= 0 {
			return "", nil, cpi.VMCreationFailed(false, fmt.Errorf("boot from volume: flavor %s has no root disk size; set cloud_properties.root_disk.size (GiB)", flavor.Name))
		}
		create.ImageRef = ""
		create.BlockDevice = []servers.BlockDevice{{
			SourceType: servers.SourceImage, UUID: image, DestinationType: servers.DestinationVolume,
			VolumeSize: size, BootIndex: 0, DeleteOnTermination: true, VolumeType: volType,
		}}
	}
	keyName := vp.KeyName
	if keyName == "" {
		keyName = o.cfg.OpenStack.DefaultKeyName
	}
	var hints servers.SchedulerHintOptsBuilder
	if _, given := vp.SchedulerHints["group"]; !given && o.cfg.OpenStack.EnableAutoAntiAffinity {
		if group := boshGroup(env); group != "" {
			id, err := o.antiAffinityGroup(ctx, group)
			if err != nil {
				return "", nil, err
			}
			if vp.SchedulerHints == nil {
				vp.SchedulerHints = map[string]any{}
			}
			vp.SchedulerHints["group"] = id
			create.Metadata[groupKey] = id
			made.group = id
		}
	}
	if len(vp.SchedulerHints) > 0 {
		h := servers.SchedulerHintOpts{AdditionalProperties: map[string]any{}}
		for k, v := range vp.SchedulerHints {
			if k == "group" {
				h.Group = fmt.Sprint(v)
			} else {
				h.AdditionalProperties[k] = v
			}
		}
		hints = h
	}
	srv, err := servers.Create(ctx, o.c.compute, keypairs.CreateOptsExt{CreateOptsBuilder: create, KeyName: keyName}, hints).Extract()
	if err != nil {
		if statusOf(err) == 0 {
			// No answer (cancelled, timed out, connection lost): Nova may
			// have made the server anyway. Find it by its unique name so the
			// cleanup deletes it.
			cctx, cancel := o.cleanupCtx(ctx)
			made.server = o.findServer(cctx, name)
			cancel()
		}
		return "", nil, o.serverCreateError(name, flavor, keyName, err)
	}
	made.server = srv.ID
	o.log.Info("created server; waiting for ACTIVE", "server", srv.ID, "name", name, "flavor", flavor.Name, "az", az, "boot_from_volume", bfv)
	started := time.Now()
	if err := o.waitActive(ctx, srv.ID); err != nil {
		return "", nil, err
	}
	o.log.Info("server ACTIVE", "server", srv.ID, "after", time.Since(started).Round(time.Millisecond))

	if plan.vip != "" {
		ip, fipID, err := o.bindFloatingIP(ctx, srv.ID, plan, portIDs[plan.gateway])
		if fipID != "" {
			made.fips = append(made.fips, fipID)
		}
		if err != nil {
			return "", nil, err
		}
		v := result[plan.vip]
		v.IP = ip
		result[plan.vip] = v
	}
	return cpi.VMCID(srv.ID), result, nil
}

// findServer returns the ID of the server called name, or "". Nova may
// still be working on the request that got no answer, so it looks for
// orphanWait before concluding there is none.
func (o *CPI) findServer(ctx context.Context, name string) string {
	deadline := time.Now().Add(orphanWait)
	for {
		pages, err := servers.ListSimple(o.c.compute, servers.ListOpts{Name: "^" + name + "$"}).AllPages(ctx)
		if err == nil {
			if ss, err := servers.ExtractServers(pages); err == nil && len(ss) > 0 {
				return ss[0].ID
			}
		} else {
			o.log.Warn("looking for a server whose creation got no answer", "name", name, "error", err)
		}
		if time.Now().After(deadline) || o.sleep(ctx, time.Second) != nil {
			o.log.Warn("no server found for a create that got no answer", "name", name)
			return ""
		}
	}
}

// orphanWait is how long create_vm looks for a server whose create request
// got no answer.
const orphanWait = 15 * time.Second

// deleteOrphanPort deletes the port holding ip when it is the leftover of a
// create_vm that died between making the port and the server (named by this
// driver, bound to nothing, down), and reports whether it did. kpaas never
// runs two create_vm for one IP at once; a create_vm still in flight whose
// port this takes fails on its server create and cleans up.
func (o *CPI) deleteOrphanPort(ctx context.Context, netID, ip string) bool {
	pages, err := ports.List(o.c.network, ports.ListOpts{NetworkID: netID, FixedIPs: []ports.FixedIPOpts{{IPAddress: ip}}}).AllPages(ctx)
	if err != nil {
		return false
	}
	ps, err := ports.ExtractPorts(pages)
	if err != nil || len(ps) != 1 {
		return false
	}
	p := ps[0]
	if p.DeviceID != "" || p.DeviceOwner != "" || p.Status != "DOWN" ||
		!strings.HasPrefix(p.Name, "vm-") || !strings.HasPrefix(p.Description, "kpaas agent ") {
		return false
	}
	o.log.Warn("deleting a port left by an interrupted create_vm", "port", p.ID, "name", p.Name, "ip", ip)
	if err := ports.Delete(ctx, o.c.network, p.ID).ExtractErr(); err != nil && !isNotFound(err) {
		return false
	}
	return true
}

// portError explains a failed port creation: network not found, IP in use
// (naming what holds it), IP outside the subnet, quota.
func (o *CPI) portError(ctx context.Context, netName string, n cpi.Network, np netProps, err error) error {
	msg := strings.ToLower(apiMessage(err))
	switch {
	case isNotFound(err) && strings.Contains(msg, "network"):
		return cpi.VMCreationFailed(false, &cpi.Error{Type: cpi.TypeNetworkNotFound, Err: err,
			Message: fmt.Sprintf("network %s: Neutron network %s not found or not visible to this project (%s); check cloud_properties.net_id (a network ID, not a subnet ID)", netName, np.NetID, apiMessage(err))})
	case statusOf(err) == http.StatusConflict && n.IP != "":
		holder := ""
		if pages, lerr := ports.List(o.c.network, ports.ListOpts{NetworkID: np.NetID, FixedIPs: []ports.FixedIPOpts{{IPAddress: n.IP}}}).AllPages(ctx); lerr == nil {
			if ps, _ := ports.ExtractPorts(pages); len(ps) > 0 {
				holder = fmt.Sprintf(" by port %s (%s, device %q, owner %q)", ps[0].ID, ps[0].Name, ps[0].DeviceID, ps[0].DeviceOwner)
			}
		}
		return cpi.VMCreationFailed(false, typedErr(cpi.TypeCloudError,
			fmt.Sprintf("network %s: IP %s is already in use%s", netName, n.IP, holder), err,
			"another VM or port holds this address; delete the stale port or move the address out of the static range", false))
	case quotaExceeded(err):
		return cpi.VMCreationFailed(false, apiErr(fmt.Sprintf("network %s: creating a port", netName), err))
	case statusOf(err) == http.StatusBadRequest:
		return cpi.VMCreationFailed(false, typedErr(cpi.TypeCloudError, fmt.Sprintf("network %s: creating a port for %s on %s", netName, n.IP, np.NetID), err,
			"check that the IP lies in a subnet of this Neutron network and outside its allocation pools", false))
	}
	return cpi.VMCreationFailed(transient(err), apiErr(fmt.Sprintf("network %s: creating a port", netName), err))
}

func (o *CPI) serverCreateError(name string, flavor *flavors.Flavor, keyName string, err error) error {
	msg := strings.ToLower(apiMessage(err))
	switch {
	case quotaExceeded(err):
		return cpi.VMCreationFailed(false, apiErr("creating server "+name, err))
	case strings.Contains(msg, "key_name") || strings.Contains(msg, "key pair"):
		return cpi.VMCreationFailed(false, typedErr(cpi.TypeCloudError, "creating server "+name, err,
			fmt.Sprintf("key pair %q does not exist in this project: create it or fix key_name/default_key_name", keyName), false))
	}
	return cpi.VMCreationFailed(transient(err), apiErr(fmt.Sprintf("creating server %s (flavor %s)", name, flavor.Name), err))
}

// waitActive waits until the server is ACTIVE; ERROR ends the wait with the
// server's fault.
func (o *CPI) waitActive(ctx context.Context, id string) error {
	return o.poll(ctx, "server "+id+" to become ACTIVE", func(ctx context.Context) (bool, error) {
		s, err := servers.Get(ctx, o.c.compute, id).Extract()
		if err != nil {
			if isNotFound(err) {
				return false, cpi.VMCreationFailed(true, fmt.Errorf("server %s disappeared while building", id))
			}
			return false, err
		}
		switch s.Status {
		case "ACTIVE":
			return true, nil
		case "ERROR":
			fault := s.Fault.Message
			if fault == "" {
				fault = "no fault recorded"
			}
			return false, cpi.VMCreationFailed(true, fmt.Errorf("server %s went to ERROR: %s (code %d)", id, fault, s.Fault.Code))
		}
		return false, nil
	})
}

// bindFloatingIP gives the VM the vip network's floating IP: the IP named in
// the network (allocated to the project beforehand, as BOSH expects; taken
// from any VM that holds it), or a new one from cloud_properties.floating_network_id.
func (o *CPI) bindFloatingIP(ctx context.Context, serverID string, plan *netPlan, portID string) (ip, allocated string, err error) {
	vip := plan.networks[plan.vip]
	if vip.IP == "" {
		ext := plan.props[plan.vip].FloatingNetworkID
		if ext == "" {
			return "", "", cpi.VMCreationFailed(false, fmt.Errorf("vip network %s has no ip and no cloud_properties.floating_network_id to allocate one from", plan.vip))
		}
		fip, err := floatingips.Create(ctx, o.c.network, floatingips.CreateOpts{
			FloatingNetworkID: ext, PortID: portID, Description: fipPrefix + serverID,
		}).Extract()
		if err != nil {
			return "", "", apiErr(fmt.Sprintf("vip network %s: allocating a floating IP from %s", plan.vip, ext), err)
		}
		return fip.FloatingIP, fip.ID, nil
	}
	pages, err := floatingips.List(o.c.network, floatingips.ListOpts{FloatingIP: vip.IP}).AllPages(ctx)
	if err != nil {
		return "", "", apiErr("vip network "+plan.vip+": finding floating IP "+vip.IP, err)
	}
	fips, err := floatingips.ExtractFloatingIPs(pages)
	if err != nil {
		return "", "", apiErr("vip network "+plan.vip+": finding floating IP "+vip.IP, err)
	}
	switch len(fips) {
	case 0:
		return "", "", cpi.VMCreationFailed(false, fmt.Errorf("vip network %s: floating IP %s is not allocated to this project; allocate it first (openstack floating ip create --floating-ip-address %s EXTERNAL_NETWORK)", plan.vip, vip.IP, vip.IP))
	case 1:
	default:
		return "", "", cpi.VMCreationFailed(false, fmt.Errorf("vip network %s: floating IP %s found %d times", plan.vip, vip.IP, len(fips)))
	}
	if _, err := floatingips.Update(ctx, o.c.network, fips[0].ID, floatingips.UpdateOpts{PortID: &portID}).Extract(); err != nil {
		return "", "", apiErr(fmt.Sprintf("vip network %s: associating floating IP %s with port %s", plan.vip, vip.IP, portID), err)
	}
	return vip.IP, "", nil
}

// userData is the agent settings document with BOSH's OpenStack additions
// (server.name, dns.nameserver), as bosh-openstack-cpi writes it.
func (o *CPI) userData(name string, agentID cpi.AgentID, nets cpi.Networks, env cpi.Env, flavor *flavors.Flavor) ([]byte, error) {
	s, err := cpi.AgentSettings(agentID, name, nets, env)
	if err != nil {
		return nil, cpi.VMCreationFailed(false, err)
	}
	for n, ns := range s.Networks {
		if ns.Type != "vip" {
			ns.UseDHCP = o.cfg.OpenStack.useDHCP()
		}
		s.Networks[n] = ns
	}
	s.Disks.System = "/dev/sda"
	if flavor.Ephemeral > 0 {
		s.Disks.Ephemeral = "/dev/sdb"
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, cpi.VMCreationFailed(false, fmt.Errorf("encoding agent settings: %w", err))
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, cpi.VMCreationFailed(false, fmt.Errorf("encoding agent settings: %w", err))
	}
	for k, v := range o.cfg.Agent {
		if _, ok := doc[k]; !ok || k == "mbus" || k == "ntp" || k == "blobstore" {
			doc[k] = v
		}
	}
	doc["server"] = map[string]any{"name": name}
	for _, n := range nets.NetworkNames() {
		if len(nets[n].DNS) > 0 {
			doc["dns"] = map[string]any{"nameserver": nets[n].DNS}
			break
		}
	}
	return json.Marshal(doc)
}

// undo deletes what a failed create_vm made, server first (its ports are
// then free), and reports every failure.
func (o *CPI) undo(ctx context.Context, m vmCreation) error {
	var errs []error
	for _, id := range m.fips {
		if err := floatingips.Delete(ctx, o.c.network, id).ExtractErr(); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting floating IP %s: %w", id, err))
		}
	}
	if m.server != "" {
		if err := o.deleteServer(ctx, m.server); err != nil {
			errs = append(errs, err)
		}
	}
	for _, id := range m.ports {
		if err := ports.Delete(ctx, o.c.network, id).ExtractErr(); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting port %s: %w", id, err))
		}
	}
	if m.group != "" {
		if err := o.deleteGroupIfEmpty(ctx, m.group); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteServer deletes a server and waits until Nova no longer has it.
func (o *CPI) deleteServer(ctx context.Context, id string) error {
	if err := servers.Delete(ctx, o.c.compute, id).ExtractErr(); err != nil {
		if isNotFound(err) {
			return nil
		}
		return apiErr("deleting server "+id, err)
	}
	err := o.poll(ctx, "server "+id+" to be deleted", func(ctx context.Context) (bool, error) {
		var s struct {
			Status    string        `json:"status"`
			TaskState string        `json:"OS-EXT-STS:task_state"`
			Fault     servers.Fault `json:"fault"`
		}
		r := servers.Get(ctx, o.c.compute, id)
		if isNotFound(r.Err) {
			return true, nil
		}
		if r.Err != nil {
			return false, r.Err
		}
		if err := r.ExtractIntoStructPtr(&s, "server"); err != nil {
			return false, err
		}
		// Wait for the 404: a server shows DELETED for a moment before Nova
		// removes its record (and it is still listed then). SOFT_DELETED
		// (reclaim_instance_interval) stays until reclaimed: that is done.
		if s.Status == "SOFT_DELETED" {
			return true, nil
		}
		// Nova keeps task_state "deleting" until the server is gone; an
		// ERROR server without it is one whose deletion failed.
		if s.Status == "ERROR" && s.TaskState == "" {
			return false, fmt.Errorf("server %s is in ERROR and Nova is no longer deleting it: %s", id, s.Fault.Message)
		}
		return false, nil
	})
	if err != nil {
		return apiErr("deleting server "+id, err)
	}
	return nil
}

// DeleteVM deletes the server, then its ports and the floating IPs the driver
// allocated for it; persistent volumes stay. An unknown VM is not an error.
func (o *CPI) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	id := string(cid)
	srv, err := servers.Get(ctx, o.c.compute, id).Extract()
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return apiErr("getting server "+id, err)
	}
	pages, err := ports.List(o.c.network, ports.ListOpts{DeviceID: id}).AllPages(ctx)
	if err != nil {
		return apiErr("listing ports of server "+id, err)
	}
	ps, err := ports.ExtractPorts(pages)
	if err != nil {
		return apiErr("listing ports of server "+id, err)
	}
	m := vmCreation{server: id, group: srv.Metadata[groupKey]}
	for _, p := range ps {
		m.ports = append(m.ports, p.ID)
	}
	fpages, err := floatingips.List(o.c.network, floatingips.ListOpts{Description: fipPrefix + id}).AllPages(ctx)
	if err != nil {
		return apiErr("listing floating IPs of server "+id, err)
	}
	fips, err := floatingips.ExtractFloatingIPs(fpages)
	if err != nil {
		return apiErr("listing floating IPs of server "+id, err)
	}
	for _, f := range fips {
		m.fips = append(m.fips, f.ID)
	}
	o.log.Info("deleting server", "server", id, "ports", m.ports, "floating_ips", m.fips)
	if err := o.undo(ctx, m); err != nil {
		return cloudErr("deleting VM "+id, err, "run delete_vm again; the VM may be half deleted", true)
	}
	// Nova releases the VM's volumes after the server is gone: wait, so the
	// persistent disks attach elsewhere as soon as delete_vm returns.
	for _, av := range srv.AttachedVolumes {
		err := o.poll(ctx, "volume "+av.ID+" to be released by server "+id, func(ctx context.Context) (bool, error) {
			v, err := volumes.Get(ctx, o.c.volume, av.ID).Extract()
			if isNotFound(err) {
				return true, nil
			}
			if err != nil {
				return false, err
			}
			for _, a := range v.Attachments {
				if a.ServerID == id {
					return false, nil
				}
			}
			return v.Status != "detaching" && v.Status != "in-use" || len(v.Attachments) > 0, nil
		})
		if err != nil {
			return apiErr("deleting VM "+id+": waiting for volume "+av.ID+" to be detached", err)
		}
	}
	return nil
}

// HasVM reports whether Nova has the server (deleted ones do not count).
func (o *CPI) HasVM(ctx context.Context, cid cpi.VMCID) (bool, error) {
	s, err := servers.Get(ctx, o.c.compute, string(cid)).Extract()
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, apiErr("getting server "+string(cid), err)
	}
	return s.Status != "DELETED" && s.Status != "SOFT_DELETED", nil
}

// RebootVM soft-reboots the server and waits until it is ACTIVE again.
func (o *CPI) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	id := string(cid)
	if err := servers.Reboot(ctx, o.c.compute, id, servers.RebootOpts{Type: servers.SoftReboot}).ExtractErr(); err != nil {
		if isNotFound(err) {
			return cpi.VMNotFound(cid)
		}
		return apiErr("rebooting server "+id, err)
	}
	// The reboot is asynchronous: wait for it to leave ACTIVE (REBOOT) and
	// come back, or find it ACTIVE with the task done.
	err := o.poll(ctx, "server "+id+" to come back from reboot", func(ctx context.Context) (bool, error) {
		var s struct {
			Status    string `json:"status"`
			TaskState string `json:"OS-EXT-STS:task_state"`
		}
		r := servers.Get(ctx, o.c.compute, id)
		if r.Err != nil {
			return false, r.Err
		}
		if err := r.ExtractIntoStructPtr(&s, "server"); err != nil {
			return false, err
		}
		if s.Status == "ERROR" {
			return false, fmt.Errorf("server %s went to ERROR while rebooting", id)
		}
		return s.Status == "ACTIVE" && s.TaskState == "", nil
	})
	if err != nil {
		return apiErr("rebooting server "+id, err)
	}
	return nil
}

// SetVMMetadata merges the tags into the server's metadata (values cut to
// Nova's 255 characters); with human_readable_vm_names the server is renamed
// after the instance.
func (o *CPI) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	id := string(cid)
	opts := servers.MetadataOpts{}
	for k, v := range md {
		if len(k) > 255 {
			k = k[:255]
		}
		if len(v) > 255 {
			v = v[:255]
		}
		opts[k] = v
	}
	if _, err := servers.UpdateMetadata(ctx, o.c.compute, id, opts).Extract(); err != nil {
		if isNotFound(err) {
			return cpi.VMNotFound(cid)
		}
		return apiErr("setting metadata of server "+id, err)
	}
	if o.cfg.OpenStack.HumanReadableVMNames {
		name := md["name"]
		if name == "" && md["compiling"] != "" {
			name = "compiling/" + md["compiling"]
		}
		if name != "" {
			if _, err := servers.Update(ctx, o.c.compute, id, servers.UpdateOpts{Name: name}).Extract(); err != nil {
				return apiErr("renaming server "+id+" to "+name, err)
			}
		}
	}
	return nil
}
