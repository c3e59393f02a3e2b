package manifest

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// Problem is one validation error or warning, located in a file.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"` // YAML path, e.g. instance_groups[2] (router).vm_type
	Message string `json:"message"`
}

func (p *Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Warnings are problems that do not stop anything (unknown keys, duplicate keys).
type Warnings []*Problem

func (w Warnings) String() string {
	lines := make([]string, len(w))
	for i, p := range w {
		lines[i] = "warning: " + p.Error()
	}
	return strings.Join(lines, "\n")
}

// Meta locates a parsed node: the file, its YAML path and line, and for each of
// its keys the line of the key and whether its value was a ((placeholder)).
type Meta struct {
	File   string
	Path   string
	Line   int
	Column int

	keys  map[string]pos
	vars  map[string]string
	items map[string][]pos // lines of the items of list values
}

// ItemLine is the line of the i-th item of the list under key (the key's line
// when unknown).
func (m Meta) ItemLine(key string, i int) int {
	if l := m.items[key]; i >= 0 && i < len(l) {
		return l[i].line
	}
	return m.KeyLine(key)
}

type pos struct{ line, col int }

// KeyLine is the line where key is written in this node (the node's own line when absent).
func (m Meta) KeyLine(key string) int {
	if p, ok := m.keys[key]; ok {
		return p.line
	}
	return m.Line
}

// Has reports whether key was written in this node (even with a null value).
func (m Meta) Has(key string) bool { _, ok := m.keys[key]; return ok }

// Var returns the placeholder text (e.g. "((nats_instances))") when the value of
// key was a placeholder where a typed value was expected, and "" otherwise.
func (m Meta) Var(key string) string { return m.vars[key] }

// IsVar reports whether key's value was a placeholder standing for a typed value.
func (m Meta) IsVar(key string) bool { _, ok := m.vars[key]; return ok }

// IsPlaceholder reports whether the whole node was one ((placeholder)) (a list
// item such as `- ((extra_network))`); its fields are then all zero.
func (m Meta) IsPlaceholder() bool { _, ok := m.vars[""]; return ok }

// Vars lists the keys whose values were placeholders, sorted.
func (m Meta) Vars() []string {
	out := make([]string, 0, len(m.vars))
	for k := range m.vars {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Field is the path of key under this node.
func (m Meta) Field(key string) string {
	if m.Path == "" {
		return key
	}
	return m.Path + "." + key
}

// problems collects errors and warnings while parsing or validating.
type problems struct {
	errs     *multierror.Error
	warnings Warnings
}

func (ps *problems) add(p *Problem) { ps.errs = multierror.Append(ps.errs, p) }

// at reports an error about key of the node m.
func (ps *problems) at(m Meta, key, format string, args ...any) {
	path := m.Path
	line := m.Line
	col := m.Column
	if key != "" {
		path = m.Field(key)
		if p, ok := m.keys[key]; ok {
			line, col = p.line, p.col
		}
	}
	ps.add(&Problem{File: m.File, Line: line, Column: col, Path: path, Message: fmt.Sprintf(format, args...)})
}

// item reports an error about the i-th item of the list under key.
func (ps *problems) item(m Meta, key string, i int, line int, format string, args ...any) {
	if line == 0 {
		line = m.ItemLine(key, i)
	}
	ps.add(&Problem{File: m.File, Line: line, Path: fmt.Sprintf("%s[%d]", m.Field(key), i), Message: fmt.Sprintf(format, args...)})
}

func (ps *problems) warn(p *Problem) { ps.warnings = append(ps.warnings, p) }

// err returns the collected errors as a *multierror.Error with a readable
// format, or nil.
func (ps *problems) err() error {
	if ps.errs == nil || len(ps.errs.Errors) == 0 {
		return nil
	}
	ps.errs.ErrorFormat = formatProblems
	return ps.errs
}

func formatProblems(es []error) string {
	if len(es) == 1 {
		return es[0].Error()
	}
	lines := make([]string, 0, len(es)+1)
	lines = append(lines, fmt.Sprintf("%d problems:", len(es)))
	for _, e := range es {
		lines = append(lines, "  "+e.Error())
	}
	return strings.Join(lines, "\n")
}

// joinErrors merges validation results into one *multierror.Error (nil when all are nil).
func joinErrors(errs ...error) error {
	var all *multierror.Error
	for _, e := range errs {
		if e != nil {
			all = multierror.Append(all, e) // flattens nested multierrors
		}
	}
	if all == nil {
		return nil
	}
	all.ErrorFormat = formatProblems
	return all
}

// Problems returns the *Problem values inside an error returned by this package.
func Problems(err error) []*Problem {
	var out []*Problem
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case nil:
		case *Problem:
			out = append(out, x)
		case *multierror.Error:
			for _, inner := range x.Errors {
				walk(inner)
			}
		}
	}
	walk(err)
	return out
}

// placeholderRe matches a ((var)) reference as the BOSH CLI reads it.
var placeholderRe = regexp.MustCompile(`\(\((!?[-/\.\w\pL]+)\)\)`)

// HasVar reports whether s contains a ((placeholder)): such a value is opaque
// until interpolation.
func HasVar(s string) bool { return strings.Contains(s, "((") && placeholderRe.MatchString(s) }
