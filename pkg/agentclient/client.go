package agentclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// Client talks to one VM's agent over the pool's connection to it.
type Client struct {
	pool *Pool
	t    Target
}

// Target is the VM this client talks to.
func (c *Client) Target() Target { return c.t }

// RPCError is a typed error the agent returned for a method.
type RPCError struct {
	VM      string
	Method  string
	Type    string // protocol.Err*
	Message string
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("agent of %s: %s: %s: %s", e.VM, e.Method, e.Type, e.Message)
}

// IsType reports whether err is an RPCError of type typ.
func IsType(err error, typ string) bool {
	var re *RPCError
	return errors.As(err, &re) && re.Type == typ
}

// session opens a channel on the pooled connection, redialling once when
// the pooled connection turns out to be dead.
func (c *Client) session(ctx context.Context) (*ssh.Session, *ssh.Client, error) {
	for attempt := 0; ; attempt++ {
		cl, err := c.pool.get(ctx, c.t)
		if err != nil {
			return nil, nil, err
		}
		s, err := cl.NewSession()
		if err == nil {
			return s, cl, nil
		}
		c.pool.forget(c.t, cl)
		if attempt > 0 {
			return nil, nil, fmt.Errorf("opening a channel to the agent of %s at %s: %w", c.t.Name, c.t.Address, err)
		}
	}
}

// run executes command with stdin, cancelling it when ctx ends. It returns
// the exit status (-1 if the session broke).
func (c *Client) run(ctx context.Context, command string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	s, cl, err := c.session(ctx)
	if err != nil {
		return -1, err
	}
	defer s.Close()
	if stdin == nil {
		stdin = bytes.NewReader(nil)
	}
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	err = s.Run(command)
	if ctx.Err() != nil {
		return -1, fmt.Errorf("agent of %s at %s: %s: %w", c.t.Name, c.t.Address, command, ctx.Err())
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus(), nil
	}
	if err != nil {
		var missing *ssh.ExitMissingError
		if errors.As(err, &missing) || errors.Is(err, io.EOF) {
			c.pool.forget(c.t, cl) // the connection went away under us
		}
		return -1, fmt.Errorf("agent of %s at %s: %s: %w", c.t.Name, c.t.Address, command, err)
	}
	return 0, nil
}

func (c *Client) decode(method string, out []byte, resp any) error {
	var r protocol.Response
	if err := json.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("agent of %s: %s: decoding the reply %q: %w", c.t.Name, method, truncate(string(out), 200), err)
	}
	if r.Exception != nil {
		return &RPCError{VM: c.t.Name, Method: method, Type: r.Exception.Type, Message: r.Exception.Message}
	}
	if resp != nil && len(r.Value) > 0 {
		if err := json.Unmarshal(r.Value, resp); err != nil {
			return fmt.Errorf("agent of %s: %s: decoding the value: %w", c.t.Name, method, err)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Call runs an RPC method: req is encoded as JSON on stdin, the value decoded into resp.
func (c *Client) Call(ctx context.Context, method string, req, resp any) error {
	ctx, cancel := withDefaultTimeout(ctx, method)
	defer cancel()
	var in []byte
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		in = b
	}
	var out, errOut bytes.Buffer
	code, err := c.run(ctx, "rpc "+method, bytes.NewReader(in), &out, &errOut)
	if err != nil {
		return err
	}
	if code != 0 && out.Len() == 0 {
		return fmt.Errorf("agent of %s: %s: exit status %d: %s", c.t.Name, method, code, strings.TrimSpace(errOut.String()))
	}
	return c.decode(method, out.Bytes(), resp)
}

// stream runs a streaming command, copying stdout to w; a failure is the
// typed error the agent wrote on stderr.
func (c *Client) stream(ctx context.Context, command, method string, req any, w io.Writer) error {
	ctx, cancel := withDefaultTimeout(ctx, method)
	defer cancel()
	var in []byte
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		in = b
	}
	var errOut bytes.Buffer
	code, err := c.run(ctx, command, bytes.NewReader(in), w, &errOut)
	if err != nil {
		return err
	}
	if code != 0 {
		var pe protocol.Error
		if json.Unmarshal(errOut.Bytes(), &pe) == nil && pe.Type != "" {
			return &RPCError{VM: c.t.Name, Method: method, Type: pe.Type, Message: pe.Message}
		}
		return fmt.Errorf("agent of %s: %s: exit status %d: %s", c.t.Name, method, code, strings.TrimSpace(errOut.String()))
	}
	return nil
}

// Ping checks the agent answers.
func (c *Client) Ping(ctx context.Context) error {
	var s string
	if err := c.Call(ctx, protocol.MethodPing, nil, &s); err != nil {
		return err
	}
	if s != "pong" {
		return fmt.Errorf("agent of %s: ping answered %q", c.t.Name, s)
	}
	return nil
}

// Info returns the agent's versions and identity.
func (c *Client) Info(ctx context.Context) (*protocol.InfoResponse, error) {
	var r protocol.InfoResponse
	return &r, c.Call(ctx, protocol.MethodInfo, nil, &r)
}

// GetState returns the instance state; full adds vitals.
func (c *Client) GetState(ctx context.Context, full bool) (*protocol.State, error) {
	var r protocol.State
	return &r, c.Call(ctx, protocol.MethodGetState, protocol.GetStateRequest{Full: full}, &r)
}

// Prepare checks blobs and unpacks packages ahead of apply.
func (c *Client) Prepare(ctx context.Context, spec protocol.ApplySpec) error {
	return c.Call(ctx, protocol.MethodPrepare, protocol.PrepareRequest{Spec: spec}, nil)
}

// Apply installs spec on the VM.
func (c *Client) Apply(ctx context.Context, spec protocol.ApplySpec) error {
	return c.Call(ctx, protocol.MethodApply, protocol.ApplyRequest{Spec: spec}, nil)
}

// Start starts the jobs' processes.
func (c *Client) Start(ctx context.Context) error { return c.Call(ctx, protocol.MethodStart, nil, nil) }

// Stop stops the jobs' processes.
func (c *Client) Stop(ctx context.Context) error { return c.Call(ctx, protocol.MethodStop, nil, nil) }

// Drain runs the jobs' drain scripts.
func (c *Client) Drain(ctx context.Context, req protocol.DrainRequest) (*protocol.DrainResponse, error) {
	var r protocol.DrainResponse
	return &r, c.Call(ctx, protocol.MethodDrain, req, &r)
}

// RunScript runs a lifecycle script of every job.
func (c *Client) RunScript(ctx context.Context, name string, env map[string]string) (*protocol.RunScriptResponse, error) {
	var r protocol.RunScriptResponse
	return &r, c.Call(ctx, protocol.MethodRunScript, protocol.RunScriptRequest{Name: name, Env: env}, &r)
}

// RunErrand runs an errand.
func (c *Client) RunErrand(ctx context.Context, req protocol.RunErrandRequest) (*protocol.RunErrandResponse, error) {
	var r protocol.RunErrandResponse
	return &r, c.Call(ctx, protocol.MethodRunErrand, req, &r)
}

// MountDisk formats (if new) and mounts a persistent disk.
func (c *Client) MountDisk(ctx context.Context, cid string) error {
	return c.Call(ctx, protocol.MethodMountDisk, protocol.DiskRequest{CID: cid}, nil)
}

// UnmountDisk unmounts a persistent disk.
func (c *Client) UnmountDisk(ctx context.Context, cid string) error {
	return c.Call(ctx, protocol.MethodUnmountDisk, protocol.DiskRequest{CID: cid}, nil)
}

// AddPersistentDisk tells the agent where disk cid is attached.
func (c *Client) AddPersistentDisk(ctx context.Context, cid string, hint any) error {
	return c.Call(ctx, protocol.MethodAddPersistentDisk, protocol.AddPersistentDiskRequest{CID: cid, Hint: hint}, nil)
}

// RemovePersistentDisk forgets disk cid.
func (c *Client) RemovePersistentDisk(ctx context.Context, cid string) error {
	return c.Call(ctx, protocol.MethodRemovePersistentDisk, protocol.DiskRequest{CID: cid}, nil)
}

// ListDisk lists mounted persistent disks.
func (c *Client) ListDisk(ctx context.Context) ([]string, error) {
	var r protocol.ListDiskResponse
	if err := c.Call(ctx, protocol.MethodListDisk, nil, &r); err != nil {
		return nil, err
	}
	return r.CIDs, nil
}

// CompilePackage compiles a package; fetch the result with GetBlob.
func (c *Client) CompilePackage(ctx context.Context, req protocol.CompilePackageRequest) (*protocol.CompilePackageResponse, error) {
	var r protocol.CompilePackageResponse
	return &r, c.Call(ctx, protocol.MethodCompilePackage, req, &r)
}

// UpdateSettings sends update_settings.
func (c *Client) UpdateSettings(ctx context.Context, req protocol.UpdateSettingsRequest) error {
	return c.Call(ctx, protocol.MethodUpdateSettings, req, nil)
}

// Shutdown stops the jobs and the agent (and powers the VM off).
func (c *Client) Shutdown(ctx context.Context) error {
	return c.Call(ctx, protocol.MethodShutdown, nil, nil)
}

// FetchLogs writes a tar.gz of the VM's /var/vcap/sys/log (of jobs, when given) to w.
func (c *Client) FetchLogs(ctx context.Context, jobs []string, w io.Writer) error {
	return c.stream(ctx, "rpc "+protocol.MethodFetchLogs, protocol.MethodFetchLogs, protocol.FetchLogsRequest{Jobs: jobs}, w)
}

// TailLogs writes "<file>: <line>" lines to w; with Follow it returns when ctx ends.
func (c *Client) TailLogs(ctx context.Context, req protocol.TailLogsRequest, w io.Writer) error {
	err := c.stream(ctx, "rpc "+protocol.MethodTailLogs, protocol.MethodTailLogs, req, w)
	if req.Follow && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// PutBlob streams size bytes of r to the agent as blob sha256; the agent
// keeps it only if the bytes match.
func (c *Client) PutBlob(ctx context.Context, sha256 string, size int64, r io.Reader) error {
	cmd := "blob put " + sha256
	if size >= 0 {
		cmd += " " + strconv.FormatInt(size, 10)
	}
	s, cl, err := c.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var out bytes.Buffer
	s.Stdout, s.Stderr = &out, io.Discard
	// Write straight into the channel from a large buffer (no pipe hop):
	// the channel cuts it into packets.
	w, err := s.StdinPipe()
	if err != nil {
		return err
	}
	if err := s.Start(cmd); err != nil {
		c.pool.forget(c.t, cl)
		return fmt.Errorf("agent of %s at %s: %s: %w", c.t.Name, c.t.Address, cmd, err)
	}
	_, copyErr := io.CopyBuffer(w, r, make([]byte, 256<<10))
	w.Close()
	err = s.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("agent of %s at %s: %s: %w", c.t.Name, c.t.Address, cmd, ctx.Err())
	}
	var ee *ssh.ExitError
	if err != nil && !errors.As(err, &ee) {
		return fmt.Errorf("agent of %s at %s: %s: %w", c.t.Name, c.t.Address, cmd, err)
	}
	if out.Len() == 0 {
		if copyErr != nil {
			return fmt.Errorf("agent of %s: %s: reading the blob: %w", c.t.Name, cmd, copyErr)
		}
		return fmt.Errorf("agent of %s: %s: no reply", c.t.Name, cmd)
	}
	return c.decode("blob put", out.Bytes(), nil)
}

// GetBlob copies blob sha256 from the agent to w.
func (c *Client) GetBlob(ctx context.Context, sha256 string, w io.Writer) error {
	return c.stream(ctx, "blob get "+sha256, "blob get", nil, w)
}

// HasBlobs returns which of digests the agent already holds.
func (c *Client) HasBlobs(ctx context.Context, digests []string) ([]string, error) {
	ctx, cancel := withDefaultTimeout(ctx, "blob has")
	defer cancel()
	var out bytes.Buffer
	b, _ := json.Marshal(protocol.BlobHasRequest{Digests: digests})
	if _, err := c.run(ctx, "blob has", bytes.NewReader(b), &out, io.Discard); err != nil {
		return nil, err
	}
	var r protocol.BlobHasResponse
	return r.Present, c.decode("blob has", out.Bytes(), &r)
}

// Exec runs a shell command on the VM and returns its exit status.
func (c *Client) Exec(ctx context.Context, command string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return c.run(ctx, command, stdin, stdout, stderr)
}

// WindowSize is a terminal size.
type WindowSize struct{ Width, Height int }

// ShellOptions describe an interactive session.
type ShellOptions struct {
	Command string // empty: a login shell
	Term    string // TERM; a PTY is requested when set
	Size    WindowSize
	Resize  <-chan WindowSize // window changes, forwarded while the session runs
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// Shell runs an interactive session with a PTY and returns its exit status.
func (c *Client) Shell(ctx context.Context, o ShellOptions) (int, error) {
	s, _, err := c.session(ctx)
	if err != nil {
		return -1, err
	}
	defer s.Close()
	if o.Term != "" {
		modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 14400, ssh.TTY_OP_OSPEED: 14400}
		if err := s.RequestPty(o.Term, o.Size.Height, o.Size.Width, modes); err != nil {
			return -1, fmt.Errorf("agent of %s: requesting a pty: %w", c.t.Name, err)
		}
	}
	s.Stdin, s.Stdout, s.Stderr = o.Stdin, o.Stdout, o.Stderr
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	if o.Command != "" {
		err = s.Start(o.Command)
	} else {
		err = s.Shell()
	}
	if err != nil {
		return -1, fmt.Errorf("agent of %s: starting the session: %w", c.t.Name, err)
	}
	done := make(chan struct{})
	defer close(done)
	if o.Resize != nil {
		go func() {
			for {
				select {
				case <-done:
					return
				case ws, ok := <-o.Resize:
					if !ok {
						return
					}
					s.WindowChange(ws.Height, ws.Width)
				}
			}
		}()
	}
	err = s.Wait()
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus(), nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, fmt.Errorf("agent of %s: %w", c.t.Name, err)
	}
	return 0, nil
}

// SFTP opens an SFTP session on the pooled connection (kpaas scp).
func (c *Client) SFTP(ctx context.Context) (*sftp.Client, error) {
	cl, err := c.pool.get(ctx, c.t)
	if err != nil {
		return nil, err
	}
	sc, err := sftp.NewClient(cl)
	if err != nil {
		return nil, fmt.Errorf("agent of %s: opening sftp: %w", c.t.Name, err)
	}
	return sc, nil
}

// Blob is a blob kpaas may need to send: its SHA-256, size and how to read it.
type Blob struct {
	SHA256 string
	Size   int64
	Open   func() (io.ReadCloser, error)
}

// EnsureBlobs sends the blobs the agent does not hold yet (one `blob has`,
// then a `blob put` per missing blob) and returns how many were sent.
func (c *Client) EnsureBlobs(ctx context.Context, blobs []Blob) (int, error) {
	ids := make([]string, len(blobs))
	for i, b := range blobs {
		ids[i] = b.SHA256
	}
	present, err := c.HasBlobs(ctx, ids)
	if err != nil {
		return 0, err
	}
	have := map[string]bool{}
	for _, p := range present {
		have[p] = true
	}
	sent := 0
	for _, b := range blobs {
		if have[b.SHA256] {
			continue
		}
		r, err := b.Open()
		if err != nil {
			return sent, fmt.Errorf("opening blob %s for %s: %w", b.SHA256, c.t.Name, err)
		}
		err = c.PutBlob(ctx, b.SHA256, b.Size, r)
		r.Close()
		if err != nil {
			return sent, err
		}
		have[b.SHA256] = true
		sent++
	}
	return sent, nil
}
