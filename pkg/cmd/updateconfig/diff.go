package updateconfig

import (
	"strings"
)

// DiffLine is one line of a diff: Op is ' ' (context), '-' (removed), '+' (added),
// or '.' for a gap between hunks.
type DiffLine struct {
	Op   byte
	Text string
}

// Diff compares two texts line by line and returns the changed lines with up
// to context lines of context around them. Equal texts give no lines.
func Diff(old, new string, context int) []DiffLine {
	a, b := splitLines(old), splitLines(new)
	// Common prefix and suffix first: config edits are usually local.
	p := 0
	for p < len(a) && p < len(b) && a[p] == b[p] {
		p++
	}
	s := 0
	for s < len(a)-p && s < len(b)-p && a[len(a)-1-s] == b[len(b)-1-s] {
		s++
	}
	all := make([]DiffLine, 0, len(a)+len(b))
	for _, l := range a[:p] {
		all = append(all, DiffLine{' ', l})
	}
	all = append(all, middle(a[p:len(a)-s], b[p:len(b)-s])...)
	for _, l := range a[len(a)-s:] {
		all = append(all, DiffLine{' ', l})
	}
	return trimContext(all, context)
}

// middle diffs the changed middle with a longest-common-subsequence table,
// or, when that would be too big, as all removed then all added.
func middle(a, b []string) []DiffLine {
	var out []DiffLine
	if len(a)*len(b) > 4_000_000 {
		for _, l := range a {
			out = append(out, DiffLine{'-', l})
		}
		for _, l := range b {
			out = append(out, DiffLine{'+', l})
		}
		return out
	}
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			out = append(out, DiffLine{' ', a[i]})
			i, j = i+1, j+1
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, DiffLine{'-', a[i]})
			i++
		default:
			out = append(out, DiffLine{'+', b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, DiffLine{'-', a[i]})
	}
	for ; j < m; j++ {
		out = append(out, DiffLine{'+', b[j]})
	}
	return out
}

func trimContext(all []DiffLine, context int) []DiffLine {
	keep := make([]bool, len(all))
	changed := false
	for i, l := range all {
		if l.Op != ' ' {
			changed = true
			for k := max(0, i-context); k <= min(len(all)-1, i+context); k++ {
				keep[k] = true
			}
		}
	}
	if !changed {
		return nil
	}
	var out []DiffLine
	gap := false
	for i, l := range all {
		if !keep[i] {
			gap = true
			continue
		}
		if gap && len(out) > 0 {
			out = append(out, DiffLine{'.', "..."})
		}
		gap = false
		out = append(out, l)
	}
	return out
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
