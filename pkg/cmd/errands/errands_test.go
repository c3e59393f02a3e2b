package errands

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/cmdutil/cmdutiltest"
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
			got.IO, got.State = nil, nil
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
	tests := []struct {
		name      string
		tty, json bool
		out       string
	}{
		{"tty", true, false, "" +
			"NAME                    JOBS\n" +
			"smoke-tests             smoke_tests, cf-cli-8-linux\n" +
			"rotate-cc-database-key  rotate_cc_database_key\n"},
		{"piped", false, false, "smoke-tests\tsmoke_tests, cf-cli-8-linux\nrotate-cc-database-key\trotate_cc_database_key\n"},
		{"json", false, true, `[
  {
    "name": "smoke-tests",
    "jobs": [
      "smoke_tests",
      "cf-cli-8-linux"
    ]
  },
  {
    "name": "rotate-cc-database-key",
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
			require.NoError(t, errandsRun(ctx, &Options{IO: ios, State: open, Deployment: "cf", JSON: tt.json}))
			assert.Equal(t, tt.out, out.String())
		})
	}

	ios, _, out, errOut := ui.Test()
	require.NoError(t, errandsRun(ctx, &Options{IO: ios, State: open, Deployment: "plain"}))
	assert.Empty(t, out.String())
	assert.Equal(t, "Deployment plain has no errands.\n", errOut.String())
	ios, _, out, _ = ui.Test()
	require.NoError(t, errandsRun(ctx, &Options{IO: ios, State: open, Deployment: "plain", JSON: true}))
	assert.Equal(t, "[]\n", out.String())
	assert.ErrorContains(t, errandsRun(ctx, &Options{IO: ios, State: open, Deployment: "nope"}), "deployment nope not found")
}
