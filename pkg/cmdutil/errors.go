package cmdutil

import (
	"errors"
	"fmt"
)

// Exit codes, mapped from typed errors in one place (pkg/cli).
const (
	ExitOK             = 0
	ExitError          = 1
	ExitCancelled      = 2
	ExitLockHeld       = 3
	ExitChangesPending = 4
)

// FlagError is a usage error: bad flags or arguments. The command's usage
// line is printed after it.
type FlagError struct{ Err error }

func (e *FlagError) Error() string { return e.Err.Error() }
func (e *FlagError) Unwrap() error { return e.Err }

// FlagErrorf builds a FlagError.
func FlagErrorf(format string, args ...any) error {
	return &FlagError{Err: fmt.Errorf(format, args...)}
}

// ErrCancelled means the user stopped the operation (Ctrl-C, a "no" at a prompt).
var ErrCancelled = errors.New("cancelled")

// ExitCodeError makes a command exit with Code; when Err is nil nothing is
// printed (the command has already said what it has to say).
type ExitCodeError struct {
	Code int
	Err  error
}

func (e *ExitCodeError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitCodeError) Unwrap() error { return e.Err }

// ExitCoder is implemented by domain errors that carry their own exit code
// (for example a lock held by someone else: 3). pkg/cli checks for it with errors.As,
// so domain packages need not import cmdutil.
type ExitCoder interface{ ExitCode() int }
