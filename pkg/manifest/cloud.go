package manifest

// CloudConfig is a BOSH cloud-config: the IaaS side of deployments.
type CloudConfig struct {
	Meta Meta `yaml:"-"`

	AZs          []AZ          `yaml:"azs"`
	Networks     []Network     `yaml:"networks"`
	VMTypes      []VMType      `yaml:"vm_types"`
	VMExtensions []VMExtension `yaml:"vm_extensions"`
	DiskTypes    []DiskType    `yaml:"disk_types"`
	Compilation  *Compilation  `yaml:"compilation"`
}

// AZ is an availability zone; CPI selects a CPI of the cpi-config (multi-CPI).
type AZ struct {
	Meta            Meta           `yaml:"-"`
	Name            string         `yaml:"name"`
	CloudProperties map[string]any `yaml:"cloud_properties"`
	CPI             string         `yaml:"cpi"`
}

// Network types.
const (
	NetworkManual  = "manual"
	NetworkDynamic = "dynamic"
	NetworkVIP     = "vip"
)

// Network is a cloud-config network (or a create-env manifest's network).
type Network struct {
	Meta            Meta           `yaml:"-"`
	Name            string         `yaml:"name"`
	Type            string         `yaml:"type"` // manual (default), dynamic, vip
	Subnets         []Subnet       `yaml:"subnets"`
	DNS             []string       `yaml:"dns"`              // dynamic networks without subnets
	CloudProperties map[string]any `yaml:"cloud_properties"` // dynamic / vip networks without subnets
}

// TypeOrDefault is the network type, manual when not given.
func (n *Network) TypeOrDefault() string {
	if n.Type == "" {
		return NetworkManual
	}
	return n.Type
}

// SubnetsIn returns the subnets serving az (all subnets when none names an az).
func (n *Network) SubnetsIn(az string) []*Subnet {
	var out, unzoned []*Subnet
	for i := range n.Subnets {
		s := &n.Subnets[i]
		z := s.Zones()
		if len(z) == 0 {
			unzoned = append(unzoned, s)
		} else if contains(z, az) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return unzoned
	}
	return out
}

// Subnet is a subnet of a network.
type Subnet struct {
	Meta            Meta           `yaml:"-"`
	Name            string         `yaml:"name"`
	Range           string         `yaml:"range"` // CIDR
	Gateway         string         `yaml:"gateway"`
	DNS             []string       `yaml:"dns"`
	Reserved        []string       `yaml:"reserved"` // IPs, "a - b" ranges or CIDRs never assigned
	Static          []string       `yaml:"static"`   // the only IPs allowed as static_ips
	AZ              string         `yaml:"az"`
	AZs             []string       `yaml:"azs"`
	Prefix          string         `yaml:"prefix"`       // prefix delegation length
	NetmaskBits     int            `yaml:"netmask_bits"` // optional, passed to the CPI
	CloudProperties map[string]any `yaml:"cloud_properties"`
}

// Zones is the subnet's AZs, from az or azs.
func (s *Subnet) Zones() []string {
	if s.AZ != "" {
		return append([]string{s.AZ}, s.AZs...)
	}
	return s.AZs
}

// VMType is a named set of VM cloud properties.
type VMType struct {
	Meta            Meta           `yaml:"-"`
	Name            string         `yaml:"name"`
	CloudProperties map[string]any `yaml:"cloud_properties"`
}

// VMExtension is a named set of extra VM cloud properties.
type VMExtension struct {
	Meta            Meta           `yaml:"-"`
	Name            string         `yaml:"name"`
	CloudProperties map[string]any `yaml:"cloud_properties"`
}

// DiskType is a named persistent disk size and cloud properties.
type DiskType struct {
	Meta            Meta           `yaml:"-"`
	Name            string         `yaml:"name"`
	DiskSize        int            `yaml:"disk_size"` // MB
	CloudProperties map[string]any `yaml:"cloud_properties"`
}

// Compilation configures compilation VMs.
type Compilation struct {
	Meta                Meta           `yaml:"-"`
	Workers             int            `yaml:"workers"`
	AZ                  string         `yaml:"az"`
	Network             string         `yaml:"network"`
	VMType              string         `yaml:"vm_type"`
	VMResources         *VMResources   `yaml:"vm_resources"`
	CloudProperties     map[string]any `yaml:"cloud_properties"`
	VMExtensions        []string       `yaml:"vm_extensions"`
	ReuseCompilationVMs bool           `yaml:"reuse_compilation_vms"` // default false
	OrphanWorkers       bool           `yaml:"orphan_workers"`        // default false
	Env                 *Env           `yaml:"env"`
}

// ParseCloudConfig parses a cloud-config; see ParseManifest.
func ParseCloudConfig(file string, data []byte) (*CloudConfig, Warnings, error) {
	c := &CloudConfig{}
	w, err := parseDocument(file, data, c, "cloud-config")
	return c, w, err
}

// Lookups by name (nil when absent).

func (c *CloudConfig) AZ(name string) *AZ {
	for i := range c.AZs {
		if c.AZs[i].Name == name {
			return &c.AZs[i]
		}
	}
	return nil
}

func (c *CloudConfig) Network(name string) *Network {
	for i := range c.Networks {
		if c.Networks[i].Name == name {
			return &c.Networks[i]
		}
	}
	return nil
}

func (c *CloudConfig) VMType(name string) *VMType {
	for i := range c.VMTypes {
		if c.VMTypes[i].Name == name {
			return &c.VMTypes[i]
		}
	}
	return nil
}

func (c *CloudConfig) VMExtension(name string) *VMExtension {
	for i := range c.VMExtensions {
		if c.VMExtensions[i].Name == name {
			return &c.VMExtensions[i]
		}
	}
	return nil
}

func (c *CloudConfig) DiskType(name string) *DiskType {
	for i := range c.DiskTypes {
		if c.DiskTypes[i].Name == name {
			return &c.DiskTypes[i]
		}
	}
	return nil
}

// CPIConfig lists the CPIs a multi-CPI cloud-config's AZs select with `cpi:`.
type CPIConfig struct {
	Meta Meta  `yaml:"-"`
	CPIs []CPI `yaml:"cpis"`
}

// CPI is one entry of a cpi-config; the director runs the <type>_cpi job.
type CPI struct {
	Meta         Meta           `yaml:"-"`
	Name         string         `yaml:"name"`
	Type         string         `yaml:"type"`
	Properties   map[string]any `yaml:"properties"`
	MigratedFrom []struct {
		Meta Meta   `yaml:"-"`
		Name string `yaml:"name"`
	} `yaml:"migrated_from"`
}

// ParseCPIConfig parses a cpi-config; see ParseManifest.
func ParseCPIConfig(file string, data []byte) (*CPIConfig, Warnings, error) {
	c := &CPIConfig{}
	w, err := parseDocument(file, data, c, "cpi-config")
	return c, w, err
}

// CPI returns the CPI named name, or nil.
func (c *CPIConfig) CPI(name string) *CPI {
	for i := range c.CPIs {
		if c.CPIs[i].Name == name {
			return &c.CPIs[i]
		}
	}
	return nil
}
