package agent

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MonitProcess is a `check process` block of a job's monit file.
type MonitProcess struct {
	Name         string
	PidFile      string
	StartProgram string
	StartTimeout time.Duration
	StopProgram  string
	StopTimeout  time.Duration
	Group        string
}

var (
	monitCheckRe = regexp.MustCompile(`^check\s+process\s+(\S+)`)
	monitPidRe   = regexp.MustCompile(`^(?:with\s+)?pidfile\s+"?([^"\s]+)"?`)
	monitProgRe  = regexp.MustCompile(`^(start|stop)(?:\s+program)?\s*(?:=\s*)?"([^"]*)"(.*)$`)
	monitTimeRe  = regexp.MustCompile(`timeout\s+(\d+)\s*sec`)
	monitGroupRe = regexp.MustCompile(`^group\s+(\S+)`)
)

// ParseMonit reads the `check process` blocks of a monit control file. Other
// checks (file, host, system) and alert/if rules are ignored; an empty file
// means a job without processes (an errand).
func ParseMonit(text string) ([]MonitProcess, error) {
	var out []MonitProcess
	var cur *MonitProcess
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	// Monit statements may span lines; join continuation lines that start
	// with whitespace onto the statement they belong to.
	var stmts []struct {
		text string
		line int
	}
	for sc.Scan() {
		line++
		raw := sc.Text()
		if i := strings.Index(raw, "#"); i >= 0 && !strings.Contains(raw[:i], `"`) {
			raw = raw[:i]
		}
		t := strings.TrimSpace(raw)
		if t == "" {
			continue
		}
		stmts = append(stmts, struct {
			text string
			line int
		}{t, line})
	}
	for _, s := range stmts {
		t := s.text
		if m := monitCheckRe.FindStringSubmatch(t); m != nil {
			out = append(out, MonitProcess{Name: m[1], StartTimeout: 30 * time.Second, StopTimeout: 30 * time.Second})
			cur = &out[len(out)-1]
			t = strings.TrimSpace(t[len(m[0]):])
			if t == "" {
				continue
			}
		} else if strings.HasPrefix(t, "check ") {
			cur = nil // check file/host/system: not supervised
			continue
		}
		if cur == nil {
			continue
		}
		if m := monitPidRe.FindStringSubmatch(t); m != nil {
			cur.PidFile = m[1]
		} else if m := monitProgRe.FindStringSubmatch(t); m != nil {
			var to time.Duration
			if tm := monitTimeRe.FindStringSubmatch(m[3]); tm != nil {
				n, _ := strconv.Atoi(tm[1])
				to = time.Duration(n) * time.Second
			}
			if m[1] == "start" {
				cur.StartProgram = m[2]
				if to > 0 {
					cur.StartTimeout = to
				}
			} else {
				cur.StopProgram = m[2]
				if to > 0 {
					cur.StopTimeout = to
				}
			}
		} else if m := monitGroupRe.FindStringSubmatch(t); m != nil {
			cur.Group = m[1]
		}
	}
	for i, p := range out {
		if p.PidFile == "" {
			return nil, fmt.Errorf("check process %s: no pidfile", p.Name)
		}
		if p.StartProgram == "" {
			return nil, fmt.Errorf("check process %s: no start program", p.Name)
		}
		out[i] = p
	}
	return out, nil
}

// LoadMonit reads a monit file; a missing file is a job without processes.
func LoadMonit(path string) ([]MonitProcess, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ps, err := ParseMonit(string(b))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return ps, nil
}
