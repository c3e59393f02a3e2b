package ui

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Table renders rows: on a TTY, aligned columns under upper-case headers;
// piped, tab-separated rows without a header, for cut and awk.
type Table struct {
	out     io.Writer
	tty     bool
	headers []string
	rows    [][]string
}

// NewTable starts a table on s.Out.
func NewTable(s *IOStreams, headers ...string) *Table {
	return &Table{out: s.Out, tty: s.IsStdoutTTY(), headers: headers}
}

// AddRow adds one row; cells are printed as given (tabs and newlines become spaces).
func (t *Table) AddRow(cells ...string) {
	t.rows = append(t.rows, cells)
}

// Render writes the table.
func (t *Table) Render() error {
	clean := strings.NewReplacer("\t", " ", "\n", " ")
	if !t.tty {
		for _, r := range t.rows {
			for i := range r {
				r[i] = clean.Replace(r[i])
			}
			if _, err := fmt.Fprintln(t.out, strings.Join(r, "\t")); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(t.out, 0, 4, 2, ' ', 0)
	hs := make([]string, len(t.headers))
	for i, h := range t.headers {
		hs[i] = strings.ToUpper(h)
	}
	fmt.Fprintln(tw, strings.Join(hs, "\t"))
	for _, r := range t.rows {
		for i := range r {
			r[i] = clean.Replace(r[i])
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// Time formats t for a table: fuzzy ("5 minutes ago") on a TTY, RFC3339 piped.
func (s *IOStreams) Time(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if !s.IsStdoutTTY() {
		return t.UTC().Format(time.RFC3339)
	}
	return FuzzyAgo(now.Sub(t))
}

// FuzzyAgo says how long ago d was, roughly ("just now", "3 minutes ago", "in 40 seconds").
func FuzzyAgo(d time.Duration) string {
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, ""
		return "in " + fuzzy(d)
	}
	if d < 5*time.Second {
		return "just now"
	}
	return fuzzy(d) + suffix
}

func fuzzy(d time.Duration) string {
	unit := func(n int, u string) string {
		if n == 1 {
			return "1 " + u
		}
		return fmt.Sprintf("%d %ss", n, u)
	}
	switch {
	case d < time.Minute:
		return unit(int(d/time.Second), "second")
	case d < time.Hour:
		return unit(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return unit(int(d/time.Hour), "hour")
	default:
		return unit(int(d/(24*time.Hour)), "day")
	}
}
