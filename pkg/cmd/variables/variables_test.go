package variables

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

func TestNewCmdVariablesFlags(t *testing.T) {
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
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: tt.dep, JSON: tt.json}, Now: time.Now}
			var got *Options
			cmd := NewCmdVariables(f, func(o *Options) error { got = o; return nil })
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
			got.IO, got.State, got.Now = nil, nil, nil
			assert.Equal(t, tt.want, *got)
		})
	}
}

func TestVariablesRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := t0
	s := cmdutiltest.Open(t, dir, func() time.Time { return clock })
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", nil)
	cmdutiltest.Seed(t, s, "other", "name: other\n", nil)
	put := func(dep, name, typ, value string) int64 {
		id, err := s.PutVariable(ctx, state.Variable{Deployment: dep, Name: name, Type: typ, Value: value})
		require.NoError(t, err)
		return id
	}
	put("cf", "/cf/admin_password", "password", "SECRET-OLD")
	clock = t0.Add(time.Hour)
	pw := put("cf", "/cf/admin_password", "password", "SECRET-NEW")
	ca := put("cf", "/cf/router_ca", "certificate", "-----BEGIN CERTIFICATE-----SECRET")
	put("other", "/other/x", "password", "SECRET-OTHER")
	put("", "/shared", "password", "SECRET-SHARED")

	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	now := func() time.Time { return t0.Add(3 * time.Hour) }
	tests := []struct {
		name      string
		tty, json bool
		out       string
	}{
		{"tty", true, false, fmt.Sprintf("ID  NAME                TYPE         CREATED\n"+
			"%-2d  /cf/admin_password  password     2 hours ago\n"+
			"%-2d  /cf/router_ca       certificate  2 hours ago\n", pw, ca)},
		{"piped", false, false, fmt.Sprintf("%d\t/cf/admin_password\tpassword\t2026-03-04T11:00:00Z\n"+
			"%d\t/cf/router_ca\tcertificate\t2026-03-04T11:00:00Z\n", pw, ca)},
		{"json", false, true, fmt.Sprintf(`[
  {
    "id": "%d",
    "name": "/cf/admin_password",
    "type": "password",
    "created_at": "2026-03-04T11:00:00Z"
  },
  {
    "id": "%d",
    "name": "/cf/router_ca",
    "type": "certificate",
    "created_at": "2026-03-04T11:00:00Z"
  }
]
`, pw, ca)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, errOut := ui.Test()
			ios.SetTTY(tt.tty)
			require.NoError(t, variablesRun(ctx, &Options{IO: ios, State: open, Now: now, Deployment: "cf", JSON: tt.json}))
			assert.Equal(t, tt.out, out.String())
			assert.NotContains(t, out.String()+errOut.String(), "SECRET")
		})
	}

	ios, _, out, errOut := ui.Test()
	cmdutiltest.Seed(t, s, "novars", "", nil)
	require.NoError(t, variablesRun(ctx, &Options{IO: ios, State: open, Now: now, Deployment: "novars"}))
	assert.Empty(t, out.String())
	assert.Equal(t, "Deployment novars has no variables.\n", errOut.String())

	err := variablesRun(ctx, &Options{IO: ios, State: open, Now: now, Deployment: "nope"})
	assert.ErrorContains(t, err, "deployment nope not found in ")
}
