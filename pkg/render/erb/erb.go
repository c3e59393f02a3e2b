// Package erb renders BOSH job templates written in ERB with the system's ruby,
// following the BOSH director's contract (bosh-template's EvaluationContext):
// p, if_p/else/else_if_p, link/if_link, spec, the director's error wording.
//
// One Engine runs a small pool of long-lived `ruby --disable-gems` processes
// (started on first use) speaking a line protocol over pipes; the renderer
// script is embedded in the kpaas binary. Each template gets a fresh context,
// template output cannot reach the protocol, and when kpaas runs as root the
// processes run as nobody in a private scratch directory with an empty
// environment.
//
//	r := render.NewRenderer()
//	e, err := erb.Register(r, erb.Options{})
//	defer e.Close()
package erb

import (
	"bufio"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/kpaas/kpaas/pkg/render"
)

//go:embed renderer.rb
var script []byte

// Script is the embedded renderer script (for tests and diagnostics).
func Script() []byte { return append([]byte(nil), script...) }

// ErrNoRuby is returned when no ruby interpreter can be found.
var ErrNoRuby = errors.New("ruby is not installed")

// ErrRenderer is wrapped by failures of the renderer process itself (it died,
// timed out, or answered nonsense), as opposed to a template's own error.
var ErrRenderer = errors.New("ERB renderer failed")

// Options tune an Engine.
type Options struct {
	Ruby    string        // interpreter; "ruby" on PATH when empty
	Procs   int           // processes in the pool; min(GOMAXPROCS, 4) when 0
	Timeout time.Duration // per template; 2 minutes when 0
	// UID/GID the processes run as when kpaas runs as root; 65534 (nobody) when 0.
	UID, GID int
	// Stderr receives whatever templates print (puts, system); discarded when nil.
	Stderr io.Writer
}

// TemplateError is a template that failed in ruby, worded as the director
// words it: "Error filling in template 'F' (line N: msg)".
type TemplateError struct {
	Template string
	Line     int
	Message  string
}

func (e *TemplateError) Error() string { return e.Message }

// TemplateLine is the template line the error happened on (0 when unknown).
func (e *TemplateError) TemplateLine() int { return e.Line }

// Engine is the ERB engine: a render.Engine for ".erb" templates.
type Engine struct {
	opts    Options
	ruby    string
	idle    chan *proc
	mu      sync.Mutex
	all     []*proc
	closed  bool
	scratch string
	nextID  uint64
	// specs caches encoded contexts: a job's templates share one Context
	// (whose Spec() is itself computed once), so it is encoded once.
	specs map[*render.Context][]byte
}

// Register creates an Engine and registers it with r for ".erb" templates.
func Register(r *render.Renderer, opts Options) (*Engine, error) {
	e, err := New(opts)
	if err != nil {
		return nil, err
	}
	r.Register(".erb", e)
	return e, nil
}

// New checks that ruby exists and returns an Engine; processes start on first use.
func New(opts Options) (*Engine, error) {
	name := opts.Ruby
	if name == "" {
		name = "ruby"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%w (%s): ERB job templates need ruby 3.x with its standard library; install it (Debian: apt-get install -y --no-install-recommends ruby) or pass its path: %w", ErrNoRuby, name, err)
	}
	if opts.Procs <= 0 {
		opts.Procs = min(runtime.GOMAXPROCS(0), 4)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.UID == 0 {
		opts.UID = 65534
	}
	if opts.GID == 0 {
		opts.GID = 65534
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	e := &Engine{opts: opts, ruby: path, idle: make(chan *proc, opts.Procs)}
	for i := 0; i < opts.Procs; i++ {
		e.idle <- nil // a slot: a process is started when a render takes it
	}
	return e, nil
}

type proc struct {
	cmd     *exec.Cmd
	in      *bufio.Writer
	stdin   io.Closer
	replies chan []byte
	done    chan struct{} // closed when the reply stream ends
}

type request struct {
	ID      uint64          `json:"id"`
	Name    string          `json:"name"`
	Source  string          `json:"source"`
	Context json.RawMessage `json:"context"`
}

type reply struct {
	ID     uint64 `json:"id"`
	OK     bool   `json:"ok"`
	Output string `json:"output"`
	Error  string `json:"error"`
	Line   int    `json:"line"`
}

func (e *Engine) scratchDir() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return "", fmt.Errorf("%w: the ERB engine is closed", ErrRenderer)
	}
	if e.scratch != "" {
		return e.scratch, nil
	}
	dir, err := os.MkdirTemp("", "kpaas-erb-")
	if err != nil {
		return "", fmt.Errorf("creating the ERB renderer's scratch directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "renderer.rb"), script, 0o444); err != nil {
		return "", fmt.Errorf("writing the ERB renderer script: %w", err)
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{dir, filepath.Join(dir, "renderer.rb")} {
			if err := os.Chown(p, e.opts.UID, e.opts.GID); err != nil {
				return "", fmt.Errorf("handing the ERB scratch directory to uid %d: %w", e.opts.UID, err)
			}
		}
	}
	e.scratch = dir
	return dir, nil
}

func (e *Engine) start() (*proc, error) {
	dir, err := e.scratchDir()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.ruby, "--disable-gems", filepath.Join(dir, "renderer.rb"))
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir, "TMPDIR=" + dir, "LANG=C.UTF-8"}
	cmd.Stderr = e.opts.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(e.opts.UID), Gid: uint32(e.opts.GID), Groups: []uint32{}}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: starting %s: %w", ErrRenderer, e.ruby, err)
	}
	p := &proc{cmd: cmd, in: bufio.NewWriterSize(stdin, 64<<10), stdin: stdin, replies: make(chan []byte, 1), done: make(chan struct{})}
	e.mu.Lock()
	e.all = append(e.all, p)
	e.mu.Unlock()
	go func() {
		defer close(p.done)
		r := bufio.NewReaderSize(stdout, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			p.replies <- line
		}
	}()
	return p, nil
}

func (e *Engine) kill(p *proc) {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.stdin.Close()
	_ = p.cmd.Wait()
	e.mu.Lock()
	for i, q := range e.all {
		if q == p {
			e.all = append(e.all[:i], e.all[i+1:]...)
			break
		}
	}
	e.mu.Unlock()
}

// Render renders one ERB template source for ctx (render.Engine).
func (e *Engine) Render(name string, source []byte, ctx *render.Context) ([]byte, error) {
	e.mu.Lock()
	spec, ok := e.specs[ctx]
	e.mu.Unlock()
	if !ok {
		var err error
		if spec, err = MarshalContext(ctx.Spec()); err != nil {
			return nil, fmt.Errorf("encoding the context of template '%s': %w", name, err)
		}
		e.mu.Lock()
		if e.specs == nil || len(e.specs) >= 64 {
			e.specs = map[*render.Context][]byte{}
		}
		e.specs[ctx] = spec
		e.mu.Unlock()
	}
	return e.RenderJSON(name, source, spec)
}

// RenderJSON renders a template against a spec hash already encoded by
// MarshalContext.
func (e *Engine) RenderJSON(name string, source []byte, spec []byte) ([]byte, error) {
	e.mu.Lock()
	e.nextID++
	id := e.nextID
	e.mu.Unlock()
	req, err := json.Marshal(request{ID: id, Name: name, Source: base64.StdEncoding.EncodeToString(source), Context: spec})
	if err != nil {
		return nil, err
	}
	p := <-e.idle
	if p == nil {
		if p, err = e.start(); err != nil {
			e.idle <- nil
			return nil, err
		}
	}
	out, err := e.roundTrip(p, id, req)
	if err != nil && errors.Is(err, ErrRenderer) {
		e.kill(p)
		p = nil
	}
	e.idle <- p
	return out, err
}

func (e *Engine) roundTrip(p *proc, id uint64, req []byte) ([]byte, error) {
	if _, err := p.in.Write(append(req, '\n')); err != nil {
		return nil, fmt.Errorf("%w: sending a template: %w", ErrRenderer, err)
	}
	if err := p.in.Flush(); err != nil {
		return nil, fmt.Errorf("%w: sending a template: %w", ErrRenderer, err)
	}
	timer := time.NewTimer(e.opts.Timeout)
	defer timer.Stop()
	var line []byte
	select {
	case line = <-p.replies:
	case <-p.done:
		select {
		case line = <-p.replies:
		default:
			return nil, fmt.Errorf("%w: the ruby process exited while rendering (a template that calls exit! or kills its own process?)", ErrRenderer)
		}
	case <-timer.C:
		return nil, fmt.Errorf("%w: the template did not finish within %s (an endless loop?); the ruby process was killed", ErrRenderer, e.opts.Timeout)
	}
	var rep reply
	if err := json.Unmarshal(line, &rep); err != nil || rep.ID != id {
		return nil, fmt.Errorf("%w: unexpected reply from the ruby process", ErrRenderer)
	}
	if !rep.OK {
		return nil, &TemplateError{Line: rep.Line, Message: rep.Error}
	}
	out, err := base64.StdEncoding.DecodeString(rep.Output)
	if err != nil {
		return nil, fmt.Errorf("%w: undecodable output", ErrRenderer)
	}
	return out, nil
}

// Close stops every renderer process and removes the scratch directory.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	procs := append([]*proc(nil), e.all...)
	dir := e.scratch
	e.mu.Unlock()
	for _, p := range procs {
		_ = p.stdin.Close() // ruby ends on EOF
		select {
		case <-p.done:
		case <-time.After(2 * time.Second):
		}
		e.kill(p)
	}
	if dir != "" {
		return os.RemoveAll(dir)
	}
	return nil
}

type missingRuby struct{ err error }

func (m missingRuby) Render(name string, _ []byte, _ *render.Context) ([]byte, error) {
	return nil, fmt.Errorf("template '%s' is ERB: %w", name, m.err)
}

// NewRenderer returns a render.Renderer for one deploy with the ERB engine
// registered for ".erb" templates (its ruby processes start on the first ERB
// template). Without ruby, ERB templates fail saying how to install it, and Go
// templates still render. stop ends the ruby processes.
func NewRenderer(opts Options) (r *render.Renderer, stop func()) {
	r = render.NewRenderer()
	e, err := Register(r, opts)
	if err != nil {
		r.Register(".erb", missingRuby{err})
		return r, func() {}
	}
	return r, func() { _ = e.Close() }
}
