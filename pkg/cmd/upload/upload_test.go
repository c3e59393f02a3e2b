package upload

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/compile"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

func TestUploadReleaseIsIdempotentAndDeleteForgetsIt(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Skip("go not on PATH: cannot find the module root for releases/kpaas-hello")
	}
	relDir := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "releases", "kpaas-hello")
	dir := t.TempDir()
	run := func(cmdf func(*cmdutil.Factory, func(*Options) error) interface {
		SetArgs([]string)
		Execute() error
	}, args ...string) (string, string, error) {
		ios, _, stdout, stderr := ui.Test()
		f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{State: dir, JSON: true},
			Logger: func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}
		c := cmdf(f, nil)
		c.SetArgs(args)
		err := c.Execute()
		return stdout.String(), stderr.String(), err
	}
	up := func(f *cmdutil.Factory, r func(*Options) error) interface {
		SetArgs([]string)
		Execute() error
	} {
		return NewCmdUploadRelease(f, r)
	}
	del := func(f *cmdutil.Factory, r func(*Options) error) interface {
		SetArgs([]string)
		Execute() error
	} {
		return NewCmdDeleteRelease(f, r)
	}
	stdout, _, err := run(up, relDir)
	require.NoError(t, err)
	var v uploadView
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.Equal(t, "kpaas-hello", v.Name)
	assert.False(t, v.AlreadyUploaded)
	assert.FileExists(t, filepath.Join(dir, "blobs", v.SHA256[:2], v.SHA256), "the tarball is in the blobstore")

	stdout, _, err = run(up, relDir)
	require.NoError(t, err)
	var again uploadView
	require.NoError(t, json.Unmarshal([]byte(stdout), &again))
	assert.True(t, again.AlreadyUploaded)
	assert.Equal(t, v.Version, again.Version, "a directory's version follows its content")

	_, _, err = run(del, v.Name+"/"+v.Version)
	require.NoError(t, err)
	st, err := state.Open(context.Background(), dir, state.Options{})
	require.NoError(t, err)
	defer st.Close()
	rels, err := st.Releases(context.Background())
	require.NoError(t, err)
	assert.Empty(t, rels)
	assert.NoFileExists(t, filepath.Join(dir, "blobs", v.SHA256[:2], v.SHA256))

	_, _, err = run(del, "nope/1")
	assert.ErrorIs(t, err, state.ErrNotFound)
}

// A compiled release (bare SHA-1 or sha256: digests) uploads into a fresh
// state: each compiled package lands in the blobstore with its exact bytes
// and in the compiled-package cache under the key a deploy looks up.
func TestUploadCompiledReleaseRecordsItsPackagesInTheCompileCache(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Skip("go not on PATH: cannot find the module root for releases/kpaas-hello")
	}
	relDir := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "releases", "kpaas-hello")
	rd, err := release.ReadDir(relDir)
	require.NoError(t, err)
	srcPath := filepath.Join(t.TempDir(), "hello.tgz")
	_, err = rd.WriteTarball(srcPath, release.CreateOptions{Version: "7"})
	require.NoError(t, err)
	src, err := release.ReadTarball(srcPath, release.ReadOptions{})
	require.NoError(t, err)
	contents := map[string]string{"hello-lib": "lib install dir", "hello-scripts": "scripts install dir"}
	var in []release.CompiledInput
	for n, c := range contents {
		in = append(in, release.CompiledInput{Name: n, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(c)), nil }})
	}
	for _, sha1 := range []bool{true, false} {
		dir := t.TempDir()
		tgz := filepath.Join(t.TempDir(), "compiled.tgz")
		_, err := release.WriteCompiledTarball(tgz, src, in, release.ExportOptions{Stemcell: "busybox/1", SHA1: sha1})
		require.NoError(t, err)
		upload := func(path string) uploadView {
			ios, _, stdout, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{State: dir, JSON: true},
				Logger: func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}
			c := NewCmdUploadRelease(f, nil)
			c.SetArgs([]string{path})
			require.NoError(t, c.Execute())
			var v uploadView
			require.NoError(t, json.Unmarshal(stdout.Bytes(), &v))
			return v
		}
		if !sha1 {
			// The same version from source first: the compiled upload
			// still adds its compiled packages, as the director does.
			assert.Empty(t, upload(srcPath).CompiledPackages)
		}
		v := upload(tgz)
		assert.Equal(t, "7", v.Version)
		assert.Equal(t, !sha1, v.AlreadyUploaded)
		require.Len(t, v.CompiledPackages, 2)

		st, err := state.Open(context.Background(), dir, state.Options{})
		require.NoError(t, err)
		pkgs := map[string]compile.Package{}
		for _, p := range src.Manifest.Packages {
			pkgs[p.Name] = compile.Package{Name: p.Name, Fingerprint: p.Fingerprint, Dependencies: p.Dependencies}
		}
		for _, p := range src.Manifest.Packages {
			// The key the compiler uses for the source package on busybox/1.
			row, err := st.CompiledPackage(context.Background(), p.Fingerprint, "busybox", "1", compile.DependencyKey(pkgs, p.Name))
			require.NoError(t, err, "package %s is in the compile cache", p.Name)
			data, err := os.ReadFile(filepath.Join(dir, "blobs", row.BlobSHA256[:2], row.BlobSHA256))
			require.NoError(t, err)
			assert.Equal(t, contents[p.Name], string(data))
			_, err = st.CompiledPackage(context.Background(), p.Fingerprint, "ubuntu-jammy", "1", compile.DependencyKey(pkgs, p.Name))
			assert.ErrorIs(t, err, state.ErrNotFound, "only for the stemcell it was compiled against")
		}
		st.Close()
	}
}
