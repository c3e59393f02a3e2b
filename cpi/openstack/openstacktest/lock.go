// Package openstacktest coordinates the test processes that use the one real
// OpenStack a machine runs (.ci/setup-openstack.sh): go test runs packages in
// parallel, and a test that changes project-wide state (the demo project's
// instance quota) must not run while another package deploys there.
package openstacktest

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// LockPath is the file whose flock the OpenStack tests share.
var LockPath = filepath.Join(os.TempDir(), "kpaas-openstack-tests.lock")

var (
	mu   sync.Mutex
	fd   *os.File
	held int // 0 none, syscall.LOCK_SH or syscall.LOCK_EX
)

// Shared marks this test process as using the OpenStack until it exits: a test
// in another process that calls Exclusive waits for it. Calling it again, or
// while Exclusive holds the lock, changes nothing.
func Shared(t testing.TB) {
	mu.Lock()
	defer mu.Unlock()
	if held != 0 {
		return
	}
	flock(t, syscall.LOCK_SH)
}

// Exclusive waits until no other process uses the OpenStack and keeps it to
// this test; at the test's end the process goes back to a shared hold.
func Exclusive(t testing.TB) {
	mu.Lock()
	defer mu.Unlock()
	flock(t, syscall.LOCK_EX)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		flock(t, syscall.LOCK_SH)
	})
}

func flock(t testing.TB, how int) {
	t.Helper()
	if fd == nil {
		f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatalf("opening the OpenStack test lock %s: %v", LockPath, err)
		}
		fd = f
	}
	if err := syscall.Flock(int(fd.Fd()), how); err != nil {
		t.Fatalf("locking %s: %v", LockPath, err)
	}
	held = how
}
