package configs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
	"github.com/kpaas/kpaas/pkg/ui"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func TestNewCmdConfigsFlags(t *testing.T) {
	tests := []struct {
		args []string
		want Options
		err  string
	}{
		{args: nil, want: Options{}},
		{args: []string{"--type", "cloud", "--name", "vsphere", "--history"}, want: Options{Type: "cloud", Name: "vsphere", History: true}},
		{args: []string{"--type", "cluod"}, err: `--type must be cloud, runtime or cpi, not "cluod"`},
		{args: []string{"--history"}, err: "--history needs --type"},
	}
	for _, tt := range tests {
		ios, _, _, _ := ui.Test()
		f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{}, Now: time.Now}
		var got *Options
		cmd := NewCmdConfigs(f, func(o *Options) error { got = o; return nil })
		cmd.SetArgs(tt.args)
		cmd.SetOut(ios.ErrOut)
		cmd.SetErr(ios.ErrOut)
		err := cmd.Execute()
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.want.Type, got.Type)
		assert.Equal(t, tt.want.Name, got.Name)
		assert.Equal(t, tt.want.History, got.History)
	}
}

func TestConfigsRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := t0
	s := statetest.OpenWith(t, dir, state.Options{Key: statetest.Key, Now: func() time.Time { return clock }, User: "alice", Host: "ws"})
	for _, c := range []state.Config{
		{Type: state.CloudConfig, Content: "a"},
		{Type: state.CloudConfig, Content: "b"},
		{Type: state.RuntimeConfig, Name: "dns", Content: "c"},
	} {
		clock = clock.Add(time.Hour)
		_, _, err := s.SaveConfig(ctx, c)
		require.NoError(t, err)
	}
	open := func(ctx context.Context) (state.Store, error) {
		return state.Open(ctx, dir, state.Options{Key: statetest.Key})
	}
	now := func() time.Time { return t0.Add(4 * time.Hour) }

	tests := []struct {
		name string
		opts Options
		tty  bool
		out  string
	}{
		{"tty", Options{}, true, "ID  TYPE     NAME     VERSION  CREATED      BY\n" +
			"2   cloud    default  2        2 hours ago  alice@ws\n" +
			"3   runtime  dns      1        1 hour ago   alice@ws\n"},
		{"piped", Options{Type: "runtime"}, false, "3\truntime\tdns\t1\t2026-03-04T13:00:00Z\talice@ws\n"},
		{"history", Options{Type: "cloud", History: true}, false, "2\tcloud\tdefault\t2\t2026-03-04T12:00:00Z\talice@ws\n1\tcloud\tdefault\t1\t2026-03-04T11:00:00Z\talice@ws\n"},
		{"json", Options{Name: "dns", JSON: true}, false, `[
  {
    "id": 3,
    "type": "runtime",
    "name": "dns",
    "version": 1,
    "created_at": "2026-03-04T13:00:00Z",
    "created_by": "alice@ws"
  }
]
`},
		{"empty json", Options{Type: "cpi", JSON: true}, false, "[]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, _ := ui.Test()
			ios.SetTTY(tt.tty)
			opts := tt.opts
			opts.IO, opts.State, opts.Now = ios, open, now
			require.NoError(t, configsRun(ctx, &opts))
			assert.Equal(t, tt.out, out.String())
		})
	}
}
