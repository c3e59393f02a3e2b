package manifest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/cmdutil/cmdutiltest"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

func TestNewCmdManifestFlags(t *testing.T) {
	tests := []struct {
		name    string
		dep     string
		json    bool
		argv    []string
		want    Options
		wantErr string
	}{
		{name: "deployment", dep: "cf", want: Options{Deployment: "cf"}},
		{name: "json", dep: "cf", json: true, want: Options{Deployment: "cf", JSON: true}},
		{name: "no deployment", wantErr: "a deployment is required: pass -d NAME"},
		{name: "extra arg", dep: "cf", argv: []string{"x"}, wantErr: "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: tt.dep, JSON: tt.json}, Now: time.Now}
			var got *Options
			cmd := NewCmdManifest(f, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(tt.argv)
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

// A manifest with comments, odd spacing, a trailing blank line and no final
// newline after it: it must come back byte for byte.
const stored = "# cf, deployed by CI\nname:   cf\nreleases: [ {name: capi, version: \"1.2\"} ]  # pinned\n\ninstance_groups: []\n\n  "

func TestManifestRun(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	cmdutiltest.Seed(t, s, "cf", stored, nil)
	cmdutiltest.Seed(t, s, "fresh", "", nil)
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }

	ios, _, out, _ := ui.Test()
	ios.SetTTY(true)
	require.NoError(t, manifestRun(context.Background(), &Options{IO: ios, State: open, Deployment: "cf"}))
	assert.Equal(t, stored, out.String())

	ios, _, out, _ = ui.Test()
	require.NoError(t, manifestRun(context.Background(), &Options{IO: ios, State: open, Deployment: "cf", JSON: true}))
	assert.Equal(t, `{
  "deployment": "cf",
  "manifest": "# cf, deployed by CI\nname:   cf\nreleases: [ {name: capi, version: \"1.2\"} ]  # pinned\n\ninstance_groups: []\n\n  "
}
`, out.String())

	ios, _, out, _ = ui.Test()
	err := manifestRun(context.Background(), &Options{IO: ios, State: open, Deployment: "fresh"})
	assert.EqualError(t, err, "deployment fresh has not been deployed successfully yet, so it has no manifest to show")
	err = manifestRun(context.Background(), &Options{IO: ios, State: open, Deployment: "nope"})
	assert.EqualError(t, err, "deployment nope not found in "+s.Location()+": `kpaas deployments` lists them")
	assert.Empty(t, out.String())
}
