package deploy

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/registry"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// helloRelease builds releases/kpaas-hello as version 7 and serves it at
// /hello.tgz, counting downloads.
func helloRelease(t *testing.T) (data []byte, url string, hits *atomic.Int32) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Skip("go not on PATH: cannot find the module root for releases/kpaas-hello")
	}
	dir, err := release.ReadDir(filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "releases", "kpaas-hello"))
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "hello.tgz")
	_, err = dir.WriteTarball(p, release.CreateOptions{Version: "7"})
	require.NoError(t, err)
	data, err = os.ReadFile(p)
	require.NoError(t, err)
	hits = &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hello.tgz" {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return data, srv.URL + "/hello.tgz", hits
}

func runDeploy(t *testing.T, stateDir, manifestPath string, args ...string) (string, error) {
	ios, _, _, stderr := ui.Test()
	// a deployment of no instances calls no CPI: the fake is never used
	reg := registry.New()
	reg.Register("local", func(json.RawMessage, *slog.Logger) (cpi.CPI, error) { return cpitest.NewFake(), nil })
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{State: stateDir, NonInteractive: true},
		Drivers: func() *registry.Registry { return reg },
		Logger:  func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}
	c := NewCmdDeploy(f, nil)
	c.SetArgs(append([]string{manifestPath}, args...))
	c.SilenceUsage = true
	err := c.Execute()
	return stderr.String(), err
}

// A manifest's releases[].url is uploaded by deploy (as bosh deploy does),
// checked against its sha1, once; plan only says what to run.
func TestDeployUploadsReleasesFromTheirURL(t *testing.T) {
	data, url, hits := helloRelease(t)
	sum := sha1.Sum(data)
	stateDir := t.TempDir()
	st, err := state.Open(t.Context(), stateDir, state.Options{})
	require.NoError(t, err)
	_, _, err = st.SaveConfig(t.Context(), state.Config{Type: state.CloudConfig, Name: "default",
		Content: "networks: [{name: default, type: manual, subnets: [{range: 10.0.0.0/24, gateway: 10.0.0.1, azs: [z1]}]}]\nazs: [{name: z1}]\ncompilation: {workers: 1, network: default, az: z1}\n"})
	require.NoError(t, err)
	require.NoError(t, st.SaveStemcell(t.Context(), state.Stemcell{Name: "sc", Version: "1", OS: "busybox", CID: "sc-1"}))
	require.NoError(t, st.Close())
	mf := filepath.Join(t.TempDir(), "m.yml")
	write := func(sha string) {
		require.NoError(t, os.WriteFile(mf, []byte(fmt.Sprintf(`name: urls
releases:
- name: kpaas-hello
  version: "7"
  url: %s
  sha1: %s
stemcells: [{alias: default, os: busybox, version: latest}]
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups: []
`, url, sha)), 0o644))
	}

	// a wrong digest: nothing stored, the error names both digests
	write("da39a3ee5e6b4b0d3255bfef95601890afd80709") // the SHA-1 of nothing
	_, err = runDeploy(t, stateDir, mf)
	var dm *DigestMismatchError
	require.True(t, errors.As(err, &dm), "got %v", err)
	assert.Equal(t, hex.EncodeToString(sum[:]), dm.Got)
	assert.Contains(t, err.Error(), "release kpaas-hello/7")

	write(hex.EncodeToString(sum[:]))
	stderr, err := runDeploy(t, stateDir, mf)
	require.NoError(t, err, stderr)
	assert.Contains(t, stderr, "Release kpaas-hello/7 is not uploaded: uploading it from "+url)
	assert.Equal(t, int32(2), hits.Load())

	st, err = state.Open(t.Context(), stateDir, state.Options{})
	require.NoError(t, err)
	rels, err := st.Releases(t.Context())
	st.Close()
	require.NoError(t, err)
	require.Len(t, rels, 1)
	assert.Equal(t, "kpaas-hello", rels[0].Name)
	assert.Equal(t, "7", rels[0].Version)

	// deployed again: already uploaded, not downloaded again
	stderr, err = runDeploy(t, stateDir, mf)
	require.NoError(t, err, stderr)
	assert.NotContains(t, stderr, "uploading it from")
	assert.Equal(t, int32(2), hits.Load())
}
