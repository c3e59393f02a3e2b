package vms

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
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

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func TestNewCmdVMsFlags(t *testing.T) {
	tests := []struct {
		name    string
		dep     string
		json    bool
		argv    []string
		want    Options
		wantErr string
	}{
		{name: "all", want: Options{AgentTimeout: DefaultAgentTimeout}},
		{name: "vitals of one", dep: "cf", argv: []string{"--vitals"}, want: Options{Deployment: "cf", Vitals: true, AgentTimeout: DefaultAgentTimeout}},
		{name: "json, timeout", argv: []string{"--agent-timeout", "500ms"}, json: true, want: Options{JSON: true, AgentTimeout: 500 * time.Millisecond}},
		{name: "zero timeout", argv: []string{"--agent-timeout", "0s"}, wantErr: "--agent-timeout must be positive"},
		{name: "arg", argv: []string{"api"}, wantErr: "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: tt.dep, JSON: tt.json}, Now: time.Now}
			var got *Options
			cmd := NewCmdVMs(f, func(o *Options) error { got = o; return nil })
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

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestVMsOfRealAgents records a deployment whose VMs run real agents on
// loopback: one running a job, one whose process cannot start, one stopped,
// one VM whose agent is gone, and an instance without a VM.
func TestVMsOfRealAgents(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, func() time.Time { return t0 })
	insts := []cmdutiltest.Instance{
		{Group: "web", Index: 0, UUID: "aaaa0000-0000-4000-8000-000000000000", AZ: "z1", VMType: "small"},
		{Group: "web", Index: 1, UUID: "aaaa1111-0000-4000-8000-000000000000", AZ: "z2", VMType: "small"},
		{Group: "db", Index: 0, UUID: "dddd0000-0000-4000-8000-000000000000", AZ: "z1", VMType: "large"},
		{Group: "worker", Index: 0, UUID: "eeee0000-0000-4000-8000-000000000000", AZ: "z1", VMType: "small", VMCID: "vm-gone", IP: closedPort(t), HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
		{Group: "worker", Index: 1, UUID: "eeee1111-0000-4000-8000-000000000000", AZ: "z2", VMType: "small"},
	}
	agents := map[string]*act.Agent{}
	for _, i := range []int{0, 1, 2} {
		agents[insts[i].Group+"/"+fmt.Sprint(insts[i].Index)] = cmdutiltest.StartAgent(t, agentBin, s, &insts[i])
	}
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", insts)
	cmdutiltest.ApplyJob(t, agents["web/0"], "app", "- name: app\n  executable: /bin/sleep\n  args: [\"1000\"]\n")
	cmdutiltest.ApplyJob(t, agents["web/1"], "broken", "- name: broken\n  executable: /no/such/binary\n")
	cmdutiltest.StopJobs(t, agents["db/0"])
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }

	// The job's process needs a moment to count as running (and the broken one as failing).
	want := fmt.Sprintf(""+
		"db/dddd0000-0000-4000-8000-000000000000\tstopped\tz1\t%s\tvm-dddd0000-0000-4000-8000-000000000000\tlarge\n"+
		"web/aaaa0000-0000-4000-8000-000000000000\trunning\tz1\t%s\tvm-aaaa0000-0000-4000-8000-000000000000\tsmall\n"+
		"web/aaaa1111-0000-4000-8000-000000000000\tfailing\tz2\t%s\tvm-aaaa1111-0000-4000-8000-000000000000\tsmall\n"+
		"worker/eeee0000-0000-4000-8000-000000000000\tunresponsive agent\tz1\t%s\tvm-gone\tsmall\n",
		insts[2].IP, insts[0].IP, insts[1].IP, insts[3].IP)
	var out, errOut *bytes.Buffer
	require.Eventually(t, func() bool {
		var ios *ui.IOStreams
		ios, _, out, errOut = ui.Test()
		require.NoError(t, vmsRun(context.Background(), &Options{IO: ios, State: open, Now: time.Now, Deployment: "cf", AgentTimeout: 5 * time.Second}))
		return out.String() == want
	}, 20*time.Second, 100*time.Millisecond, "last output:\n%s", func() string { return out.String() })
	assert.Contains(t, errOut.String(), "cf/worker/eeee0000-0000-4000-8000-000000000000: connecting to the agent of worker/eeee0000-0000-4000-8000-000000000000 at "+insts[3].IP)

	// --json --vitals: numbers from the real agents; the unresponsive one has no vitals but says why.
	ios, _, out, _ := ui.Test()
	require.NoError(t, vmsRun(context.Background(), &Options{IO: ios, State: open, Now: time.Now, Deployment: "cf", Vitals: true, JSON: true, AgentTimeout: 5 * time.Second}))
	var views []vmView
	require.NoError(t, json.Unmarshal(out.Bytes(), &views))
	require.Len(t, views, 4)
	assert.Equal(t, []string{"db/0", "web/0", "web/1", "worker/0"}, []string{
		views[0].Group + "/" + fmt.Sprint(views[0].Index), views[1].Group + "/" + fmt.Sprint(views[1].Index),
		views[2].Group + "/" + fmt.Sprint(views[2].Index), views[3].Group + "/" + fmt.Sprint(views[3].Index)})
	for _, v := range views[:3] {
		require.NotNil(t, v.Vitals, v.Instance)
		assert.Len(t, v.Vitals.Load, 3, v.Instance)
		assert.Greater(t, v.Vitals.MemKB, int64(0), v.Instance)
		assert.Greater(t, v.Vitals.UptimeSecs, int64(0), v.Instance)
		assert.Contains(t, v.Vitals.Disks, "system", v.Instance)
		assert.Empty(t, v.AgentError)
		assert.Equal(t, t0, v.VMCreatedAt)
	}
	assert.Nil(t, views[3].Vitals)
	assert.Equal(t, "unresponsive agent", views[3].ProcessState)
	assert.Contains(t, views[3].AgentError, "tcp failed")
	assert.Equal(t, []string{insts[1].IP}, views[2].IPs)
	assert.Equal(t, "agent-aaaa1111-0000-4000-8000-000000000000", views[2].AgentID)
}

// TestVMsTTY checks the exact tables on a terminal, for VMs whose agents do
// not answer (loopback addresses where no agent with their host key listens).
func TestVMsTTY(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, func() time.Time { return t0 })
	hk := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", []cmdutiltest.Instance{
		{Group: "router", Index: 0, UUID: "r0", AZ: "z1", VMType: "minimal", VMCID: "vm-r0", IP: "127.0.0.1:1", HostKey: hk},
		{Group: "api", Index: 0, UUID: "a0", AZ: "z2", VMType: "small", VMCID: "vm-a0", IP: "127.0.0.1:2", HostKey: hk},
	})
	cmdutiltest.Seed(t, s, "k8s", "name: k8s\n", []cmdutiltest.Instance{
		{Group: "master", Index: 0, UUID: "m0", VMCID: "vm-m0", IP: "127.0.0.1:3", HostKey: hk},
	})
	_, err := cmdutil.EnsureClientKey(context.Background(), s)
	require.NoError(t, err)
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	now := func() time.Time { return t0.Add(2 * time.Hour) }

	ios, _, out, errOut := ui.Test()
	ios.SetTTY(true)
	require.NoError(t, vmsRun(context.Background(), &Options{IO: ios, State: open, Now: now, AgentTimeout: 2 * time.Second}))
	assert.Equal(t, ""+
		"DEPLOYMENT  INSTANCE   PROCESS STATE       AZ  IPS          VM CID  VM TYPE\n"+
		"cf          api/a0     unresponsive agent  z2  127.0.0.1:2  vm-a0   small\n"+
		"cf          router/r0  unresponsive agent  z1  127.0.0.1:1  vm-r0   minimal\n"+
		"k8s         master/m0  unresponsive agent  -   127.0.0.1:3  vm-m0   -\n", out.String())
	assert.Equal(t, 3, strings.Count(errOut.String(), "tcp failed"), errOut.String())

	ios, _, out, _ = ui.Test()
	ios.SetTTY(true)
	require.NoError(t, vmsRun(context.Background(), &Options{IO: ios, State: open, Now: now, Deployment: "k8s", Vitals: true, AgentTimeout: 2 * time.Second}))
	assert.Equal(t, ""+
		"INSTANCE   PROCESS STATE       AZ  IPS          VM CID  VM TYPE  VM CREATED AT  UPTIME  LOAD (1M, 5M, 15M)  CPU USER  CPU SYS  CPU WAIT  MEMORY USAGE  SWAP USAGE  SYSTEM DISK USAGE  EPHEMERAL DISK USAGE  PERSISTENT DISK USAGE\n"+
		"master/m0  unresponsive agent  -   127.0.0.1:3  vm-m0   -        2 hours ago    -       -                   -         -        -         -             -           -                  -                     -\n", out.String())
}

// An agent that accepts the TCP connection and never speaks is given up
// on after --agent-timeout.
func TestVMsSilentAgentTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", []cmdutiltest.Instance{{Group: "api", UUID: "a0", VMCID: "vm-a0", IP: l.Addr().String(), HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}})
	_, err = cmdutil.EnsureClientKey(context.Background(), s)
	require.NoError(t, err)
	ios, _, out, _ := ui.Test()
	done := make(chan error, 1)
	go func() {
		done <- vmsRun(context.Background(), &Options{IO: ios, Now: time.Now, Deployment: "cf", AgentTimeout: 300 * time.Millisecond,
			State: func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }})
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("kpaas vms did not give up on a silent agent")
	}
	assert.Equal(t, "api/a0\tunresponsive agent\t-\t"+l.Addr().String()+"\tvm-a0\t-\n", out.String())
}

func TestVMsWithoutClientKey(t *testing.T) {
	t.Setenv(cmdutil.AgentKeyEnv, "")
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", []cmdutiltest.Instance{{Group: "api", UUID: "a0", VMCID: "vm-a0", IP: "127.0.0.1:1"}})
	ios, _, out, errOut := ui.Test()
	require.NoError(t, vmsRun(context.Background(), &Options{IO: ios, Now: time.Now, Deployment: "cf", AgentTimeout: time.Second,
		State: func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }}))
	assert.Equal(t, "api/a0\tunresponsive agent\t-\t127.0.0.1:1\tvm-a0\t-\n", out.String())
	assert.Equal(t, "cf/api/a0: "+cmdutil.ErrNoClientKey.Error()+"\n", errOut.String())
}

// All agents are asked at once: four silent agents each see their
// connection while none has answered yet (asked one after the other, the
// second would wait for the first's 60 s timeout).
func TestVMsAsksAllAgentsAtOnce(t *testing.T) {
	const n = 4
	accepted := make(chan net.Conn, n)
	var insts []cmdutiltest.Instance
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		insts = append(insts, cmdutiltest.Instance{Group: "api", Index: i, UUID: fmt.Sprintf("a%d", i), VMCID: fmt.Sprintf("vm-a%d", i), IP: l.Addr().String(), HostKey: hostKeyForTests})
	}
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	cmdutiltest.Seed(t, s, "cf", "name: cf\n", insts)
	_, err := cmdutil.EnsureClientKey(context.Background(), s)
	require.NoError(t, err)

	ios, _, out, _ := ui.Test()
	done := make(chan error, 1)
	go func() {
		done <- vmsRun(context.Background(), &Options{IO: ios, Now: time.Now, Deployment: "cf", AgentTimeout: time.Minute,
			State: func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }})
	}()
	var conns []net.Conn
	for len(conns) < n {
		select {
		case c := <-accepted:
			conns = append(conns, c)
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d agents were asked while the first had not answered", len(conns), n)
		}
	}
	for _, c := range conns {
		c.Close() // each agent now fails at once
	}
	require.NoError(t, <-done)
	assert.Equal(t, n, strings.Count(out.String(), "unresponsive agent"), out.String())
}

const hostKeyForTests = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
