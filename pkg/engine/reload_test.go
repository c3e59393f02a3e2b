package engine

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/plan"
)

// reloadingHello is a copy of kpaas-hello whose hello process declares a
// reload signal in its bpm.yml.
func reloadingHello(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "kpaas-hello")
	out, err := exec.Command("cp", "-a", filepath.Join(moduleRoot(t), "releases", "kpaas-hello"), dir).CombinedOutput()
	require.NoError(t, err, string(out))
	bpm := filepath.Join(dir, "jobs", "hello", "templates", "bpm.yml")
	b, err := os.ReadFile(bpm)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bpm, append(b, "  reload: {signal: HUP}\n"...), 0o644))
	return dir
}

func TestTemplateChangeOfReloadingJobReloadsWithoutStop(t *testing.T) {
	w := newWorldWith(t, reloadingHello(t))
	ctx := context.Background()
	require.NoError(t, w.deploy(manifestOf(2, "hi")))
	before := len(w.agents.log)

	// The greeting is only in index.html: a reload.
	p := w.prepare(manifestOf(2, "hello"), false)
	for _, i := range p.Plan.Instances() {
		assert.Equal(t, plan.ActionReload, i.Action, i.Name())
		assert.Equal(t, []string{"job hello changed (templates only; its processes reload in place)"}, i.Reasons)
	}
	require.NoError(t, w.engine().Apply(ctx, p))
	log := strings.Join(w.agents.log[before:], "\n")
	assert.NotContains(t, log, " stop", "no drain, no stop")
	assert.NotContains(t, log, " start", "nothing to start")
	assert.NotContains(t, log, "pre-start")
	assert.Len(t, w.agents.calls("apply"), 4, "two creates, two reloads")
	assert.Contains(t, log, "web/0 get_state", "the watch checks the reloaded jobs")
	assert.Equal(t, 0, w.prepare(manifestOf(2, "hello"), false).Plan.Changes(), "the state holds the reloaded spec")

	// The port is in bpm.yml: a restart.
	p = w.prepare(strings.Replace(manifestOf(2, "hello"), "{greeting: hello}", "{greeting: hello, port: 8081}", 1), false)
	for _, i := range p.Plan.Instances() {
		assert.Equal(t, plan.ActionUpdate, i.Action, i.Name())
	}

	// The agent refuses the reload (it checks for itself): the instance is
	// updated the usual way.
	w.agents.busyApplies = 1
	before = len(w.agents.log)
	stops, starts := len(w.agents.calls("stop")), len(w.agents.calls("start"))
	p = w.prepare(manifestOf(2, "hi again"), false)
	require.Equal(t, plan.ActionReload, p.Plan.Instances()[0].Action)
	require.NoError(t, w.engine().Apply(ctx, p))
	log = strings.Join(w.agents.log[before:], "\n")
	assert.Contains(t, log, "apply-busy")
	assert.Equal(t, stops+1, len(w.agents.calls("stop")), "the refused instance is stopped")
	assert.Equal(t, starts+1, len(w.agents.calls("start")), "and started again; the other one reloaded")
	var infos []string
	for _, e := range w.events {
		if e.Status == "info" && e.Step == "reload" {
			infos = append(infos, e.Message)
		}
	}
	require.Len(t, infos, 1)
	assert.Contains(t, infos[0], "restarting instead")
}
