package openstack

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servergroups"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// inventory lists what the demo project holds that a CPI call could leave
// behind: servers, VM ports, volumes, snapshots, its own images, floating IPs.
func (tc *testCloud) inventory() ([]string, error) {
	ctx := context.Background()
	var out []string
	sp, err := servers.List(tc.cpi.c.compute, servers.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	ss, err := servers.ExtractServers(sp)
	if err != nil {
		return nil, err
	}
	for _, s := range ss {
		out = append(out, "server:"+s.ID)
	}
	pp, err := ports.List(tc.cpi.c.network, ports.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	ps, err := ports.ExtractPorts(pp)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.DeviceOwner == "" || len(p.DeviceOwner) > 8 && p.DeviceOwner[:8] == "compute:" {
			out = append(out, "port:"+p.ID+" "+p.Name)
		}
	}
	vp, err := volumes.List(tc.cpi.c.volume, volumes.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	vs, err := volumes.ExtractVolumes(vp)
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		out = append(out, "volume:"+v.ID)
	}
	snp, err := snapshots.List(tc.cpi.c.volume, snapshots.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	sns, err := snapshots.ExtractSnapshots(snp)
	if err != nil {
		return nil, err
	}
	for _, s := range sns {
		out = append(out, "snapshot:"+s.ID)
	}
	ip, err := images.List(tc.cpi.c.image, images.ListOpts{Owner: tc.userEnv["OS_PROJECT_ID"]}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	is, err := images.ExtractImages(ip)
	if err != nil {
		return nil, err
	}
	for _, i := range is {
		out = append(out, "image:"+i.ID)
	}
	fp, err := floatingips.List(tc.cpi.c.network, floatingips.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	fs, err := floatingips.ExtractFloatingIPs(fp)
	if err != nil {
		return nil, err
	}
	for _, f := range fs {
		out = append(out, "fip:"+f.ID+" port="+f.PortID)
	}
	gp, err := servergroups.List(tc.cpi.c.compute, nil).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	gs, err := servergroups.ExtractServerGroups(gp)
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
		out = append(out, "servergroup:"+g.ID+" "+g.Name)
	}
	sort.Strings(out)
	return out, nil
}

// deliveredSettings reads back the user_data Nova stored for the server (an
// admin-only attribute) and parses it as agent settings, as the agent's
// ConfigDrive/HTTP sources do.
func (tc *testCloud) deliveredSettings(vm cpi.VMCID) (*settings.Settings, error) {
	var s struct {
		Server struct {
			UserData string `json:"OS-EXT-SRV-ATTR:user_data"`
		} `json:"server"`
	}
	r := servers.Get(context.Background(), tc.admin.c.compute, string(vm))
	if r.Err != nil {
		return nil, r.Err
	}
	if err := r.ExtractIntoStructPtr(&s.Server, "server"); err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s.Server.UserData)
	if err != nil {
		return nil, fmt.Errorf("decoding user_data of %s: %w", vm, err)
	}
	return settings.Parse(b)
}

func (tc *testCloud) manual(ip string) cpi.Networks {
	return cpi.Networks{"private": {
		Type: "manual", IP: ip, Netmask: "255.255.255.0", Gateway: "10.0.0.1", DNS: []string{"8.8.8.8"},
		Default: []string{"dns", "gateway"}, CloudProperties: cpi.Props{"net_id": tc.privNet},
	}}
}

func TestConformance(t *testing.T) {
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		tc := newTestCloud(t)
		tg := cpitest.Target{
			CPI:           tc.cpi,
			StemcellProps: cpi.Props{"disk_format": "raw", "container_format": "bare", "name": "conformance", "version": "1"},
			VMProps:       cpi.Props{"instance_type": "m1.tiny"},
			Networks:      func(i int) cpi.Networks { return tc.manual(fmt.Sprintf("10.0.0.%d", 100+i)) },
			Inventory:     tc.inventory,
		}
		if tc.admin != nil {
			tg.Settings = tc.deliveredSettings
		}
		return tg
	})
}
