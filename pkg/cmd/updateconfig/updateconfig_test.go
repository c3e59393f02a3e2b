package updateconfig

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
	"github.com/kpaas/kpaas/pkg/ui"
)

func TestNewCmdUpdateConfigFlags(t *testing.T) {
	ios, _, _, _ := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{NonInteractive: true}, Now: time.Now}
	var got *Options
	cmd := NewCmdUpdateRuntimeConfig(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"rc.yml", "--name", "dns", "-o", "a.yml", "-o", "b.yml", "-v", "x=1", "-l", "vars.yml", "--var-file", "k=key.pem", "--vars-env", "KP", "--no-redact"})
	require.NoError(t, cmd.Execute())
	assert.Equal(t, state.RuntimeConfig, got.Type)
	assert.Equal(t, "rc.yml", got.File)
	assert.Equal(t, "dns", got.Name)
	assert.True(t, got.NonInteractive)
	assert.True(t, got.NoRedact)
	assert.Equal(t, []string{"a.yml", "b.yml"}, got.Inputs.OpsFiles)
	assert.Equal(t, []string{"x=1"}, got.Inputs.Vars)
	assert.Equal(t, []string{"vars.yml"}, got.Inputs.VarsFiles)
	assert.Equal(t, []string{"k=key.pem"}, got.Inputs.VarFiles)
	assert.Equal(t, []string{"KP"}, got.Inputs.VarsEnv)

	cmd = NewCmdUpdateCloudConfig(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs(nil)
	cmd.SetOut(ios.ErrOut)
	cmd.SetErr(ios.ErrOut)
	assert.ErrorContains(t, cmd.Execute(), "expected one FILE argument")

	cmd = NewCmdUpdateCPIConfig(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"cpi.yml"})
	require.NoError(t, cmd.Execute())
	assert.Equal(t, state.CPIConfig, got.Type)
	assert.Equal(t, "default", got.Name)
}

const cloudConfig = `azs:
- name: z1
networks:
- name: default
  subnets:
  - range: 10.0.0.0/24
    cloud_properties: {net_id: ((net_id))}
`

const cpiConfig = `cpis:
- name: os
  type: openstack
  properties:
    username: admin
    password: ((os_password))
`

func write(t *testing.T, dir, name, content string) string {
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestUpdateRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "state")
	open := func(ctx context.Context) (state.Store, error) {
		return state.Open(ctx, storeDir, state.Options{Key: statetest.Key, User: "alice", Host: "ws"})
	}
	cc := write(t, dir, "cc.yml", cloudConfig)
	ops := write(t, dir, "ops.yml", "- type: replace\n  path: /azs/-\n  value: {name: z2}\n")
	newOpts := func(ios *ui.IOStreams, file string) *Options {
		return &Options{IO: ios, State: open, ReadFile: os.ReadFile, Environ: func() []string { return nil }, Type: state.CloudConfig, Name: "default", File: file}
	}

	// First save: everything is new; -n does not ask.
	ios, _, out, errOut := ui.Test()
	o := newOpts(ios, cc)
	o.NonInteractive = true
	o.Inputs.Vars = []string{"net_id=net-a"}
	require.NoError(t, updateRun(ctx, o))
	assert.Equal(t, `+ azs:
+ - name: z1
+ networks:
+ - name: default
+   subnets:
+   - cloud_properties:
+       net_id: net-a
+     range: 10.0.0.0/24
`, out.String())
	assert.Equal(t, "Saved the cloud config \"default\" as version 1 (id 1).\n", errOut.String())

	// Same again: no new version.
	ios, _, out, errOut = ui.Test()
	o = newOpts(ios, cc)
	o.Inputs.Vars = []string{"net_id=net-a"}
	require.NoError(t, updateRun(ctx, o))
	assert.Empty(t, out.String())
	assert.Equal(t, "No changes to the cloud config \"default\" (version 1).\n", errOut.String())

	// An ops file: the diff shows the change in context; "n" at the prompt keeps version 1.
	ios, in, out, errOut := ui.Test()
	ios.SetTTY(true)
	ios.SetNoColor(true)
	in.WriteString("n\n")
	o = newOpts(ios, cc)
	o.Inputs.Vars = []string{"net_id=net-a"}
	o.Inputs.OpsFiles = []string{ops}
	assert.ErrorIs(t, updateRun(ctx, o), cmdutil.ErrCancelled)
	assert.Equal(t, "  azs:\n  - name: z1\n+ - name: z2\n  networks:\n  - name: default\n    subnets:\n", out.String())
	assert.Equal(t, "Save this as version 2 of the cloud config \"default\"? [y/N] ", errOut.String())

	// "y" saves version 2, records an event, and --json gives the result.
	ios, in, out, _ = ui.Test()
	ios.SetTTY(true)
	in.WriteString("y\n")
	o = newOpts(ios, cc)
	o.JSON = true
	o.Inputs.Vars = []string{"net_id=net-a"}
	o.Inputs.OpsFiles = []string{ops}
	require.NoError(t, updateRun(ctx, o))
	assert.JSONEq(t, `{"id":2,"type":"cloud","name":"default","version":2,"changed":true}`, out.String())

	s, err := open(ctx)
	require.NoError(t, err)
	defer s.Close()
	c, err := s.Config(ctx, state.CloudConfig, "default")
	require.NoError(t, err)
	assert.Contains(t, c.Content, "- name: z2\n")
	evs, err := s.Events(ctx, state.EventFilter{Action: "update"})
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.Equal(t, "cloud-config", evs[0].ObjectType)
	assert.JSONEq(t, `{"id":2,"version":2}`, string(evs[0].Context))
	locks, err := s.Locks(ctx)
	require.NoError(t, err)
	assert.Empty(t, locks, "the global lock is released")

	// No terminal and no -n: refused, nothing saved.
	ios, _, _, _ = ui.Test()
	o = newOpts(ios, write(t, dir, "cc2.yml", "azs: []\n"))
	assert.ErrorContains(t, updateRun(ctx, o), "run again with -n to save it")
}

func TestUpdateRunRedactsSecretsAndRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func(ctx context.Context) (state.Store, error) {
		return state.Open(ctx, filepath.Join(dir, "state"), state.Options{Key: statetest.Key})
	}
	cpi := write(t, dir, "cpi.yml", cpiConfig)
	run := func(vars []string, noRedact bool) (string, error) {
		ios, _, out, _ := ui.Test()
		o := &Options{IO: ios, State: open, ReadFile: os.ReadFile, Environ: os.Environ, Type: state.CPIConfig, Name: "default", File: cpi, NonInteractive: true, NoRedact: noRedact}
		o.Inputs.Vars = vars
		err := updateRun(ctx, o)
		return out.String(), err
	}
	out, err := run([]string{"os_password=first"}, false)
	require.NoError(t, err)
	assert.Contains(t, out, "+     password: <redacted>\n")
	assert.NotContains(t, out, "first")

	out, err = run([]string{"os_password=second"}, false)
	require.NoError(t, err)
	assert.Equal(t, "Only secret values change (shown with --no-redact).\n", out)

	out, err = run([]string{"os_password=third"}, true)
	require.NoError(t, err)
	assert.Contains(t, out, "-     password: second\n+     password: third\n")

	// Not a map, and a broken ops file: clear errors, nothing saved.
	ios, _, _, _ := ui.Test()
	o := &Options{IO: ios, State: open, ReadFile: os.ReadFile, Environ: os.Environ, Type: state.CloudConfig, File: write(t, dir, "list.yml", "- a\n- b\n"), NonInteractive: true}
	assert.EqualError(t, updateRun(ctx, o), filepath.Join(dir, "list.yml")+": a cloud config must be a YAML map (with keys such as azs, networks, vm_types, disk_types, compilation)")
	o.File = write(t, dir, "ok.yml", "azs: []\n")
	o.Inputs.OpsFiles = []string{filepath.Join(dir, "missing-ops.yml")}
	assert.ErrorContains(t, updateRun(ctx, o), "missing-ops.yml")
	s, err := open(ctx)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Config(ctx, state.CloudConfig, "")
	assert.ErrorIs(t, err, state.ErrNotFound)
}

func TestUpdateRunRefusedWhileTheGlobalLockIsHeld(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "state")
	holder := statetest.OpenWith(t, storeDir, state.Options{Key: statetest.Key, User: "bob", Host: "ci"})
	_, err := holder.Lock(ctx, state.LockRequest{Name: state.GlobalLock, Op: "upload-stemcell", Heartbeat: -1})
	require.NoError(t, err)
	ios, _, _, _ := ui.Test()
	o := &Options{IO: ios, ReadFile: os.ReadFile, Environ: os.Environ, Type: state.CloudConfig, File: write(t, dir, "cc.yml", "azs: []\n"), NonInteractive: true,
		State: func(ctx context.Context) (state.Store, error) {
			return state.Open(ctx, storeDir, state.Options{Key: statetest.Key})
		}}
	err = updateRun(ctx, o)
	var le *state.LockError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "bob@ci", le.Holder)
	assert.Equal(t, 3, le.ExitCode())
}
