package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agentclient"
	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/cmdutil/cmdutiltest"
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

func TestNewCmdSSHFlags(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		dep     string
		json    bool
		want    Options
		wantErr string
	}{
		{name: "shell", argv: []string{"api/0"}, dep: "cf", want: Options{Deployment: "cf", Selector: "api/0"}},
		{name: "command on a group", argv: []string{"router", "-c", "uptime"}, dep: "cf", want: Options{Deployment: "cf", Selector: "router", Command: "uptime"}},
		{name: "gateway", argv: []string{"api", "-c", "id", "--gw-host", "jump", "--gw-user", "ops", "--gw-private-key", "/k"}, dep: "cf",
			want: Options{Deployment: "cf", Selector: "api", Command: "id", Gateway: agentclient.GatewayFlags{Host: "jump", User: "ops", PrivateKey: "/k"}}},
		{name: "json with command", argv: []string{"-c", "id"}, dep: "cf", json: true, want: Options{Deployment: "cf", Command: "id", JSON: true}},
		{name: "no deployment", argv: []string{"api"}, wantErr: "a deployment is required"},
		{name: "json without command", argv: []string{"api/0"}, dep: "cf", json: true, wantErr: "--json needs -c"},
		{name: "two selectors", argv: []string{"a", "b"}, dep: "cf", wantErr: "accepts at most 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := ui.Test()
			f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: tt.dep, JSON: tt.json}}
			var got *Options
			cmd := NewCmdSSH(f, func(o *Options) error { got = o; return nil })
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
			got.IO, got.Targets = nil, nil
			assert.Equal(t, tt.want, *got)
		})
	}
}

// twoAgents starts web/0 and web/1 and returns a resolver for deployment "dep".
func twoAgents(t *testing.T) ([]*act.Agent, func() (Targets, error)) {
	client := act.MustKeys(t)
	var agents []*act.Agent
	var list []agentclient.Target
	for i := 0; i < 2; i++ {
		a := act.Start(t, agentBin, act.Options{Name: fmt.Sprintf("web/%d", i), Client: &client})
		agents = append(agents, a)
		tg := a.Target()
		tg.Index = i
		list = append(list, tg)
	}
	return agents, func() (Targets, error) { return act.StaticTargets{Deployment: "dep", List: list}, nil }
}

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(l)
	return l
}

func TestCommandOnEveryInstance(t *testing.T) {
	agents, targets := twoAgents(t)
	ctx := context.Background()

	ios, _, out, errOut := ui.Test()
	err := sshRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Selector: "web", Command: "echo hi; printf partial; echo err >&2"})
	require.NoError(t, err)
	assert.Equal(t, []string{"web/0: hi", "web/0: partial", "web/1: hi", "web/1: partial"}, sortedLines(out.String()))
	assert.Equal(t, []string{"web/0: err", "web/1: err"}, sortedLines(errOut.String()))

	// One instance failing makes the command fail, naming it.
	ios, _, out, _ = ui.Test()
	fail := fmt.Sprintf(`if [ "$PWD" = "%s/var/vcap" ]; then exit 3; fi; echo ok`, agents[1].Root)
	err = sshRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Selector: "web", Command: fail})
	require.Error(t, err)
	assert.Equal(t, "1 of 2 instances failed: web/1 (exit 3)", err.Error())
	assert.Equal(t, "web/0: ok\n", out.String())

	// --json: results per instance, exit code still non-zero.
	ios, _, out, errOut = ui.Test()
	err = sshRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Selector: "web", Command: fail, JSON: true})
	var ec *cmdutil.ExitCodeError
	require.ErrorAs(t, err, &ec)
	assert.Equal(t, 1, ec.Code)
	assert.JSONEq(t, `[{"instance":"web/0","exit_code":0,"stdout":"ok\n","stderr":""},{"instance":"web/1","exit_code":3,"stdout":"","stderr":""}]`, out.String())
	assert.Contains(t, errOut.String(), "1 of 2 instances failed")

	// Only the selected instance runs it, and it reads what is piped in.
	ios, in, out, _ := ui.Test()
	in.WriteString("piped\n")
	require.NoError(t, sshRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Selector: "web/1", Command: "echo one; cat"}))
	assert.Equal(t, "web/1: one\nweb/1: piped\n", out.String())

	// An unreachable instance is reported as such.
	ios, _, _, _ = ui.Test()
	broken := func() (Targets, error) {
		tg := agents[0].Target()
		tg.Name, tg.Group, tg.Address = "db/0", "db", "127.0.0.1:1"
		return act.StaticTargets{Deployment: "dep", List: []agentclient.Target{tg}}, nil
	}
	err = sshRun(ctx, &Options{IO: ios, Targets: broken, Deployment: "dep", Command: "true"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "db/0 (connecting to the agent of db/0 at 127.0.0.1:1: tcp failed")
}

func TestInteractiveShell(t *testing.T) {
	_, targets := twoAgents(t)
	ctx := context.Background()

	ios, in, out, _ := ui.Test()
	in.WriteString("echo from-the-shell\nexit 5\n")
	err := sshRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Selector: "web/0"})
	var ec *cmdutil.ExitCodeError
	require.ErrorAs(t, err, &ec)
	assert.Equal(t, 5, ec.Code)
	assert.Contains(t, out.String(), "from-the-shell")

	ios, _, _, _ = ui.Test()
	err = sshRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Selector: "web"})
	var fe *cmdutil.FlagError
	require.ErrorAs(t, err, &fe)
	assert.Contains(t, err.Error(), `"web" matches 2 instances (web/0, web/1)`)
}

func TestResolveErrors(t *testing.T) {
	ctx := context.Background()
	ios, _, _, _ := ui.Test()
	err := sshRun(ctx, &Options{IO: ios, Targets: func() (Targets, error) { return nil, ErrNotWired }, Deployment: "dep", Command: "true"})
	assert.True(t, errors.Is(err, ErrNotWired))

	targets := func() (Targets, error) {
		return act.StaticTargets{Deployment: "dep", List: []agentclient.Target{{Name: "web/0", Group: "web", ID: "0"}}}, nil
	}
	err = sshRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Selector: "api", Command: "true"})
	assert.EqualError(t, err, `deployment dep: no instance matches "api"; instances: web/0`)
	err = sshRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "other", Command: "true"})
	assert.ErrorContains(t, err, `listing the instances of other: deployment "other" not found`)
	err = sshRun(ctx, &Options{IO: ios, Targets: targets, Deployment: "dep", Command: "true", Gateway: agentclient.GatewayFlags{Host: "jump"}})
	assert.ErrorContains(t, err, "--gw-host needs --gw-private-key")
}

// TestSSHFromState runs the real command, wired to a real SQLite store that
// records two VMs whose agents run on loopback and one instance without a VM.
func TestSSHFromState(t *testing.T) {
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	insts := []cmdutiltest.Instance{
		{Group: "web", Index: 0, UUID: "aaaa1111-0000-4000-8000-000000000000"},
		{Group: "web", Index: 1, UUID: "bbbb2222-0000-4000-8000-000000000000"},
		{Group: "db", Index: 0, UUID: "cccc3333-0000-4000-8000-000000000000"},
	}
	for i := range insts[:2] {
		cmdutiltest.StartAgent(t, agentBin, s, &insts[i])
	}
	cmdutiltest.Seed(t, s, "dep", "name: dep\n", insts)

	run := func(argv ...string) (string, string, error) {
		ios, _, out, errOut := ui.Test()
		f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: "dep", State: dir}}
		cmd := NewCmdSSH(f, nil)
		cmd.SetArgs(argv)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		return out.String(), errOut.String(), err
	}
	out, _, err := run("web/1", "-c", "echo hello")
	require.NoError(t, err)
	assert.Equal(t, "web/bbbb2222-0000-4000-8000-000000000000: hello\n", out)

	out, _, err = run("web/aaaa", "-c", "echo by-prefix")
	require.NoError(t, err)
	assert.Equal(t, "web/aaaa1111-0000-4000-8000-000000000000: by-prefix\n", out)

	out, _, err = run("web", "-c", "echo all")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	sort.Strings(lines)
	assert.Equal(t, []string{"web/aaaa1111-0000-4000-8000-000000000000: all", "web/bbbb2222-0000-4000-8000-000000000000: all"}, lines)

	_, _, err = run("db", "-c", "true")
	assert.ErrorContains(t, err, `no instance matches "db"`)

	ios, _, _, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{Deployment: "nope", State: dir}}
	cmd := NewCmdSSH(f, nil)
	cmd.SetArgs([]string{"-c", "true"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	err = cmd.Execute()
	assert.ErrorContains(t, err, "listing the instances of nope")
}
