package openstack

import (
	"encoding/json"
	"fmt"

	"github.com/kpaas/kpaas/cpi"
)

// vmProps are a vm_type's cloud_properties (bosh-openstack-cpi's names), plus
// cpu/ram/ephemeral_disk_size to pick the smallest fitting flavor.
type vmProps struct {
	InstanceType      string         `json:"instance_type"`
	CPU               int            `json:"cpu"`
	RAM               int            `json:"ram"`                 // MiB
	EphemeralDiskSize int            `json:"ephemeral_disk_size"` // MiB
	AvailabilityZone  string         `json:"availability_zone"`
	AvailabilityZones []string       `json:"availability_zones"`
	SecurityGroups    []string       `json:"security_groups"`
	KeyName           string         `json:"key_name"`
	SchedulerHints    map[string]any `json:"scheduler_hints"`
	BootFromVolume    *bool          `json:"boot_from_volume"`
	RootDisk          *struct {
		Size int    `json:"size"` // GiB
		Type string `json:"type"`
	} `json:"root_disk"`
	AllowedAddressPairs string           `json:"allowed_address_pairs"`
	LoadbalancerPools   []map[string]any `json:"loadbalancer_pools"`
	Metadata            map[string]any   `json:"metadata"`
}

// netProps are a network subnet's cloud_properties.
type netProps struct {
	NetID          string   `json:"net_id"`
	SecurityGroups []string `json:"security_groups"`
	// vip networks without an IP: allocate a floating IP from this external network.
	FloatingNetworkID string `json:"floating_network_id"`
}

type diskProps struct {
	Type             string `json:"type"`
	AvailabilityZone string `json:"availability_zone"`
}

func decodeProps(p cpi.Props, what string, into any) error {
	if len(p) == 0 {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encoding %s cloud_properties: %w", what, err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("%s cloud_properties: %w", what, err)
	}
	return nil
}
