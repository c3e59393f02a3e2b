package converge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/health"
	"github.com/kpaas/kpaas/pkg/ui"
)

func factory() *cmdutil.Factory {
	io, _, _, _ := ui.Test()
	return &cmdutil.Factory{IO: io, Globals: &cmdutil.GlobalOptions{}}
}

func TestCCKFlags(t *testing.T) {
	f := factory()
	f.Globals.Deployment = "hello"
	var got *CCKOptions
	cmd := NewCmdCCK(f, func(o *CCKOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--resolution", "recreate_vm", "--resolution", "activate_disk"})
	require.NoError(t, cmd.Execute())
	assert.Equal(t, []string{"recreate_vm", "activate_disk"}, got.Resolutions)

	for _, args := range [][]string{{"--auto", "--report"}, {"--resolution", "reboot"}} {
		cmd = NewCmdCCK(f, func(o *CCKOptions) error { return nil })
		cmd.SetArgs(args)
		assert.Error(t, cmd.Execute(), "%v", args)
	}
	f.Globals.Deployment = ""
	cmd = NewCmdCCK(f, func(o *CCKOptions) error { return nil })
	cmd.SetArgs([]string{"--auto"})
	assert.ErrorContains(t, cmd.Execute(), "-d NAME")
}

func TestConvergeFlags(t *testing.T) {
	f := factory()
	f.Globals.Deployment = "hello"
	var got *Options
	cmd := NewCmdConverge(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--agent-timeout", "12s", "--max-unhealthy", "50%"})
	require.NoError(t, cmd.Execute())
	o, err := got.Policy.options()
	require.NoError(t, err)
	assert.Equal(t, "12s", o.Policy.AgentTimeout.String())
	hold, _ := o.MaxUnhealthy.Gate(3, 4)
	assert.True(t, hold)
	got.Policy.MaxUnhealthy = "lots"
	_, err = got.Policy.options()
	assert.Error(t, err)
}

func TestUpdateRules(t *testing.T) {
	r := UpdateRules(health.Resurrection{}, false, "db", []string{"pg"})
	assert.False(t, r.Allows("db", "pg"))
	assert.True(t, r.Allows("db", "web"))
	r = UpdateRules(r, false, "db", []string{"pg"})
	assert.Len(t, r.Rules, 1, "the same rule is replaced, not added twice")
	r = UpdateRules(r, true, "db", nil)
	assert.True(t, r.Allows("db", "pg"), "turning the deployment on drops its group rules")
	r = UpdateRules(r, false, "", nil)
	assert.False(t, r.Allows("x", "y"), "the global switch wins")
	r = UpdateRules(r, true, "", nil)
	assert.True(t, r.Allows("x", "y"))
}
