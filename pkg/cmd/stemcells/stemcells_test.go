package stemcells

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

func TestNewCmdStemcellsFlags(t *testing.T) {
	ios, _, _, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{}, Now: time.Now}
	var got *Options
	cmd := NewCmdStemcells(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs(nil)
	require.NoError(t, cmd.Execute())
	got.IO, got.State, got.Now = nil, nil, nil
	assert.Equal(t, Options{}, *got)

	cmd = NewCmdStemcells(f, func(o *Options) error { return nil })
	cmd.SetArgs([]string{"x"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	assert.ErrorContains(t, cmd.Execute(), "unknown command")
}

func TestStemcellsRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, func() time.Time { return t0 })
	for _, sc := range []state.Stemcell{
		{Name: "kpaas-local-ubuntu-jammy", Version: "1.2", OS: "ubuntu-jammy", CID: "sc-local-12", UploadedAt: t0},
		{Name: "kpaas-local-ubuntu-jammy", Version: "1.10", OS: "ubuntu-jammy", CID: "sc-local-110", UploadedAt: t0.Add(time.Hour)},
		{Name: "kpaas-local-ubuntu-jammy", Version: "1.10", OS: "ubuntu-jammy", CID: "img-9f", CPI: "openstack", UploadedAt: t0.Add(time.Hour)},
	} {
		require.NoError(t, s.SaveStemcell(ctx, sc))
	}
	cmdutiltest.Seed(t, s, "cf", "name: cf\nstemcells: [{alias: default, os: ubuntu-jammy, version: latest}]\n", nil)
	cmdutiltest.Seed(t, s, "db", "name: db\nstemcells: [{alias: default, name: kpaas-local-ubuntu-jammy, version: \"1.2\"}]\n", nil)
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	now := func() time.Time { return t0.Add(3 * time.Hour) }
	tests := []struct {
		name      string
		tty, json bool
		out       string
	}{
		{"tty", true, false, "" +
			"NAME                      VERSION  OS            CPI        CID           DEPLOYMENTS  UPLOADED\n" +
			"kpaas-local-ubuntu-jammy  1.10     ubuntu-jammy  default    sc-local-110  cf           2 hours ago\n" +
			"kpaas-local-ubuntu-jammy  1.10     ubuntu-jammy  openstack  img-9f        cf           2 hours ago\n" +
			"kpaas-local-ubuntu-jammy  1.2      ubuntu-jammy  default    sc-local-12   db           3 hours ago\n"},
		{"piped", false, false, "" +
			"kpaas-local-ubuntu-jammy\t1.10\tubuntu-jammy\tdefault\tsc-local-110\tcf\t2026-03-04T11:00:00Z\n" +
			"kpaas-local-ubuntu-jammy\t1.10\tubuntu-jammy\topenstack\timg-9f\tcf\t2026-03-04T11:00:00Z\n" +
			"kpaas-local-ubuntu-jammy\t1.2\tubuntu-jammy\tdefault\tsc-local-12\tdb\t2026-03-04T10:00:00Z\n"},
		{"json", false, true, `[
  {
    "name": "kpaas-local-ubuntu-jammy",
    "version": "1.10",
    "os": "ubuntu-jammy",
    "cpi": "default",
    "cid": "sc-local-110",
    "deployments": [
      "cf"
    ],
    "uploaded_at": "2026-03-04T11:00:00Z"
  },
  {
    "name": "kpaas-local-ubuntu-jammy",
    "version": "1.10",
    "os": "ubuntu-jammy",
    "cpi": "openstack",
    "cid": "img-9f",
    "deployments": [
      "cf"
    ],
    "uploaded_at": "2026-03-04T11:00:00Z"
  },
  {
    "name": "kpaas-local-ubuntu-jammy",
    "version": "1.2",
    "os": "ubuntu-jammy",
    "cpi": "default",
    "cid": "sc-local-12",
    "deployments": [
      "db"
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
			require.NoError(t, stemcellsRun(ctx, &Options{IO: ios, State: open, Now: now, JSON: tt.json}))
			assert.Equal(t, tt.out, out.String())
		})
	}

	ios, _, out, errOut := ui.Test()
	empty := t.TempDir()
	cmdutiltest.Open(t, empty, nil)
	require.NoError(t, stemcellsRun(ctx, &Options{IO: ios, Now: now, State: func(ctx context.Context) (state.Store, error) { return state.Open(ctx, empty, state.Options{}) }}))
	assert.Empty(t, out.String())
	assert.Equal(t, "No stemcells. Upload one with: kpaas upload-stemcell STEMCELL.tgz\n", errOut.String())
}
