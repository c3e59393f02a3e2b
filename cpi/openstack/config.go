package openstack

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Config is the driver's configuration: BOSH's openstack CPI job properties
// (`openstack.*`, `agent.*`), so the openstack cpi.yml ops file of
// bosh-deployment and K-PaaS works unchanged.
type Config struct {
	OpenStack OpenStackConfig `json:"openstack"`
	// Agent is merged into every VM's agent settings (mbus, ntp, blobstore).
	Agent map[string]any `json:"agent,omitempty"`
}

// OpenStackConfig is the `openstack` block.
type OpenStackConfig struct {
	AuthURL  string `json:"auth_url"`
	Username string `json:"username,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	APIKey   string `json:"api_key,omitempty"` // the password, BOSH's name
	Password string `json:"password,omitempty"`

	ApplicationCredentialID     string `json:"application_credential_id,omitempty"`
	ApplicationCredentialName   string `json:"application_credential_name,omitempty"`
	ApplicationCredentialSecret string `json:"application_credential_secret,omitempty"`

	// Domain is the user's and project's domain name (BOSH). UserDomainName /
	// ProjectDomainName / *ID refine it.
	Domain            string `json:"domain,omitempty"`
	UserDomainName    string `json:"user_domain_name,omitempty"`
	UserDomainID      string `json:"user_domain_id,omitempty"`
	ProjectDomainName string `json:"project_domain_name,omitempty"`
	ProjectDomainID   string `json:"project_domain_id,omitempty"`
	Project           string `json:"project,omitempty"`
	ProjectID         string `json:"project_id,omitempty"`
	Tenant            string `json:"tenant,omitempty"` // Keystone v2 name of project

	Region            string            `json:"region,omitempty"`
	EndpointType      string            `json:"endpoint_type,omitempty"` // public (default), internal, admin
	ConnectionOptions ConnectionOptions `json:"connection_options,omitempty"`

	DefaultKeyName            string         `json:"default_key_name,omitempty"`
	DefaultSecurityGroups     []string       `json:"default_security_groups,omitempty"`
	DefaultVolumeType         string         `json:"default_volume_type,omitempty"`
	HumanReadableVMNames      bool           `json:"human_readable_vm_names,omitempty"`
	BootFromVolume            bool           `json:"boot_from_volume,omitempty"`
	BootVolumeCloudProperties map[string]any `json:"boot_volume_cloud_properties,omitempty"`
	// ConfigDrive is "disk" or "cdrom" (any non-empty value turns it on).
	ConfigDrive                  string `json:"config_drive,omitempty"`
	UseDHCP                      *bool  `json:"use_dhcp,omitempty"`
	IgnoreServerAvailabilityZone bool   `json:"ignore_server_availability_zone,omitempty"`
	StemcellPublicVisibility     bool   `json:"stemcell_public_visibility,omitempty"`
	UseNovaNetworking            bool   `json:"use_nova_networking,omitempty"`
	// EnableAutoAntiAffinity puts each instance group's VMs in a
	// soft-anti-affinity server group (named after env.bosh.group).
	EnableAutoAntiAffinity bool `json:"enable_auto_anti_affinity,omitempty"`

	// StateTimeout bounds each wait for a resource state, in seconds (default 300).
	StateTimeout float64 `json:"state_timeout,omitempty"`
	// WaitResourcePollInterval is the longest pause between polls, in seconds (default 2).
	WaitResourcePollInterval float64 `json:"wait_resource_poll_interval,omitempty"`
	// MaxRetries bounds retries of a request on 429/5xx/transport errors (default 5).
	MaxRetries *int `json:"max_retries,omitempty"`
}

// ConnectionOptions are TLS settings for every OpenStack endpoint.
type ConnectionOptions struct {
	CACert        string `json:"ca_cert,omitempty"` // PEM bundle
	SSLVerifyPeer *bool  `json:"ssl_verify_peer,omitempty"`
	Insecure      bool   `json:"insecure,omitempty"`
}

// ParseConfig reads the driver configuration in any of the shapes a BOSH
// CPI receives it: the job's cpi.json ({"cloud":{"properties":{...}}}), the
// properties themselves ({"openstack":{...},"agent":{...}}), or a flat
// cpi-config entry's properties ({"auth_url":..., "username":...}). Flat keys
// beside those blocks (a multi-CPI request context's properties, which
// `kpaas cpi` overlays on the top level) go into the openstack block, as
// bosh-openstack-cpi merges them.
func ParseConfig(b []byte) (Config, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return Config{}, fmt.Errorf("parsing openstack cpi config: %w", err)
	}
	layers := []map[string]json.RawMessage{top}
	if cloud, ok := top["cloud"]; ok {
		var c struct {
			Properties map[string]json.RawMessage `json:"properties"`
		}
		if err := json.Unmarshal(cloud, &c); err != nil {
			return Config{}, fmt.Errorf("parsing openstack cpi config cloud block: %w", err)
		}
		layers = []map[string]json.RawMessage{c.Properties, top}
	}
	block := map[string]json.RawMessage{}
	var c Config
	for _, layer := range layers {
		if raw, ok := layer["openstack"]; ok {
			if err := json.Unmarshal(raw, &block); err != nil {
				return Config{}, fmt.Errorf("parsing openstack cpi config openstack block: %w", err)
			}
		}
		if raw, ok := layer["agent"]; ok {
			if err := json.Unmarshal(raw, &c.Agent); err != nil {
				return Config{}, fmt.Errorf("parsing openstack cpi config agent block: %w", err)
			}
		}
	}
	for _, layer := range layers {
		for k, v := range layer {
			switch k {
			case "openstack", "agent", "cloud", "registry", "plugin":
			default:
				block[k] = v
			}
		}
	}
	merged, err := json.Marshal(block)
	if err != nil {
		return Config{}, fmt.Errorf("parsing openstack cpi config: %w", err)
	}
	if err := json.Unmarshal(merged, &c.OpenStack); err != nil {
		return Config{}, fmt.Errorf("parsing openstack cpi config: %w", err)
	}
	return c, c.Validate()
}

// Validate reports every missing or contradictory setting at once.
func (c Config) Validate() error {
	o := c.OpenStack
	var problems []string
	if o.AuthURL == "" {
		problems = append(problems, "openstack.auth_url is required (the Keystone v3 URL, e.g. https://keystone:5000/v3)")
	}
	appCred := o.ApplicationCredentialID != "" || o.ApplicationCredentialName != ""
	switch {
	case appCred && o.ApplicationCredentialSecret == "":
		problems = append(problems, "openstack.application_credential_secret is required with an application credential")
	case appCred && o.ApplicationCredentialID == "" && o.Username == "" && o.UserID == "":
		problems = append(problems, "openstack.username or user_id is required with application_credential_name (or give application_credential_id)")
	case !appCred:
		if o.Username == "" && o.UserID == "" {
			problems = append(problems, "openstack.username is required (or an application credential)")
		}
		if o.APIKey == "" && o.Password == "" {
			problems = append(problems, "openstack.api_key is required (the user's password)")
		}
		if o.Project == "" && o.ProjectID == "" && o.Tenant == "" {
			problems = append(problems, "openstack.project (or project_id) is required")
		}
	}
	switch o.ConfigDrive {
	case "", "disk", "cdrom":
	default:
		problems = append(problems, fmt.Sprintf("openstack.config_drive %q: must be disk or cdrom", o.ConfigDrive))
	}
	if o.UseNovaNetworking {
		problems = append(problems, "openstack.use_nova_networking is not supported: kpaas needs Neutron (nova-network was removed from OpenStack in Rocky)")
	}
	if len(problems) > 0 {
		return fmt.Errorf("openstack cpi config: %s", strings.Join(problems, "; "))
	}
	return nil
}

func (o OpenStackConfig) password() string {
	if o.Password != "" {
		return o.Password
	}
	return o.APIKey
}

func (o OpenStackConfig) useDHCP() bool { return o.UseDHCP == nil || *o.UseDHCP }

func (o OpenStackConfig) stateTimeout() time.Duration {
	if o.StateTimeout > 0 {
		return time.Duration(o.StateTimeout * float64(time.Second))
	}
	return 300 * time.Second
}

func (o OpenStackConfig) pollMax() time.Duration {
	if o.WaitResourcePollInterval > 0 {
		return time.Duration(o.WaitResourcePollInterval * float64(time.Second))
	}
	return 2 * time.Second
}

func (o OpenStackConfig) maxRetries() int {
	if o.MaxRetries != nil {
		return *o.MaxRetries
	}
	return 5
}
