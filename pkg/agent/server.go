package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// ServerConfig builds the SSH server configuration: the host key from
// env.kpaas.host_key, and only the public keys of env.kpaas.authorized_keys
// accepted (read at each login, so update_settings takes effect at once).
func (a *Agent) ServerConfig() (*ssh.ServerConfig, error) {
	a.mu.Lock()
	hostPEM := a.settings.Env.Kpaas.HostKey
	a.mu.Unlock()
	if hostPEM == "" {
		return nil, errors.New("settings have no env.kpaas.host_key: the agent has no SSH host key to present")
	}
	signer, err := ssh.ParsePrivateKey([]byte(hostPEM))
	if err != nil {
		return nil, fmt.Errorf("parsing env.kpaas.host_key: %w", err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			a.mu.Lock()
			keys := a.settings.Env.Kpaas.AuthorizedKeys
			a.mu.Unlock()
			want := key.Marshal()
			for _, line := range keys {
				k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
				if err == nil && bytes.Equal(k.Marshal(), want) {
					return &ssh.Permissions{Extensions: map[string]string{"fp": ssh.FingerprintSHA256(key)}}, nil
				}
			}
			a.log.Warn("rejected SSH key", "user", c.User(), "remote", c.RemoteAddr().String(), "key", ssh.FingerprintSHA256(key))
			return nil, fmt.Errorf("key %s is not authorized", ssh.FingerprintSHA256(key))
		},
		ServerVersion: "SSH-2.0-kpaas-agent",
	}
	cfg.AddHostKey(signer)
	return cfg, nil
}

// ListenAddress is the settings' listen address (default ":6868").
func (a *Agent) ListenAddress() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l := a.settings.Env.Kpaas.Listen; l != "" {
		return l
	}
	return ":" + strconv.Itoa(6868)
}

// Serve accepts SSH connections on ln until ctx ends.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	cfg, err := a.ServerConfig()
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go a.serveConn(ctx, conn, cfg)
	}
}

func (a *Agent) serveConn(ctx context.Context, conn net.Conn, cfg *ssh.ServerConfig) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	// A peer that connects and never completes the handshake must not hold
	// a connection forever.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	conn.SetDeadline(time.Time{})
	if err != nil {
		a.log.Debug("ssh handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs) // keepalive@openssh.com gets its (negative) reply
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels are served")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go a.serveSession(ctx, ch, creqs)
	}
}

type ptyReq struct {
	Term          string
	Columns, Rows uint32
	Width, Height uint32
	Modes         string
}

type winChange struct {
	Columns, Rows uint32
	Width, Height uint32
}

// session is one SSH session channel.
type session struct {
	a      *Agent
	ch     ssh.Channel
	env    []string
	pty    *ptyReq
	ptmx   *os.File
	mu     sync.Mutex
	proc   *os.Process
	cancel context.CancelFunc
}

func (a *Agent) serveSession(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request) {
	a.sessions.Add(1)
	defer a.sessions.Add(-1)
	ctx, cancel := context.WithCancel(ctx)
	s := &session{a: a, ch: ch, cancel: cancel}
	defer cancel()
	started := false
	for req := range reqs {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil {
				s.env = append(s.env, kv.Name+"="+kv.Value)
			}
			req.Reply(true, nil)
		case "pty-req":
			var p ptyReq
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				req.Reply(false, nil)
				continue
			}
			s.pty = &p
			req.Reply(true, nil)
		case "window-change":
			var w winChange
			if ssh.Unmarshal(req.Payload, &w) == nil {
				s.mu.Lock()
				if s.ptmx != nil {
					pty.Setsize(s.ptmx, &pty.Winsize{Cols: uint16(w.Columns), Rows: uint16(w.Rows)})
				} else if s.pty != nil {
					s.pty.Columns, s.pty.Rows = w.Columns, w.Rows
				}
				s.mu.Unlock()
			}
			if req.WantReply {
				req.Reply(true, nil)
			}
		case "signal":
			var sig struct{ Name string }
			if ssh.Unmarshal(req.Payload, &sig) == nil {
				s.signal(sig.Name)
			}
		case "exec", "shell", "subsystem":
			if started {
				req.Reply(false, nil)
				continue
			}
			var cmd string
			if req.Type != "shell" {
				var p struct{ Value string }
				if err := ssh.Unmarshal(req.Payload, &p); err != nil {
					req.Reply(false, nil)
					continue
				}
				cmd = p.Value
			}
			if req.Type == "subsystem" && cmd != "sftp" {
				req.Reply(false, nil)
				continue
			}
			started = true
			req.Reply(true, nil)
			go s.run(ctx, req.Type, cmd)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	// The client closed the channel: cancel what runs for it.
}

func (s *session) exit(code int) {
	s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
	s.ch.Close()
}

func (s *session) run(ctx context.Context, kind, command string) {
	switch {
	case kind == "subsystem":
		srv, err := sftp.NewServer(s.ch)
		if err != nil {
			s.exit(1)
			return
		}
		err = srv.Serve()
		srv.Close()
		if err != nil && err != io.EOF {
			s.exit(1)
			return
		}
		s.exit(0)
	case kind == "exec" && strings.HasPrefix(command, "rpc "):
		s.exit(s.rpc(ctx, strings.TrimSpace(strings.TrimPrefix(command, "rpc "))))
	case kind == "exec" && strings.HasPrefix(command, "blob "):
		s.exit(s.blob(ctx, strings.Fields(command)[1:]))
	default:
		s.exit(s.command(ctx, kind, command))
	}
}

// respond writes a Response.
func (s *session) respond(v any, err error) int {
	var resp protocol.Response
	if err != nil {
		resp.Exception = toProtocolError(err)
	} else {
		b, merr := json.Marshal(v)
		if merr != nil {
			resp.Exception = toProtocolError(merr)
		} else {
			resp.Value = b
		}
	}
	b, _ := json.Marshal(resp)
	s.ch.Write(append(b, '\n'))
	return 0
}

// streamError reports a streaming method's failure on stderr with exit status 1.
func (s *session) streamError(err error) int {
	b, _ := json.Marshal(toProtocolError(err))
	s.ch.Stderr().Write(append(b, '\n'))
	return 1
}

func (s *session) readRequest() ([]byte, error) {
	dec := json.NewDecoder(io.LimitReader(s.ch, 64<<20))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, protocol.Errorf(protocol.ErrInvalidRequest, "reading the JSON request on stdin: %v", err)
	}
	return raw, nil
}

func (s *session) rpc(ctx context.Context, method string) int {
	body, err := s.readRequest()
	if protocol.Streaming(method) {
		if err != nil {
			return s.streamError(err)
		}
		switch method {
		case protocol.MethodFetchLogs:
			req, err := decode[protocol.FetchLogsRequest](body)
			if err == nil {
				err = s.a.FetchLogs(ctx, req, s.ch)
			}
			if err != nil {
				return s.streamError(err)
			}
		case protocol.MethodTailLogs:
			req, err := decode[protocol.TailLogsRequest](body)
			if err == nil {
				err = s.a.TailLogs(ctx, req, s.ch)
			}
			if err != nil {
				return s.streamError(err)
			}
		}
		return 0
	}
	if err != nil {
		return s.respond(nil, err)
	}
	v, err := s.a.Call(ctx, method, body)
	if err != nil {
		s.a.log.Warn("rpc failed", "method", method, "err", err)
	}
	return s.respond(v, err)
}

func (s *session) blob(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return s.respond(nil, protocol.Errorf(protocol.ErrInvalidRequest, "blob: use `blob put SHA256 [SIZE]`, `blob get SHA256` or `blob has`"))
	}
	switch args[0] {
	case "put":
		if len(args) < 2 {
			return s.respond(nil, protocol.Errorf(protocol.ErrInvalidRequest, "blob put: missing SHA256"))
		}
		id := strings.ToLower(args[1])
		var r io.Reader = s.ch
		want := int64(-1)
		if len(args) > 2 {
			n, err := strconv.ParseInt(args[2], 10, 64)
			if err != nil {
				return s.respond(nil, protocol.Errorf(protocol.ErrInvalidRequest, "blob put: size %q is not a number", args[2]))
			}
			want = n
			r = io.LimitReader(s.ch, n+1)
		}
		n, err := s.a.blobs.Put(id, r)
		var pe *protocol.Error
		if err != nil && want >= 0 && n != want && errors.As(err, &pe) && pe.Type == protocol.ErrDigestMismatch {
			err = protocol.Errorf(protocol.ErrDigestMismatch, "blob %s: upload truncated: received %d of %d bytes; the blob was not kept", id, n, want)
		}
		if err != nil {
			io.Copy(io.Discard, s.ch)
			return s.respond(nil, err)
		}
		return s.respond(protocol.BlobPutResponse{SHA256: id, Size: n}, nil)
	case "get":
		if len(args) < 2 {
			return s.streamError(protocol.Errorf(protocol.ErrInvalidRequest, "blob get: missing SHA256"))
		}
		f, err := s.a.blobs.Open(strings.ToLower(args[1]))
		if err != nil {
			return s.streamError(err)
		}
		defer f.Close()
		if _, err := io.CopyBuffer(s.ch, f, make([]byte, 256<<10)); err != nil {
			return 1
		}
		return 0
	case "has":
		body, err := s.readRequest()
		if err != nil {
			return s.respond(nil, err)
		}
		req, err := decode[protocol.BlobHasRequest](body)
		if err != nil {
			return s.respond(nil, err)
		}
		resp := protocol.BlobHasResponse{Present: []string{}}
		for _, d := range req.Digests {
			if s.a.blobs.Has(strings.TrimPrefix(strings.ToLower(d), "sha256:")) {
				resp.Present = append(resp.Present, d)
			}
		}
		return s.respond(resp, nil)
	}
	return s.respond(nil, protocol.Errorf(protocol.ErrInvalidRequest, "blob: unknown subcommand %q", args[0]))
}

func (s *session) signal(name string) {
	sigs := map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL, "HUP": syscall.SIGHUP, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2}
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if sig, ok := sigs[name]; ok && p != nil {
		syscall.Kill(-p.Pid, sig)
	}
}

// command runs a shell (kind "shell") or a command line, with a PTY when
// one was requested.
func (s *session) command(ctx context.Context, kind, command string) int {
	shell := "/bin/bash"
	if _, err := os.Stat(shell); err != nil {
		shell = "/bin/sh"
	}
	var cmd *exec.Cmd
	if kind == "shell" {
		cmd = exec.Command(shell, "-l")
	} else {
		cmd = exec.Command(shell, "-c", command)
	}
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Dir = s.a.layout.Base()
	if s.pty != nil {
		cmd.Env = append(cmd.Env, "TERM="+s.pty.Term)
		s.mu.Lock()
		ws := &pty.Winsize{Cols: uint16(s.pty.Columns), Rows: uint16(s.pty.Rows)}
		ptmx, err := pty.StartWithSize(cmd, ws)
		if err != nil {
			s.mu.Unlock()
			fmt.Fprintf(s.ch.Stderr(), "starting %s with a pty: %v\n", shell, err)
			return 127
		}
		s.ptmx, s.proc = ptmx, cmd.Process
		s.mu.Unlock()
		go io.Copy(ptmx, s.ch)
		done := make(chan struct{})
		go func() { io.Copy(s.ch, ptmx); close(done) }()
		go func() {
			<-ctx.Done()
			syscall.Kill(-cmd.Process.Pid, syscall.SIGHUP)
		}()
		err = cmd.Wait()
		<-done
		s.mu.Lock()
		s.ptmx = nil
		ptmx.Close()
		s.mu.Unlock()
		return exitCode(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 127
	}
	cmd.Stdout, cmd.Stderr = s.ch, s.ch.Stderr()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(s.ch.Stderr(), "starting %s: %v\n", shell, err)
		return 127
	}
	s.mu.Lock()
	s.proc = cmd.Process
	s.mu.Unlock()
	go func() { io.Copy(stdin, s.ch); stdin.Close() }()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-stop:
		}
	}()
	return exitCode(cmd.Wait())
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if c := ee.ExitCode(); c >= 0 {
			return c
		}
		return 128 + 9
	}
	return 1
}

// WaitSessions waits up to timeout for open sessions to end (the reply to a
// shutdown must reach the client before the agent exits).
func (a *Agent) WaitSessions(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for a.sessions.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}
