package disks

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

func TestNewCmdDisksFlags(t *testing.T) {
	tests := []struct {
		name    string
		dep     string
		json    bool
		argv    []string
		want    Options
		wantErr string
	}{
		{name: "all", want: Options{}},
		{name: "one deployment", dep: "cf", want: Options{Deployment: "cf"}},
		{name: "orphaned json", argv: []string{"--orphaned"}, json: true, want: Options{Orphaned: true, JSON: true}},
		{name: "arg", argv: []string{"x"}, wantErr: "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: tt.dep, JSON: tt.json}, Now: time.Now}
			var got *Options
			cmd := NewCmdDisks(f, func(o *Options) error { got = o; return nil })
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

func seed(t *testing.T) (string, func(context.Context) (state.Store, error)) {
	dir := t.TempDir()
	clock := t0
	s := cmdutiltest.Open(t, dir, func() time.Time { return clock })
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", []cmdutiltest.Instance{
		{Group: "db", UUID: "d1", AZ: "z2", DiskCIDs: []string{"disk-d"}, DiskSizeMB: 1500},
		{Group: "api", UUID: "a1", AZ: "z1", DiskCIDs: []string{"disk-a"}, DiskSizeMB: 10240},
		{Group: "api", UUID: "a2", Index: 1, AZ: "z2"},
	})
	cmdutiltest.Seed(t, s, "k8s", "name: k8s\n", []cmdutiltest.Instance{
		{Group: "worker", UUID: "w1", AZ: "z1", DiskCIDs: []string{"disk-w1"}, DiskSizeMB: 2048},
		{Group: "worker", UUID: "w2", Index: 1, AZ: "z2", DiskCIDs: []string{"disk-w2"}, DiskSizeMB: 4096},
	})
	clock = t0.Add(time.Hour)
	require.NoError(t, s.OrphanDisk(context.Background(), "disk-w2"))
	clock = t0.Add(2 * time.Hour)
	require.NoError(t, s.OrphanDisk(context.Background(), "disk-d"))
	return dir, func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
}

func TestDisksRun(t *testing.T) {
	_, open := seed(t)
	tests := []struct {
		name      string
		opts      Options
		tty, json bool
		out       string
	}{
		{"all tty", Options{}, true, false, "" +
			"DEPLOYMENT  INSTANCE   AZ  DISK CID  NAME  SIZE    ACTIVE\n" +
			"cf          api/a1     z1  disk-a    -     10 GiB  true\n" +
			"k8s         worker/w1  z1  disk-w1   -     2 GiB   true\n"},
		{"one piped", Options{Deployment: "k8s"}, false, false, "k8s\tworker/w1\tz1\tdisk-w1\t-\t2 GiB\ttrue\n"},
		{"one json", Options{Deployment: "cf"}, false, true, `[
  {
    "cid": "disk-a",
    "deployment": "cf",
    "instance": "api/a1",
    "az": "z1",
    "name": "",
    "size_mb": 10240,
    "active": true,
    "created_at": "2026-03-04T10:00:00Z"
  }
]
`},
		{"orphaned tty", Options{Orphaned: true}, true, false, "" +
			"DISK CID  SIZE      DEPLOYMENT  INSTANCE   AZ  ORPHANED\n" +
			"disk-d    1500 MiB  cf          db/d1      z2  1 hour ago\n" +
			"disk-w2   4 GiB     k8s         worker/w2  z2  2 hours ago\n"},
		{"orphaned of one piped", Options{Orphaned: true, Deployment: "k8s"}, false, false, "disk-w2\t4 GiB\tk8s\tworker/w2\tz2\t2026-03-04T11:00:00Z\n"},
		{"orphaned json", Options{Orphaned: true, Deployment: "cf"}, false, true, `[
  {
    "cid": "disk-d",
    "deployment": "cf",
    "instance": "db/d1",
    "az": "z2",
    "size_mb": 1500,
    "orphaned_at": "2026-03-04T12:00:00Z"
  }
]
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, _ := ui.Test()
			ios.SetTTY(tt.tty)
			opts := tt.opts
			opts.IO, opts.State, opts.JSON, opts.Now = ios, open, tt.json, func() time.Time { return t0.Add(3 * time.Hour) }
			require.NoError(t, disksRun(context.Background(), &opts))
			assert.Equal(t, tt.out, out.String())
		})
	}
}

func TestDisksNone(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", []cmdutiltest.Instance{{Group: "api", UUID: "a1"}})
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	for _, orphaned := range []bool{false, true} {
		ios, _, out, errOut := ui.Test()
		require.NoError(t, disksRun(context.Background(), &Options{IO: ios, State: open, Now: time.Now, Orphaned: orphaned}))
		assert.Empty(t, out.String())
		if orphaned {
			assert.Equal(t, "No orphaned disks.\n", errOut.String())
		} else {
			assert.Equal(t, "No persistent disks.\n", errOut.String())
		}
	}
	ios, _, _, _ := ui.Test()
	assert.ErrorContains(t, disksRun(context.Background(), &Options{IO: ios, State: open, Now: time.Now, Deployment: "nope"}), "deployment nope not found in ")
}
