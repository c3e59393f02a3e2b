package manifest

// Manifest is a BOSH v2 deployment manifest. The create-env flavour (the
// director's own bosh.yml) is the same document with resource_pools,
// disk_pools, networks and cloud_provider instead of a cloud-config.
type Manifest struct {
	Meta Meta `yaml:"-"`

	Name            string          `yaml:"name"`
	DirectorUUID    string          `yaml:"director_uuid"`    // accepted and ignored, as CLI v2 does
	ManifestVersion string          `yaml:"manifest_version"` // cf-deployment's own version stamp
	Features        *Features       `yaml:"features"`
	Releases        []Release       `yaml:"releases"`
	Stemcells       []Stemcell      `yaml:"stemcells"`
	Update          *Update         `yaml:"update"`
	InstanceGroups  []InstanceGroup `yaml:"instance_groups"`
	Addons          []Addon         `yaml:"addons"`
	Properties      map[string]any  `yaml:"properties"`
	Variables       []Variable      `yaml:"variables"`
	Tags            map[string]any  `yaml:"tags"`

	// create-env (director-less) manifests.
	ResourcePools []ResourcePool `yaml:"resource_pools"`
	DiskPools     []DiskPool     `yaml:"disk_pools"`
	Networks      []Network      `yaml:"networks"`
	CloudProvider *CloudProvider `yaml:"cloud_provider"`
}

// IsCreateEnv reports whether m is a create-env manifest (it carries its own
// cloud_provider and resource pools instead of relying on a cloud-config).
func (m *Manifest) IsCreateEnv() bool {
	return m.CloudProvider != nil || m.Meta.Has("cloud_provider") || len(m.ResourcePools) > 0 || m.Meta.Has("resource_pools")
}

// InstanceGroup returns the group named name, or nil.
func (m *Manifest) InstanceGroup(name string) *InstanceGroup {
	for i := range m.InstanceGroups {
		if m.InstanceGroups[i].Name == name {
			return &m.InstanceGroups[i]
		}
	}
	return nil
}

// Release returns the release named name, or nil.
func (m *Manifest) Release(name string) *Release {
	for i := range m.Releases {
		if m.Releases[i].Name == name {
			return &m.Releases[i]
		}
	}
	return nil
}

// Stemcell returns the stemcell with the given alias, or nil.
func (m *Manifest) Stemcell(alias string) *Stemcell {
	for i := range m.Stemcells {
		if m.Stemcells[i].Alias == alias {
			return &m.Stemcells[i]
		}
	}
	return nil
}

// UpdateFor is the update block that applies to g: the deployment's, overridden
// key by key by the group's.
func (m *Manifest) UpdateFor(g *InstanceGroup) Update {
	var u Update
	if m.Update != nil {
		u = *m.Update
	}
	return u.Merge(g.Update)
}

// Features is the manifest's features block.
type Features struct {
	Meta                 Meta  `yaml:"-"`
	ConvergeVariables    *bool `yaml:"converge_variables"`
	RandomizeAZPlacement *bool `yaml:"randomize_az_placement"`
	UseDNSAddresses      *bool `yaml:"use_dns_addresses"`
	UseTmpfsConfig       *bool `yaml:"use_tmpfs_config"`
	UseShortDNSAddresses *bool `yaml:"use_short_dns_addresses"`
	UseLinkDNSNames      *bool `yaml:"use_link_dns_names"`
}

// Release is an entry of releases (deployment or runtime-config).
type Release struct {
	Meta         Meta        `yaml:"-"`
	Name         string      `yaml:"name"`
	Version      string      `yaml:"version"` // the literal text: "283.1.6", "latest", "create"
	URL          string      `yaml:"url"`
	SHA1         string      `yaml:"sha1"`
	Stemcell     *OSVersion  `yaml:"stemcell"` // for compiled releases
	ExportedFrom []OSVersion `yaml:"exported_from"`
}

// OSVersion names a stemcell by os and version.
type OSVersion struct {
	Meta    Meta   `yaml:"-"`
	OS      string `yaml:"os"`
	Version string `yaml:"version"`
}

// Stemcell is an entry of stemcells: an alias for an os (or name) and version.
type Stemcell struct {
	Meta    Meta   `yaml:"-"`
	Alias   string `yaml:"alias"`
	OS      string `yaml:"os"`
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
}

// InstanceGroup is an entry of instance_groups.
type InstanceGroup struct {
	Meta Meta `yaml:"-"`

	Name               string         `yaml:"name"`
	AZs                []string       `yaml:"azs"`
	Instances          int            `yaml:"instances"`
	Jobs               []Job          `yaml:"jobs"`
	VMType             string         `yaml:"vm_type"`
	VMResources        *VMResources   `yaml:"vm_resources"`
	VMExtensions       []string       `yaml:"vm_extensions"`
	Stemcell           string         `yaml:"stemcell"`
	PersistentDisk     int            `yaml:"persistent_disk"`
	PersistentDiskType string         `yaml:"persistent_disk_type"`
	Networks           []GroupNetwork `yaml:"networks"`
	Update             *Update        `yaml:"update"`
	MigratedFrom       []MigratedFrom `yaml:"migrated_from"`
	Lifecycle          string         `yaml:"lifecycle"`
	Properties         map[string]any `yaml:"properties"`
	Tags               map[string]any `yaml:"tags"`
	Env                *Env           `yaml:"env"`

	// create-env manifests.
	ResourcePool       string `yaml:"resource_pool"`
	PersistentDiskPool string `yaml:"persistent_disk_pool"`
}

// Lifecycles of an instance group.
const (
	LifecycleService = "service"
	LifecycleErrand  = "errand"
)

// LifecycleOrDefault is the lifecycle, service when not given.
func (g *InstanceGroup) LifecycleOrDefault() string {
	if g.Lifecycle == "" {
		return LifecycleService
	}
	return g.Lifecycle
}

// Job is a job of an instance group or an addon.
type Job struct {
	Meta                      Meta                       `yaml:"-"`
	Name                      string                     `yaml:"name"`
	Release                   string                     `yaml:"release"`
	Consumes                  map[string]ConsumeLink     `yaml:"consumes"`
	Provides                  map[string]ProvideLink     `yaml:"provides"`
	Properties                map[string]any             `yaml:"properties"` // nil when not given: instance-group properties then apply
	CustomProviderDefinitions []CustomProviderDefinition `yaml:"custom_provider_definitions"`
}

// ConsumeLink is a job's consumes entry. A null value (or the word nil) blocks the link.
type ConsumeLink struct {
	Meta        Meta   `yaml:"-"`
	From        string `yaml:"from"`
	Deployment  string `yaml:"deployment"`
	Network     string `yaml:"network"`
	IPAddresses *bool  `yaml:"ip_addresses"`
	Blocked     bool   `yaml:"-"`
}

// ProvideLink is a job's provides entry. A null value (or the word nil) blocks the link.
type ProvideLink struct {
	Meta    Meta   `yaml:"-"`
	As      string `yaml:"as"`
	Shared  *bool  `yaml:"shared"`
	Blocked bool   `yaml:"-"`
}

// CustomProviderDefinition declares a link a job provides without it being in the job spec.
type CustomProviderDefinition struct {
	Meta       Meta     `yaml:"-"`
	Name       string   `yaml:"name"`
	Type       string   `yaml:"type"`
	Properties []string `yaml:"properties"`
}

// VMResources asks the CPI to size a VM (calculate_vm_cloud_properties).
type VMResources struct {
	Meta              Meta `yaml:"-"`
	CPU               int  `yaml:"cpu"`
	RAM               int  `yaml:"ram"`                 // MB
	EphemeralDiskSize int  `yaml:"ephemeral_disk_size"` // MB
}

// GroupNetwork is an instance group's network entry.
type GroupNetwork struct {
	Meta      Meta     `yaml:"-"`
	Name      string   `yaml:"name"`
	StaticIPs []string `yaml:"static_ips"`
	Default   []string `yaml:"default"` // dns, gateway
	NICGroup  *int     `yaml:"nic_group"`
}

// IsDefaultFor reports whether the network is the default for "dns" or "gateway".
func (n GroupNetwork) IsDefaultFor(what string) bool {
	for _, d := range n.Default {
		if d == what {
			return true
		}
	}
	return false
}

// DefaultNetworkFor names the group's network that is the default for what
// ("dns" or "gateway"): the one listing it in default, else the only network
// that is not a vip network (cc tells the network types; nil treats every
// network as non-vip). It returns "" when there is no single answer.
func (g *InstanceGroup) DefaultNetworkFor(what string, cc *CloudConfig) string {
	var candidates []string
	for _, n := range g.Networks {
		if n.IsDefaultFor(what) {
			return n.Name
		}
		if cc != nil {
			if net := cc.Network(n.Name); net != nil && net.TypeOrDefault() == NetworkVIP {
				continue
			}
		}
		candidates = append(candidates, n.Name)
	}
	if len(candidates) == 1 {
		return candidates[0]
	}
	return ""
}

// MigratedFrom renames a group (or merges per-AZ groups) keeping its disks.
type MigratedFrom struct {
	Meta Meta   `yaml:"-"`
	Name string `yaml:"name"`
	AZ   string `yaml:"az"`
}

// Env is the env block of an instance group, resource pool or compilation: agent
// and CPI settings. Raw keeps the whole block as written (the CPI receives it).
type Env struct {
	Meta                       Meta           `yaml:"-"`
	PersistentDiskFS           string         `yaml:"persistent_disk_fs"`
	PersistentDiskMountOptions []string       `yaml:"persistent_disk_mount_options"`
	Bosh                       *EnvBosh       `yaml:"bosh"`
	Raw                        map[string]any `yaml:"-"`
}

// EnvBosh is env.bosh.
type EnvBosh struct {
	Meta                  Meta       `yaml:"-"`
	Password              string     `yaml:"password"` // crypted
	AuthorizedKeys        []string   `yaml:"authorized_keys"`
	KeepRootPassword      *bool      `yaml:"keep_root_password"`
	RemoveDevTools        *bool      `yaml:"remove_dev_tools"`
	RemoveStaticLibraries *bool      `yaml:"remove_static_libraries"`
	SwapSize              *int       `yaml:"swap_size"` // MB, 0 = none
	IPv6                  *EnvIPv6   `yaml:"ipv6"`
	JobDir                *EnvJobDir `yaml:"job_dir"`
	RunDir                *EnvRunDir `yaml:"run_dir"`
	Agent                 *EnvAgent  `yaml:"agent"`
	NTP                   []string   `yaml:"ntp"`
	// create-env resource pools.
	Blobstores         []any          `yaml:"blobstores"`
	TargetedBlobstores map[string]any `yaml:"targeted_blobstores"`
	Mbus               map[string]any `yaml:"mbus"`
}

// EnvIPv6 is env.bosh.ipv6.
type EnvIPv6 struct {
	Meta   Meta  `yaml:"-"`
	Enable *bool `yaml:"enable"`
}

// EnvJobDir is env.bosh.job_dir.
type EnvJobDir struct {
	Meta      Meta   `yaml:"-"`
	Tmpfs     *bool  `yaml:"tmpfs"`
	TmpfsSize string `yaml:"tmpfs_size"` // default 100m
}

// EnvRunDir is env.bosh.run_dir.
type EnvRunDir struct {
	Meta      Meta   `yaml:"-"`
	TmpfsSize string `yaml:"tmpfs_size"` // default 16m
}

// EnvAgent is env.bosh.agent.
type EnvAgent struct {
	Meta     Meta `yaml:"-"`
	Settings *struct {
		Meta  Meta  `yaml:"-"`
		Tmpfs *bool `yaml:"tmpfs"`
	} `yaml:"settings"`
}

// Variable is an entry of variables.
type Variable struct {
	Meta       Meta                    `yaml:"-"`
	Name       string                  `yaml:"name"`
	Type       string                  `yaml:"type"`
	Options    map[string]any          `yaml:"options"`
	UpdateMode string                  `yaml:"update_mode"` // no-overwrite (default), overwrite, converge
	Update     *VariableUpdate         `yaml:"update"`
	Consumes   map[string]VariableLink `yaml:"consumes"`
}

// VariableUpdate is a variable's update block.
type VariableUpdate struct {
	Meta     Meta   `yaml:"-"`
	Strategy string `yaml:"strategy"` // on-deploy (default), on-stemcell-change
}

// VariableLink fills a certificate's common_name or alternative_name from a link.
type VariableLink struct {
	Meta       Meta           `yaml:"-"`
	From       string         `yaml:"from"`
	Deployment string         `yaml:"deployment"`
	Properties map[string]any `yaml:"properties"`
}

// ResourcePool is a create-env resource pool (the VM type, stemcell and env of the single VM).
type ResourcePool struct {
	Meta            Meta           `yaml:"-"`
	Name            string         `yaml:"name"`
	Network         string         `yaml:"network"`
	Stemcell        *StemcellRef   `yaml:"stemcell"`
	CloudProperties map[string]any `yaml:"cloud_properties"`
	Env             *Env           `yaml:"env"`
}

// StemcellRef is a stemcell tarball given by URL (create-env).
type StemcellRef struct {
	Meta Meta   `yaml:"-"`
	URL  string `yaml:"url"`
	SHA1 string `yaml:"sha1"`
}

// DiskPool is a create-env disk pool.
type DiskPool struct {
	Meta            Meta           `yaml:"-"`
	Name            string         `yaml:"name"`
	DiskSize        int            `yaml:"disk_size"` // MB
	CloudProperties map[string]any `yaml:"cloud_properties"`
}

// CloudProvider is a create-env manifest's cloud_provider: the CPI job and how
// to reach the agent.
type CloudProvider struct {
	Meta       Meta           `yaml:"-"`
	Template   *JobRef        `yaml:"template"`
	Mbus       string         `yaml:"mbus"`
	Cert       any            `yaml:"cert"`
	SSHTunnel  *SSHTunnel     `yaml:"ssh_tunnel"`
	Properties map[string]any `yaml:"properties"`
}

// JobRef names a job of a release.
type JobRef struct {
	Meta    Meta   `yaml:"-"`
	Name    string `yaml:"name"`
	Release string `yaml:"release"`
}

// SSHTunnel is cloud_provider.ssh_tunnel.
type SSHTunnel struct {
	Meta       Meta   `yaml:"-"`
	Host       string `yaml:"host"`
	Port       int    `yaml:"port"`
	User       string `yaml:"user"`
	PrivateKey string `yaml:"private_key"`
}

// ParseManifest parses a deployment manifest. It returns every type problem at
// once (and the manifest as far as it could be read); unknown keys are warnings.
// Semantic checks are in Validate and ValidateCloud.
func ParseManifest(file string, data []byte) (*Manifest, Warnings, error) {
	m := &Manifest{}
	w, err := parseDocument(file, data, m, "deployment manifest")
	return m, w, err
}

func (l *ConsumeLink) setBlocked()      { l.Blocked = true }
func (l *ProvideLink) setBlocked()      { l.Blocked = true }
func (e *Env) keepRaw(m map[string]any) { e.Raw = m }
