package cpi

import (
	"errors"
	"fmt"
	"strings"
)

// BOSH's error types (Director lib/clouds/external_cpi.rb KNOWN_RPC_ERRORS).
const (
	TypeCpiError        = "Bosh::Clouds::CpiError"
	TypeNotSupported    = "Bosh::Clouds::NotSupported"
	TypeNotImplemented  = "Bosh::Clouds::NotImplemented"
	TypeCloudError      = "Bosh::Clouds::CloudError"
	TypeVMNotFound      = "Bosh::Clouds::VMNotFound"
	TypeNetworkNotFound = "Bosh::Clouds::NetworkNotFound"
	TypeNoDiskSpace     = "Bosh::Clouds::NoDiskSpace"
	TypeDiskNotAttached = "Bosh::Clouds::DiskNotAttached"
	TypeDiskNotFound    = "Bosh::Clouds::DiskNotFound"
	TypeVMCreationFail  = "Bosh::Clouds::VMCreationFailed"
	TypeUnknownError    = "Bosh::Clouds::UnknownError"
)

// Sentinels for decisions with errors.Is. An *Error matches the sentinel of
// its Type.
var (
	ErrCpiError         = errors.New("cpi error")
	ErrNotSupported     = errors.New("not supported by this cpi")
	ErrNotImplemented   = errors.New("not implemented by this cpi")
	ErrCloudError       = errors.New("cloud error")
	ErrVMNotFound       = errors.New("vm not found")
	ErrNetworkNotFound  = errors.New("network not found")
	ErrNoDiskSpace      = errors.New("no disk space")
	ErrDiskNotAttached  = errors.New("disk not attached")
	ErrDiskNotFound     = errors.New("disk not found")
	ErrVMCreationFailed = errors.New("vm creation failed")
	ErrStemcellNotFound = errors.New("stemcell not found") // reported as CloudError on the wire
)

var sentinelByType = map[string]error{
	TypeCpiError:        ErrCpiError,
	TypeNotSupported:    ErrNotSupported,
	TypeNotImplemented:  ErrNotImplemented,
	TypeCloudError:      ErrCloudError,
	TypeVMNotFound:      ErrVMNotFound,
	TypeNetworkNotFound: ErrNetworkNotFound,
	TypeNoDiskSpace:     ErrNoDiskSpace,
	TypeDiskNotAttached: ErrDiskNotAttached,
	TypeDiskNotFound:    ErrDiskNotFound,
	TypeVMCreationFail:  ErrVMCreationFailed,
}

// KnownType reports whether t is one of BOSH's error types.
func KnownType(t string) bool { _, ok := sentinelByType[t]; return ok }

// Error is a CPI error as BOSH carries it: a type, a message and whether the
// call may be retried.
type Error struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	OkToRetry bool   `json:"ok_to_retry"`
	Err       error  `json:"-"` // the cause, when raised locally
}

func (e *Error) Error() string {
	short := strings.TrimPrefix(e.Type, "Bosh::Clouds::")
	return fmt.Sprintf("%s: %s", short, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinel of e's Type, so errors.Is(err, cpi.ErrVMNotFound)
// works for errors raised here and for those read off the wire.
func (e *Error) Is(target error) bool {
	if s, ok := sentinelByType[e.Type]; ok && s == target {
		return true
	}
	return e.Type == TypeCloudError && target == ErrStemcellNotFound && errors.Is(e.Err, ErrStemcellNotFound)
}

// Errorf builds an *Error of type typ.
func Errorf(typ string, okToRetry bool, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Type: typ, Message: err.Error(), OkToRetry: okToRetry, Err: errors.Unwrap(err)}
}

// NotFound helpers used by every driver.
func VMNotFound(cid VMCID) *Error {
	return &Error{Type: TypeVMNotFound, Message: fmt.Sprintf("VM '%s' not found", cid)}
}

// DiskNotFound reports a missing disk.
func DiskNotFound(cid DiskCID) *Error {
	return &Error{Type: TypeDiskNotFound, Message: fmt.Sprintf("Disk '%s' not found", cid)}
}

// NotSupported reports an optional method the driver does not have.
func NotSupported(method string) *Error {
	return &Error{Type: TypeNotSupported, Message: fmt.Sprintf("%s is not supported by this CPI", method)}
}

// StemcellNotFound reports a missing stemcell (CloudError on the wire, as BOSH CPIs do).
func StemcellNotFound(cid StemcellCID) *Error {
	return &Error{Type: TypeCloudError, Message: fmt.Sprintf("Stemcell '%s' not found", cid), Err: ErrStemcellNotFound}
}

// VMCreationFailed wraps the cause of a failed create_vm.
func VMCreationFailed(okToRetry bool, err error) *Error {
	return &Error{Type: TypeVMCreationFail, Message: err.Error(), OkToRetry: okToRetry, Err: err}
}

// AsError turns any error into the *Error sent on the wire: an *Error in the
// chain is kept (its message replaced by the full chain's), a sentinel maps to
// its type, anything else is a CloudError (as bosh-cpi-go does).
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		// the chain's text without ce's own "Type: " prefix, which Error()
		// adds again (not "CloudError: ...: CloudError: boom")
		msg := strings.Replace(err.Error(), ce.Error(), ce.Message, 1)
		return &Error{Type: ce.Type, Message: msg, OkToRetry: ce.OkToRetry, Err: err}
	}
	for typ, s := range sentinelByType {
		if errors.Is(err, s) {
			return &Error{Type: typ, Message: err.Error(), Err: err}
		}
	}
	return &Error{Type: TypeCloudError, Message: err.Error(), Err: err}
}

// Retryable reports whether err says ok_to_retry.
func Retryable(err error) bool {
	var ce *Error
	return errors.As(err, &ce) && ce.OkToRetry
}
