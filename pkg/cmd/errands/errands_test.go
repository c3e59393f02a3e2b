package errands

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/cmdutil/cmdutiltest"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

func TestNewCmdErrandsFlags(t *testing.T) {
	tests := []struct {
		name    string
		dep     string
		json    bool
		want    Options
		wantErr string
	}{
		{name: "deployment", dep: "cf", want: Options{Deployment: "cf"}},
		{name: "json", dep: "cf", json: true, want: Options{Deployment: "cf", JSON: true}},
		{name: "no deployment", wantErr: "a deployment is required: pass -d NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: tt.dep, JSON: tt.json}}
			var got *Options
			cmd := NewCmdErrands(f, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(nil)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			got.IO, got.State, got.Blobstore = nil, nil, nil
			assert.Equal(t, tt.want, *got)
		})
	}
}

const cf = `name: cf
instance_groups:
- name: api
  instances: 2
  jobs: [{name: cloud_controller_ng, release: capi}]
- name: smoke-tests
  lifecycle: errand
  instances: 1
  jobs:
  - {name: smoke_tests, release: cf-smoke-tests}
  - {name: cf-cli-8-linux, release: cf-cli}
- name: rotate-cc-database-key
  lifecycle: errand
  jobs: [{name: rotate_cc_database_key, release: capi}]
`

func TestErrandsRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	cmdutiltest.Seed(t, s, "cf", cf, nil)
	cmdutiltest.Seed(t, s, "plain", "name: plain\ninstance_groups: [{name: web, jobs: []}]\n", nil)
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	bs := func() (*blobstore.Store, error) { return blobstore.Open(filepath.Join(dir, "blobs")) }
	tests := []struct {
		name      string
		tty, json bool
		out       string
	}{
		{"tty", true, false, "" +
			"NAME                    INSTANCE GROUPS         JOBS\n" +
			"smoke-tests             smoke-tests             smoke_tests, cf-cli-8-linux\n" +
			"rotate-cc-database-key  rotate-cc-database-key  rotate_cc_database_key\n"},
		{"piped", false, false, "smoke-tests\tsmoke-tests\tsmoke_tests, cf-cli-8-linux\nrotate-cc-database-key\trotate-cc-database-key\trotate_cc_database_key\n"},
		{"json", false, true, `[
  {
    "name": "smoke-tests",
    "colocated": false,
    "instance_groups": [
      "smoke-tests"
    ],
    "jobs": [
      "smoke_tests",
      "cf-cli-8-linux"
    ]
  },
  {
    "name": "rotate-cc-database-key",
    "colocated": false,
    "instance_groups": [
      "rotate-cc-database-key"
    ],
    "jobs": [
      "rotate_cc_database_key"
    ]
  }
]
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, _ := ui.Test()
			ios.SetTTY(tt.tty)
			require.NoError(t, errandsRun(ctx, &Options{IO: ios, State: open, Blobstore: bs, Deployment: "cf", JSON: tt.json}))
			assert.Equal(t, tt.out, out.String())
		})
	}

	ios, _, out, errOut := ui.Test()
	require.NoError(t, errandsRun(ctx, &Options{IO: ios, State: open, Blobstore: bs, Deployment: "plain"}))
	assert.Empty(t, out.String())
	assert.Equal(t, "Deployment plain has no errands.\n", errOut.String())
	ios, _, out, _ = ui.Test()
	require.NoError(t, errandsRun(ctx, &Options{IO: ios, State: open, Blobstore: bs, Deployment: "plain", JSON: true}))
	assert.Equal(t, "[]\n", out.String())
	assert.ErrorContains(t, errandsRun(ctx, &Options{IO: ios, State: open, Blobstore: bs, Deployment: "nope"}), "deployment nope not found")
}

// TestColocatedErrands finds smoke-tests (a job with bin/run) of the real
// kpaas-hello release, uploaded as kpaas does, colocated on two service groups.
func TestColocatedErrands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	bs, err := blobstore.Open(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	rd, err := release.ReadDir(filepath.Join("..", "..", "..", "releases", "kpaas-hello"))
	require.NoError(t, err)
	tgz := filepath.Join(t.TempDir(), "hello.tgz")
	_, err = rd.WriteTarball(tgz, release.CreateOptions{Version: "3"})
	require.NoError(t, err)
	id, _, err := bs.PutFile(tgz)
	require.NoError(t, err)
	require.NoError(t, s.SaveRelease(ctx, state.Release{Name: "kpaas-hello", Version: "3", SHA256: id}))
	require.NoError(t, s.SaveRelease(ctx, state.Release{Name: "kpaas-hello", Version: "2", SHA256: "0000000000000000000000000000000000000000000000000000000000000000"}))
	cmdutiltest.Seed(t, s, "hello", `name: hello
releases: [{name: kpaas-hello, version: latest}, {name: other, version: "1"}]
instance_groups:
- name: web
  jobs: [{name: hello, release: kpaas-hello}, {name: smoke-tests, release: kpaas-hello}]
- name: db
  jobs: [{name: store-writer, release: kpaas-hello}, {name: smoke-tests, release: kpaas-hello}, {name: x, release: other}]
- name: check
  lifecycle: errand
  jobs: [{name: smoke-tests, release: kpaas-hello}]
`, nil)
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	ios, _, out, errOut := ui.Test()
	require.NoError(t, errandsRun(ctx, &Options{IO: ios, State: open, Deployment: "hello",
		Blobstore: func() (*blobstore.Store, error) { return bs, nil }}))
	assert.Equal(t, "check\tcheck\tsmoke-tests\nsmoke-tests\tweb, db\tsmoke-tests\n", out.String())
	assert.Empty(t, errOut.String(), "release other is not uploaded: nothing to say")

	// The manifest pins version 2, whose tarball is not in the blobstore: a warning, not a failure.
	cmdutiltest.Seed(t, s, "pinned", "name: pinned\nreleases: [{name: kpaas-hello, version: \"2\"}]\ninstance_groups: [{name: web, jobs: [{name: smoke-tests, release: kpaas-hello}]}]\n", nil)
	ios, _, out, errOut = ui.Test()
	require.NoError(t, errandsRun(ctx, &Options{IO: ios, State: open, Deployment: "pinned",
		Blobstore: func() (*blobstore.Store, error) { return bs, nil }}))
	assert.Empty(t, out.String())
	assert.Contains(t, errOut.String(), "Warning: reading release kpaas-hello/2, so its colocated errands are not shown")
	assert.Contains(t, errOut.String(), "Deployment pinned has no errands.")
}
