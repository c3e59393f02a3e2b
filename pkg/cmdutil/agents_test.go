package cmdutil_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/cmdutil/cmdutiltest"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/plan"
	"github.com/kpaas/kpaas/pkg/state"
)

func TestParseInstanceSpec(t *testing.T) {
	tests := []struct {
		name, spec, vmType, defaultIP string
	}{
		{"engine spec: vm_type a name, default network by gateway", `{"vm_type":"small","networks":{"a":{"ip":"10.0.0.5"},"b":{"ip":"10.1.0.5","default":["dns","gateway"]}}}`, "small", "10.1.0.5"},
		{"BOSH spec: vm_type an object", `{"vm_type":{"name":"large","cloud_properties":{}},"networks":{"only":{"ip":"10.0.0.7"}}}`, "large", "10.0.0.7"},
		{"two networks, none default", `{"networks":{"a":{"ip":"10.0.0.5"},"b":{"ip":"10.1.0.5"}}}`, "", ""},
		{"not JSON", `nope`, "", ""},
		{"empty", ``, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cmdutil.ParseInstanceSpec(json.RawMessage(tt.spec))
			assert.Equal(t, tt.vmType, s.VMType)
			assert.Equal(t, tt.defaultIP, s.DefaultIP())
		})
	}
}

func TestAgentAddress(t *testing.T) {
	assert.Equal(t, "10.0.0.5:6868", cmdutil.AgentAddress("10.0.0.5"))
	assert.Equal(t, "[fd00::5]:6868", cmdutil.AgentAddress("fd00::5"))
	assert.Equal(t, "127.0.0.1:40123", cmdutil.AgentAddress("127.0.0.1:40123"))
}

func TestInstanceTargets(t *testing.T) {
	ctx := context.Background()
	s := cmdutiltest.Open(t, t.TempDir(), nil)
	key, err := cmdutil.EnsureClientKey(ctx, s)
	require.NoError(t, err)
	again, err := cmdutil.EnsureClientKey(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, key.PrivatePEM, again.PrivatePEM, "the key is made once")

	cmdutiltest.Seed(t, s, "cf", "", []cmdutiltest.Instance{
		{Group: "web", Index: 1, UUID: "w1", VMCID: "vm-w1", IP: "10.0.0.6", HostKey: "hk1"},
		{Group: "web", Index: 0, UUID: "w0", VMCID: "vm-w0", IP: "10.0.0.5", HostKey: "hk0"},
		{Group: "db", Index: 0, UUID: "d0", DesiredState: state.Detached},
	})
	// An older, inactive VM of web/0 is not what kpaas reaches.
	require.NoError(t, s.SaveVM(ctx, state.VM{CID: "vm-old", Deployment: "cf", Instance: "w0", IPs: []string{"10.9.9.9"}, SSHHostKey: "old", CreatedAt: time.Now().Add(-time.Hour)}))
	ds, err := s.LoadDeployment(ctx, "cf")
	require.NoError(t, err)
	targets, skipped := cmdutil.InstanceTargets(ds, key)
	assert.Equal(t, []string{"db/0"}, skipped)
	require.Len(t, targets, 2)
	for i, want := range []agentclient.Target{
		{Name: "web/w0", Group: "web", ID: "w0", Index: 0, Address: "10.0.0.5:6868", HostKey: "hk0"},
		{Name: "web/w1", Group: "web", ID: "w1", Index: 1, Address: "10.0.0.6:6868", HostKey: "hk1"},
	} {
		assert.NotNil(t, targets[i].Signer)
		targets[i].Signer = nil
		assert.Equal(t, want, targets[i])
	}

	// StateTargets reads the same from the store on each lookup.
	got, err := cmdutil.StateTargets{Open: func(ctx context.Context) (state.Store, error) { return s, nil }}.Targets(ctx, "cf")
	require.NoError(t, err)
	assert.Len(t, got, 2)
}

func TestClientKeyFromEnvWhenTheStoreHasNone(t *testing.T) {
	ctx := context.Background()
	s := cmdutiltest.Open(t, t.TempDir(), nil)
	t.Setenv(cmdutil.AgentKeyEnv, "")
	_, err := cmdutil.ClientKey(ctx, s)
	assert.ErrorIs(t, err, cmdutil.ErrNoClientKey)
	assert.ErrorContains(t, err, "set KPAAS_AGENT_KEY")

	k, err := agentclient.GenerateKey()
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(p, []byte(k.PrivatePEM), 0o600))
	t.Setenv(cmdutil.AgentKeyEnv, p)
	got, err := cmdutil.ClientKey(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, k.Public, got.Public)

	// A key in the store wins over the environment.
	stored, err := cmdutil.EnsureClientKey(ctx, s)
	require.NoError(t, err)
	assert.NotEqual(t, k.Public, stored.Public)
	got, err = cmdutil.ClientKey(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, stored.Public, got.Public)

	t.Setenv(cmdutil.AgentKeyEnv, filepath.Join(t.TempDir(), "missing"))
	s2 := cmdutiltest.Open(t, t.TempDir(), nil)
	_, err = cmdutil.ClientKey(ctx, s2)
	assert.ErrorContains(t, err, "reading the agent client key KPAAS_AGENT_KEY=")
}

func TestStateTargetsSaysWhenNothingCanBeReached(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := cmdutiltest.Open(t, dir, nil)
	_, err := cmdutil.EnsureClientKey(ctx, s)
	require.NoError(t, err)
	cmdutiltest.Seed(t, s, "cf", "", []cmdutiltest.Instance{{Group: "api", UUID: "a0"}})
	st := cmdutil.StateTargets{Open: func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }}
	_, err = st.Targets(ctx, "cf")
	assert.EqualError(t, err, "no instance of cf has a VM to reach (api/0): deploy it first")
	_, err = st.Targets(ctx, "nope")
	assert.ErrorIs(t, err, state.ErrNotFound)
	assert.ErrorContains(t, err, "deployment nope not found in "+s.Location())
}

// The deploy engine writes the client key and the instance specs; the
// read-side commands must find both where and as the engine leaves them.
func TestReadsWhatTheEngineWrites(t *testing.T) {
	ctx := context.Background()
	s := cmdutiltest.Open(t, t.TempDir(), nil)
	t.Setenv(cmdutil.AgentKeyEnv, "")
	made, err := engine.ClientKey(ctx, s)
	require.NoError(t, err)
	got, err := cmdutil.ClientKey(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, made.Public, got.Public)
	assert.Equal(t, engine.ClientKeyVariable, cmdutil.ClientKeyVariable)

	spec := plan.Spec{VMType: "small", Networks: map[string]plan.NetSpec{
		"private": {Type: "manual", IP: "10.0.1.9"},
		"public":  {Type: "manual", IP: "10.0.0.9", Default: []string{"dns", "gateway"}},
	}}
	b, err := json.Marshal(spec)
	require.NoError(t, err)
	parsed := cmdutil.ParseInstanceSpec(b)
	assert.Equal(t, "small", parsed.VMType)
	assert.Equal(t, "10.0.0.9", parsed.DefaultIP())
}
