package health

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxUnhealthy is how many unhealthy instances remediation tolerates: a
// count ("3") or a percentage ("30%"). The zero value is BOSH's meltdown
// rule: hold when at least 5 instances and at least 20% are unhealthy.
type MaxUnhealthy struct {
	Set     bool
	N       int
	Percent bool
}

// ParseMaxUnhealthy reads "N" or "N%"; "" is the default.
func ParseMaxUnhealthy(s string) (MaxUnhealthy, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return MaxUnhealthy{}, nil
	}
	m := MaxUnhealthy{Set: true}
	if v, ok := strings.CutSuffix(s, "%"); ok {
		m.Percent, s = true, v
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || (m.Percent && n > 100) {
		return MaxUnhealthy{}, fmt.Errorf("max unhealthy %q: want a count (3) or a percentage (20%%)", s)
	}
	m.N = n
	return m, nil
}

func (m MaxUnhealthy) String() string {
	switch {
	case !m.Set:
		return "20% with a minimum of 5"
	case m.Percent:
		return strconv.Itoa(m.N) + "%"
	}
	return strconv.Itoa(m.N)
}

// Gate says whether remediation must hold off because too many of total
// instances are unhealthy, and why.
func (m MaxUnhealthy) Gate(unhealthy, total int) (hold bool, why string) {
	if unhealthy == 0 {
		return false, ""
	}
	switch {
	case !m.Set:
		hold = unhealthy >= 5 && unhealthy*100 >= 20*total
	case m.Percent:
		hold = unhealthy*100 > m.N*total
	default:
		hold = unhealthy > m.N
	}
	if hold {
		why = fmt.Sprintf("%d of %d instances are unhealthy, more than max_unhealthy (%s): remediating nothing (meltdown)", unhealthy, total, m)
	}
	return hold, why
}

// Budget limits remediations of one instance: at most Max within Window,
// and each retry waits Backoff doubled per earlier attempt (up to MaxBackoff).
type Budget struct {
	Max        int           // default 5
	Window     time.Duration // default 1 h
	Backoff    time.Duration // default 10 s
	MaxBackoff time.Duration // default 5 min
}

// Defaults fills zero fields.
func (b Budget) Defaults() Budget {
	if b.Max <= 0 {
		b.Max = 5
	}
	if b.Window <= 0 {
		b.Window = time.Hour
	}
	if b.Backoff <= 0 {
		b.Backoff = 10 * time.Second
	}
	if b.MaxBackoff <= 0 {
		b.MaxBackoff = 5 * time.Minute
	}
	return b
}

// Allow says whether an instance whose earlier remediations started at
// attempts (oldest first) may be remediated at now; when not, wait is how
// long until it may (0 when the budget is spent for the window).
func (b Budget) Allow(now time.Time, attempts []time.Time) (ok bool, wait time.Duration, why string) {
	b = b.Defaults()
	var recent []time.Time
	for _, a := range attempts {
		if now.Sub(a) < b.Window {
			recent = append(recent, a)
		}
	}
	if len(recent) == 0 {
		return true, 0, ""
	}
	if len(recent) >= b.Max {
		return false, recent[0].Add(b.Window).Sub(now), fmt.Sprintf("retry budget spent: %d remediations in the last %s", len(recent), b.Window)
	}
	back := b.Backoff
	for i := 1; i < len(recent) && back < b.MaxBackoff; i++ {
		back *= 2
	}
	if back > b.MaxBackoff {
		back = b.MaxBackoff
	}
	if at := recent[len(recent)-1].Add(back); now.Before(at) {
		return false, at.Sub(now), fmt.Sprintf("backing off %s after %d remediation(s)", back, len(recent))
	}
	return true, 0, ""
}
