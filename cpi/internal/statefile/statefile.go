// Package statefile holds the state-directory helpers the local and QEMU
// clouds share: JSON records written atomically, and the directory's lock.
package statefile

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	"github.com/kpaas/kpaas/cpi"
)

// WriteJSON writes v to path atomically (temp file, rename); durably when
// sync (fsync before the rename; what does not outlive the host's uptime,
// like a PID, needs none).
func WriteJSON(path string, v any, sync bool) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.Write(b); err != nil {
		fh.Close()
		return err
	}
	if sync {
		if err := fh.Sync(); err != nil {
			fh.Close()
			return err
		}
	}
	if err := fh.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadJSON reads the JSON record at path into v; a missing file is an
// os.IsNotExist error.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Lock takes an exclusive flock on path (between goroutines and processes),
// creating the file if needed; what names the cloud in errors ("the local
// cloud"). It returns the unlock function.
func Lock(path, what string) (func(), error) {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s's lock: %w", what, err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		fh.Close()
		return nil, fmt.Errorf("locking %s's state: %w", what, err)
	}
	return func() { _ = syscall.Flock(int(fh.Fd()), syscall.LOCK_UN); fh.Close() }, nil
}

// Load reads the JSON record at path: a missing file is notFound (the CPI's
// typed "not found" error), any other failure a cloud error "reading <what>".
func Load[T any](path string, notFound error, what string) (*T, error) {
	var v T
	if err := ReadJSON(path, &v); err != nil {
		if os.IsNotExist(err) {
			return nil, notFound
		}
		return nil, cpi.Errorf(cpi.TypeCloudError, false, "reading %s: %w", what, err)
	}
	return &v, nil
}
