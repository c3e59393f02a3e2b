package ui

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress is one step of a long operation (deploy, upload, compile):
// which object, which step, and whether it started, finished or failed.
type Progress struct {
	Time     time.Time     `json:"time"`
	Stage    string        `json:"stage"`              // "compiling", "updating", "deleting", ...
	Object   string        `json:"object"`             // instance name, package name, ...
	Step     string        `json:"step"`               // "create_vm", "apply", "start", ...
	Status   string        `json:"status"`             // started, done, failed, info
	Duration time.Duration `json:"duration,omitempty"` // for done/failed
	Message  string        `json:"message,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// ProgressSink receives progress events; it must be safe for concurrent use.
type ProgressSink interface{ Progress(Progress) }

// ProgressFunc adapts a function.
type ProgressFunc func(Progress)

// Progress implements ProgressSink.
func (f ProgressFunc) Progress(p Progress) { f(p) }

// NewProgressSink picks the renderer: NDJSON for --json, else plain lines
// (a TTY gets the same lines, with the elapsed time of each finished step).
func NewProgressSink(w io.Writer, jsonOut bool) ProgressSink {
	if jsonOut {
		return &ndjsonSink{w: w}
	}
	return &lineSink{w: w}
}

type ndjsonSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *ndjsonSink) Progress(p Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(p)
	s.w.Write(append(b, '\n'))
}

type lineSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *lineSink) Progress(p Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := p.Time.UTC().Format("15:04:05")
	what := p.Object
	if p.Step != "" {
		what += " " + p.Step
	}
	switch p.Status {
	case "started":
		fmt.Fprintf(s.w, "%s | %s: %s...\n", ts, p.Stage, what)
	case "done":
		fmt.Fprintf(s.w, "%s | %s: %s done (%s)\n", ts, p.Stage, what, p.Duration.Round(time.Millisecond))
	case "failed":
		fmt.Fprintf(s.w, "%s | %s: %s FAILED: %s\n", ts, p.Stage, what, p.Error)
	default:
		msg := p.Message
		if what != "" {
			msg = what + ": " + msg
		}
		fmt.Fprintf(s.w, "%s | %s: %s\n", ts, p.Stage, msg)
	}
}
