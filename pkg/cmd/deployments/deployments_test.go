package deployments

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/cmdutil/cmdutiltest"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func TestNewCmdDeploymentsFlags(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		json    bool
		want    Options
		wantErr string
	}{
		{name: "plain", argv: nil, want: Options{}},
		{name: "json", argv: nil, json: true, want: Options{JSON: true}},
		{name: "no args", argv: []string{"cf"}, wantErr: "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: tt.json}, Now: time.Now}
			var got *Options
			cmd := NewCmdDeployments(f, func(o *Options) error { got = o; return nil })
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
			got.IO, got.State, got.Now = nil, nil, nil
			assert.Equal(t, tt.want, *got)
		})
	}
}

const cfManifest = `name: cf
releases:
- name: capi
  version: "1.2"
- name: routing
  version: latest
stemcells:
- alias: default
  os: ubuntu-jammy
  version: "1.0"
instance_groups: []
`

func TestDeploymentsRun(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, func() time.Time { return t0 })
	// routing is asked for as "latest", which is 0.3 of the uploaded ones;
	// ubuntu-jammy stays at the pinned 1.0 although 2.0 is uploaded.
	for _, v := range []string{"0.2", "0.3"} {
		require.NoError(t, s.SaveRelease(context.Background(), state.Release{Name: "routing", Version: v}))
	}
	require.NoError(t, s.SaveStemcell(context.Background(), state.Stemcell{Name: "kpaas-ubuntu-jammy", OS: "ubuntu-jammy", Version: "2.0"}))
	cmdutiltest.Seed(t, s, "cf", cfManifest, []cmdutiltest.Instance{{Group: "api", UUID: "u1"}, {Group: "router", UUID: "u2"}})
	cmdutiltest.Seed(t, s, "empty", "", nil)
	// The serial is the store's own counter: read it back rather than guess it.
	cf, err := s.Deployment(context.Background(), "cf")
	require.NoError(t, err)
	empty, err := s.Deployment(context.Background(), "empty")
	require.NoError(t, err)

	tests := []struct {
		name      string
		tty, json bool
		out       string
	}{
		{"tty", true, false, "" +
			"NAME   RELEASES               STEMCELLS         INSTANCES  LAST DEPLOYED\n" +
			"cf     capi/1.2, routing/0.3  ubuntu-jammy/1.0  2          3 hours ago\n" +
			"empty  -                      -                 0          -\n"},
		{"piped", false, false, "" +
			"cf\tcapi/1.2, routing/0.3\tubuntu-jammy/1.0\t2\t2026-03-04T10:00:00Z\n" +
			"empty\t-\t-\t0\t-\n"},
		{"json", false, true, `[
  {
    "name": "cf",
    "releases": [
      "capi/1.2",
      "routing/0.3"
    ],
    "stemcells": [
      "ubuntu-jammy/1.0"
    ],
    "instances": 2,
    "serial": ` + fmt.Sprint(cf.Serial) + `,
    "last_deployed_at": "2026-03-04T10:00:00Z"
  },
  {
    "name": "empty",
    "releases": [],
    "stemcells": [],
    "instances": 0,
    "serial": ` + fmt.Sprint(empty.Serial) + `,
    "last_deployed_at": null
  }
]
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, errOut := ui.Test()
			ios.SetTTY(tt.tty)
			opts := &Options{IO: ios, JSON: tt.json, Now: func() time.Time { return t0.Add(3 * time.Hour) },
				State: func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }}
			require.NoError(t, deploymentsRun(context.Background(), opts))
			assert.Equal(t, tt.out, out.String())
			assert.Empty(t, errOut.String())
		})
	}
}

func TestDeploymentsNone(t *testing.T) {
	dir := t.TempDir()
	cmdutiltest.Open(t, dir, nil)
	ios, _, out, errOut := ui.Test()
	opts := &Options{IO: ios, Now: time.Now, State: func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }}
	require.NoError(t, deploymentsRun(context.Background(), opts))
	assert.Empty(t, out.String())
	assert.Equal(t, "No deployments. Deploy one with: kpaas deploy -d NAME manifest.yml\n", errOut.String())

	ios, _, out, _ = ui.Test()
	opts.IO, opts.JSON = ios, true
	require.NoError(t, deploymentsRun(context.Background(), opts))
	assert.Equal(t, "[]\n", out.String())
}
