package events

import (
	"context"
	"encoding/json"
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

func TestParseTime(t *testing.T) {
	now := t0
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"", time.Time{}, false},
		{"2026-01-02T15:04:05Z", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), false},
		{"2026-01-02", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), false},
		{"30m", t0.Add(-30 * time.Minute), false},
		{"7d", t0.Add(-7 * 24 * time.Hour), false},
		{"-5m", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"2x", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in, now)
		if tt.err {
			assert.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.True(t, tt.want.Equal(got), "%s: %v", tt.in, got)
	}
}

func TestNewCmdEventsFlags(t *testing.T) {
	tests := []struct {
		args    []string
		globals cmdutil.GlobalOptions
		check   func(t *testing.T, o *Options)
		err     string
	}{
		{args: nil, check: func(t *testing.T, o *Options) { assert.Equal(t, 200, o.Limit) }},
		{args: []string{"--instance", "api/u1", "--action", "recreate", "--after", "2h", "--before", "2026-01-02", "--limit", "0", "--before-id", "9"},
			globals: cmdutil.GlobalOptions{Deployment: "cf", JSON: true},
			check: func(t *testing.T, o *Options) {
				assert.Equal(t, Options{Deployment: "cf", Instance: "api/u1", Action: "recreate", After: "2h", Before: "2026-01-02", BeforeID: 9, JSON: true},
					Options{Deployment: o.Deployment, Instance: o.Instance, Action: o.Action, After: o.After, Before: o.Before, BeforeID: o.BeforeID, Limit: o.Limit, JSON: o.JSON})
			}},
		{args: []string{"--after", "soon"}, err: `--after: "soon" is not a time`},
		{args: []string{"--limit", "-1"}, err: "--limit must be 0"},
	}
	for _, tt := range tests {
		ios, _, _, _ := ui.Test()
		g := tt.globals
		f := &cmdutil.Factory{IO: ios, Globals: &g, Now: time.Now}
		var got *Options
		cmd := NewCmdEvents(f, func(o *Options) error { got = o; return nil })
		cmd.SetArgs(tt.args)
		cmd.SetOut(ios.ErrOut)
		cmd.SetErr(ios.ErrOut)
		err := cmd.Execute()
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err)
			continue
		}
		require.NoError(t, err)
		tt.check(t, got)
	}
}

func TestEventsRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := t0
	s := statetest.OpenWith(t, dir, state.Options{Key: statetest.Key, Now: func() time.Time { return clock }, User: "alice", Host: "ws"})
	add := func(e state.Event) {
		clock = clock.Add(10 * time.Minute)
		_, err := s.AppendEvents(ctx, e)
		require.NoError(t, err)
	}
	add(state.Event{Action: "create", ObjectType: "deployment", ObjectName: "cf", Deployment: "cf", TaskID: 1})
	add(state.Event{Action: "recreate", ObjectType: "instance", ObjectName: "api/u1", Deployment: "cf", Instance: "api/u1", TaskID: 1, Error: "agent did not answer", Context: json.RawMessage(`{"attempt":2}`)})
	add(state.Event{Action: "update", ObjectType: "config", ObjectName: "cloud/default"})

	open := func(ctx context.Context) (state.Store, error) {
		return state.Open(ctx, dir, state.Options{Key: statetest.Key})
	}
	now := func() time.Time { return t0.Add(time.Hour) }
	tests := []struct {
		name        string
		opts        Options
		tty         bool
		out, errOut string
	}{
		{"tty", Options{Limit: 200}, true,
			"ID  TIME            USER      ACTION    OBJECT                DEPLOYMENT  INSTANCE  TASK  ERROR\n" +
				"3   30 minutes ago  alice@ws  update    config cloud/default  -           -         -     -\n" +
				"2   40 minutes ago  alice@ws  recreate  instance api/u1       cf          api/u1    1     agent did not answer\n" +
				"1   50 minutes ago  alice@ws  create    deployment cf         cf          -         1     -\n", ""},
		{"piped, one deployment", Options{Deployment: "cf", Limit: 200}, false,
			"2\t2026-03-04T10:20:00Z\talice@ws\trecreate\tinstance api/u1\tcf\tapi/u1\t1\tagent did not answer\n" +
				"1\t2026-03-04T10:10:00Z\talice@ws\tcreate\tdeployment cf\tcf\t-\t1\t-\n", ""},
		{"after an age, limited", Options{After: "45m", Limit: 1}, false,
			"3\t2026-03-04T10:30:00Z\talice@ws\tupdate\tconfig cloud/default\t-\t-\t-\t-\n",
			"Showing the newest 1; see older ones with --before-id 3.\n"},
		{"json", Options{Action: "recreate", JSON: true}, false, `[
  {
    "id": 2,
    "time": "2026-03-04T10:20:00Z",
    "user": "alice@ws",
    "action": "recreate",
    "object_type": "instance",
    "object_name": "api/u1",
    "deployment": "cf",
    "instance": "api/u1",
    "task_id": 1,
    "error": "agent did not answer",
    "context": {
      "attempt": 2
    }
  }
]
`, ""},
		{"nothing", Options{Instance: "nope"}, false, "", "No events.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, out, errOut := ui.Test()
			ios.SetTTY(tt.tty)
			opts := tt.opts
			opts.IO, opts.State, opts.Now = ios, open, now
			require.NoError(t, eventsRun(ctx, &opts))
			assert.Equal(t, tt.out, out.String())
			assert.Equal(t, tt.errOut, errOut.String())
		})
	}
}
