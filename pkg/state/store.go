package state

import (
	"context"
	"time"
)

// Reader is what can be read from a store or inside a transaction.
type Reader interface {
	// Config returns the latest version of a config (ErrNotFound if none).
	Config(ctx context.Context, typ ConfigType, name string) (Config, error)
	// ConfigByID returns one config version.
	ConfigByID(ctx context.Context, id int64) (Config, error)
	// Configs returns the latest version of every config of typ ("" for all types).
	Configs(ctx context.Context, typ ConfigType) ([]Config, error)
	// ConfigVersions returns every version of one config, newest first.
	ConfigVersions(ctx context.Context, typ ConfigType, name string) ([]Config, error)

	Deployment(ctx context.Context, name string) (Deployment, error)
	Deployments(ctx context.Context) ([]Deployment, error)
	// LoadDeployment returns the whole state of a deployment (instances, VMs,
	// disks, IPs) as one consistent snapshot.
	LoadDeployment(ctx context.Context, name string) (*DeploymentState, error)

	OrphanedDisks(ctx context.Context) ([]OrphanedDisk, error)
	IPReservations(ctx context.Context, network string) ([]IPReservation, error)
	Stemcells(ctx context.Context) ([]Stemcell, error)
	Releases(ctx context.Context) ([]Release, error)
	// CompiledPackage finds a compiled package (ErrNotFound if none).
	CompiledPackage(ctx context.Context, fingerprint, stemcellOS, stemcellVersion, dependencyKey string) (CompiledPackage, error)

	// Variable returns the latest value of a variable (ErrNotFound if none).
	Variable(ctx context.Context, deployment, name string) (Variable, error)
	// Variables returns the latest version of each variable of a deployment.
	Variables(ctx context.Context, deployment string) ([]Variable, error)

	// SharedLinks returns the link data (JSON) a deployment's shared
	// providers exposed at its last successful deploy (ErrNotFound if none).
	SharedLinks(ctx context.Context, deployment string) (string, error)

	Events(ctx context.Context, f EventFilter) ([]Event, error)
	Task(ctx context.Context, id int64) (Task, error)
	Tasks(ctx context.Context, deployment string, limit int) ([]Task, error)
}

// Writer is every mutation; each one is recorded (committed) when it returns,
// or, inside Update, when the transaction commits.
type Writer interface {
	// SaveConfig stores content as a new version of typ/name, unless it equals
	// the latest version; it returns the config now current and whether a new
	// version was made.
	SaveConfig(ctx context.Context, c Config) (Config, bool, error)

	// CreateDeployment makes an empty deployment (no error if it exists).
	CreateDeployment(ctx context.Context, name string) (Deployment, error)
	// RecordDeploySuccess saves the manifest of a successful deploy and the
	// config versions it used.
	RecordDeploySuccess(ctx context.Context, name, manifest string, configIDs []int64) error
	// SaveSharedLinks records the link data (JSON) of a deployment's shared
	// providers, for other deployments to consume; DeleteDeployment drops it.
	SaveSharedLinks(ctx context.Context, deployment, data string) error
	// DeleteDeployment removes a deployment and everything it owns
	// (instances, VMs, disks, IPs, variables).
	DeleteDeployment(ctx context.Context, name string) error

	SaveInstance(ctx context.Context, i Instance) error
	// SetInstanceState records a new desired state for an instance.
	SetInstanceState(ctx context.Context, deployment, uuid string, s InstanceState) error
	SetInstanceIgnore(ctx context.Context, deployment, uuid string, ignore bool) error
	DeleteInstance(ctx context.Context, deployment, uuid string) error

	SaveVM(ctx context.Context, vm VM) error
	DeleteVM(ctx context.Context, cid string) error

	SaveDisk(ctx context.Context, d Disk) error
	DeleteDisk(ctx context.Context, cid string) error
	// OrphanDisk moves a disk to the orphaned disks, keeping what it belonged to.
	OrphanDisk(ctx context.Context, cid string) error
	DeleteOrphanedDisk(ctx context.Context, cid string) error

	// ReserveIP takes ip on network; a taken address is an *IPConflictError.
	ReserveIP(ctx context.Context, r IPReservation) error
	ReleaseIP(ctx context.Context, network, ip string) error

	SaveStemcell(ctx context.Context, s Stemcell) error
	DeleteStemcell(ctx context.Context, name, version, cpi string) error
	SaveRelease(ctx context.Context, r Release) error
	DeleteRelease(ctx context.Context, name, version string) error
	SaveCompiledPackage(ctx context.Context, p CompiledPackage) error

	// PutVariable stores a new version of a variable (encrypted) and returns its ID.
	PutVariable(ctx context.Context, v Variable) (int64, error)

	// AppendEvents records events in one go and returns their IDs.
	AppendEvents(ctx context.Context, events ...Event) ([]int64, error)

	CreateTask(ctx context.Context, t Task) (int64, error)
	FinishTask(ctx context.Context, id int64, st TaskState, result, errMsg string) error
}

// Tx is a transaction: everything done through it commits together or not at all.
type Tx interface {
	Reader
	Writer
}

// Store is an environment's state. It is safe for concurrent use, and two
// kpaas processes may use the same store at once.
type Store interface {
	Reader
	Writer

	// Update runs fn in one transaction: all of its changes are recorded, or
	// (when fn or the commit fails, or the process dies) none.
	Update(ctx context.Context, fn func(tx Tx) error) error

	// Lock takes a named lock (see DeploymentLock, GlobalLock) or fails at once
	// with a *LockError. The lock is kept alive by a heartbeat until Release.
	Lock(ctx context.Context, req LockRequest) (*Lock, error)
	// Locks lists the locks held now (expired ones are left out).
	Locks(ctx context.Context) ([]LockInfo, error)
	// Unlock breaks a lock by name, whoever holds it. ErrNotFound if not held.
	Unlock(ctx context.Context, name string) error

	// Export dumps the whole store; secrets are redacted unless asked for.
	Export(ctx context.Context, opts ExportOptions) (*Dump, error)
	// Import loads a dump into an empty store.
	Import(ctx context.Context, d *Dump) error

	// Location says where the store is (path or URL without password).
	Location() string
	// SchemaVersion is the schema version of the open store.
	SchemaVersion() int
	Close() error
}

// Options configure opening a store.
type Options struct {
	// Key is the 32-byte secrets key. When nil, KPAAS_STATE_KEY is read, then
	// (SQLite only) the key file beside the store, created for a new store.
	Key []byte
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Version is the kpaas version recorded with migrations.
	Version string
	// User and Host name the operator in locks and events (taken from the
	// process when empty).
	User, Host string
	// PID names this process in locks (os.Getpid() when 0).
	PID int
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}
