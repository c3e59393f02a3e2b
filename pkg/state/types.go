package state

import (
	"encoding/json"
	"fmt"
	"time"
)

// ConfigType is the kind of a named, versioned config.
type ConfigType string

const (
	CloudConfig   ConfigType = "cloud"
	RuntimeConfig ConfigType = "runtime"
	CPIConfig     ConfigType = "cpi"
	// ResurrectionConfig holds the resurrection switch and rules (kpaas monitor).
	ResurrectionConfig ConfigType = "resurrection"
)

// Valid reports whether t is a known config type.
func (t ConfigType) Valid() bool {
	return t == CloudConfig || t == RuntimeConfig || t == CPIConfig || t == ResurrectionConfig
}

// Title is how the type is written in sentences: cloud, runtime, CPI.
func (t ConfigType) Title() string {
	if t == CPIConfig {
		return "CPI"
	}
	return string(t)
}

// DefaultConfigName is the name of a config saved without one.
const DefaultConfigName = "default"

// Config is one version of a named cloud, runtime or CPI config. Saving new
// content under the same type and name makes a new version; versions are
// never changed, so a deployment can say which ones it used.
type Config struct {
	ID        int64      `json:"id"`
	Type      ConfigType `json:"type"`
	Name      string     `json:"name"`
	Version   int        `json:"version"`
	Content   string     `json:"content"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
}

// Deployment is a deployment's own row: its last successful manifest and the
// config versions that deploy used. Serial grows with every change to the
// deployment's state, so a saved plan can tell it has gone stale.
type Deployment struct {
	Name           string    `json:"name"`
	Manifest       string    `json:"manifest"` // last successful manifest; empty before the first success
	ConfigIDs      []int64   `json:"config_ids"`
	Serial         int64     `json:"serial"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	LastDeployedAt time.Time `json:"last_deployed_at"` // zero before the first success
}

// InstanceState is what the operator wants an instance to be.
type InstanceState string

const (
	Started  InstanceState = "started"
	Stopped  InstanceState = "stopped"
	Detached InstanceState = "detached"
)

// Valid reports whether s is a known desired state.
func (s InstanceState) Valid() bool { return s == Started || s == Stopped || s == Detached }

// Instance is one member of an instance group, named group/index and group/uuid.
type Instance struct {
	Deployment   string        `json:"deployment"`
	Group        string        `json:"group"`
	Index        int           `json:"index"`
	UUID         string        `json:"uuid"`
	AZ           string        `json:"az"`
	Bootstrap    bool          `json:"bootstrap"`
	DesiredState InstanceState `json:"desired_state"`
	Ignore       bool          `json:"ignore"`
	// Spec is the last applied instance spec (JSON), opaque to the store.
	Spec      json.RawMessage `json:"spec,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Name is group/index.
func (i Instance) Name() string { return fmt.Sprintf("%s/%d", i.Group, i.Index) }

// ID is group/uuid.
func (i Instance) ID() string { return i.Group + "/" + i.UUID }

// VM is a virtual machine the CPI created. Instance is the owning instance's
// UUID, empty for VMs that belong to no instance (compilation VMs).
type VM struct {
	CID             string          `json:"cid"`
	Deployment      string          `json:"deployment"`
	Instance        string          `json:"instance"`
	AgentID         string          `json:"agent_id"`
	IPs             []string        `json:"ips"`
	Stemcell        string          `json:"stemcell"` // stemcell name/version
	CloudProperties json.RawMessage `json:"cloud_properties,omitempty"`
	// SSHHostKey is the public host key the agent presents (pinned by the client).
	SSHHostKey string `json:"ssh_host_key"`
	// SSHHostPrivateKey is the host private key kpaas generated for the agent;
	// it is encrypted at rest.
	SSHHostPrivateKey string    `json:"ssh_host_private_key,omitempty"`
	Active            bool      `json:"active"`
	CreatedAt         time.Time `json:"created_at"`
}

// Disk is a persistent disk attached to (or meant for) an instance.
type Disk struct {
	CID             string          `json:"cid"`
	Deployment      string          `json:"deployment"`
	Instance        string          `json:"instance"` // instance UUID
	Name            string          `json:"name"`     // "" for the default persistent disk
	SizeMB          int             `json:"size_mb"`
	CloudProperties json.RawMessage `json:"cloud_properties,omitempty"`
	Active          bool            `json:"active"`
	CreatedAt       time.Time       `json:"created_at"`
}

// OrphanedDisk is a persistent disk that no instance uses any more, kept until
// the operator deletes it.
type OrphanedDisk struct {
	CID             string          `json:"cid"`
	Deployment      string          `json:"deployment"`
	Instance        string          `json:"instance"` // group/uuid it belonged to
	AZ              string          `json:"az"`
	SizeMB          int             `json:"size_mb"`
	CloudProperties json.RawMessage `json:"cloud_properties,omitempty"`
	OrphanedAt      time.Time       `json:"orphaned_at"`
}

// IPReservation is an IP address taken on a network (cloud-config network name).
type IPReservation struct {
	Network    string    `json:"network"`
	IP         string    `json:"ip"`
	Deployment string    `json:"deployment"`
	Instance   string    `json:"instance"` // instance UUID, empty for a reservation held by the deployment
	Static     bool      `json:"static"`
	CreatedAt  time.Time `json:"created_at"`
}

// Stemcell is a stemcell uploaded to one CPI.
type Stemcell struct {
	Name       string    `json:"name"`
	Version    string    `json:"version"`
	OS         string    `json:"os"`
	CID        string    `json:"cid"`
	CPI        string    `json:"cpi"` // cpi-config name, "" for the default CPI
	APIVersion int       `json:"api_version"`
	UploadedAt time.Time `json:"uploaded_at"`
}

// Release is an uploaded release version.
type Release struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	CommitHash string `json:"commit_hash"`
	// SHA256 of the release tarball in the blobstore.
	SHA256     string    `json:"sha256"`
	UploadedAt time.Time `json:"uploaded_at"`
}

// CompiledPackage is a package compiled against a stemcell, found again by
// fingerprint, stemcell and the key of its compiled dependencies.
type CompiledPackage struct {
	Name            string    `json:"name"`
	Version         string    `json:"version"`
	Fingerprint     string    `json:"fingerprint"`
	StemcellOS      string    `json:"stemcell_os"`
	StemcellVersion string    `json:"stemcell_version"`
	DependencyKey   string    `json:"dependency_key"`
	BlobSHA256      string    `json:"blob_sha256"`
	CreatedAt       time.Time `json:"created_at"`
}

// Variable is a generated or stored value; Value is encrypted at rest.
// Deployment is empty for a variable shared by all deployments.
type Variable struct {
	ID         int64  `json:"id"`
	Deployment string `json:"deployment"`
	Name       string `json:"name"`
	Type       string `json:"type"` // password, certificate, rsa, ssh, value
	Value      string `json:"value"`
	// Redacted is set in exports made without secrets: Value is empty.
	Redacted  bool      `json:"redacted,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Event is one thing that happened: who did what to which object, when.
type Event struct {
	ID         int64           `json:"id"`
	Time       time.Time       `json:"time"`
	User       string          `json:"user"`
	Action     string          `json:"action"`      // create, update, delete, start, stop, recreate, lock, ...
	ObjectType string          `json:"object_type"` // deployment, instance, vm, disk, config, stemcell, release, lock, ...
	ObjectName string          `json:"object_name"`
	Deployment string          `json:"deployment"`
	Instance   string          `json:"instance"`
	TaskID     int64           `json:"task_id"`
	Error      string          `json:"error"`
	Context    json.RawMessage `json:"context,omitempty"`
}

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	Deployment string    `json:"deployment"`
	Instance   string    `json:"instance"`
	Action     string    `json:"action"`
	After      time.Time `json:"after"`     // strictly after
	Before     time.Time `json:"before"`    // strictly before
	BeforeID   int64     `json:"before_id"` // paging: only events with a smaller ID
	Limit      int       `json:"limit"`     // 0: no limit
}

// TaskState is where a task stands.
type TaskState string

const (
	TaskProcessing TaskState = "processing"
	TaskDone       TaskState = "done"
	TaskError      TaskState = "error"
	TaskCancelled  TaskState = "cancelled"
)

// Task is one run of a kpaas operation (deploy, delete, cck, ...).
type Task struct {
	ID          int64     `json:"id"`
	Description string    `json:"description"`
	Deployment  string    `json:"deployment"`
	User        string    `json:"user"`
	State       TaskState `json:"state"`
	StartedAt   time.Time `json:"started_at"`
	EndedAt     time.Time `json:"ended_at"`
	Result      string    `json:"result"`
	Error       string    `json:"error"`
}

// DeploymentState is the whole recorded state of one deployment, loaded at once.
type DeploymentState struct {
	Deployment Deployment      `json:"deployment"`
	Instances  []Instance      `json:"instances"`
	VMs        []VM            `json:"vms"`
	Disks      []Disk          `json:"disks"`
	IPs        []IPReservation `json:"ips"`
}

// VMsByInstance maps instance UUID to its VMs (active first).
func (s *DeploymentState) VMsByInstance() map[string][]VM {
	m := make(map[string][]VM, len(s.Instances))
	for _, vm := range s.VMs {
		if vm.Active {
			m[vm.Instance] = append([]VM{vm}, m[vm.Instance]...)
		} else {
			m[vm.Instance] = append(m[vm.Instance], vm)
		}
	}
	return m
}

// DisksByInstance maps instance UUID to its disks.
func (s *DeploymentState) DisksByInstance() map[string][]Disk {
	m := make(map[string][]Disk, len(s.Instances))
	for _, d := range s.Disks {
		m[d.Instance] = append(m[d.Instance], d)
	}
	return m
}

// IPsByInstance maps instance UUID to its IP reservations.
func (s *DeploymentState) IPsByInstance() map[string][]IPReservation {
	m := make(map[string][]IPReservation, len(s.Instances))
	for _, r := range s.IPs {
		m[r.Instance] = append(m[r.Instance], r)
	}
	return m
}
