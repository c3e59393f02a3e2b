package instances

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/cmdutil/cmdutiltest"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

var agentBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := act.BuildAgent()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

func TestNewCmdInstancesFlags(t *testing.T) {
	d := DefaultAgentTimeout
	tests := []struct {
		name    string
		dep     string
		json    bool
		argv    []string
		want    Options
		wantErr string
	}{
		{name: "all", want: Options{AgentTimeout: d}},
		{name: "ps details failing", dep: "cf", argv: []string{"--ps", "--details", "--failing"}, want: Options{Deployment: "cf", Ps: true, Details: true, Failing: true, AgentTimeout: d}},
		{name: "short flags", dep: "cf", argv: []string{"-p", "-i", "-f"}, want: Options{Deployment: "cf", Ps: true, Details: true, Failing: true, AgentTimeout: d}},
		{name: "vitals", argv: []string{"--vitals"}, want: Options{Vitals: true, AgentTimeout: d}},
		{name: "json, timeout", json: true, argv: []string{"--agent-timeout", "1s"}, want: Options{JSON: true, AgentTimeout: time.Second}},
		{name: "negative timeout", argv: []string{"--agent-timeout", "-1s"}, wantErr: "--agent-timeout must be positive"},
		{name: "arg", argv: []string{"api"}, wantErr: "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: tt.dep, JSON: tt.json}, Now: time.Now}
			var got *Options
			cmd := NewCmdInstances(f, func(o *Options) error { got = o; return nil })
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

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestInstancesOfRealAgents(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	insts := []cmdutiltest.Instance{
		{Group: "web", Index: 0, UUID: "w0", AZ: "z1", VMType: "small", Bootstrap: true},
		{Group: "web", Index: 1, UUID: "w1", AZ: "z2", VMType: "small"},
		{Group: "db", Index: 0, UUID: "d0", AZ: "z1", VMType: "large", DesiredState: state.Stopped, DiskCIDs: []string{"disk-d0"}, DiskSizeMB: 1024},
		{Group: "worker", Index: 0, UUID: "k0", AZ: "z1", VMCID: "vm-gone", IP: closedPort(t), HostKey: hostKey},
		{Group: "worker", Index: 1, UUID: "k1", AZ: "z2"},
	}
	agents := make([]*act.Agent, 3)
	for i := range agents {
		agents[i] = cmdutiltest.StartAgent(t, agentBin, s, &insts[i])
	}
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", insts)
	cmdutiltest.ApplyJob(t, agents[0], "app", "- name: app\n  executable: /bin/sleep\n  args: [\"1000\"]\n- name: helper\n  executable: /bin/sleep\n  args: [\"1000\"]\n")
	cmdutiltest.ApplyJob(t, agents[1], "mixed", "- name: ok\n  executable: /bin/sleep\n  args: [\"1000\"]\n- name: broken\n  executable: /no/such/binary\n")
	cmdutiltest.StopJobs(t, agents[2])
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	run := func(o Options) (string, string) {
		ios, _, out, errOut := ui.Test()
		o.IO, o.State, o.Now, o.Deployment, o.AgentTimeout = ios, open, time.Now, "cf", 5*time.Second
		require.NoError(t, instancesRun(context.Background(), &o))
		return out.String(), errOut.String()
	}

	ip := func(i int) string { return insts[i].IP }
	want := fmt.Sprintf(""+
		"db/d0\t\tstopped\tz1\t%s\n"+
		"web/w0\t\trunning\tz1\t%s\n"+
		"\tapp/app\trunning\t\t\n"+
		"\tapp/helper\trunning\t\t\n"+
		"web/w1\t\tfailing\tz2\t%s\n"+
		"\tmixed/broken\tfailing\t\t\n"+
		"\tmixed/ok\trunning\t\t\n"+
		"worker/k0\t\tunresponsive agent\tz1\t%s\n"+
		"worker/k1\t\t-\tz2\t-\n", ip(2), ip(0), ip(1), ip(3))
	var out, errOut string
	require.Eventually(t, func() bool {
		out, errOut = run(Options{Ps: true})
		return out == want
	}, 20*time.Second, 100*time.Millisecond, "last output:\n%s", func() string { return out }())
	assert.Contains(t, errOut, "cf/worker/k0: connecting to the agent of worker/k0 at "+ip(3))

	out, _ = run(Options{Ps: true, Failing: true})
	assert.Equal(t, fmt.Sprintf(""+
		"db/d0\t\tstopped\tz1\t%s\n"+
		"web/w1\t\tfailing\tz2\t%s\n"+
		"\tmixed/broken\tfailing\t\t\n"+
		"worker/k0\t\tunresponsive agent\tz1\t%s\n"+
		"worker/k1\t\t-\tz2\t-\n", ip(2), ip(1), ip(3)), out)

	out, _ = run(Options{Details: true})
	assert.Equal(t, fmt.Sprintf(""+
		"db/d0\tstopped\tz1\t%s\tstopped\tvm-d0\tlarge\tdisk-d0\tagent-d0\t0\tfalse\tfalse\n"+
		"web/w0\trunning\tz1\t%s\tstarted\tvm-w0\tsmall\t-\tagent-w0\t0\ttrue\tfalse\n"+
		"web/w1\tfailing\tz2\t%s\tstarted\tvm-w1\tsmall\t-\tagent-w1\t1\tfalse\tfalse\n"+
		"worker/k0\tunresponsive agent\tz1\t%s\tstarted\tvm-gone\t-\t-\tagent-k0\t0\tfalse\tfalse\n"+
		"worker/k1\t-\tz2\t-\tstarted\t-\t-\t-\t-\t1\tfalse\tfalse\n", ip(2), ip(0), ip(1), ip(3)), out)

	out, _ = run(Options{JSON: true, Failing: true})
	var views []instanceView
	require.NoError(t, json.Unmarshal([]byte(out), &views))
	require.Len(t, views, 4)
	w1 := views[1]
	assert.Equal(t, "web/w1", w1.Instance)
	require.Len(t, w1.Processes, 2)
	byName := map[string]processView{w1.Processes[0].Name: w1.Processes[0], w1.Processes[1].Name: w1.Processes[1]}
	assert.Equal(t, "failing", byName["broken"].State)
	assert.Contains(t, byName["broken"].Error, "/no/such/binary")
	assert.Equal(t, "running", byName["ok"].State)
	assert.Greater(t, byName["ok"].PID, 0)
	assert.Equal(t, []string{"disk-d0"}, views[0].DiskCIDs)
	assert.Equal(t, []processView{}, views[3].Processes)
	assert.Equal(t, "-", views[3].ProcessState)
	assert.Nil(t, views[3].VMCreatedAt, "no VM")
	assert.Nil(t, w1.Vitals, "vitals only when asked")

	out, _ = run(Options{JSON: true, Vitals: true})
	views = nil
	require.NoError(t, json.Unmarshal([]byte(out), &views))
	require.Len(t, views, 5)
	for _, v := range views[:3] {
		require.NotNil(t, v.Vitals, v.Instance)
		assert.Len(t, v.Vitals.Load, 3)
		assert.Greater(t, v.Vitals.MemKB, int64(0))
	}
	assert.Nil(t, views[3].Vitals, "an unresponsive agent has no vitals")
	assert.Nil(t, views[4].Vitals, "no VM, no vitals")
}

func TestInstancesTTY(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", []cmdutiltest.Instance{
		{Group: "router", UUID: "r0", AZ: "z1", VMType: "minimal", VMCID: "vm-r0", IP: "127.0.0.1:1", HostKey: hostKey, Bootstrap: true},
		{Group: "api", UUID: "a0", AZ: "z2", DesiredState: state.Stopped, Ignore: true},
	})
	cmdutiltest.Seed(t, s, "k8s", "name: k8s\n", nil)
	_, err := cmdutil.EnsureClientKey(context.Background(), s)
	require.NoError(t, err)
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }

	ios, _, out, errOut := ui.Test()
	ios.SetTTY(true)
	now := func() time.Time { return time.Now().Add(3 * time.Hour) }
	require.NoError(t, instancesRun(context.Background(), &Options{IO: ios, State: open, Now: now, Details: true, Ps: true, AgentTimeout: 2 * time.Second}))
	assert.Equal(t, ""+
		"DEPLOYMENT  INSTANCE   PROCESS  PROCESS STATE       AZ  IPS          STATE    VM CID  VM TYPE  DISK CIDS  AGENT ID  INDEX  BOOTSTRAP  IGNORE\n"+
		"cf          api/a0              -                   z2  -            stopped  -       -        -          -         0      false      true\n"+
		"cf          router/r0           unresponsive agent  z1  127.0.0.1:1  started  vm-r0   minimal  -          agent-r0  0      true       false\n", out.String())
	assert.Contains(t, errOut.String(), "cf/router/r0: connecting to the agent of router/r0 at 127.0.0.1:1")

	ios, _, out, errOut = ui.Test()
	ios.SetTTY(true)
	require.NoError(t, instancesRun(context.Background(), &Options{IO: ios, State: open, Now: now, Deployment: "k8s", AgentTimeout: time.Second}))
	assert.Empty(t, out.String())
	assert.Equal(t, "No instances.\n", errOut.String())

	ios, _, out, _ = ui.Test()
	ios.SetTTY(true)
	require.NoError(t, instancesRun(context.Background(), &Options{IO: ios, State: open, Now: now, Deployment: "cf", Vitals: true, AgentTimeout: 2 * time.Second}))
	assert.Equal(t, ""+
		"INSTANCE   PROCESS STATE       AZ  IPS          VM CREATED AT  UPTIME  LOAD (1M, 5M, 15M)  CPU USER  CPU SYS  CPU WAIT  MEMORY USAGE  SWAP USAGE  SYSTEM DISK USAGE  EPHEMERAL DISK USAGE  PERSISTENT DISK USAGE\n"+
		"api/a0     -                   z2  -            -              -       -                   -         -        -         -             -           -                  -                     -\n"+
		"router/r0  unresponsive agent  z1  127.0.0.1:1  3 hours ago    -       -                   -         -        -         -             -           -                  -                     -\n", out.String())
}
