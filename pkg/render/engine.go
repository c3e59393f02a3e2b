package render

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // cache key only
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"text/template"
)

// Engine renders one template source for one job on one instance.
type Engine interface {
	Render(name string, source []byte, ctx *Context) ([]byte, error)
}

// ErrNoEngine is returned for a template whose extension has no engine: `.erb`
// until the ERB engine (package render/erb) is registered.
var ErrNoEngine = errors.New("no template engine")

type noEngine struct{ ext, hint string }

func (n noEngine) Render(name string, _ []byte, _ *Context) ([]byte, error) {
	return nil, fmt.Errorf("%w for %s templates (%s): %s", ErrNoEngine, n.ext, name, n.hint)
}

// GoTemplate renders Go text/template sources with the BOSH vocabulary.
// Parsed templates are cached by name and content, so rendering many instances
// of a job parses each template once.
type GoTemplate struct {
	mu    sync.RWMutex
	cache map[[sha1.Size]byte]*template.Template
}

// NewGoTemplate returns a Go text/template engine.
func NewGoTemplate() *GoTemplate {
	return &GoTemplate{cache: map[[sha1.Size]byte]*template.Template{}}
}

// placeholderFuncs declares the vocabulary at parse time; every render binds
// them to its own context.
var placeholderFuncs = (&Context{}).funcs()

func (c *Context) funcs() template.FuncMap {
	return template.FuncMap{
		"p":       c.p,
		"if_p":    c.ifP,
		"link":    c.link,
		"if_link": c.ifLink,
		"spec":    c.Spec,
		"json":    toJSON,
		"join":    func(sep string, list []any) string { return joinAny(list, sep) },
	}
}

func joinAny(list []any, sep string) string {
	parts := make([]string, len(list))
	for i, v := range list {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, sep)
}

func (g *GoTemplate) parsed(name string, source []byte) (*template.Template, error) {
	h := sha1.New() //nolint:gosec
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(source)
	var key [sha1.Size]byte
	copy(key[:], h.Sum(nil))
	g.mu.RLock()
	t, ok := g.cache[key]
	g.mu.RUnlock()
	if ok {
		return t, nil
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(placeholderFuncs).Parse(string(source))
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.cache[key] = t
	g.mu.Unlock()
	return t, nil
}

// Render executes the template with `.` and `spec` bound to the spec hash.
func (g *GoTemplate) Render(name string, source []byte, ctx *Context) ([]byte, error) {
	t, err := g.parsed(name, source)
	if err != nil {
		return nil, err
	}
	t, err = t.Clone()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Funcs(ctx.funcs()).Execute(&buf, ctx.Spec()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Renderer chooses an engine by template file extension and renders jobs.
type Renderer struct {
	engines map[string]Engine
	Default Engine
}

// NewRenderer returns a renderer that renders every template with Go
// text/template, except `.erb` templates, which need an ERB engine registered
// with Register(".erb", e); erb.NewRenderer returns a renderer with it.
func NewRenderer() *Renderer {
	return &Renderer{
		engines: map[string]Engine{".erb": noEngine{ext: ".erb", hint: "this renderer has no ERB engine; render with erb.NewRenderer (package render/erb), which runs ruby"}},
		Default: NewGoTemplate(),
	}
}

// Register sets the engine for templates whose source name ends in ext (".erb").
func (r *Renderer) Register(ext string, e Engine) { r.engines[strings.ToLower(ext)] = e }

// EngineFor is the engine for a template source name.
func (r *Renderer) EngineFor(src string) Engine {
	if e, ok := r.engines[strings.ToLower(path.Ext(src))]; ok {
		return e
	}
	return r.Default
}

// monitEngine renders a monit file: BOSH renders monit as ERB, so one that
// carries ERB tags goes to the .erb engine; any other is a Go template.
func (r *Renderer) monitEngine(content []byte) Engine {
	if bytes.Contains(content, []byte("<%")) {
		return r.EngineFor("monit.erb")
	}
	return r.Default
}
