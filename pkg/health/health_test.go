package health

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func tg(i int) Target {
	return Target{Deployment: "d", Group: "web", Index: i, UUID: "u" + strconv.Itoa(i), HasVM: true}
}

func names(vs []Verdict) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Target.Name()+":"+string(joinReasons(v.Reasons)))
	}
	return out
}

func joinReasons(rs []Reason) string {
	var s []string
	for _, r := range rs {
		s = append(s, string(r))
	}
	return strings.Join(s, ",")
}

func TestEvaluate(t *testing.T) {
	p := Policy{}.Defaults()
	targets := []Target{tg(0), tg(1), tg(2), tg(3), tg(4), {Deployment: "d", Group: "web", Index: 5, UUID: "u5"}, func() Target { x := tg(6); x.Stopped = true; return x }()}
	obs := map[string]Observation{
		"u0": {WatchedSince: t0, LastAnswer: t0.Add(55 * time.Second), JobState: "running"},
		"u1": {WatchedSince: t0, LastAnswer: t0.Add(25 * time.Second), LastError: "connection refused"}, // 35 s silent
		"u2": {WatchedSince: t0, VMGone: true},
		"u3": {WatchedSince: t0, LastAnswer: t0.Add(59 * time.Second), JobState: "failing", FailingSince: t0.Add(20 * time.Second), Failing: []string{"hello"}},
		"u4": {WatchedSince: t0, LastAnswer: t0.Add(59 * time.Second), JobState: "failing", FailingSince: t0.Add(50 * time.Second)},
		"u6": {WatchedSince: t0, LastAnswer: t0.Add(59 * time.Second), JobState: "failing", FailingSince: t0},
	}
	now := t0.Add(60 * time.Second)
	healthy, unhealthy, next := p.Evaluate(now, targets, obs)
	assert.Equal(t, []string{"web/1:unresponsive_agent", "web/2:missing_vm", "web/3:failing_job"}, names(unhealthy))
	assert.Equal(t, []string{"web/0:", "web/4:", "web/5:", "web/6:"}, names(healthy), "no VM and stopped instances are not judged; a job failing for 10 s is within the grace")
	assert.True(t, healthy[1].Suspect)
	assert.Equal(t, 10*time.Second, next, "interval, since web/4's grace ends in 20 s")
	assert.Contains(t, unhealthy[0].Details[0], "35s: connection refused")
	assert.Contains(t, unhealthy[2].Details[0], "[hello]")

	// The grace of web/4 ends in 5 s: the next check comes then.
	_, _, next = p.Evaluate(t0.Add(75*time.Second), []Target{tg(4)}, obs)
	assert.Equal(t, 5*time.Second, next)

	// A freshly started monitor does not call an agent it never heard
	// from unresponsive before the timeout, counted from when it started watching.
	_, unhealthy, _ = p.Evaluate(now, []Target{tg(9)}, map[string]Observation{"u9": {WatchedSince: now.Add(-29 * time.Second), LastError: "timeout"}})
	assert.Empty(t, unhealthy)
	_, unhealthy, _ = p.Evaluate(now, []Target{tg(9)}, map[string]Observation{"u9": {WatchedSince: now.Add(-30 * time.Second), LastError: "timeout"}})
	assert.Len(t, unhealthy, 1)
}

func TestRefusedConnectionsTimeOutSooner(t *testing.T) {
	p := Policy{}
	o := Observation{WatchedSince: t0, LastAnswer: t0, LastError: "connection refused", Refused: true}
	_, unhealthy, next := p.Evaluate(t0.Add(9*time.Second), []Target{tg(0)}, map[string]Observation{"u0": o})
	assert.Empty(t, unhealthy)
	assert.Equal(t, time.Second, next)
	_, unhealthy, _ = p.Evaluate(t0.Add(10*time.Second), []Target{tg(0)}, map[string]Observation{"u0": o})
	require.Len(t, unhealthy, 1)
	assert.Contains(t, unhealthy[0].Details[0], "refused connections for 10s")
	o.Refused = false // a timeout waits the whole agent timeout
	_, unhealthy, _ = p.Evaluate(t0.Add(29*time.Second), []Target{tg(0)}, map[string]Observation{"u0": o})
	assert.Empty(t, unhealthy)
	_, unhealthy, _ = Policy{AgentTimeout: 5 * time.Second}.Evaluate(t0.Add(5*time.Second), []Target{tg(0)}, map[string]Observation{"u0": o})
	assert.Len(t, unhealthy, 1, "RefusedTimeout never exceeds AgentTimeout")
}

func TestFlappingJobIsDebounced(t *testing.T) {
	p := Policy{FailingGrace: 30 * time.Second}
	var o Observation
	now := t0
	// failing 20 s, running 10 s, failing 20 s, ...: never 30 s in a row.
	for i := 0; i < 12; i++ {
		state := "failing"
		if i%3 == 2 {
			state = "running"
		}
		o = Observe(now, o, state, nil, "")
		_, unhealthy, _ := p.Evaluate(now, []Target{tg(0)}, map[string]Observation{"u0": o})
		require.Empty(t, unhealthy, "step %d", i)
		now = now.Add(10 * time.Second)
	}
	// Failing for good: unhealthy once the grace has passed.
	start := now
	for now.Sub(start) < 30*time.Second {
		o = Observe(now, o, "failing", nil, "")
		now = now.Add(10 * time.Second)
	}
	o = Observe(now, o, "failing", nil, "")
	_, unhealthy, _ := p.Evaluate(now, []Target{tg(0)}, map[string]Observation{"u0": o})
	require.Len(t, unhealthy, 1)
	assert.Equal(t, []Reason{ReasonFailingJob}, unhealthy[0].Reasons)

	// A job stuck "starting" (a crash loop under restart backoff) counts too.
	s := Observe(t0, Observation{}, "starting", nil, "")
	s = Observe(t0.Add(31*time.Second), s, "starting", nil, "")
	_, unhealthy, _ = p.Evaluate(t0.Add(31*time.Second), []Target{tg(0)}, map[string]Observation{"u0": s})
	require.Len(t, unhealthy, 1)

	// An answer after silence clears the agent's lateness; a failed probe keeps LastAnswer.
	o = Observe(now.Add(time.Second), o, "", nil, "eof")
	assert.Equal(t, now, o.LastAnswer)
	assert.Equal(t, "eof", o.LastError)
}

func TestGate(t *testing.T) {
	for _, c := range []struct {
		max              string
		unhealthy, total int
		hold             bool
	}{
		{"", 4, 4, false}, // BOSH: fewer than 5 down is never a meltdown
		{"", 5, 25, true},
		{"", 5, 26, false}, // under 20%
		{"", 6, 10, true},
		{"1", 1, 4, false},
		{"1", 2, 4, true},
		{"50%", 2, 4, false},
		{"50%", 3, 4, true},
		{"0", 1, 100, true},
		{"100%", 10, 10, false},
	} {
		m, err := ParseMaxUnhealthy(c.max)
		require.NoError(t, err)
		hold, why := m.Gate(c.unhealthy, c.total)
		assert.Equal(t, c.hold, hold, "%+v", c)
		if hold {
			assert.Contains(t, why, strconv.Itoa(c.unhealthy)+" of "+strconv.Itoa(c.total))
		}
	}
	for _, bad := range []string{"x", "-1", "101%", "5%%"} {
		_, err := ParseMaxUnhealthy(bad)
		assert.Error(t, err, bad)
	}
}

func TestBudget(t *testing.T) {
	b := Budget{Max: 3, Window: time.Hour, Backoff: 10 * time.Second, MaxBackoff: 25 * time.Second}
	ok, _, _ := b.Allow(t0, nil)
	assert.True(t, ok)
	ok, wait, why := b.Allow(t0.Add(5*time.Second), []time.Time{t0})
	assert.False(t, ok)
	assert.Equal(t, 5*time.Second, wait)
	assert.Contains(t, why, "backing off 10s")
	ok, _, _ = b.Allow(t0.Add(10*time.Second), []time.Time{t0})
	assert.True(t, ok)
	ok, wait, _ = b.Allow(t0.Add(15*time.Second), []time.Time{t0, t0.Add(10 * time.Second)})
	assert.False(t, ok)
	assert.Equal(t, 15*time.Second, wait, "doubled to 20 s")
	ok, _, why = b.Allow(t0.Add(time.Minute), []time.Time{t0, t0.Add(10 * time.Second), t0.Add(40 * time.Second)})
	assert.False(t, ok)
	assert.Contains(t, why, "budget spent")
	ok, _, _ = b.Allow(t0.Add(time.Hour+time.Second), []time.Time{t0, t0.Add(10 * time.Second), t0.Add(40 * time.Second)})
	assert.True(t, ok, "old attempts leave the window")
}

func TestResurrectionRules(t *testing.T) {
	off := false
	assert.True(t, Resurrection{}.Allows("d", "g"), "enabled when no rule matches")
	assert.False(t, Resurrection{Enabled: &off}.Allows("d", "g"))
	r := Resurrection{Rules: []Rule{
		{Enabled: false, Include: &Selector{Deployments: []string{"db"}}},
		{Enabled: false, Include: &Selector{InstanceGroups: []string{"etcd"}}, Exclude: &Selector{Deployments: []string{"cf"}}},
		{Enabled: true, Include: &Selector{Deployments: []string{"db"}}},
	}}
	assert.False(t, r.Allows("db", "pg"), "a matching disabling rule wins over an enabling one")
	assert.False(t, r.Allows("x", "etcd"))
	assert.True(t, r.Allows("cf", "etcd"), "excluded")
	assert.True(t, r.Allows("x", "web"))
}

// TestPure fails when the package imports anything that does I/O.
func TestPure(t *testing.T) {
	allowed := map[string]bool{"fmt": true, "sort": true, "strconv": true, "strings": true, "time": true}
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		require.NoError(t, err)
		for _, im := range af.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			assert.True(t, allowed[path], "%s imports %s: pkg/health must stay pure", f, path)
		}
	}
}
