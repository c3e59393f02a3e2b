package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kpaas/kpaas/cpi"
)

// ErrTaskTimeout says a vCenter task did not finish within task_timeout.
var ErrTaskTimeout = errors.New("vCenter task timed out")

// faultIn is fault.In made safe for error chains that end in a wrapper whose
// Unwrap returns nil (a *cpi.Error raised without a cause): fault.In panics
// on the nil.
func faultIn(err error, fn fault.OnFaultFn) {
	switch e := err.(type) {
	case nil:
	case types.HasLocalizedMethodFault, types.BaseMethodFault, interface{ Fault() types.BaseMethodFault }:
		fault.In(e, fn)
	case interface{ Unwrap() error }:
		faultIn(e.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, u := range e.Unwrap() {
			faultIn(u, fn)
		}
	}
}

// transient reports whether err may go away if the same call is made again:
// vCenter busy or unreachable, a session that expired, a task that timed out
// or was cancelled, an object locked by another task.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrTaskTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	retry := false
	faultIn(err, func(f types.BaseMethodFault, _ string, _ []types.LocalizableMessage) bool {
		switch f.(type) {
		case *types.TaskInProgress, *types.HostCommunication, *types.HostNotConnected, *types.HostNotReachable,
			*types.ResourceInUse, *types.ConcurrentAccess, *types.NotAuthenticated, *types.RequestCanceled,
			*types.InvalidPowerState, *types.Timedout:
			retry = true
			return true
		}
		return false
	})
	return retry
}

// notFound reports a fault saying a managed object is gone.
func notFound(err error) bool {
	return fault.Is(err, &types.ManagedObjectNotFound{})
}

// fileNotFound reports a datastore file that is not there.
func fileNotFound(err error) bool {
	return fault.Is(err, &types.FileNotFound{})
}

// noSpace reports a datastore out of space.
func noSpace(err error) bool {
	return fault.Is(err, &types.NoDiskSpace{}) || fault.Is(err, &types.InsufficientStorageSpace{}) ||
		fault.Is(err, &types.OutOfBounds{}) || errors.Is(err, errNoDatastore)
}

// classify turns an error into a *cpi.Error (an existing one is kept).
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ce *cpi.Error
	if errors.As(err, &ce) {
		return err
	}
	if noSpace(err) {
		return &cpi.Error{Type: cpi.TypeNoDiskSpace, Message: err.Error(), Err: err}
	}
	return &cpi.Error{Type: cpi.TypeCloudError, Message: err.Error(), OkToRetry: transient(err), Err: err}
}

// UnfinishedTaskError is a task that was still running when the wait ended:
// task_timeout passed (Cause ErrTaskTimeout) or the caller's context ended
// (Cause its error). Task lets the caller wait longer or cancel it.
type UnfinishedTaskError struct {
	Task    *object.Task
	What    string
	Timeout time.Duration
	Cause   error
}

func (e *UnfinishedTaskError) Error() string {
	if errors.Is(e.Cause, ErrTaskTimeout) {
		return fmt.Sprintf("%s: %v after %s (task %s; raise task_timeout if vCenter is slow)", e.What, ErrTaskTimeout, e.Timeout, e.Task.Reference().Value)
	}
	return fmt.Sprintf("%s: stopped waiting for task %s: %v", e.What, e.Task.Reference().Value, e.Cause)
}

// Unwrap returns the cause: errors.Is(err, ErrTaskTimeout) tells a timeout.
func (e *UnfinishedTaskError) Unwrap() error { return e.Cause }

// wait waits for a task, bounded by task_timeout. Most tasks finish within
// milliseconds, so the task's info is read after short pauses (one round
// trip each) before falling back to a long-polling property collector. A task that
// times out, or whose wait the caller cancels, is cancelled in vCenter (best
// effort) and reported as an *UnfinishedTaskError.
func (d *Driver) wait(ctx context.Context, t *object.Task, what string) (types.AnyType, error) {
	res, err := d.waitKeep(ctx, t, what)
	var te *UnfinishedTaskError
	if errors.As(err, &te) {
		d.cancelTask(t, what)
	}
	return res, err
}

// waitKeep is wait without cancelling a timed-out task (the caller decides).
func (d *Driver) waitKeep(ctx context.Context, t *object.Task, what string) (types.AnyType, error) {
	timeout := time.Duration(d.cfg.TaskTimeout)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := d.pollTask(tctx, t)
	if err == nil && info == nil {
		info, err = t.WaitForResult(tctx, nil)
	} else if err == nil && info.State == types.TaskInfoStateError {
		err = taskError(info)
	}
	if err == nil {
		return info.Result, nil
	}
	if ctx.Err() != nil {
		return nil, &UnfinishedTaskError{Task: t, What: what, Timeout: timeout, Cause: ctx.Err()}
	}
	if tctx.Err() != nil {
		return nil, &UnfinishedTaskError{Task: t, What: what, Timeout: timeout, Cause: ErrTaskTimeout}
	}
	return nil, fmt.Errorf("%s: %w", what, err)
}

func (d *Driver) cancelTask(t *object.Task, what string) {
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	if err := t.Cancel(cctx); err != nil {
		d.log.Warn("vsphere: cancelling a timed-out task", "task", t.Reference().Value, "what", what, "err", err)
	}
}

// pollDelays are the pauses before each read of a task's info; a task still
// running after them is waited for with a long-polling property collector.
var pollDelays = []time.Duration{2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond}

// pollTask reads a task's info after short pauses (one round trip each);
// nil info means it is still running.
func (d *Driver) pollTask(ctx context.Context, t *object.Task) (*types.TaskInfo, error) {
	for _, delay := range pollDelays {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		var mt mo.Task
		if err := t.Properties(ctx, t.Reference(), []string{"info"}, &mt); err != nil {
			return nil, err
		}
		switch mt.Info.State {
		case types.TaskInfoStateSuccess, types.TaskInfoStateError:
			return &mt.Info, nil
		}
	}
	return nil, nil
}

func taskError(info *types.TaskInfo) error {
	if info.Error == nil {
		return fmt.Errorf("task %s failed", info.Key)
	}
	return task.Error{LocalizedMethodFault: info.Error, Description: info.Description}
}

// isFileExists reports a datastore file or directory that already exists.
func isFileExists(err error) bool {
	return fault.Is(err, &types.FileAlreadyExists{})
}

// isFault reports whether err carries a fault of target's type.
func isFault(err error, target types.BaseMethodFault) bool {
	return fault.Is(err, target)
}
