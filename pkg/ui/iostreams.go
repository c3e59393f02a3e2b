// Package ui owns everything kpaas shows a person or a program: the IOStreams
// every command writes through, tables, --json rendering and progress renderers.
// It must not import domain packages (state, engine, cpi).
package ui

import (
	"bytes"
	"io"
	"os"

	"github.com/mattn/go-isatty"
)

// IOStreams carries a command's standard streams. stdout carries data only;
// progress, warnings, prompts and errors go to ErrOut.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	stdinTTY  bool
	stdoutTTY bool
	stderrTTY bool
	noColor   bool
}

// System returns the process's streams with TTY detection.
func System() *IOStreams {
	io := &IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	io.stdinTTY = isatty.IsTerminal(os.Stdin.Fd())
	io.stdoutTTY = isatty.IsTerminal(os.Stdout.Fd())
	io.stderrTTY = isatty.IsTerminal(os.Stderr.Fd())
	if _, ok := os.LookupEnv("NO_COLOR"); ok {
		io.noColor = true
	}
	return io
}

// Test returns streams backed by buffers, for tests: in, out, errOut.
func Test() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

func (s *IOStreams) IsStdinTTY() bool  { return s.stdinTTY }
func (s *IOStreams) IsStdoutTTY() bool { return s.stdoutTTY }
func (s *IOStreams) IsStderrTTY() bool { return s.stderrTTY }

// SetTTY sets all three TTY flags (tests).
func (s *IOStreams) SetTTY(tty bool) { s.stdinTTY, s.stdoutTTY, s.stderrTTY = tty, tty, tty }

// SetNoColor disables colour (--no-color).
func (s *IOStreams) SetNoColor(v bool) { s.noColor = v }

// ColorEnabled reports whether colour escapes may be written to stderr/stdout.
func (s *IOStreams) ColorEnabled() bool { return !s.noColor && s.stdoutTTY }

// CanPrompt reports whether the user can be asked a question.
func (s *IOStreams) CanPrompt() bool { return s.stdinTTY && s.stderrTTY }
