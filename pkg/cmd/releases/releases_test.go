package releases

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

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func TestNewCmdReleasesFlags(t *testing.T) {
	ios, _, _, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: true}, Now: time.Now}
	var got *Options
	cmd := NewCmdReleases(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs(nil)
	require.NoError(t, cmd.Execute())
	got.IO, got.State, got.Now = nil, nil, nil
	assert.Equal(t, Options{JSON: true}, *got)

	cmd = NewCmdReleases(f, func(o *Options) error { return nil })
	cmd.SetArgs([]string{"capi"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	assert.ErrorContains(t, cmd.Execute(), "unknown command")
}

func TestReleasesRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, func() time.Time { return t0 })
	for _, r := range []state.Release{
		{Name: "capi", Version: "1.9", CommitHash: "abc123", SHA256: "s1", UploadedAt: t0},
		{Name: "capi", Version: "1.10", CommitHash: "def456", SHA256: "s2", UploadedAt: t0.Add(time.Hour)},
		{Name: "routing", Version: "0.3", SHA256: "s3", UploadedAt: t0},
	} {
		require.NoError(t, s.SaveRelease(ctx, r))
	}
	// cf pins capi 1.9; k8s asks for the latest capi (1.10 numerically, not "1.9" as text).
	cmdutiltest.Seed(t, s, "cf", "name: cf\nreleases: [{name: capi, version: \"1.9\"}, {name: routing, version: \"0.3\"}]\n", nil)
	cmdutiltest.Seed(t, s, "k8s", "name: k8s\nreleases: [{name: capi, version: latest}]\n", nil)
	cmdutiltest.Seed(t, s, "old", "name: old\nreleases: [{name: capi, version: \"0.1\"}]\n", nil)
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	now := func() time.Time { return t0.Add(3 * time.Hour) }
	tests := []struct {
		name      string
		tty, json bool
		out       string
	}{
		{"tty", true, false, "" +
			"NAME     VERSION  COMMIT HASH  DEPLOYMENTS  UPLOADED\n" +
			"capi     1.10     def456       k8s          2 hours ago\n" +
			"capi     1.9      abc123       cf           3 hours ago\n" +
			"routing  0.3      -            cf           3 hours ago\n"},
		{"piped", false, false, "" +
			"capi\t1.10\tdef456\tk8s\t2026-03-04T11:00:00Z\n" +
			"capi\t1.9\tabc123\tcf\t2026-03-04T10:00:00Z\n" +
			"routing\t0.3\t-\tcf\t2026-03-04T10:00:00Z\n"},
		{"json", false, true, `[
  {
    "name": "capi",
    "version": "1.10",
    "commit_hash": "def456",
    "sha256": "s2",
    "deployments": [
      "k8s"
    ],
    "uploaded_at": "2026-03-04T11:00:00Z"
  },
  {
    "name": "capi",
    "version": "1.9",
    "commit_hash": "abc123",
    "sha256": "s1",
    "deployments": [
      "cf"
    ],
    "uploaded_at": "2026-03-04T10:00:00Z"
  },
  {
    "name": "routing",
    "version": "0.3",
    "commit_hash": "",
    "sha256": "s3",
    "deployments": [
      "cf"
    ],
    "uploaded_at": "2026-03-04T10:00:00Z"
  }
]
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, _ := ui.Test()
			ios.SetTTY(tt.tty)
			require.NoError(t, releasesRun(ctx, &Options{IO: ios, State: open, Now: now, JSON: tt.json}))
			assert.Equal(t, tt.out, out.String())
		})
	}
}

func TestReleasesNone(t *testing.T) {
	dir := t.TempDir()
	cmdutiltest.Open(t, dir, nil)
	ios, _, out, errOut := ui.Test()
	require.NoError(t, releasesRun(context.Background(), &Options{IO: ios, Now: time.Now, State: func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }}))
	assert.Empty(t, out.String())
	assert.Equal(t, "No releases. Upload one with: kpaas upload-release RELEASE.tgz\n", errOut.String())
}

// Versions upload-release names by content (0+dev.<hash>) say nothing about
// which is newer: "latest" is the last uploaded, as deploy takes it, not the
// largest hash.
func TestReleasesLatestOfContentNamedVersionsIsTheLastUploaded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, func() time.Time { return t0 })
	for _, r := range []state.Release{
		{Name: "kubernetes", Version: "0+dev.ffff00000000", SHA256: "s1", UploadedAt: t0},
		{Name: "kubernetes", Version: "0+dev.0000ffff0000", SHA256: "s2", UploadedAt: t0.Add(time.Hour)},
	} {
		require.NoError(t, s.SaveRelease(ctx, r))
	}
	cmdutiltest.Seed(t, s, "k8s", "name: k8s\nreleases: [{name: kubernetes, version: latest}]\n", nil)
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	ios, _, stdout, _ := ui.Test()
	require.NoError(t, releasesRun(ctx, &Options{IO: ios, State: open, Now: func() time.Time { return t0.Add(2 * time.Hour) }}))
	assert.Equal(t, ""+
		"kubernetes\t0+dev.0000ffff0000\t-\tk8s\t2026-03-04T11:00:00Z\n"+
		"kubernetes\t0+dev.ffff00000000\t-\t-\t2026-03-04T10:00:00Z\n", stdout.String())
}
