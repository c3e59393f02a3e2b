package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProgressSinks(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := []Progress{
		{Time: at, Stage: "updating", Object: "web/0 (canary)", Step: "start", Status: "started"},
		{Time: at, Stage: "updating", Object: "web/0 (canary)", Step: "start", Status: "done", Duration: 1500 * time.Millisecond},
		{Time: at, Stage: "updating", Object: "web/1", Status: "failed", Error: errors.New("boom").Error()},
		{Time: at, Stage: "compiling", Object: "pkg", Status: "info", Message: "compiled"},
	}
	var plain bytes.Buffer
	s := NewProgressSink(&plain, false)
	for _, e := range evs {
		s.Progress(e)
	}
	assert.Equal(t, "03:04:05 | updating: web/0 (canary) start...\n"+
		"03:04:05 | updating: web/0 (canary) start done (1.5s)\n"+
		"03:04:05 | updating: web/1 FAILED: boom\n"+
		"03:04:05 | compiling: pkg: compiled\n", plain.String())

	var nd bytes.Buffer
	s = NewProgressSink(&nd, true)
	for _, e := range evs {
		s.Progress(e)
	}
	lines := bytes.Split(bytes.TrimSpace(nd.Bytes()), []byte("\n"))
	require.Len(t, lines, 4)
	var back Progress
	require.NoError(t, json.Unmarshal(lines[2], &back))
	assert.Equal(t, "failed", back.Status)
	assert.Equal(t, "boom", back.Error)
}

func TestTTYSinkPrintsBOSHLikeLines(t *testing.T) {
	var out bytes.Buffer
	s := &ttySink{w: &out}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Progress(Progress{Time: at, Stage: "updating", Object: "web/0 (canary)", Status: "started"})
	s.Progress(Progress{Time: at, Stage: "updating", Object: "web/0 (canary)", Step: "apply", Status: "started"})
	s.Progress(Progress{Time: at, Stage: "updating", Object: "web/0 (canary)", Status: "done", Duration: 12 * time.Second})
	assert.Contains(t, out.String(), "web/0 (canary): apply")
	assert.Contains(t, out.String(), "Updating web/0 (canary)... Finished (00:00:12)\n")
}
