package state_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	statecmd "github.com/kpaas/kpaas/pkg/cmd/state"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
	"github.com/kpaas/kpaas/pkg/ui"
)

// run runs `kpaas state ARGS` with the given --state location; the key comes
// from KPAAS_STATE_KEY (the same for every store in these tests).
func run(t *testing.T, loc string, args ...string) (string, string, error) {
	t.Helper()
	ios, _, out, errOut := ui.Test()
	f := &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{State: loc}, Now: time.Now, Version: "test"}
	cmd := statecmd.NewCmdState(f)
	cmd.SetArgs(args)
	cmd.SetOut(ios.ErrOut)
	cmd.SetErr(ios.ErrOut)
	cmd.SilenceUsage = true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func fill(t *testing.T, loc string) {
	ctx := context.Background()
	s := statetest.OpenWith(t, loc, state.Options{})
	_, err := s.CreateDeployment(ctx, "cf")
	require.NoError(t, err)
	require.NoError(t, s.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "api", UUID: "u1"}))
	require.NoError(t, s.SaveVM(ctx, state.VM{CID: "vm-1", Deployment: "cf", Instance: "u1", SSHHostPrivateKey: "HOSTKEY"}))
	_, err = s.PutVariable(ctx, state.Variable{Deployment: "cf", Name: "admin_password", Value: "pa55word"})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

func TestExportRedactsAndImportMovesBetweenBackends(t *testing.T) {
	t.Setenv(state.KeyEnv, state.NewKey())
	src := t.TempDir()
	fill(t, src)

	// Redacted to stdout: valid JSON, no secrets.
	out, _, err := run(t, src, "export")
	require.NoError(t, err)
	var d state.Dump
	require.NoError(t, json.Unmarshal([]byte(out), &d))
	assert.False(t, d.SecretsIncluded)
	assert.NotContains(t, out, "pa55word")
	assert.NotContains(t, out, "HOSTKEY")
	assert.Len(t, d.Instances, 1)

	// A redacted export cannot be imported.
	redacted := filepath.Join(t.TempDir(), "redacted.json")
	require.NoError(t, os.WriteFile(redacted, []byte(out), 0o600))
	_, _, err = run(t, t.TempDir(), "import", redacted)
	assert.ErrorContains(t, err, "export it again with `kpaas state export --include-secrets`")

	// With secrets, to a file readable only by its owner.
	backup := filepath.Join(t.TempDir(), "backup.json")
	_, errOut, err := run(t, src, "export", "--include-secrets", "-o", backup)
	require.NoError(t, err)
	assert.Contains(t, errOut, "to "+backup+" (1 deployments, 1 instances, 0 events; secrets included: keep the file safe)")
	fi, err := os.Stat(backup)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	targets := []statetest.Backend{statetest.SQLite, statetest.Postgres}
	for _, b := range targets {
		t.Run("file into "+b.Name, func(t *testing.T) {
			dst := b.NewLocation(t)
			_, errOut, err := run(t, dst, "import", backup)
			require.NoError(t, err)
			assert.Contains(t, errOut, "1 deployments, 1 instances, 1 VMs, 0 disks, 1 variables")
			checkMoved(t, dst)
			_, _, err = run(t, dst, "import", backup)
			assert.ErrorIs(t, err, state.ErrNotEmpty)
		})
		t.Run("--from into "+b.Name, func(t *testing.T) {
			dst := b.NewLocation(t)
			_, _, err := run(t, dst, "import", "--from", src)
			require.NoError(t, err)
			checkMoved(t, dst)
		})
	}
}

func checkMoved(t *testing.T, loc string) {
	ctx := context.Background()
	s := statetest.OpenWith(t, loc, state.Options{})
	v, err := s.Variable(ctx, "cf", "admin_password")
	require.NoError(t, err)
	assert.Equal(t, "pa55word", v.Value)
	st, err := s.LoadDeployment(ctx, "cf")
	require.NoError(t, err)
	require.Len(t, st.VMs, 1)
	assert.Equal(t, "HOSTKEY", st.VMs[0].SSHHostPrivateKey)
}

func TestImportArgs(t *testing.T) {
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"import"}, "expected a FILE to import (or - for stdin), or --from LOCATION"},
		{[]string{"import", "a.json", "--from", "/x"}, "give FILE or --from, not both"},
		{[]string{"import", "a", "b"}, "expected one FILE, got 2"},
		{[]string{"export", "extra"}, `unknown command "extra"`},
	}
	for _, tt := range tests {
		_, _, err := run(t, t.TempDir(), tt.args...)
		assert.ErrorContains(t, err, tt.err)
	}
	notJSON := filepath.Join(t.TempDir(), "x.json")
	require.NoError(t, os.WriteFile(notJSON, []byte(`{"deployments": 3}`), 0o600))
	_, _, err := run(t, t.TempDir(), "import", notJSON)
	assert.ErrorContains(t, err, "not a kpaas state export")
}
