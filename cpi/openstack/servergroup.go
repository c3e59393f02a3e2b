package openstack

import (
	"context"
	"fmt"
	"sync"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servergroups"

	"github.com/kpaas/kpaas/cpi"
)

// groupKey is the server metadata key naming the server group the driver
// put the VM in (openstack.enable_auto_anti_affinity), so delete_vm can
// delete the group once it is empty.
const groupKey = "kpaas_server_group"

// groupMu serialises find-or-create of server groups within one process
// (parallel create_vm calls of one instance group). Separate processes may
// still race and make two groups of one name; that only weakens the spread.
var groupMu sync.Mutex

// boshGroup is env.bosh.group (director-deployment-instance_group), the name
// BOSH gives an instance group's server group.
func boshGroup(env cpi.Env) string {
	if b, ok := env["bosh"].(map[string]any); ok {
		if g, ok := b["group"].(string); ok {
			return g
		}
	}
	return ""
}

// antiAffinityGroup finds or makes the soft-anti-affinity server group of the
// VM's instance group.
func (o *CPI) antiAffinityGroup(ctx context.Context, group string) (string, error) {
	groupMu.Lock()
	defer groupMu.Unlock()
	name := "kpaas-" + group
	pages, err := servergroups.List(o.c.compute, nil).AllPages(ctx)
	if err != nil {
		return "", apiErr("listing server groups", err)
	}
	all, err := servergroups.ExtractServerGroups(pages)
	if err != nil {
		return "", apiErr("listing server groups", err)
	}
	for _, g := range all {
		if g.Name == name {
			return g.ID, nil
		}
	}
	g, err := servergroups.Create(ctx, o.c.compute, servergroups.CreateOpts{Name: name, Policy: "soft-anti-affinity"}).Extract()
	if err != nil {
		if quotaExceeded(err) {
			return "", cloudErr(fmt.Sprintf("creating server group %s", name), err,
				"the project's server group quota is used up: disable openstack.enable_auto_anti_affinity or raise the quota", false)
		}
		return "", apiErr("creating server group "+name, err)
	}
	return g.ID, nil
}

// deleteGroupIfEmpty deletes a server group the driver made once its last
// member is gone.
func (o *CPI) deleteGroupIfEmpty(ctx context.Context, id string) error {
	groupMu.Lock()
	defer groupMu.Unlock()
	g, err := servergroups.Get(ctx, o.c.compute, id).Extract()
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return apiErr("getting server group "+id, err)
	}
	if len(g.Members) > 0 {
		return nil
	}
	if err := servergroups.Delete(ctx, o.c.compute, id).ExtractErr(); err != nil && !isNotFound(err) {
		return apiErr("deleting empty server group "+id, err)
	}
	return nil
}
