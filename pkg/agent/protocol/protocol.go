// Package protocol is the wire contract between kpaas and kpaas-agent: the
// SSH exec commands, the JSON request and response bodies of every RPC method
// and the typed errors. Both pkg/agent (server) and pkg/agentclient (client)
// import it; it imports nothing but the standard library.
//
// Transport (SSH, default port 6868):
//
//	exec "rpc METHOD"       JSON request on stdin, Response JSON on stdout
//	                        (streaming methods fetch_logs and tail_logs write
//	                        the raw stream on stdout instead and report errors
//	                        as exit status 1 with an Error JSON on stderr)
//	exec "blob put SHA256"  the blob's bytes on stdin; kept only if their SHA-256 matches
//	exec "blob get SHA256"  the blob's bytes on stdout
//	exec "blob has"         {"digests":[...]} on stdin; Response{"value":{"present":[...]}}
//	exec anything else      run by /bin/sh -c (kpaas ssh -c)
//	shell / pty-req         interactive sessions; subsystem "sftp" for kpaas scp
package protocol

import (
	"encoding/json"
	"fmt"
)

// Method names.
const (
	MethodPing                 = "ping"
	MethodInfo                 = "info"
	MethodGetState             = "get_state"
	MethodPrepare              = "prepare"
	MethodApply                = "apply"
	MethodStart                = "start"
	MethodStop                 = "stop"
	MethodDrain                = "drain"
	MethodRunScript            = "run_script"
	MethodRunErrand            = "run_errand"
	MethodFetchLogs            = "fetch_logs"
	MethodTailLogs             = "tail_logs"
	MethodMountDisk            = "mount_disk"
	MethodUnmountDisk          = "unmount_disk"
	MethodAddPersistentDisk    = "add_persistent_disk"
	MethodRemovePersistentDisk = "remove_persistent_disk"
	MethodListDisk             = "list_disk"
	MethodCompilePackage       = "compile_package"
	MethodUpdateSettings       = "update_settings"
	MethodShutdown             = "shutdown"
)

// Streaming reports whether a method writes a raw stream on stdout instead of a Response.
func Streaming(method string) bool {
	return method == MethodFetchLogs || method == MethodTailLogs
}

// APIVersion is the protocol version the agent reports in info.
const APIVersion = 1

// Error types: the "type" field of an Error.
const (
	ErrInvalidRequest = "InvalidRequest" // the request could not be decoded or is incomplete
	ErrUnknownMethod  = "UnknownMethod"
	ErrNotFound       = "NotFound"       // a blob, job, script or disk that does not exist
	ErrBlobMissing    = "BlobMissing"    // apply/prepare/compile need a blob the agent does not hold
	ErrDigestMismatch = "DigestMismatch" // an uploaded blob's bytes do not match its digest
	ErrTimeout        = "Timeout"        // a script or stop exceeded its timeout
	ErrScriptFailed   = "ScriptFailed"   // a lifecycle script exited non-zero
	ErrCompileFailed  = "CompileFailed"
	ErrDisk           = "DiskError"
	ErrNotSupported   = "NotSupported" // needs root or a real device, or is not implemented here
	ErrBusy           = "Busy"         // another lifecycle operation is in progress
	ErrInternal       = "InternalError"
)

// Error is a typed agent error.
type Error struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(typ, format string, args ...any) *Error {
	return &Error{Type: typ, Message: fmt.Sprintf(format, args...)}
}

// Response is the envelope of every non-streaming reply, as BOSH's
// ({"value": ...} or {"exception": {...}}), with a typed exception.
type Response struct {
	Value     json.RawMessage `json:"value,omitempty"`
	Exception *Error          `json:"exception,omitempty"`
}

// BlobHasRequest is the stdin of `blob has`.
type BlobHasRequest struct {
	Digests []string `json:"digests"`
}

// BlobHasResponse lists the digests (of those asked) the agent already holds.
type BlobHasResponse struct {
	Present []string `json:"present"`
}

// BlobPutResponse is the value of a successful `blob put`.
type BlobPutResponse struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Empty is the request or value of methods that take or return nothing.
type Empty struct{}

// InfoResponse is the value of info.
type InfoResponse struct {
	APIVersion   int    `json:"api_version"`
	AgentVersion string `json:"agent_version"`
	AgentID      string `json:"agent_id"`
	VMName       string `json:"vm_name"`
	Root         string `json:"root"`
}

// BlobRef names a blob as the apply spec does: blobstore_id is the agent blob
// id (the SHA-256 hex of its bytes) and sha1 is a BOSH digest string
// ("sha256:hex", a bare SHA-1, or several joined by ';').
type BlobRef struct {
	Name        string `json:"name,omitempty"`
	Version     string `json:"version,omitempty"`
	SHA1        string `json:"sha1"`
	BlobstoreID string `json:"blobstore_id"`
}

// JobTemplate is one job of the instance (apply spec job.templates[]).
// Timeouts is a kpaas extension: per-script timeouts in seconds for this job
// ("pre-start", "drain", ..., "stop" for process shutdown).
type JobTemplate struct {
	Name        string         `json:"name"`
	Version     string         `json:"version"`
	SHA1        string         `json:"sha1,omitempty"`
	BlobstoreID string         `json:"blobstore_id,omitempty"`
	Timeouts    map[string]int `json:"timeouts,omitempty"`
}

// Job is the apply spec's job block.
type Job struct {
	Name      string        `json:"name,omitempty"`
	Template  string        `json:"template,omitempty"`
	Version   string        `json:"version,omitempty"`
	Templates []JobTemplate `json:"templates,omitempty"`
}

// ApplySpec is the apply spec (bosh-formats.md section 7), BOSH field names.
type ApplySpec struct {
	Deployment               string                     `json:"deployment"`
	Name                     string                     `json:"name"`
	Index                    *int                       `json:"index"`
	ID                       string                     `json:"id"`
	AZ                       string                     `json:"az,omitempty"`
	Job                      Job                        `json:"job"`
	Networks                 map[string]json.RawMessage `json:"networks,omitempty"`
	Packages                 map[string]BlobRef         `json:"packages"`
	RenderedTemplatesArchive *BlobRef                   `json:"rendered_templates_archive,omitempty"`
	ConfigurationHash        string                     `json:"configuration_hash,omitempty"`
	TemplateHashes           map[string]string          `json:"template_hashes,omitempty"`
	PersistentDisk           int                        `json:"persistent_disk"`
	DNSDomainName            string                     `json:"dns_domain_name,omitempty"`
	Properties               map[string]any             `json:"properties,omitempty"`
}

// Job state roll-up values (BOSH's).
const (
	JobRunning  = "running"
	JobStarting = "starting"
	JobFailing  = "failing"
	JobStopped  = "stopped"
	JobUnknown  = "unknown"
)

// GetStateRequest asks for vitals too when Full.
type GetStateRequest struct {
	Full bool `json:"full,omitempty"`
}

// Uptime, CPU and Mem are a process's figures, as BOSH reports them.
type Uptime struct {
	Secs int64 `json:"secs"`
}
type CPU struct {
	Total float64 `json:"total"`
}
type Mem struct {
	KB      int64   `json:"kb"`
	Percent float64 `json:"percent"`
}

// Process is one supervised process in get_state.
type Process struct {
	Name     string `json:"name"`
	Job      string `json:"job"`
	State    string `json:"state"` // running, starting, failing, stopped
	PID      int    `json:"pid,omitempty"`
	Restarts int    `json:"restarts"`
	Reloads  int    `json:"reloads,omitempty"` // in-place reloads (bpm.yml reload signal) since it started
	Uptime   Uptime `json:"uptime"`
	CPU      CPU    `json:"cpu"`
	Mem      Mem    `json:"mem"`
	Error    string `json:"error,omitempty"`
}

// Vitals are the VM's figures; strings as BOSH's agent sends them.
type Vitals struct {
	Load   []string              `json:"load"`
	CPU    VitalsCPU             `json:"cpu"`
	Mem    VitalsMem             `json:"mem"`
	Swap   VitalsMem             `json:"swap"`
	Disk   map[string]VitalsDisk `json:"disk"`
	Uptime Uptime                `json:"uptime"`
}
type VitalsCPU struct {
	Sys  string `json:"sys"`
	User string `json:"user"`
	Wait string `json:"wait"`
}
type VitalsMem struct {
	KB      string `json:"kb"`
	Percent string `json:"percent"`
}
type VitalsDisk struct {
	Percent      string `json:"percent"`
	InodePercent string `json:"inode_percent"`
}

// State is the value of get_state: the applied spec plus the agent's view.
type State struct {
	ApplySpec
	AgentID   string    `json:"agent_id"`
	VM        VMRef     `json:"vm"`
	JobState  string    `json:"job_state"`
	Processes []Process `json:"processes"`
	Vitals    *Vitals   `json:"vitals,omitempty"`
}

// VMRef names the VM.
type VMRef struct {
	Name string `json:"name"`
}

// PrepareRequest / ApplyRequest carry an apply spec.
type PrepareRequest struct {
	Spec ApplySpec `json:"spec"`
}
type ApplyRequest struct {
	Spec ApplySpec `json:"spec"`
}

// DrainRequest: type is update, shutdown or status; spec is the new apply
// spec for update. Env values become BOSH_JOB_STATE / BOSH_JOB_NEXT_STATE.
type DrainRequest struct {
	Type      string     `json:"type"`
	Spec      *ApplySpec `json:"spec,omitempty"`
	JobState  string     `json:"job_state,omitempty"`
	NextState string     `json:"job_next_state,omitempty"`
}

// Drain types.
const (
	DrainUpdate   = "update"
	DrainShutdown = "shutdown"
	DrainStatus   = "status"
)

// ScriptResult is one job's run of a script.
type ScriptResult struct {
	Job      string  `json:"job"`
	Script   string  `json:"script"`
	ExitCode int     `json:"exit_code"`
	Seconds  float64 `json:"seconds"`
	Error    string  `json:"error,omitempty"`
	Skipped  bool    `json:"skipped,omitempty"` // the job has no such script
}

// DrainResponse reports what each job's drain did.
type DrainResponse struct {
	Results []ScriptResult `json:"results"`
}

// RunScriptRequest runs a lifecycle script (pre-start, post-start,
// post-deploy, pre-stop, post-stop) of every job, in parallel.
type RunScriptRequest struct {
	Name string            `json:"name"`
	Env  map[string]string `json:"env,omitempty"`
}

// RunScriptResponse reports every job's result.
type RunScriptResponse struct {
	Results []ScriptResult `json:"results"`
}

// RunErrandRequest runs bin/run of Job (default: the only job).
type RunErrandRequest struct {
	Job string            `json:"job,omitempty"`
	Env map[string]string `json:"env,omitempty"`
}

// RunErrandResponse is BOSH's errand result.
type RunErrandResponse struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"`
}

// FetchLogsRequest selects logs: Jobs empty = all of /var/vcap/sys/log.
type FetchLogsRequest struct {
	Jobs []string `json:"jobs,omitempty"`
}

// TailLogsRequest: the last Num lines of each log file (of Jobs, or all),
// then new lines as they come when Follow. Each line is written as
// "<path relative to sys/log>: <line>".
type TailLogsRequest struct {
	Jobs   []string `json:"jobs,omitempty"`
	Num    int      `json:"num,omitempty"`
	Follow bool     `json:"follow,omitempty"`
}

// DiskRequest names a persistent disk by CID.
type DiskRequest struct {
	CID string `json:"cid"`
}

// AddPersistentDiskRequest records where disk CID is attached.
// Hint is a device path string or a map ({path, id, volume_id, lun}).
type AddPersistentDiskRequest struct {
	CID  string `json:"cid"`
	Hint any    `json:"hint"`
}

// ListDiskResponse lists the persistent disks mounted on the VM.
type ListDiskResponse struct {
	CIDs []string `json:"cids"`
}

// CompilePackageRequest is BOSH's compile_package (bosh-formats.md section 3).
type CompilePackageRequest struct {
	BlobstoreID string             `json:"blobstore_id"`
	SHA1        string             `json:"sha1"`
	Name        string             `json:"name"`
	Version     string             `json:"version"`
	Deps        map[string]BlobRef `json:"deps,omitempty"`
}

// CompilePackageResponse names the compiled package blob, kept in the
// agent's blob store; fetch it with `blob get`.
type CompilePackageResponse struct {
	BlobstoreID string `json:"blobstore_id"`
	SHA1        string `json:"sha1"`
	Size        int64  `json:"size"`
}

// DiskAssociation names a disk for the agent.
type DiskAssociation struct {
	Name string `json:"name"`
	CID  string `json:"cid"`
}

// UpdateSettingsRequest is BOSH's update_settings, plus kpaas's authorized keys.
type UpdateSettingsRequest struct {
	TrustedCerts     string            `json:"trusted_certs,omitempty"`
	DiskAssociations []DiskAssociation `json:"disk_associations,omitempty"`
	AuthorizedKeys   []string          `json:"authorized_keys,omitempty"`
}
