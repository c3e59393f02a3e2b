package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/compile"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
)

// newWorldFrom is a fresh world whose only release is the tarball tgz,
// uploaded as upload-release does (a compiled release's packages recorded in
// the compiled-package cache), on a stemcell of os scOS, version scVersion.
func newWorldFrom(t *testing.T, tgz, scOS, scVersion string) *world {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := state.Open(ctx, filepath.Join(dir, "state"), state.Options{Key: bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	bs, err := blobstore.Open(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	tb, err := release.ReadTarball(tgz, release.ReadOptions{})
	require.NoError(t, err)
	id, _, err := bs.PutFile(tgz)
	require.NoError(t, err)
	if tb.Manifest.IsCompiled() {
		_, err := compile.ImportCompiled(ctx, st, bs, tb)
		require.NoError(t, err)
	}
	require.NoError(t, st.SaveRelease(ctx, state.Release{Name: tb.Manifest.Name, Version: tb.Manifest.Version, SHA256: id}))
	cloud := cpitest.NewFake()
	img := filepath.Join(dir, "image")
	require.NoError(t, os.WriteFile(img, []byte("x"), 0o644))
	sc, err := cloud.CreateStemcell(ctx, img, nil)
	require.NoError(t, err)
	require.NoError(t, st.SaveStemcell(ctx, state.Stemcell{Name: "sc", Version: scVersion, OS: scOS, CID: string(sc), CPI: "default"}))
	_, _, err = st.SaveConfig(ctx, state.Config{Type: state.CloudConfig, Name: "default", Content: cloudConfig})
	require.NoError(t, err)
	return &world{t: t, st: st, blobs: bs, cloud: cloud, agents: newFakeAgents()}
}

// exportCompiled deploys the hello release once (compiling it on compile
// VMs) and exports it compiled for busybox/1 from the compile cache.
func exportCompiled(t *testing.T, sha1 bool) (string, map[string][]byte) {
	ctx := context.Background()
	a := newWorld(t)
	require.NoError(t, a.deploy(manifestOf(1, "hi")))
	require.Len(t, a.agents.calls("compile"), 2)
	rels, err := a.st.Releases(ctx)
	require.NoError(t, err)
	src, err := release.ReadTarball(a.blobs.Path(strings.TrimPrefix(rels[0].SHA256, "sha256:")), release.ReadOptions{})
	require.NoError(t, err)
	dest := filepath.Join(t.TempDir(), "kpaas-hello-1-busybox-1.tgz")
	m, err := compile.Export(ctx, a.st, a.blobs, src, compile.Stemcell{OS: "busybox", Version: "1"}, dest, sha1)
	require.NoError(t, err)
	require.Len(t, m.CompiledPackages, 2)
	for _, cp := range m.CompiledPackages {
		assert.Equal(t, sha1, !strings.HasPrefix(cp.SHA1, "sha256:") && len(cp.SHA1) == 40, "digest %s", cp.SHA1)
	}
	compiled := map[string][]byte{} // what the compile VMs produced
	a.agents.mu.Lock()
	defer a.agents.mu.Unlock()
	for _, b := range a.agents.blobs {
		if name, ok := strings.CutPrefix(string(b), "compiled "); ok {
			n, _, _ := strings.Cut(name, " ")
			compiled[n] = b
		}
	}
	require.Len(t, compiled, 2)
	return dest, compiled
}

func TestCompiledReleaseDeploysWithoutCompileVMs(t *testing.T) {
	for _, tc := range []struct {
		name string
		sha1 bool
	}{{"bare SHA-1 digests", true}, {"sha256 digests", false}} {
		t.Run(tc.name, func(t *testing.T) {
			tgz, compiled := exportCompiled(t, tc.sha1)
			for _, version := range []string{"1", "1.4"} { // 1.4: same major, floats
				b := newWorldFrom(t, tgz, "busybox", version)
				require.NoError(t, b.deploy(manifestOf(2, "hi")), "stemcell busybox/%s", version)
				assert.Empty(t, b.agents.calls("compile"), "nothing is compiled")
				assert.Equal(t, 2, b.cloud.CallCount("create_vm"), "only the two instances' VMs: no compile VM")
				assert.Len(t, b.agents.calls("apply"), 2)
				b.agents.mu.Lock()
				for name, data := range compiled {
					found := false
					for _, got := range b.agents.blobs {
						found = found || bytes.Equal(got, data)
					}
					assert.True(t, found, "the instances got compiled package %s as the compile VM made it", name)
				}
				b.agents.mu.Unlock()
				for _, ev := range b.events {
					assert.False(t, strings.HasPrefix(ev.Object, "compilation/"), "no compile VM event: %+v", ev)
				}
			}
		})
	}
}

func TestCompiledReleaseOnAnotherStemcellIsRefusedBeforeAnyChange(t *testing.T) {
	tgz, _ := exportCompiled(t, true)
	for _, sc := range [][2]string{{"ubuntu-jammy", "1"}, {"busybox", "2"}} {
		c := newWorldFrom(t, tgz, sc[0], sc[1])
		calls := len(c.cloud.Calls())
		_, err := Prepare(context.Background(), c.st, c.blobs, PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(strings.Replace(manifestOf(2, "hi"), "os: busybox", "os: "+sc[0], 1))})
		require.Error(t, err)
		var mce *MissingCompiledError
		require.True(t, errors.As(err, &mce), "%v", err)
		msg := err.Error()
		t.Log(msg)
		assert.Contains(t, msg, "Can't use release 'kpaas-hello/1'. It references packages without source code and are not compiled against stemcell '"+sc[0]+"/"+sc[1]+"':")
		assert.Contains(t, msg, " - 'hello-lib/")
		assert.Contains(t, msg, " - 'hello-scripts/")
		assert.Contains(t, msg, "compiled against stemcell 'busybox/1'")
		assert.Equal(t, calls, len(c.cloud.Calls()), "no CPI call")
		_, err = c.st.LoadDeployment(context.Background(), "hello")
		assert.ErrorIs(t, err, state.ErrNotFound, "nothing recorded")
	}
}

func TestSourceReleaseWithBareSHA1DigestsDeploys(t *testing.T) {
	rd, err := release.ReadDir(filepath.Join(moduleRoot(t), "releases", "kpaas-hello"))
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = rd.WriteTarball(filepath.Join(dir, "hello.tgz"), release.CreateOptions{Version: "1"})
	require.NoError(t, err)
	m, err := release.RewriteDigests(filepath.Join(dir, "hello.tgz"), filepath.Join(dir, "sha1.tgz"), true)
	require.NoError(t, err)
	require.Len(t, m.Packages[0].SHA1, 40, "bare SHA-1")
	w := newWorldFrom(t, filepath.Join(dir, "sha1.tgz"), "busybox", "1")
	require.NoError(t, w.deploy(manifestOf(1, "hi")))
	assert.ElementsMatch(t, []string{"hello-lib", "hello-scripts"}, w.agents.calls("compile"))
	assert.Len(t, w.agents.calls("apply"), 1)
}
