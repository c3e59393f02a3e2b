package vsphere

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"
)

// Config is the driver's global configuration: the vCenter to talk to and the
// datacenter layout BOSH's vsphere_cpi job takes (vcenter.* properties).
//
// It is read from either form:
//   - kpaas's flat form, the `vcenter` block of a cpi.yml / cpi-config
//     ({"address": ..., "user": ..., "datacenters": [...], "connection_options": {...}}),
//   - the cpi.json BOSH's vsphere_cpi job renders
//     ({"cloud": {"plugin": "vsphere", "properties": {"vcenters": [{...}], "agent": {...}}}}),
//     where top-level keys of the flat form beside "cloud" (a multi-CPI
//     cpi-config's properties) override the vCenter's.
type Config struct {
	Host     string `json:"host"`
	User     string `json:"user"`
	Password string `json:"password"`
	// Datacenters: BOSH's CPI uses exactly one.
	Datacenters []Datacenter `json:"datacenters"`
	// ConnectionOptions.CACert: a PEM bundle; when set, vCenter's certificate
	// is verified against it.
	ConnectionOptions ConnectionOptions `json:"connection_options"`
	// Insecure skips TLS verification explicitly. When neither ca_cert nor
	// insecure is given, the certificate is not verified (BOSH's vSphere CPI
	// does the same) and a warning is logged.
	Insecure *bool `json:"insecure,omitempty"`
	// DefaultDiskType is the provisioning of persistent disks: "preallocated"
	// (BOSH's default) or "thin".
	DefaultDiskType string `json:"default_disk_type,omitempty"`
	// Agent is merged into every VM's agent settings (mbus, ntp, blobstore).
	Agent map[string]any `json:"agent,omitempty"`
	// TaskTimeout bounds the wait for one vCenter task (Go duration, default 10m).
	TaskTimeout Duration `json:"task_timeout,omitempty"`
	// CleanupTimeout bounds cleaning up after a failed create_vm (default 2m).
	CleanupTimeout Duration `json:"cleanup_timeout,omitempty"`
	// DatastoreCacheTTL is how long datastore free space read from vCenter is
	// trusted (default 10s); space taken by this process meanwhile is counted.
	DatastoreCacheTTL Duration `json:"datastore_cache_ttl,omitempty"`
}

// ConnectionOptions are vcenter.connection_options.
type ConnectionOptions struct {
	CACert string `json:"ca_cert,omitempty"`
}

// Datacenter is one entry of vcenter.datacenters.
type Datacenter struct {
	Name                       string    `json:"name"`
	VMFolder                   string    `json:"vm_folder,omitempty"`
	TemplateFolder             string    `json:"template_folder,omitempty"`
	DiskPath                   string    `json:"disk_path,omitempty"`
	DatastorePattern           string    `json:"datastore_pattern,omitempty"`
	PersistentDatastorePattern string    `json:"persistent_datastore_pattern,omitempty"`
	Clusters                   []Cluster `json:"clusters"`
}

// Cluster is a cluster entry: BOSH writes it as a bare name or as
// {NAME: {resource_pool: RP}}.
type Cluster struct {
	Name         string
	ResourcePool string
}

// UnmarshalJSON accepts "name" and {"name": {"resource_pool": "rp"}}.
func (c *Cluster) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = Cluster{Name: s}
		return nil
	}
	var m map[string]struct {
		ResourcePool string `json:"resource_pool"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("a cluster is a name or {NAME: {resource_pool: RP}}: %w", err)
	}
	if len(m) != 1 {
		return fmt.Errorf("a cluster entry must have exactly one name, got %d", len(m))
	}
	for k, v := range m {
		*c = Cluster{Name: k, ResourcePool: v.ResourcePool}
	}
	return nil
}

// MarshalJSON writes BOSH's map form.
func (c Cluster) MarshalJSON() ([]byte, error) {
	if c.ResourcePool == "" {
		return json.Marshal(map[string]any{c.Name: map[string]any{}})
	}
	return json.Marshal(map[string]any{c.Name: map[string]string{"resource_pool": c.ResourcePool}})
}

// Duration is a time.Duration written as a Go duration string or seconds.
type Duration time.Duration

// UnmarshalJSON accepts "90s" or 90.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("parsing duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("a duration is a string such as \"10m\" or a number of seconds")
	}
	*d = Duration(time.Duration(n * float64(time.Second)))
	return nil
}

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ParseConfig reads either configuration form (see Config), applies BOSH's
// defaults and validates it.
func ParseConfig(b []byte) (Config, error) {
	var probe struct {
		Cloud *struct {
			Properties struct {
				Vcenters []json.RawMessage `json:"vcenters"`
				Agent    map[string]any    `json:"agent"`
			} `json:"properties"`
		} `json:"cloud"`
		Address string `json:"address"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return Config{}, fmt.Errorf("parsing vsphere cpi config: %w", err)
	}
	var c Config
	if probe.Cloud != nil {
		if len(probe.Cloud.Properties.Vcenters) != 1 {
			return Config{}, fmt.Errorf("vsphere cpi config: cloud.properties.vcenters must have exactly one vCenter, got %d", len(probe.Cloud.Properties.Vcenters))
		}
		if err := json.Unmarshal(probe.Cloud.Properties.Vcenters[0], &c); err != nil {
			return Config{}, fmt.Errorf("parsing vsphere cpi config vcenters[0]: %w", err)
		}
		var addr struct {
			Address string `json:"address"`
		}
		_ = json.Unmarshal(probe.Cloud.Properties.Vcenters[0], &addr)
		if c.Host == "" {
			c.Host = addr.Address
		}
		if c.Agent == nil {
			c.Agent = probe.Cloud.Properties.Agent
		}
		// Top-level keys beside "cloud" are a multi-CPI cpi-config's
		// properties (kpaas cpi overlays them from the request context):
		// they win over the vCenter's.
		if err := json.Unmarshal(b, &c); err != nil {
			return Config{}, fmt.Errorf("parsing vsphere cpi config: %w", err)
		}
		if probe.Address != "" {
			c.Host = probe.Address
		}
	} else {
		if err := json.Unmarshal(b, &c); err != nil {
			return Config{}, fmt.Errorf("parsing vsphere cpi config: %w", err)
		}
		if c.Host == "" {
			c.Host = probe.Address
		}
	}
	c.applyDefaults()
	return c, c.Validate()
}

func (c *Config) applyDefaults() {
	for i := range c.Datacenters {
		dc := &c.Datacenters[i]
		if dc.VMFolder == "" {
			dc.VMFolder = "BOSH_VMs"
		}
		if dc.TemplateFolder == "" {
			dc.TemplateFolder = "BOSH_Templates"
		}
		if dc.DiskPath == "" {
			dc.DiskPath = "BOSH_Disks"
		}
		if dc.PersistentDatastorePattern == "" {
			dc.PersistentDatastorePattern = dc.DatastorePattern
		}
	}
	if c.DefaultDiskType == "" {
		c.DefaultDiskType = "preallocated"
	}
	if c.TaskTimeout == 0 {
		c.TaskTimeout = Duration(10 * time.Minute)
	}
	if c.CleanupTimeout == 0 {
		c.CleanupTimeout = Duration(2 * time.Minute)
	}
	if c.DatastoreCacheTTL == 0 {
		c.DatastoreCacheTTL = Duration(10 * time.Second)
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Host == "" {
		errs = append(errs, errors.New("host (or address) is required: the vCenter's name or IP"))
	}
	if c.User == "" {
		errs = append(errs, errors.New("user is required"))
	}
	if len(c.Datacenters) != 1 {
		errs = append(errs, fmt.Errorf("datacenters must list exactly one datacenter, got %d", len(c.Datacenters)))
	}
	for i, dc := range c.Datacenters {
		if dc.Name == "" {
			errs = append(errs, fmt.Errorf("datacenters[%d].name is required", i))
		}
		if len(dc.Clusters) == 0 {
			errs = append(errs, fmt.Errorf("datacenters[%d].clusters must name at least one cluster", i))
		}
		if dc.DatastorePattern == "" {
			errs = append(errs, fmt.Errorf("datacenters[%d].datastore_pattern is required (a regular expression of datastore names)", i))
		}
		for _, p := range []string{dc.DatastorePattern, dc.PersistentDatastorePattern} {
			if _, err := regexp.Compile(p); err != nil {
				errs = append(errs, fmt.Errorf("datacenters[%d]: datastore pattern %q: %w", i, p, err))
			}
		}
	}
	switch c.DefaultDiskType {
	case "preallocated", "thin":
	default:
		errs = append(errs, fmt.Errorf("default_disk_type %q: use preallocated or thin", c.DefaultDiskType))
	}
	if len(errs) > 0 {
		return fmt.Errorf("vsphere cpi config: %w", errors.Join(errs...))
	}
	return nil
}

// datacenter returns the one configured datacenter.
func (c Config) datacenter() Datacenter { return c.Datacenters[0] }

// VMProps are the create_vm cloud_properties the driver reads (vm_type merged
// with the AZ's, as the director sends them).
type VMProps struct {
	CPU                          int            `json:"cpu"`
	RAM                          int            `json:"ram"`  // MiB
	Disk                         int            `json:"disk"` // ephemeral disk, MiB
	Datacenters                  []Datacenter   `json:"datacenters,omitempty"`
	Datastores                   []string       `json:"datastores,omitempty"`
	NestedHardwareVirtualization bool           `json:"nested_hardware_virtualization,omitempty"`
	CPUHotAddEnabled             *bool          `json:"cpu_hot_add_enabled,omitempty"`
	MemoryHotAddEnabled          *bool          `json:"memory_hot_add_enabled,omitempty"`
	VMGroup                      string         `json:"vm_group,omitempty"`
	VMXOptions                   map[string]any `json:"vmx_options,omitempty"`
	MemoryReservationLocked      bool           `json:"memory_reservation_locked_to_max,omitempty"`
	DiskMode                     string         `json:"disk_mode,omitempty"`
}

// DiskProps are the create_disk cloud_properties the driver reads.
type DiskProps struct {
	Type       string   `json:"type,omitempty"` // preallocated | thin
	Datastores []string `json:"datastores,omitempty"`
}

// NetworkProps are a network's cloud_properties.
type NetworkProps struct {
	Name string `json:"name"`
}

// decodeProps converts cloud_properties into a typed struct.
func decodeProps[T any](props map[string]any, what string) (T, error) {
	var out T
	if len(props) == 0 {
		return out, nil
	}
	b, err := json.Marshal(props)
	if err != nil {
		return out, fmt.Errorf("encoding %s cloud_properties: %w", what, err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("%s cloud_properties: %w", what, err)
	}
	return out, nil
}

// vmxOptions renders vmx_options as sorted key/value strings.
func (p VMProps) vmxOptions() [][2]string {
	keys := make([]string, 0, len(p.VMXOptions))
	for k := range p.VMXOptions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, [2]string{k, fmt.Sprint(p.VMXOptions[k])})
	}
	return out
}

// DecodeVMProps reads create_vm cloud_properties (vm_type merged with the AZ's).
func DecodeVMProps(props map[string]any) (VMProps, error) {
	return decodeProps[VMProps](props, "vm_type")
}
