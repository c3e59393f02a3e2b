// Package cpi is the contract between kpaas and an IaaS: BOSH's CPI method set
// with context first, typed IDs and BOSH's error types. Every driver (local,
// openstack, vsphere, external) implements CPI and passes cpitest.Conformance;
// the rules are written down in CONTRACT.md. This package does no I/O and must
// not import any driver; it imports only the standard library and
// pkg/agent/settings (the document a driver delivers to the VM).
package cpi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// Typed IDs. A CID is opaque to kpaas: only the driver that issued it reads it.
type (
	VMCID       string
	DiskCID     string
	StemcellCID string
	SnapshotCID string
	AgentID     string
)

// Props are cloud_properties (of a vm_type, disk_type, network or stemcell),
// passed to the driver verbatim.
type Props map[string]any

// Metadata are the tags set by set_vm_metadata and set_disk_metadata.
type Metadata map[string]string

// Env is create_vm's environment argument: env.bosh (group, groups, tags,
// password, ...) and env.kpaas (the agent's host key and authorized keys).
type Env map[string]any

// Network is one entry of create_vm's networks argument and result, with BOSH's
// field names.
type Network struct {
	Type            string   `json:"type,omitempty"` // manual, dynamic, vip
	IP              string   `json:"ip,omitempty"`
	Netmask         string   `json:"netmask,omitempty"`
	Gateway         string   `json:"gateway,omitempty"`
	DNS             []string `json:"dns,omitempty"`
	Default         []string `json:"default,omitempty"`
	MAC             string   `json:"mac,omitempty"`
	CloudProperties Props    `json:"cloud_properties,omitempty"`
}

// Networks are keyed by the cloud-config network name.
type Networks map[string]Network

// Info is the result of info.
type Info struct {
	APIVersion      int          `json:"api_version"`
	StemcellFormats []string     `json:"stemcell_formats"`
	Capabilities    []Capability `json:"kpaas_capabilities,omitempty"`
}

// Capability is an optional ability a driver declares in Info. Callers probe
// it (Info.Has) instead of type-switching on drivers. Methods a driver does not
// declare return an error matching ErrNotSupported.
type Capability string

// Optional abilities.
const (
	CapReboot       Capability = "reboot_vm"
	CapVMMetadata   Capability = "set_vm_metadata"
	CapDiskMetadata Capability = "set_disk_metadata"
	CapResizeDisk   Capability = "resize_disk"
	CapSnapshots    Capability = "snapshot_disk"
	CapHotAttach    Capability = "hot_attach_disk" // attach_disk into a running VM
)

// AllCapabilities lists every optional ability, for drivers that have them all.
var AllCapabilities = []Capability{CapReboot, CapVMMetadata, CapDiskMetadata, CapResizeDisk, CapSnapshots, CapHotAttach}

// Has reports whether the driver declared c.
func (i Info) Has(c Capability) bool { return slices.Contains(i.Capabilities, c) }

// DiskHint tells the agent where an attached persistent disk appears in the VM
// (attach_disk's v2 result, forwarded with add_persistent_disk). On the wire it
// is a string (a device path) or a map {path, volume_id, id, lun, ...}.
type DiskHint struct {
	Path         string `json:"path,omitempty"`
	VolumeID     string `json:"volume_id,omitempty"`
	ID           string `json:"id,omitempty"`
	LUN          string `json:"lun,omitempty"`
	HostDeviceID string `json:"host_device_id,omitempty"`
}

// IsZero reports an empty hint (a v1 CPI returns none).
func (h DiskHint) IsZero() bool { return h == DiskHint{} }

// UnmarshalJSON accepts BOSH's string form and map form.
func (h *DiskHint) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*h = DiskHint{Path: s}
		return nil
	}
	if string(b) == "null" {
		*h = DiskHint{}
		return nil
	}
	type plain DiskHint
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("parsing disk hint %s: %w", b, err)
	}
	*h = DiskHint(p)
	return nil
}

// CPI is BOSH's CPI method set. It mirrors BOSH on purpose (the one large
// interface in kpaas) so any BOSH CPI can stand behind it and any kpaas driver
// can be served to a BOSH director. CONTRACT.md states the rules.
type CPI interface {
	Info(ctx context.Context) (Info, error)

	CreateStemcell(ctx context.Context, imagePath string, props Props) (StemcellCID, error)
	DeleteStemcell(ctx context.Context, cid StemcellCID) error

	// CreateVM starts a VM and returns its CID and the networks as the IaaS
	// assigned them (IPs of dynamic networks filled in).
	CreateVM(ctx context.Context, agentID AgentID, stemcell StemcellCID, props Props, networks Networks, diskCIDs []DiskCID, env Env) (VMCID, Networks, error)
	DeleteVM(ctx context.Context, cid VMCID) error
	HasVM(ctx context.Context, cid VMCID) (bool, error)
	RebootVM(ctx context.Context, cid VMCID) error
	SetVMMetadata(ctx context.Context, cid VMCID, md Metadata) error

	CreateDisk(ctx context.Context, sizeMiB int, props Props, vm VMCID) (DiskCID, error)
	DeleteDisk(ctx context.Context, cid DiskCID) error
	AttachDisk(ctx context.Context, vm VMCID, disk DiskCID) (DiskHint, error)
	DetachDisk(ctx context.Context, vm VMCID, disk DiskCID) error
	HasDisk(ctx context.Context, cid DiskCID) (bool, error)
	GetDisks(ctx context.Context, vm VMCID) ([]DiskCID, error)
	SetDiskMetadata(ctx context.Context, cid DiskCID, md Metadata) error
	ResizeDisk(ctx context.Context, cid DiskCID, newSizeMiB int) error
	SnapshotDisk(ctx context.Context, cid DiskCID, md Metadata) (SnapshotCID, error)
	DeleteSnapshot(ctx context.Context, cid SnapshotCID) error
}

// AgentSettings builds the settings document a driver delivers to a new VM
// from create_vm's arguments: the agent ID, the VM's name, the networks (as
// assigned), the persistent disk hints known at boot and env (env.bosh and
// env.kpaas decoded into the typed blocks; other keys are kept in Env.Extra).
func AgentSettings(agentID AgentID, vmName string, networks Networks, env Env) (*settings.Settings, error) {
	s := &settings.Settings{
		AgentID:  string(agentID),
		VM:       settings.VM{Name: vmName},
		Networks: map[string]settings.Network{},
		Disks:    settings.Disks{Persistent: map[string]any{}},
	}
	for name, n := range networks {
		s.Networks[name] = settings.Network{
			Type: n.Type, IP: n.IP, Netmask: n.Netmask, Gateway: n.Gateway,
			DNS: n.DNS, Default: n.Default, MAC: n.MAC,
			UseDHCP: n.Type == "dynamic" && n.IP == "",
		}
	}
	if len(env) > 0 {
		b, err := json.Marshal(env)
		if err != nil {
			return nil, fmt.Errorf("encoding vm env: %w", err)
		}
		if err := json.Unmarshal(b, &s.Env); err != nil {
			return nil, fmt.Errorf("decoding vm env into agent settings: %w", err)
		}
		extra := map[string]any{}
		for k, v := range env {
			if k != "bosh" && k != "kpaas" {
				extra[k] = v
			}
		}
		if len(extra) > 0 {
			s.Env.Extra = extra
		}
	}
	return s, nil
}

// NetworkNames returns the network names sorted, for deterministic NIC order.
func (n Networks) NetworkNames() []string {
	names := make([]string, 0, len(n))
	for k := range n {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// String renders a one-line summary, for logs.
func (n Network) String() string {
	parts := []string{n.Type}
	if n.IP != "" {
		parts = append(parts, n.IP)
	}
	return strings.Join(parts, " ")
}

// UnmarshalJSON accepts any scalar value and keeps it as a string (BOSH sends
// strings; some callers send numbers or booleans).
func (m *Metadata) UnmarshalJSON(b []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("parsing metadata: %w", err)
	}
	out := make(Metadata, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			out[k] = x
		case nil:
			out[k] = ""
		default:
			b, _ := json.Marshal(x)
			out[k] = string(b)
		}
	}
	*m = out
	return nil
}
