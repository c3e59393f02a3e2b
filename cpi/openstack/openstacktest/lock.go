// Package openstacktest coordinates the test processes that use the one real
// OpenStack a machine runs (.ci/setup-openstack.sh). go test runs packages in
// parallel, and the OpenStack tests check the demo project's whole inventory
// before and after (nothing left behind) and change project-wide quotas, so
// two packages must not use the project at once.
package openstacktest

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// LockPath is the file whose flock the OpenStack test processes take in turn.
var LockPath = filepath.Join(os.TempDir(), "kpaas-openstack-tests.lock")

var (
	mu sync.Mutex
	fd *os.File
)

// Use waits until no other test process uses the OpenStack, then keeps it for
// this process until it exits (tests inside one package run one after another;
// the lock is the kernel's, so it is released however the process ends).
func Use(t testing.TB) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if fd != nil {
		return
	}
	f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("opening the OpenStack test lock %s: %v", LockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("locking %s: %v", LockPath, err)
	}
	fd = f
}
