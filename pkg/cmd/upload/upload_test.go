package upload

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
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
