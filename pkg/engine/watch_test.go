package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/manifest"
)

// sequence returns the agent's calls and the engine's sleeps in order.
func (f *fakeAgents) sequence(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.log {
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, "engine sleep ") {
			out = append(out, l)
		}
	}
	return out
}

func TestStartJobsWatchRangeSleepsMinThenPolls(t *testing.T) {
	f := newFakeAgents()
	f.startingPolls["web/0"] = 2 // running at the third get_state
	e := &Engine{Sleep: f.sleep}
	a := f.dial(targetNamed("web/0"))
	// 5000-23000: sleep 5 s, then poll every (23000-5000)/9 = 2 s.
	require.NoError(t, e.startJobs(context.Background(), a, "web/0", manifest.WatchTime{Min: 5000, Max: 23000}))
	assert.Equal(t, []string{
		"web/0 pre-start", "web/0 start",
		"engine sleep 5s", "web/0 get_state",
		"engine sleep 2s", "web/0 get_state",
		"engine sleep 2s", "web/0 get_state",
		"web/0 post-start",
	}, f.sequence("web/0"))
}

func TestStartJobsWatchGivesUpAtMax(t *testing.T) {
	f := newFakeAgents()
	f.startingPolls["web/0"] = 1000
	e := &Engine{Sleep: f.sleep}
	a := f.dial(targetNamed("web/0"))
	// 1000-4000: step clamps to 1 s; sleep 1 s then 3 polls of 1 s = 4 s in all.
	err := e.startJobs(context.Background(), a, "web/0", manifest.WatchTime{Min: 1000, Max: 4000})
	var jnr *JobNotRunningError
	require.True(t, errors.As(err, &jnr), "got %v", err)
	assert.Contains(t, err.Error(), "'web/0' is not running after update")
	assert.Contains(t, err.Error(), "web/nginx is starting")
	var slept time.Duration
	polls := 0
	for _, l := range f.sequence("web/0") {
		if d, ok := strings.CutPrefix(l, "engine sleep "); ok {
			dd, perr := time.ParseDuration(d)
			require.NoError(t, perr)
			slept += dd
		}
		if l == "web/0 get_state" {
			polls++
		}
		assert.NotEqual(t, "web/0 post-start", l, "post-start must not run when the jobs never came up")
	}
	assert.Equal(t, 4*time.Second, slept)
	assert.Equal(t, 4, polls)
}

func TestStartJobsSingleNumberSleepsItThenChecksOnce(t *testing.T) {
	wt, err := manifest.ParseWatchTime("30000")
	require.NoError(t, err)
	f := newFakeAgents()
	e := &Engine{Sleep: f.sleep}
	require.NoError(t, e.startJobs(context.Background(), f.dial(targetNamed("db/0")), "db/0", wt))
	assert.Equal(t, []string{"db/0 pre-start", "db/0 start", "engine sleep 30s", "db/0 get_state", "db/0 post-start"}, f.sequence("db/0"))
}

func TestStartJobsCancelledWhileWatching(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e := &Engine{} // the real timer: a cancelled context returns at once
	f := newFakeAgents()
	err := e.startJobs(ctx, f.dial(targetNamed("web/0")), "web/0", manifest.WatchTime{Min: 60000, Max: 120000})
	assert.ErrorIs(t, err, context.Canceled)
}

func targetNamed(n string) agentclient.Target { return agentclient.Target{Name: n} }

func TestPrepareMissingReleaseWithURLSaysHowToUploadIt(t *testing.T) {
	w := newWorld(t)
	m := strings.Replace(manifestOf(1, "hi"), "releases: [{name: kpaas-hello, version: latest}]",
		"releases: [{name: kpaas-hello, version: latest}, {name: extra, version: \"3\", url: \"https://example.com/extra-3.tgz\", sha1: \"sha256:abcd\"}]", 1)
	_, err := Prepare(context.Background(), w.st, w.blobs, PrepareInput{ManifestFile: "m.yml", ManifestData: []byte(m)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "release extra/3 is not uploaded: run `kpaas upload-release https://example.com/extra-3.tgz --sha1 sha256:abcd`")
}
