package ui

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
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
// with every step (for CI logs).
func NewProgressSink(w io.Writer, jsonOut bool) ProgressSink {
	if jsonOut {
		return &ndjsonSink{w: w}
	}
	return &lineSink{w: w}
}

// ProgressSinkFor picks the renderer for a command's streams: NDJSON for
// --json, BOSH-like task lines on a terminal, plain step lines otherwise.
func ProgressSinkFor(s *IOStreams, jsonOut bool) ProgressSink {
	if !jsonOut && s.IsStderrTTY() {
		return &ttySink{w: s.ErrOut}
	}
	return NewProgressSink(s.ErrOut, jsonOut)
}

// ttySink prints one line per object as BOSH does ("Updating instance
// web/0 (canary)... Finished (00:00:12)"), the current step of each object
// in flight on a status line that is rewritten in place.
type ttySink struct {
	mu     sync.Mutex
	w      io.Writer
	active map[string]string // object -> current step
}

func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

func (s *ttySink) Progress(p Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		s.active = map[string]string{}
	}
	title := strings.ToUpper(p.Stage[:1]) + p.Stage[1:] + " " + p.Object
	fmt.Fprint(s.w, "\r\033[K")
	switch {
	case p.Step == "" && p.Status == "done":
		delete(s.active, p.Object)
		fmt.Fprintf(s.w, "%s... Finished (%s)\n", title, clock(p.Duration))
	case p.Step == "" && p.Status == "failed":
		delete(s.active, p.Object)
		fmt.Fprintf(s.w, "%s... Failed: %s\n", title, p.Error)
	case p.Status == "info":
		fmt.Fprintf(s.w, "%s: %s\n", title, p.Message)
	case p.Status == "started":
		s.active[p.Object] = p.Step
	}
	if len(s.active) > 0 {
		var parts []string
		for o, st := range s.active {
			if st == "" {
				st = "starting"
			}
			parts = append(parts, o+": "+st)
		}
		sort.Strings(parts)
		line := strings.Join(parts, ", ")
		if len(line) > 120 {
			line = line[:117] + "..."
		}
		fmt.Fprint(s.w, line)
	}
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
