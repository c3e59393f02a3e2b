package interpolate

import (
	"errors"
	"fmt"

	yaml "gopkg.in/yaml.v2"
)

// Op is one go-patch operation from an ops file.
type Op struct {
	Type   string // replace, remove or test
	Path   Pointer
	Value  any
	Absent bool   // test only: the path must not exist
	Error  string // the ops file's own message for a failure (go-patch `error:`)
}

// OpsFile is a parsed ops file: the operations in order and the name errors use.
type OpsFile struct {
	Name string
	Ops  []Op
}

type opDefinition struct {
	Type   string  `yaml:"type"`
	Path   *string `yaml:"path"`
	Value  *any    `yaml:"value"`
	Absent *bool   `yaml:"absent"`
	Error  *string `yaml:"error"`
}

// OpError says which operation of which ops file failed, on what path, and why.
type OpError struct {
	File  string
	Index int
	Type  string
	Path  string
	Msg   string // the ops file's own `error:` message, if any
	Err   error  // what go-patch found (MissingKeyError, MatchError, ...)
}

func (e *OpError) Error() string {
	s := fmt.Sprintf("ops file %s: operation [%d] (%s %s) failed: ", e.File, e.Index, e.Type, e.Path)
	if e.Msg != "" {
		s += e.Msg + ": "
	}
	s += e.Err.Error()
	var mk *MissingKeyError
	var me *MatchError
	if e.Type != "test" && (errors.As(e.Err, &mk) || errors.As(e.Err, &me)) {
		s += "; if another ops file adds it, pass that one first with -o, or make the path optional with '?'"
	}
	return s
}

func (e *OpError) Unwrap() error { return e.Err }

// ParseOpsFile parses an ops file (a YAML list of operations). Errors name the file,
// the line and the operation's index.
func ParseOpsFile(name string, data []byte) (*OpsFile, error) {
	var defs []opDefinition
	if err := yaml.Unmarshal(data, &defs); err != nil {
		return nil, yamlError(name, data, err, "an ops file must be a YAML list of operations ({type, path, value})")
	}
	f := &OpsFile{Name: name}
	for i, d := range defs {
		op, err := newOp(d)
		if err != nil {
			return nil, fmt.Errorf("ops file %s: operation [%d] (type %q): %w", name, i, d.Type, err)
		}
		f.Ops = append(f.Ops, op)
	}
	return f, nil
}

func newOp(d opDefinition) (Op, error) {
	op := Op{Type: d.Type}
	if d.Error != nil {
		op.Error = *d.Error
	}
	switch d.Type {
	case "replace", "remove", "test":
	default:
		return op, fmt.Errorf("unknown operation type %q (expected replace, remove or test)", d.Type)
	}
	if d.Path == nil {
		return op, fmt.Errorf("missing path")
	}
	p, err := ParsePointer(*d.Path)
	if err != nil {
		return op, fmt.Errorf("invalid path: %w", err)
	}
	op.Path = p
	switch d.Type {
	case "replace":
		if d.Value == nil {
			return op, fmt.Errorf("missing value")
		}
		op.Value = *d.Value
	case "remove":
		if d.Value != nil {
			return op, fmt.Errorf("a remove operation takes no value")
		}
	case "test":
		switch {
		case d.Value != nil && d.Absent != nil:
			return op, fmt.Errorf("a test operation takes either value or absent, not both")
		case d.Value != nil:
			op.Value = *d.Value
		case d.Absent != nil:
			op.Absent = *d.Absent // absent: false tests that the value is null, as go-patch does
		default:
			return op, fmt.Errorf("missing value or absent")
		}
	}
	return op, nil
}

// Apply runs the operation on doc and returns the new document.
func (op Op) Apply(doc any) (any, error) {
	switch op.Type {
	case "replace":
		return Replace(doc, op.Path, op.Value)
	case "remove":
		return Remove(doc, op.Path)
	case "test":
		if err := Test(doc, op.Path, op.Value, op.Absent); err != nil {
			return nil, err
		}
		return doc, nil
	}
	return nil, fmt.Errorf("unknown operation type %q", op.Type)
}

// Apply runs every operation in order. The error is an *OpError.
func (f *OpsFile) Apply(doc any) (any, error) {
	for i, op := range f.Ops {
		out, err := op.Apply(doc)
		if err != nil {
			return nil, &OpError{File: f.Name, Index: i, Type: op.Type, Path: op.Path.String(), Msg: op.Error, Err: err}
		}
		doc = out
	}
	return doc, nil
}
