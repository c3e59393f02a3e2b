package compile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/state"
)

type fakeWorkers struct {
	mu       sync.Mutex
	blobs    map[string][]byte
	started  int
	cleaned  int
	order    []string
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	fail     string
}

type fakeAgent struct{ w *fakeWorkers }

func (w *fakeWorkers) Start(ctx context.Context, n int) (Agent, func(context.Context) error, error) {
	w.mu.Lock()
	w.started++
	w.mu.Unlock()
	return &fakeAgent{w}, func(context.Context) error { w.mu.Lock(); w.cleaned++; w.mu.Unlock(); return nil }, nil
}

func (a *fakeAgent) EnsureBlobs(ctx context.Context, blobs []agentclient.Blob) (int, error) {
	for _, b := range blobs {
		r, err := b.Open()
		if err != nil {
			return 0, err
		}
		data, _ := io.ReadAll(r)
		r.Close()
		a.w.mu.Lock()
		a.w.blobs[b.SHA256] = data
		a.w.mu.Unlock()
	}
	return len(blobs), nil
}

func (a *fakeAgent) CompilePackage(ctx context.Context, req protocol.CompilePackageRequest) (*protocol.CompilePackageResponse, error) {
	n := a.w.inFlight.Add(1)
	defer a.w.inFlight.Add(-1)
	for {
		m := a.w.maxSeen.Load()
		if n <= m || a.w.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	if req.Name == a.w.fail {
		return nil, errors.New("packaging exited 1")
	}
	if _, ok := a.w.blobs[req.BlobstoreID]; !ok {
		return nil, fmt.Errorf("%s: source not sent", req.Name)
	}
	var deps []string
	for d, ref := range req.Deps {
		if _, ok := a.w.blobs[ref.BlobstoreID]; !ok {
			return nil, fmt.Errorf("%s: dependency %s not sent", req.Name, d)
		}
		deps = append(deps, d)
	}
	a.w.order = append(a.w.order, req.Name)
	data := []byte(fmt.Sprintf("compiled %s with %d deps", req.Name, len(deps)))
	sum := sha256.Sum256(data)
	id := hex.EncodeToString(sum[:])
	a.w.blobs[id] = data
	return &protocol.CompilePackageResponse{BlobstoreID: id}, nil
}

func (a *fakeAgent) GetBlob(ctx context.Context, id string, w io.Writer) error {
	a.w.mu.Lock()
	data := a.w.blobs[id]
	a.w.mu.Unlock()
	_, err := w.Write(data)
	return err
}

func setup(t *testing.T) (state.Store, *blobstore.Store, func(name string, deps ...string) Package) {
	dir := t.TempDir()
	st, err := state.Open(context.Background(), filepath.Join(dir, "state"), state.Options{Key: bytes.Repeat([]byte{1}, 32)})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	bs, err := blobstore.Open(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	pkg := func(name string, deps ...string) Package {
		return Package{Name: name, Version: "v-" + name, Fingerprint: "fp-" + name, Dependencies: deps,
			Source: func() (string, error) { id, _, err := bs.Put(strings.NewReader("source of " + name)); return id, err }}
	}
	return st, bs, pkg
}

func TestCompilesInDependencyOrderInParallelAndOnlyOnce(t *testing.T) {
	st, bs, pkg := setup(t)
	// a, b, c independent; d needs a and b; e needs d.
	pkgs := []Package{pkg("a"), pkg("b"), pkg("c"), pkg("d", "a", "b"), pkg("e", "d")}
	w := &fakeWorkers{blobs: map[string][]byte{}}
	c := &Compiler{State: st, Blobs: bs, Workers: w, N: 2}
	sc := Stemcell{OS: "busybox", Version: "1"}
	got, err := c.Compile(context.Background(), pkgs, sc)
	require.NoError(t, err)
	require.Len(t, got, 5)
	pos := map[string]int{}
	for i, n := range w.order {
		pos[n] = i
	}
	assert.Less(t, pos["a"], pos["d"])
	assert.Less(t, pos["b"], pos["d"])
	assert.Less(t, pos["d"], pos["e"])
	assert.Equal(t, []string{"a", "b", "d"}, got["e"].Deps, "dependencies are transitive")
	assert.EqualValues(t, 2, w.maxSeen.Load(), "two workers compile at once")
	assert.Equal(t, 2, w.started, "no more VMs than workers")
	assert.Equal(t, w.started, w.cleaned, "every compile VM is deleted")
	for _, p := range got {
		assert.True(t, bs.Has(p.SHA256), "%s is in the blobstore", p.Name)
	}

	// Another deployment with the same packages: nothing to compile, no VM.
	w2 := &fakeWorkers{blobs: map[string][]byte{}}
	c2 := &Compiler{State: st, Blobs: bs, Workers: w2, N: 2}
	again, err := c2.Compile(context.Background(), pkgs, sc)
	require.NoError(t, err)
	assert.Equal(t, got, again)
	assert.Zero(t, w2.started)

	// A new stemcell version compiles again; a changed dependency recompiles its dependents only.
	_, missing, err := c2.Cached(context.Background(), pkgs, Stemcell{OS: "busybox", Version: "2"})
	require.NoError(t, err)
	assert.Len(t, missing, 5)
	changed := []Package{pkg("a"), pkg("b"), pkg("c"), pkg("d", "a", "b"), pkg("e", "d")}
	changed[0].Fingerprint = "fp-a2"
	_, missing, err = c2.Cached(context.Background(), changed, sc)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "d", "e"}, missing)
}

func TestCompileFailureNamesThePackageAndCleansUp(t *testing.T) {
	st, bs, pkg := setup(t)
	w := &fakeWorkers{blobs: map[string][]byte{}, fail: "b"}
	c := &Compiler{State: st, Blobs: bs, Workers: w, N: 3}
	_, err := c.Compile(context.Background(), []Package{pkg("a"), pkg("b"), pkg("c", "b")}, Stemcell{OS: "x", Version: "1"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "compiling package b: packaging exited 1")
	assert.NotContains(t, w.order, "c", "dependents of a failed package are not compiled")
	assert.Equal(t, w.started, w.cleaned)
}
