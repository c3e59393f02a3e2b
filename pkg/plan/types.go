// Package plan computes what a deploy must do, without doing anything: it
// resolves a manifest against the cloud-config (AZs, networks and their IPs,
// vm_types, disk_types) and the runtime-config's addons, places instances over
// AZs keeping existing instances where they are, and compares each desired
// instance with what was last applied to say per instance: create, update,
// recreate, delete or none, with the reasons.
//
// It is pure: no files, no network, no clock, no randomness (new instance IDs
// come from Input.NewID). A test fails if it imports an I/O package.
package plan

import (
	"github.com/kpaas/kpaas/pkg/manifest"
)

// Action is what happens to one instance.
type Action string

const (
	ActionNone   Action = "none"
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	// ActionReload: only templates of jobs whose processes reload in place
	// changed; their running processes are signalled, not restarted.
	ActionReload   Action = "reload"
	ActionRecreate Action = "recreate"
	ActionDelete   Action = "delete"
)

// NetSpec is an instance's address on one network.
type NetSpec struct {
	Type            string         `json:"type"` // manual, dynamic, vip
	IP              string         `json:"ip,omitempty"`
	Netmask         string         `json:"netmask,omitempty"`
	Gateway         string         `json:"gateway,omitempty"`
	DNS             []string       `json:"dns,omitempty"`
	Default         []string       `json:"default,omitempty"`
	Static          bool           `json:"static,omitempty"`
	CloudProperties map[string]any `json:"cloud_properties,omitempty"`
}

// Spec is what an instance is made of; the engine stores the Spec it applied
// with the instance, and the next plan compares against it.
type Spec struct {
	Stemcell            string             `json:"stemcell"` // name/version
	StemcellOS          string             `json:"stemcell_os,omitempty"`
	VMType              string             `json:"vm_type"`
	VMCloudProperties   map[string]any     `json:"vm_cloud_properties,omitempty"`
	Networks            map[string]NetSpec `json:"networks"`
	PersistentDiskMB    int                `json:"persistent_disk_mb"`
	DiskCloudProperties map[string]any     `json:"disk_cloud_properties,omitempty"`
	Env                 map[string]any     `json:"env,omitempty"`
	// Packages maps package name to its fingerprint (filled by the caller from
	// the releases; the plan only compares).
	Packages map[string]string `json:"packages,omitempty"`
	// Jobs maps job name to its rendered configuration hash (filled by the
	// caller after rendering).
	Jobs map[string]string `json:"jobs,omitempty"`
	// Reloadable maps the name of a job whose processes all declare a reload
	// signal (bpm.yml `reload`) to a hash of what a reload cannot apply (its
	// bpm.yml); filled by the caller after rendering. A job whose templates
	// changed while this hash did not is reloaded, not restarted.
	Reloadable map[string]string `json:"reloadable,omitempty"`
}

// Existing is an instance as the state knows it.
type Existing struct {
	Group     string
	Index     int
	UUID      string
	AZ        string
	Bootstrap bool
	VMCID     string // "" when it has no VM
	DiskCID   string
	DiskMB    int
	Stopped   bool  // desired state is stopped (or detached)
	Detached  bool  // stopped --hard: no VM on purpose, until started
	Spec      *Spec // last applied; nil if never applied
}

// Input is what a plan is made from.
type Input struct {
	Manifest *manifest.Manifest
	Cloud    *manifest.CloudConfig
	Runtime  *manifest.RuntimeConfig // addons; may be nil
	Existing []Existing
	// Taken lists, per cloud-config network, IPs held by other deployments.
	Taken map[string][]string
	// Stemcells resolves a manifest stemcell alias to name/version and os
	// (the caller matches the uploaded stemcells).
	Stemcells map[string]StemcellRef
	// NewID makes the UUID of a new instance.
	NewID func() string
}

// StemcellRef is an uploaded stemcell a manifest alias resolves to.
type StemcellRef struct {
	Name    string
	Version string
	OS      string
}

// Instance is one instance of the plan.
type Instance struct {
	Group     string
	Index     int
	UUID      string
	AZ        string
	Bootstrap bool
	Action    Action
	Reasons   []string
	Existing  *Existing // nil for a new instance
	Desired   *Spec     // nil for a deleted instance
	// Swap: recreated create-swap-delete: the new VM (at new addresses) is
	// up before the old one is deleted.
	Swap bool
}

// Name is group/index.
func (i *Instance) Name() string { return i.Group + "/" + itoa(i.Index) }

// Group is one instance group's part of the plan.
type Group struct {
	Name      string
	Lifecycle string
	Update    manifest.Update
	Manifest  *manifest.InstanceGroup // with addon jobs placed; nil for a removed group
	// Instances in the order they are processed: deletes first, then by AZ
	// (in the group's AZ order), then by index.
	Instances []*Instance
}

// Plan is a deployment's plan.
type Plan struct {
	Deployment string
	Manifest   *manifest.Manifest // with addons placed into the groups
	Groups     []*Group

	alloc *allocator // for create-swap-delete's new addresses
}

// Changes counts instances whose action is not none.
func (p *Plan) Changes() int {
	n := 0
	for _, g := range p.Groups {
		for _, i := range g.Instances {
			if i.Action != ActionNone {
				n++
			}
		}
	}
	return n
}

// Instances lists every instance of the plan, in processing order.
func (p *Plan) Instances() []*Instance {
	var out []*Instance
	for _, g := range p.Groups {
		out = append(out, g.Instances...)
	}
	return out
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
