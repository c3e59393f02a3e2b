package upload

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/compile"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

func TestExportReleaseWritesACompiledReleaseFromTheCache(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Skip("go not on PATH: cannot find the module root for releases/kpaas-hello")
	}
	relDir := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "releases", "kpaas-hello")
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		ios, _, stdout, _ := ui.Test()
		f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{State: dir, JSON: true},
			Logger: func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}
		c := NewCmdExportRelease(f, nil)
		c.SetArgs(args)
		err := c.Execute()
		return stdout.String(), err
	}
	_, err = run("kpaas-hello")
	var fe *cmdutil.FlagError
	assert.True(t, errors.As(err, &fe), "one argument: %v", err)
	_, err = run("kpaas-hello", "busybox/1")
	assert.True(t, errors.As(err, &fe), "no version: %v", err)

	// Upload the source release, then fill the cache as a deploy would.
	ios, _, stdout, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{State: dir, JSON: true},
		Logger: func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}
	c := NewCmdUploadRelease(f, nil)
	c.SetArgs([]string{relDir})
	require.NoError(t, c.Execute())
	var v uploadView
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &v))

	_, err = run(v.Name+"/"+v.Version, "busybox/1", "-o", t.TempDir())
	require.Error(t, err, "nothing compiled yet")
	assert.Contains(t, err.Error(), "not compiled against stemcell 'busybox/1'")

	ctx := context.Background()
	st, err := state.Open(ctx, dir, state.Options{})
	require.NoError(t, err)
	bs, err := blobstore.Open(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	src, err := release.ReadTarball(bs.Path(strings.TrimPrefix(v.SHA256, "sha256:")), release.ReadOptions{})
	require.NoError(t, err)
	pkgs := map[string]compile.Package{}
	for _, p := range src.Manifest.Packages {
		pkgs[p.Name] = compile.Package{Name: p.Name, Fingerprint: p.Fingerprint, Dependencies: p.Dependencies}
	}
	for _, p := range src.Manifest.Packages {
		id, _, err := bs.Put(strings.NewReader("compiled " + p.Name))
		require.NoError(t, err)
		require.NoError(t, st.SaveCompiledPackage(ctx, state.CompiledPackage{Name: p.Name, Version: p.Version, Fingerprint: p.Fingerprint,
			StemcellOS: "busybox", StemcellVersion: "1", DependencyKey: compile.DependencyKey(pkgs, p.Name), BlobSHA256: id}))
	}
	st.Close()

	outDir := t.TempDir()
	res, err := run(v.Name+"/"+v.Version, "busybox/1", "-o", outDir, "--sha2")
	require.NoError(t, err)
	var ev exportView
	require.NoError(t, json.Unmarshal([]byte(res), &ev))
	assert.Equal(t, filepath.Join(outDir, v.Name+"-"+v.Version+"-busybox-1.tgz"), ev.Path)
	tb, err := release.ReadTarball(ev.Path, release.ReadOptions{})
	require.NoError(t, err)
	require.Len(t, tb.Manifest.CompiledPackages, 2)
	for _, cp := range tb.Manifest.CompiledPackages {
		assert.True(t, strings.HasPrefix(cp.SHA1, "sha256:"), "--sha2")
		assert.Equal(t, "busybox/1", cp.Stemcell)
	}
}
