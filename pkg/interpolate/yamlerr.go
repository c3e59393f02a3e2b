package interpolate

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// YAMLError is a YAML document that did not parse, or had the wrong shape.
type YAMLError struct {
	File string
	Line int // 1-based; 0 when the parser gave none
	Col  int // 1-based; 0 when unknown
	Msg  string
	Hint string // what the file should look like
}

func (e *YAMLError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
		if e.Col > 0 {
			loc += ":" + strconv.Itoa(e.Col)
		}
	}
	s := loc + ": " + e.Msg
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

var (
	yamlLineRe = regexp.MustCompile(`^line (\d+): (.*)$`)
	intoRe     = regexp.MustCompile(` into .*$`)
)

// yamlError turns a gopkg.in/yaml.v2 error into a YAMLError naming file:line[:col].
func yamlError(file string, data []byte, err error, hint string) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &YAMLError{File: file, Msg: msg}
	unmarshal := false
	if strings.HasPrefix(msg, "unmarshal errors:") {
		unmarshal = true
		lines := strings.Split(strings.TrimPrefix(msg, "unmarshal errors:\n"), "\n")
		msg = strings.TrimSpace(lines[0])
		e.Msg = msg
		if len(lines) > 1 {
			e.Msg += fmt.Sprintf(" (and %d more)", len(lines)-1)
		}
	} else {
		hint = ""
	}
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
		if unmarshal {
			e.Col = firstColumn(data, e.Line)
			e.Msg = intoRe.ReplaceAllString(strings.Replace(strings.Replace(e.Msg, "cannot unmarshal !!", "found a YAML ", 1), "YAML seq", "YAML list", 1), "")
		}
	}
	e.Hint = hint
	return e
}

// firstColumn is the 1-based column of the first non-blank character on line n.
func firstColumn(data []byte, n int) int {
	lines := bytes.Split(data, []byte("\n"))
	if n < 1 || n > len(lines) {
		return 0
	}
	l := lines[n-1]
	return len(l) - len(bytes.TrimLeft(l, " \t")) + 1
}
