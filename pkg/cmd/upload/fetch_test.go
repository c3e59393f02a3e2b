package upload

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmd/deploy"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/ui"
)

// helloTarball builds releases/kpaas-hello into a tarball and returns its bytes.
func helloTarball(t *testing.T) []byte {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Skip("go not on PATH: cannot find the module root for releases/kpaas-hello")
	}
	dir, err := release.ReadDir(filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "releases", "kpaas-hello"))
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "hello.tgz")
	_, err = dir.WriteTarball(p, release.CreateOptions{Version: "7"})
	require.NoError(t, err)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	return data
}

func serve(t *testing.T, body []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hello.tgz" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func runUpload(t *testing.T, stateDir string, args ...string) (string, string, error) {
	ios, _, stdout, stderr := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{State: stateDir, JSON: true},
		Logger: func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}
	c := NewCmdUploadRelease(f, nil)
	c.SetArgs(args)
	err := c.Execute()
	return stdout.String(), stderr.String(), err
}

func TestUploadReleaseFromURLWithSHA1AndSHA256(t *testing.T) {
	data := helloTarball(t)
	srv := serve(t, data)
	s1 := sha1.Sum(data)
	s256 := sha256.Sum256(data)
	dir := t.TempDir()

	stdout, stderr, err := runUpload(t, dir, srv.URL+"/hello.tgz", "--sha1", hex.EncodeToString(s1[:]))
	require.NoError(t, err)
	var v uploadView
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.Equal(t, "kpaas-hello", v.Name)
	assert.Equal(t, "7", v.Version)
	assert.False(t, v.AlreadyUploaded)
	assert.Contains(t, stderr, "downloaded "+srv.URL+"/hello.tgz")
	assert.Regexp(t, `\d+(\.\d)? (B|KiB|MiB) at [\d.]+ (B|KiB|MiB|GiB)/s`, stderr, "bytes and rate on stderr")

	stdout, _, err = runUpload(t, dir, srv.URL+"/hello.tgz", "--sha1", "sha256:"+hex.EncodeToString(s256[:]))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.True(t, v.AlreadyUploaded)
}

func TestUploadReleaseFromURLWrongDigestUploadsNothing(t *testing.T) {
	data := helloTarball(t)
	srv := serve(t, data)
	dir := t.TempDir()
	wrong := strings.Repeat("0", 40)
	_, _, err := runUpload(t, dir, srv.URL+"/hello.tgz", "--sha1", wrong)
	var dm *deploy.DigestMismatchError
	require.True(t, errors.As(err, &dm), "got %v", err)
	s1 := sha1.Sum(data)
	assert.Equal(t, hex.EncodeToString(s1[:]), dm.Got)
	assert.Contains(t, err.Error(), srv.URL+"/hello.tgz")
	assert.NoDirExists(t, filepath.Join(dir, "blobs"), "nothing reached the blobstore")
}

func TestUploadReleaseFromURL404NamesURLAndStatus(t *testing.T) {
	srv := serve(t, nil)
	_, _, err := runUpload(t, t.TempDir(), srv.URL+"/missing.tgz")
	var de *deploy.DownloadError
	require.True(t, errors.As(err, &de), "got %v", err)
	assert.Contains(t, err.Error(), srv.URL+"/missing.tgz")
	assert.Contains(t, err.Error(), "404 Not Found")
}

func TestFetchRejectsMalformedDigestBeforeDownloading(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer srv.Close()
	_, _, err := deploy.Fetch(context.Background(), srv.URL, "sha256:xyz", "", io.Discard, nil)
	assert.ErrorContains(t, err, "64 hex digits")
	assert.Zero(t, hits)
}

func TestSHA1FlagWithoutURLIsAUsageError(t *testing.T) {
	_, _, err := runUpload(t, t.TempDir(), "some.tgz", "--sha1", strings.Repeat("a", 40))
	var fe *cmdutil.FlagError
	assert.True(t, errors.As(err, &fe), "got %v", err)
}
