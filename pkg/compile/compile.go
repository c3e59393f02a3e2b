// Package compile compiles release packages on compile VMs: in dependency
// order, in parallel up to the cloud-config's compilation workers, through
// the agent's compile_package. Compiled packages are cached by fingerprint,
// stemcell and dependencies in the state and the blobstore, shared by every
// deployment: a package is never compiled twice.
package compile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
)

// Package is a package to have compiled.
type Package struct {
	Name         string
	Version      string
	Fingerprint  string
	Dependencies []string
	// Source opens the package's source archive (packages/<name>.tgz) and
	// tells its SHA-256; called only when the package must be compiled.
	Source func() (sha256 string, err error)
}

// Compiled is a compiled package in the blobstore.
type Compiled struct {
	Name        string
	Version     string
	Fingerprint string
	SHA256      string // blob id
	Deps        []string
}

// Stemcell names the stemcell packages are compiled against.
type Stemcell struct {
	OS      string
	Version string
}

// Agent is what compiling needs of a compile VM's agent.
type Agent interface {
	EnsureBlobs(ctx context.Context, blobs []agentclient.Blob) (int, error)
	CompilePackage(ctx context.Context, req protocol.CompilePackageRequest) (*protocol.CompilePackageResponse, error)
	GetBlob(ctx context.Context, sha256 string, w io.Writer) error
}

// Workers makes and removes compile VMs.
type Workers interface {
	// Start creates a compile VM and returns its agent and a cleanup.
	Start(ctx context.Context, n int) (Agent, func(context.Context) error, error)
}

// Compiler compiles packages.
type Compiler struct {
	State   state.Store
	Blobs   *blobstore.Store
	Workers Workers
	N       int  // compilation workers (at least 1)
	Reuse   bool // reuse_compilation_vms: one VM per worker for every package
	// Progress is told about each package (may be nil).
	Progress func(pkg, status string)
}

// DependencyKey is the cache key of a package's compiled dependencies.
func DependencyKey(pkgs map[string]Package, name string) string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		for _, d := range pkgs[n].Dependencies {
			if !seen[d] {
				seen[d] = true
				walk(d)
			}
		}
	}
	walk(name)
	var parts []string
	for d := range seen {
		parts = append(parts, d+":"+pkgs[d].Fingerprint)
	}
	sort.Strings(parts)
	h := sha256.Sum256([]byte(strings.Join(parts, ",")))
	return hex.EncodeToString(h[:8])
}

func transitive(pkgs map[string]Package, name string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		for _, d := range pkgs[n].Dependencies {
			if !seen[d] {
				seen[d] = true
				walk(d)
			}
		}
	}
	walk(name)
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// Cached returns what is already compiled, and what is missing.
func (c *Compiler) Cached(ctx context.Context, pkgs []Package, sc Stemcell) (map[string]Compiled, []string, error) {
	byName := map[string]Package{}
	for _, p := range pkgs {
		byName[p.Name] = p
	}
	done := map[string]Compiled{}
	var missing []string
	for _, p := range pkgs {
		row, err := c.State.CompiledPackage(ctx, p.Fingerprint, sc.OS, sc.Version, DependencyKey(byName, p.Name))
		if err == nil && c.Blobs.Has(row.BlobSHA256) {
			done[p.Name] = Compiled{Name: p.Name, Version: p.Version, Fingerprint: p.Fingerprint, SHA256: row.BlobSHA256, Deps: transitive(byName, p.Name)}
			continue
		}
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return nil, nil, err
		}
		missing = append(missing, p.Name)
	}
	return done, missing, nil
}

// Compile returns every package compiled, compiling the missing ones.
func (c *Compiler) Compile(ctx context.Context, pkgs []Package, sc Stemcell) (map[string]Compiled, error) {
	byName := map[string]Package{}
	var nodes []release.PackageNode
	for _, p := range pkgs {
		if _, dup := byName[p.Name]; dup {
			continue
		}
		byName[p.Name] = p
		nodes = append(nodes, release.PackageNode{Name: p.Name, Dependencies: p.Dependencies})
	}
	done, missing, err := c.Cached(ctx, pkgs, sc)
	if err != nil || len(missing) == 0 {
		return done, err
	}
	layers, err := release.DependencyLayers(nodes)
	if err != nil {
		return nil, err
	}
	need := map[string]bool{}
	for _, m := range missing {
		need[m] = true
	}
	n := c.N
	if n < 1 {
		n = 1
	}
	var mu sync.Mutex
	type worker struct {
		agent   Agent
		cleanup func(context.Context) error
	}
	pool := make(chan *worker, n)
	var all []*worker
	started := 0
	defer func() {
		for _, w := range all {
			_ = w.cleanup(context.WithoutCancel(ctx))
		}
	}()
	get := func() (*worker, error) {
		select { // an idle VM first
		case w := <-pool:
			return w, nil
		default:
		}
		mu.Lock()
		if started < n {
			started++
			idx := started
			mu.Unlock()
			a, cleanup, err := c.Workers.Start(ctx, idx)
			if err != nil {
				return nil, fmt.Errorf("creating compile VM %d: %w", idx, err)
			}
			w := &worker{agent: a, cleanup: cleanup}
			mu.Lock()
			all = append(all, w)
			mu.Unlock()
			return w, nil
		}
		mu.Unlock()
		select {
		case w := <-pool:
			return w, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for _, layer := range layers {
		var todo []string
		for _, name := range layer {
			if need[name] {
				todo = append(todo, name)
			}
		}
		errs := make([]error, len(todo))
		var wg sync.WaitGroup
		for i, name := range todo {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w, err := get()
				if err != nil {
					errs[i] = err
					return
				}
				defer func() { pool <- w }()
				mu.Lock()
				deps := map[string]Compiled{}
				for _, d := range transitive(byName, name) {
					deps[d] = done[d]
				}
				mu.Unlock()
				res, err := c.one(ctx, w.agent, byName[name], deps, byName, sc)
				if err != nil {
					errs[i] = fmt.Errorf("compiling package %s: %w", name, err)
					return
				}
				mu.Lock()
				done[name] = res
				mu.Unlock()
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return done, nil
}

func (c *Compiler) progress(pkg, status string) {
	if c.Progress != nil {
		c.Progress(pkg, status)
	}
}

func (c *Compiler) blob(id string) agentclient.Blob {
	size, _ := c.Blobs.Size(id)
	return agentclient.Blob{SHA256: id, Size: size, Open: func() (io.ReadCloser, error) { return c.Blobs.Open(id) }}
}

func (c *Compiler) one(ctx context.Context, a Agent, p Package, deps map[string]Compiled, byName map[string]Package, sc Stemcell) (Compiled, error) {
	c.progress(p.Name, "compiling")
	src, err := p.Source()
	if err != nil {
		return Compiled{}, err
	}
	blobs := []agentclient.Blob{c.blob(src)}
	req := protocol.CompilePackageRequest{BlobstoreID: src, SHA1: "sha256:" + src, Name: p.Name, Version: p.Version, Deps: map[string]protocol.BlobRef{}}
	for name, d := range deps {
		blobs = append(blobs, c.blob(d.SHA256))
		req.Deps[name] = protocol.BlobRef{Name: name, Version: d.Version, SHA1: "sha256:" + d.SHA256, BlobstoreID: d.SHA256}
	}
	if _, err := a.EnsureBlobs(ctx, blobs); err != nil {
		return Compiled{}, err
	}
	res, err := a.CompilePackage(ctx, req)
	if err != nil {
		return Compiled{}, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(a.GetBlob(ctx, res.BlobstoreID, pw)) }()
	id, _, err := c.Blobs.Put(pr)
	pr.Close()
	if err != nil {
		return Compiled{}, fmt.Errorf("fetching the compiled package: %w", err)
	}
	if id != res.BlobstoreID {
		return Compiled{}, fmt.Errorf("the compiled package's SHA-256 is %s, the agent said %s", id, res.BlobstoreID)
	}
	if err := c.State.SaveCompiledPackage(ctx, state.CompiledPackage{Name: p.Name, Version: p.Version, Fingerprint: p.Fingerprint,
		StemcellOS: sc.OS, StemcellVersion: sc.Version, DependencyKey: DependencyKey(byName, p.Name), BlobSHA256: id}); err != nil {
		return Compiled{}, err
	}
	c.progress(p.Name, "compiled")
	return Compiled{Name: p.Name, Version: p.Version, Fingerprint: p.Fingerprint, SHA256: id, Deps: transitive(byName, p.Name)}, nil
}
