package state

import (
	"errors"
	"fmt"
	"time"
)

// Sentinels, for decisions with errors.Is.
var (
	// ErrNotFound: the object asked for is not in the store.
	ErrNotFound = errors.New("not found")
	// ErrLocked: someone else holds the lock; the error is a *LockError.
	ErrLocked = errors.New("locked")
	// ErrLockLost: a held lock was broken or expired before it was released.
	ErrLockLost = errors.New("lock lost")
	// ErrSchemaTooNew: the store was written by a newer kpaas.
	ErrSchemaTooNew = errors.New("state schema is newer than this kpaas")
	// ErrCorrupt: the store's file is damaged or not a state store.
	ErrCorrupt = errors.New("state store is corrupted")
	// ErrNoKey: secrets are needed but no key is configured.
	ErrNoKey = errors.New("no state key")
	// ErrWrongKey: the configured key is not the one the store was written with.
	ErrWrongKey = errors.New("wrong state key")
	// ErrIPTaken: the IP is reserved already; the error is an *IPConflictError.
	ErrIPTaken = errors.New("ip already reserved")
	// ErrNotEmpty: import into a store that already holds something.
	ErrNotEmpty = errors.New("state store is not empty")
)

// LockError says who holds a lock someone else asked for. It maps to exit code 3.
type LockError struct {
	Name    string // lock name, also its ID for `kpaas unlock`
	Holder  string // user@host
	PID     int
	Op      string
	Since   time.Time
	Expires time.Time
	Now     time.Time // when the refusal happened (for the age in the message)
}

func (e *LockError) Error() string {
	age := e.Now.Sub(e.Since).Round(time.Second)
	if age < 0 {
		age = 0
	}
	left := e.Expires.Sub(e.Now).Round(time.Second)
	return fmt.Sprintf("%s is locked by %s (pid %d) running %q for %s (since %s); "+
		"wait for it to finish, or if that process is gone, run `kpaas unlock %s` (it expires on its own in %s without a heartbeat)",
		describeLock(e.Name), e.Holder, e.PID, e.Op, age, e.Since.UTC().Format(time.RFC3339), e.Name, left)
}

// ExitCode is 3: lock held by someone else.
func (e *LockError) ExitCode() int { return 3 }

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockError) Is(target error) bool { return target == ErrLocked }

// IPConflictError says who holds an IP asked for.
type IPConflictError struct {
	Network, IP          string
	Deployment, Instance string
}

func (e *IPConflictError) Error() string {
	return fmt.Sprintf("ip %s on network %s is already reserved by deployment %q instance %q", e.IP, e.Network, e.Deployment, e.Instance)
}

// Is makes errors.Is(err, ErrIPTaken) true.
func (e *IPConflictError) Is(target error) bool { return target == ErrIPTaken }

// SchemaTooNewError: the store's schema is newer than this kpaas knows.
type SchemaTooNewError struct {
	Location     string
	Version      int    // the store's schema version
	WrittenBy    string // kpaas version that wrote it
	KnownVersion int    // the newest this kpaas knows
}

func (e *SchemaTooNewError) Error() string {
	by := ""
	if e.WrittenBy != "" {
		by = " by kpaas " + e.WrittenBy
	}
	return fmt.Sprintf("state store %s was written%s with schema version %d, but this kpaas knows schema versions up to %d: use a newer kpaas (the store was not changed)",
		e.Location, by, e.Version, e.KnownVersion)
}

func (e *SchemaTooNewError) Is(target error) bool { return target == ErrSchemaTooNew }

// CorruptError: the store file is damaged.
type CorruptError struct {
	Location string
	Err      error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state store %s is corrupted or not a kpaas state store (%v): restore it from a backup or re-create it with `kpaas state import`", e.Location, e.Err)
}
func (e *CorruptError) Unwrap() error        { return e.Err }
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// notFound builds an ErrNotFound error naming what was looked for.
func notFound(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrNotFound)
}
