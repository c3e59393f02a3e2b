// Package external runs any BOSH CPI executable behind cpi.CPI: one process per
// call, one JSON request on its stdin, one JSON response on its stdout
// (rpc.Request/rpc.Response), the api_version negotiated through info, a
// timeout per call, and the CPI's log and stderr sent to the debug logger. It
// imports cpi and cpi/rpc, never a concrete driver.
package external

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/rpc"
)

// Runner runs one CPI process: stdin holds the request; the process writes
// its response to stdout and its debug log to stderr.
type Runner func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error

// Config says how to run the CPI.
type Config struct {
	// Command and Args start the CPI (BOSH's bin/cpi, or `kpaas cpi local --config F`).
	Command string
	Args    []string
	Env     []string // extra environment, KEY=VALUE
	Dir     string
	// Run replaces exec (for in-process tests); Command is then ignored.
	Run Runner
	// Timeout bounds each call (default 10 minutes; create_vm on a slow IaaS is long).
	Timeout time.Duration
	// DirectorUUID and Properties go into every request's context (multi-CPI
	// credentials are passed as Properties, as BOSH does).
	DirectorUUID string
	Properties   map[string]any
	// StemcellAPIVersion, when set, is sent as context.vm.stemcell.api_version.
	StemcellAPIVersion int
	// MaxAPIVersion caps the negotiated version (default rpc.MaxAPIVersion).
	MaxAPIVersion int
	Logger        *slog.Logger
}

// CPI is an external CPI.
type CPI struct {
	cfg  Config
	once sync.Once
	info cpi.Info
	ierr error
	api  int
}

// New returns a CPI that runs cfg's executable.
func New(cfg Config) *CPI {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.MaxAPIVersion == 0 {
		cfg.MaxAPIVersion = rpc.MaxAPIVersion
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Run == nil {
		cfg.Run = execRunner(cfg)
	}
	return &CPI{cfg: cfg}
}

func execRunner(cfg Config) Runner {
	return func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
		cmd := exec.CommandContext(ctx, cfg.Command, cfg.Args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
		cmd.Dir = cfg.Dir
		if len(cfg.Env) > 0 {
			cmd.Env = append(cmd.Environ(), cfg.Env...)
		}
		cmd.WaitDelay = 5 * time.Second
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ctx.Err() == nil {
			return nil // BOSH ignores the exit code; the response says what happened
		}
		return err
	}
}

// APIVersion negotiates (once) and returns the api_version used for calls:
// min(kpaas's, the CPI's info.api_version); a CPI whose info has none is v1.
func (c *CPI) APIVersion(ctx context.Context) (int, error) {
	c.once.Do(func() {
		var raw json.RawMessage
		raw, c.ierr = c.call(ctx, "info", nil, c.cfg.MaxAPIVersion)
		if c.ierr != nil {
			return
		}
		if err := json.Unmarshal(raw, &c.info); err != nil {
			c.ierr = &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("parsing info result %s: %v", raw, err)}
			return
		}
		c.api = min(max(c.info.APIVersion, 1), c.cfg.MaxAPIVersion)
		if c.info.Capabilities == nil && !bytes.Contains(raw, []byte(`"kpaas_capabilities"`)) {
			// A BOSH CPI declares nothing: assume everything and let calls say NotSupported.
			c.info.Capabilities = append([]cpi.Capability(nil), cpi.AllCapabilities...)
		}
	})
	return c.api, c.ierr
}

func newRequestID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "cpi-" + hex.EncodeToString(b)
}

// call runs method with args at api version v and returns the raw result.
func (c *CPI) call(ctx context.Context, method string, args []any, v int) (json.RawMessage, error) {
	if args == nil {
		args = []any{}
	}
	reqCtx := map[string]any{}
	for k, val := range c.cfg.Properties {
		reqCtx[k] = val
	}
	reqCtx["director_uuid"] = c.cfg.DirectorUUID
	reqCtx["request_id"] = newRequestID()
	if c.cfg.StemcellAPIVersion > 0 {
		reqCtx["vm"] = map[string]any{"stemcell": map[string]any{"api_version": c.cfg.StemcellAPIVersion}}
	}
	req := map[string]any{"method": method, "arguments": args, "context": reqCtx, "api_version": v}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("encoding %s request: %v", method, err)}
	}
	log := c.cfg.Logger.With("cpi_method", method, "request_id", reqCtx["request_id"])
	log.Debug("cpi request", "body", redact(body))

	cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	runErr := c.cfg.Run(cctx, bytes.NewReader(body), &stdout, &stderr)
	for _, line := range strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n") {
		if line != "" {
			log.Debug("cpi stderr", "line", line)
		}
	}
	if cctx.Err() != nil && ctx.Err() == nil {
		return nil, &cpi.Error{Type: cpi.TypeCloudError, OkToRetry: true, Err: cctx.Err(),
			Message: fmt.Sprintf("CPI call %s timed out after %s (%s)", method, c.cfg.Timeout, c.cfg.Command)}
	}
	if ctx.Err() != nil {
		return nil, &cpi.Error{Type: cpi.TypeCloudError, Err: ctx.Err(), Message: fmt.Sprintf("CPI call %s: %v", method, ctx.Err())}
	}
	if runErr != nil {
		return nil, &cpi.Error{Type: cpi.TypeCpiError, Err: runErr,
			Message: fmt.Sprintf("running CPI %s for %s: %v; stderr: %s", c.cfg.Command, method, runErr, tail(stderr.String()))}
	}
	var resp rpc.RawResponse
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return nil, &cpi.Error{Type: cpi.TypeCpiError,
			Message: fmt.Sprintf("CPI %s gave no JSON response for %s: %v; stdout: %q; stderr: %s", c.cfg.Command, method, err, tail(stdout.String()), tail(stderr.String()))}
	}
	if resp.Log != "" {
		for _, line := range strings.Split(strings.TrimRight(resp.Log, "\n"), "\n") {
			log.Debug("cpi log", "line", line)
		}
	}
	log.Debug("cpi response", "elapsed", time.Since(start), "error", resp.Error != nil)
	if resp.Error != nil {
		e := *resp.Error
		if !cpi.KnownType(e.Type) {
			e.Message = fmt.Sprintf("%s (unknown CPI error type %s)", e.Message, e.Type)
			e.Type = cpi.TypeUnknownError
			return nil, &e
		}
		return nil, &e
	}
	return resp.Result, nil
}

// redact hides secrets (passwords, keys, tokens, credentials in the context)
// from a request before it is logged.
func redact(b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "<unparsable request>"
	}
	out, _ := json.Marshal(redactValue(v))
	if len(out) > 4096 {
		return string(out[:4096]) + "..."
	}
	return string(out)
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			if secretKey(k) {
				m[k] = "<redacted>"
			} else {
				m[k] = redactValue(val)
			}
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = redactValue(val)
		}
		return out
	}
	return v
}

func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"password", "secret", "private_key", "host_key", "token", "api_key", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		return "..." + s[len(s)-2000:]
	}
	return s
}

// invoke negotiates the version then calls method and decodes the result into out.
func (c *CPI) invoke(ctx context.Context, method string, out any, args ...any) (int, error) {
	v, err := c.APIVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("asking the CPI for info: %w", err)
	}
	raw, err := c.call(ctx, method, args, v)
	if err != nil {
		return v, err
	}
	if out != nil && len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, out); err != nil {
			return v, &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("parsing %s result %s: %v", method, raw, err)}
		}
	}
	return v, nil
}

// Info implements cpi.CPI.
func (c *CPI) Info(ctx context.Context) (cpi.Info, error) {
	if _, err := c.APIVersion(ctx); err != nil {
		return cpi.Info{}, err
	}
	info := c.info
	info.APIVersion = c.api
	return info, nil
}

// CreateStemcell implements cpi.CPI.
func (c *CPI) CreateStemcell(ctx context.Context, imagePath string, props cpi.Props) (cpi.StemcellCID, error) {
	var cid cpi.StemcellCID
	_, err := c.invoke(ctx, "create_stemcell", &cid, imagePath, orEmpty(props))
	return cid, err
}

// DeleteStemcell implements cpi.CPI.
func (c *CPI) DeleteStemcell(ctx context.Context, cid cpi.StemcellCID) error {
	_, err := c.invoke(ctx, "delete_stemcell", nil, cid)
	return err
}

// CreateVM implements cpi.CPI. At api_version 1 the networks returned are the
// requested ones.
func (c *CPI) CreateVM(ctx context.Context, agentID cpi.AgentID, stemcell cpi.StemcellCID, props cpi.Props, networks cpi.Networks, diskCIDs []cpi.DiskCID, env cpi.Env) (cpi.VMCID, cpi.Networks, error) {
	var raw json.RawMessage
	if diskCIDs == nil {
		diskCIDs = []cpi.DiskCID{}
	}
	if networks == nil {
		networks = cpi.Networks{}
	}
	v, err := c.invoke(ctx, "create_vm", &raw, agentID, stemcell, orEmpty(props), networks, diskCIDs, orEmptyEnv(env))
	if err != nil {
		return "", nil, err
	}
	if v < 2 {
		var cid cpi.VMCID
		if err := json.Unmarshal(raw, &cid); err != nil {
			return "", nil, &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("parsing v1 create_vm result %s: %v", raw, err)}
		}
		return cid, networks, nil
	}
	var pair []json.RawMessage
	var cid cpi.VMCID
	got := cpi.Networks{}
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) < 1 {
		// Some v2 CPIs still answer a bare CID.
		if err2 := json.Unmarshal(raw, &cid); err2 == nil {
			return cid, networks, nil
		}
		return "", nil, &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("parsing v2 create_vm result %s: want [vm_cid, networks]", raw)}
	}
	if err := json.Unmarshal(pair[0], &cid); err != nil {
		return "", nil, &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("parsing create_vm vm_cid %s: %v", pair[0], err)}
	}
	if len(pair) > 1 && string(pair[1]) != "null" {
		if err := json.Unmarshal(pair[1], &got); err != nil {
			return "", nil, &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("parsing create_vm networks %s: %v", pair[1], err)}
		}
	}
	if len(got) == 0 {
		got = networks
	}
	return cid, got, nil
}

// DeleteVM implements cpi.CPI.
func (c *CPI) DeleteVM(ctx context.Context, cid cpi.VMCID) error {
	_, err := c.invoke(ctx, "delete_vm", nil, cid)
	return err
}

// HasVM implements cpi.CPI.
func (c *CPI) HasVM(ctx context.Context, cid cpi.VMCID) (bool, error) {
	var ok bool
	_, err := c.invoke(ctx, "has_vm", &ok, cid)
	return ok, err
}

// RebootVM implements cpi.CPI.
func (c *CPI) RebootVM(ctx context.Context, cid cpi.VMCID) error {
	_, err := c.invoke(ctx, "reboot_vm", nil, cid)
	return err
}

// SetVMMetadata implements cpi.CPI.
func (c *CPI) SetVMMetadata(ctx context.Context, cid cpi.VMCID, md cpi.Metadata) error {
	_, err := c.invoke(ctx, "set_vm_metadata", nil, cid, orEmptyMD(md))
	return err
}

// CreateDisk implements cpi.CPI.
func (c *CPI) CreateDisk(ctx context.Context, sizeMiB int, props cpi.Props, vm cpi.VMCID) (cpi.DiskCID, error) {
	var cid cpi.DiskCID
	var hint any
	if vm != "" {
		hint = vm
	}
	_, err := c.invoke(ctx, "create_disk", &cid, sizeMiB, orEmpty(props), hint)
	return cid, err
}

// DeleteDisk implements cpi.CPI.
func (c *CPI) DeleteDisk(ctx context.Context, cid cpi.DiskCID) error {
	_, err := c.invoke(ctx, "delete_disk", nil, cid)
	return err
}

// AttachDisk implements cpi.CPI. At api_version 1 the hint is empty.
func (c *CPI) AttachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) (cpi.DiskHint, error) {
	var hint cpi.DiskHint
	v, err := c.invoke(ctx, "attach_disk", &hint, vm, disk)
	if v < 2 {
		hint = cpi.DiskHint{}
	}
	return hint, err
}

// DetachDisk implements cpi.CPI.
func (c *CPI) DetachDisk(ctx context.Context, vm cpi.VMCID, disk cpi.DiskCID) error {
	_, err := c.invoke(ctx, "detach_disk", nil, vm, disk)
	return err
}

// HasDisk implements cpi.CPI.
func (c *CPI) HasDisk(ctx context.Context, cid cpi.DiskCID) (bool, error) {
	var ok bool
	_, err := c.invoke(ctx, "has_disk", &ok, cid)
	return ok, err
}

// GetDisks implements cpi.CPI.
func (c *CPI) GetDisks(ctx context.Context, vm cpi.VMCID) ([]cpi.DiskCID, error) {
	out := []cpi.DiskCID{}
	_, err := c.invoke(ctx, "get_disks", &out, vm)
	return out, err
}

// SetDiskMetadata implements cpi.CPI.
func (c *CPI) SetDiskMetadata(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) error {
	_, err := c.invoke(ctx, "set_disk_metadata", nil, cid, orEmptyMD(md))
	return err
}

// ResizeDisk implements cpi.CPI.
func (c *CPI) ResizeDisk(ctx context.Context, cid cpi.DiskCID, newSizeMiB int) error {
	_, err := c.invoke(ctx, "resize_disk", nil, cid, newSizeMiB)
	return err
}

// SnapshotDisk implements cpi.CPI.
func (c *CPI) SnapshotDisk(ctx context.Context, cid cpi.DiskCID, md cpi.Metadata) (cpi.SnapshotCID, error) {
	var sid cpi.SnapshotCID
	_, err := c.invoke(ctx, "snapshot_disk", &sid, cid, orEmptyMD(md))
	return sid, err
}

// DeleteSnapshot implements cpi.CPI.
func (c *CPI) DeleteSnapshot(ctx context.Context, cid cpi.SnapshotCID) error {
	_, err := c.invoke(ctx, "delete_snapshot", nil, cid)
	return err
}

func orEmpty(p cpi.Props) cpi.Props {
	if p == nil {
		return cpi.Props{}
	}
	return p
}

func orEmptyEnv(e cpi.Env) cpi.Env {
	if e == nil {
		return cpi.Env{}
	}
	return e
}

func orEmptyMD(m cpi.Metadata) cpi.Metadata {
	if m == nil {
		return cpi.Metadata{}
	}
	return m
}

var _ cpi.CPI = (*CPI)(nil)
