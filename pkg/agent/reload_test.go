package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// tarGz archives files (path -> content; paths under bin/ are executable).
func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mode := int64(0o644)
		if strings.Contains(n, "bin/") {
			mode = 0o755
		}
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: n, Mode: mode, Size: int64(len(files[n])), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(files[n]))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

// reloadAgent applies specs made of one package and rendered jobs to an
// in-process agent.
type reloadAgent struct {
	t *testing.T
	a *Agent
}

func (r reloadAgent) put(b []byte) protocol.BlobRef {
	id := sha256hex(b)
	_, err := r.a.blobs.Put(id, bytes.NewReader(b))
	require.NoError(r.t, err)
	return protocol.BlobRef{SHA1: "sha256:" + id, BlobstoreID: id}
}

// apply applies package pkg (its one file's content) and jobs (job -> path -> content).
func (r reloadAgent) apply(pkg string, jobs map[string]map[string]string) error {
	idx := 0
	pref := r.put(tarGz(r.t, map[string]string{"VERSION": pkg}))
	pref.Name, pref.Version = "tools", pkg
	spec := protocol.ApplySpec{Deployment: "d", Name: "web", Index: &idx, ID: "uuid", Job: protocol.Job{Name: "web"},
		Packages: map[string]protocol.BlobRef{"tools": pref}}
	all := map[string]string{}
	for job, files := range jobs {
		spec.Job.Templates = append(spec.Job.Templates, protocol.JobTemplate{Name: job, Version: "1"})
		for p, c := range files {
			all[job+"/"+p] = c
		}
	}
	sort.Slice(spec.Job.Templates, func(i, j int) bool { return spec.Job.Templates[i].Name < spec.Job.Templates[j].Name })
	ar := r.put(tarGz(r.t, all))
	spec.RenderedTemplatesArchive = &ar
	return r.a.Apply(r.t.Context(), spec)
}

func (r reloadAgent) process(job string) protocol.Process {
	for _, p := range r.a.supervisor.Processes() {
		if p.Job == job {
			return p
		}
	}
	r.t.Fatalf("no process of job %s", job)
	return protocol.Process{}
}

// TestApplyReloadsInPlace: an apply that changes only the templates of a job
// whose process declares `reload: {signal: USR2}` reaches the running process
// as that signal (same PID, it reads the new file), and the job is
// health-checked again; any other change to a running job is refused as before.
func TestApplyReloadsInPlace(t *testing.T) {
	root := t.TempDir()
	a, err := New(Options{Layout: Layout{Root: root}, Settings: testSettings(), Supervisor: SupervisorOptions{StartGrace: 50 * time.Millisecond}})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(t.Context()) })
	r := reloadAgent{t: t, a: a}
	seen := filepath.Join(root, "seen")
	// The process appends its config file to `seen` when it starts and on every SIGUSR2.
	bpm := func(args string, reload bool) string {
		s := "processes:\n- name: web\n  executable: /bin/sh\n  args: [-c, '" + args + "']\n  health_check: {command: 'test -f " + seen + "', interval: 50ms}\n"
		if reload {
			s += "  reload: {signal: USR2}\n"
		}
		return s
	}
	conf := filepath.Join(a.layout.JobDir("web"), "config", "web.conf")
	script := "show() { cat " + conf + " >> " + seen + "; }; trap show USR2; show; while :; do sleep 0.05; done"
	web := func(content, args string) map[string]string {
		return map[string]string{"config/bpm.yml": bpm(args, true), "config/web.conf": content + "\n"}
	}
	// a second job without a reload signal, never changed here
	other := map[string]string{"config/bpm.yml": bpm("while :; do sleep 1; done", false)}

	require.NoError(t, r.apply("1", map[string]map[string]string{"web": web("v1", script), "other": other}))
	require.NoError(t, a.Start(t.Context()))
	require.Eventually(t, func() bool { return r.process("web").State == protocol.JobRunning }, 10*time.Second, 20*time.Millisecond)
	pid := r.process("web").PID
	require.NotZero(t, pid)
	otherPID := r.process("other").PID

	// Templates only: reloaded in place.
	require.NoError(t, r.apply("1", map[string]map[string]string{"web": web("v2", script), "other": other}))
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(seen)
		return string(b) == "v1\nv2\n"
	}, 10*time.Second, 20*time.Millisecond, "the process read the new config on SIGUSR2")
	p := r.process("web")
	assert.Equal(t, pid, p.PID, "same process")
	assert.Equal(t, 1, p.Reloads)
	assert.Equal(t, 0, p.Restarts)
	assert.Equal(t, otherPID, r.process("other").PID, "the unchanged job is left alone")
	require.Eventually(t, func() bool { return a.State(false).JobState == protocol.JobRunning }, 10*time.Second, 20*time.Millisecond)
	b, err := os.ReadFile(filepath.Join(a.layout.JobDir("web"), "config", "web.conf"))
	require.NoError(t, err)
	assert.Equal(t, "v2\n", string(b))

	// Anything more than templates is refused while the processes run, and
	// changes nothing.
	for name, tc := range map[string]struct {
		pkg  string
		jobs map[string]map[string]string
		why  string
	}{
		"package":           {"2", map[string]map[string]string{"web": web("v3", script), "other": other}, "package tools changed"},
		"process args":      {"1", map[string]map[string]string{"web": web("v3", script+" # new"), "other": other}, "the definition of process web in bpm.yml changed"},
		"job removed":       {"1", map[string]map[string]string{"web": web("v3", script)}, "jobs added or removed"},
		"the same again":    {"1", map[string]map[string]string{"web": web("v2", script), "other": other}, "nothing to reload"},
		"job not reloading": {"1", map[string]map[string]string{"web": web("v2", script), "other": {"config/bpm.yml": other["config/bpm.yml"], "config/x": "x"}}, "job other changed and its process web declares no reload signal"},
	} {
		err := r.apply(tc.pkg, tc.jobs)
		var pe *protocol.Error
		require.True(t, errors.As(err, &pe), "%s: %v", name, err)
		assert.Equal(t, protocol.ErrBusy, pe.Type, name)
		assert.Contains(t, pe.Message, tc.why, name)
		assert.Contains(t, pe.Message, "is still running", name)
		b, _ := os.ReadFile(filepath.Join(a.layout.JobDir("web"), "config", "web.conf"))
		assert.Equal(t, "v2\n", string(b), "%s: nothing changed", name)
	}
	b, _ = os.ReadFile(seen)
	assert.Equal(t, "v1\nv2\n", string(b), "no further reload or restart")
	assert.Equal(t, pid, r.process("web").PID)
	assert.Equal(t, 1, r.process("web").Reloads)

	// Stopped, the same apply is a plain apply; the next start reads v3.
	require.NoError(t, a.Stop(t.Context()))
	require.NoError(t, r.apply("2", map[string]map[string]string{"web": web("v3", script), "other": other}))
}

func TestLoadBPMReload(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bpm.yml")
	require.NoError(t, os.WriteFile(p, []byte("processes:\n- {name: a, executable: /x, reload: {signal: SIGUSR2}}\n"), 0o644))
	c, err := LoadBPM(p)
	require.NoError(t, err)
	sig, ok := c.Processes[0].Reload.signal()
	assert.True(t, ok)
	assert.Equal(t, "user defined signal 2", sig.String())
	require.NoError(t, os.WriteFile(p, []byte("processes:\n- {name: a, executable: /x, reload: {signal: KILL}}\n"), 0o644))
	_, err = LoadBPM(p)
	assert.ErrorContains(t, err, `reload.signal must be HUP, USR1 or USR2, not "KILL"`)
}
