package deploy

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

func factory(g *cmdutil.GlobalOptions) *cmdutil.Factory {
	ios, _, _, _ := ui.Test()
	return &cmdutil.Factory{IO: ios, Globals: g, Logger: func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }}
}

func TestDeployFlags(t *testing.T) {
	var got *Options
	cmd := NewCmdDeploy(factory(&cmdutil.GlobalOptions{Deployment: "d", JSON: true}), func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"m.yml", "-o", "a.yml", "-o", "b.yml", "-v", "x=1", "-l", "v.yml", "--recreate", "--skip-drain", "--canaries", "2", "--max-in-flight", "50%", "--fix"})
	cmd.SetOut(io.Discard)
	require.NoError(t, cmd.Execute())
	assert.Equal(t, "m.yml", got.File)
	assert.Equal(t, []string{"a.yml", "b.yml"}, got.Inputs.OpsFiles)
	assert.Equal(t, []string{"x=1"}, got.Inputs.Vars)
	assert.Equal(t, []string{"v.yml"}, got.Inputs.VarsFiles)
	assert.True(t, got.Recreate && got.SkipDrain && got.Fix && got.JSON)
	assert.False(t, got.DryRun)
	assert.Equal(t, "2", got.Canaries)
	assert.Equal(t, "50%", got.MaxInFlight)
	assert.Equal(t, "d", got.Deployment)

	cmd = NewCmdDeploy(factory(&cmdutil.GlobalOptions{}), func(o *Options) error { return nil })
	cmd.SetArgs([]string{})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	assert.ErrorContains(t, cmd.Execute(), "expected one MANIFEST")
}

func TestPlanIsADryRun(t *testing.T) {
	var got *Options
	cmd := NewCmdPlan(factory(&cmdutil.GlobalOptions{}), func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"m.yml", "--detailed-exitcode"})
	require.NoError(t, cmd.Execute())
	assert.True(t, got.DryRun)
	assert.True(t, got.DetailedExitCode)
}

func TestLifecycleCommandsNeedADeployment(t *testing.T) {
	for _, mk := range []func(*cmdutil.Factory, func(*LifecycleOptions) error) interface {
		SetArgs([]string)
		Execute() error
	}{
		func(f *cmdutil.Factory, r func(*LifecycleOptions) error) interface {
			SetArgs([]string)
			Execute() error
		} {
			return NewCmdStop(f, r)
		},
		func(f *cmdutil.Factory, r func(*LifecycleOptions) error) interface {
			SetArgs([]string)
			Execute() error
		} {
			return NewCmdRecreate(f, r)
		},
	} {
		cmd := mk(factory(&cmdutil.GlobalOptions{}), func(*LifecycleOptions) error { return nil })
		cmd.SetArgs([]string{"web/0"})
		assert.ErrorContains(t, cmd.Execute(), "-d NAME")
	}
	var got *LifecycleOptions
	cmd := NewCmdStop(factory(&cmdutil.GlobalOptions{Deployment: "hello"}), func(o *LifecycleOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"web/1", "--hard"})
	require.NoError(t, cmd.Execute())
	assert.Equal(t, "web/1", got.Selector)
	assert.True(t, got.Hard)
	assert.Equal(t, "stop", got.Verb)
}

func TestDiff(t *testing.T) {
	a := "name: x\ninstances: 1\ngreeting: hi\nend: 1\n"
	b := "name: x\ninstances: 2\ngreeting: hi\nnew: 3\nend: 1\n"
	assert.Equal(t, []string{"- instances: 1", "+ instances: 2", "+ new: 3"}, Diff(a, b))
	assert.Nil(t, Diff(a, a))
	assert.Equal(t, []string{"+ name: x"}, Diff("", "name: x\n"))
}

func TestPlanWritesNothingEvenWithoutAState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	f := factory(&cmdutil.GlobalOptions{State: dir})
	cmd := NewCmdPlan(f, nil)
	m := filepath.Join(t.TempDir(), "m.yml")
	require.NoError(t, os.WriteFile(m, []byte("name: x\n"), 0o644))
	cmd.SetArgs([]string{m})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	assert.ErrorContains(t, err, "no state at "+dir)
	assert.NoDirExists(t, dir, "a plan creates no state store")
}
