package compile

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
)

// Export takes what the compiler cached; what is not compiled for the
// stemcell is named, and nothing is written. Importing the export into
// another store gives the compiler's own cache keys back.
func TestExportNeedsEveryPackageCompiledAndImportRestoresTheCacheKeys(t *testing.T) {
	ctx := context.Background()
	st, bs, _ := setup(t)
	d, err := release.ReadDir("../../releases/kpaas-hello")
	require.NoError(t, err)
	srcPath := filepath.Join(t.TempDir(), "hello.tgz")
	_, err = d.WriteTarball(srcPath, release.CreateOptions{Version: "3"})
	require.NoError(t, err)
	src, err := release.ReadTarball(srcPath, release.ReadOptions{})
	require.NoError(t, err)
	pkgs := map[string]Package{}
	for _, p := range src.Manifest.Packages {
		pkgs[p.Name] = Package{Name: p.Name, Fingerprint: p.Fingerprint, Dependencies: p.Dependencies}
	}
	sc := Stemcell{OS: "busybox", Version: "5"}
	dest := filepath.Join(t.TempDir(), "out.tgz")

	// Only hello-lib compiled so far.
	lib, _, err := bs.Put(strings.NewReader("lib compiled"))
	require.NoError(t, err)
	require.NoError(t, st.SaveCompiledPackage(ctx, state.CompiledPackage{Name: "hello-lib", Version: pkgs["hello-lib"].Fingerprint,
		Fingerprint: pkgs["hello-lib"].Fingerprint, StemcellOS: "busybox", StemcellVersion: "5", DependencyKey: DependencyKey(pkgs, "hello-lib"), BlobSHA256: lib}))
	_, err = Export(ctx, st, bs, src, sc, dest, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not compiled against stemcell 'busybox/5'")
	assert.Contains(t, err.Error(), "'hello-scripts/")
	assert.NotContains(t, err.Error(), "'hello-lib/")
	assert.NoFileExists(t, dest)

	scripts, _, err := bs.Put(strings.NewReader("scripts compiled"))
	require.NoError(t, err)
	require.NoError(t, st.SaveCompiledPackage(ctx, state.CompiledPackage{Name: "hello-scripts", Version: "x", Fingerprint: pkgs["hello-scripts"].Fingerprint,
		StemcellOS: "busybox", StemcellVersion: "5", DependencyKey: DependencyKey(pkgs, "hello-scripts"), BlobSHA256: scripts}))
	_, err = Export(ctx, st, bs, src, sc, dest, true)
	require.NoError(t, err)

	tb, err := release.ReadTarball(dest, release.ReadOptions{})
	require.NoError(t, err)
	st2, bs2, _ := setup(t)
	rows, err := ImportCompiled(ctx, st2, bs2, tb)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	for name, want := range map[string]string{"hello-lib": lib, "hello-scripts": scripts} {
		row, err := st2.CompiledPackage(ctx, pkgs[name].Fingerprint, "busybox", "5", DependencyKey(pkgs, name))
		require.NoError(t, err, name)
		assert.Equal(t, want, row.BlobSHA256, "the same bytes as compiled")
		assert.True(t, bs2.Has(want))
	}
}
