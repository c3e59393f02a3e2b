package converge

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"

	"github.com/kpaas/kpaas/pkg/state"
)

// Leader elects one monitor among those sharing a state store.
type Leader interface {
	// TryLead takes the leadership if it is free; when not, holder says
	// who has it (when known).
	TryLead(ctx context.Context) (ok bool, holder string, err error)
	// Check says whether the leadership is still held (an error: lost).
	Check(ctx context.Context) error
	// Release gives the leadership up.
	Release(ctx context.Context)
}

// StoreLeader elects with the store's own lock (named name), kept alive by
// its heartbeat: the way on SQLite, where every monitor is on one host.
type StoreLeader struct {
	Store state.Store
	Name  string
	lock  *state.Lock
}

// TryLead implements Leader.
func (l *StoreLeader) TryLead(ctx context.Context) (bool, string, error) {
	lk, err := l.Store.Lock(ctx, state.LockRequest{Name: l.Name, Op: "monitor"})
	var le *state.LockError
	if errors.As(err, &le) {
		return false, fmt.Sprintf("%s, pid %d", le.Holder, le.PID), nil
	}
	if err != nil {
		return false, "", err
	}
	l.lock = lk
	return true, "", nil
}

// Check implements Leader.
func (l *StoreLeader) Check(ctx context.Context) error {
	if l.lock == nil {
		return errors.New("not leading")
	}
	select {
	case <-l.lock.Lost():
		err := l.lock.Err()
		l.lock = nil
		return fmt.Errorf("lost the leader lock: %w", err)
	default:
		return nil
	}
}

// Release implements Leader.
func (l *StoreLeader) Release(ctx context.Context) {
	if l.lock != nil {
		_ = l.lock.Release(ctx)
		l.lock = nil
	}
}

// PGLeader elects with a PostgreSQL session advisory lock on a connection
// of its own: the leadership ends the moment that connection does (a
// monitor killed, a host gone), without waiting for a lock to expire.
type PGLeader struct {
	URL string
	// Key is derived from Scope (the store's location without password) so
	// that stores sharing a database in different schemas elect apart.
	Scope string
	conn  *pgx.Conn
}

func (l *PGLeader) key() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("kpaas-monitor\x00" + l.Scope))
	return int64(h.Sum64())
}

// TryLead implements Leader.
func (l *PGLeader) TryLead(ctx context.Context) (bool, string, error) {
	if l.conn == nil {
		c, err := pgx.Connect(ctx, l.URL)
		if err != nil {
			return false, "", fmt.Errorf("connecting for the monitor's leader lock: %w", err)
		}
		l.conn = c
	}
	var ok bool
	if err := l.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", l.key()).Scan(&ok); err != nil {
		l.close(ctx)
		return false, "", fmt.Errorf("taking the monitor's advisory lock: %w", err)
	}
	if !ok {
		var pid int
		_ = l.conn.QueryRow(ctx, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND (classid::bigint << 32 | objid::bigint) = $1 LIMIT 1", l.key()).Scan(&pid)
		return false, fmt.Sprintf("a monitor on PostgreSQL backend pid %d", pid), nil
	}
	return true, "", nil
}

// Check implements Leader.
func (l *PGLeader) Check(ctx context.Context) error {
	if l.conn == nil {
		return errors.New("not leading")
	}
	if err := l.conn.Ping(ctx); err != nil {
		l.close(ctx)
		return fmt.Errorf("lost the connection holding the leader lock: %w", err)
	}
	return nil
}

func (l *PGLeader) close(ctx context.Context) {
	if l.conn != nil {
		_ = l.conn.Close(ctx)
		l.conn = nil
	}
}

// Release implements Leader.
func (l *PGLeader) Release(ctx context.Context) {
	if l.conn != nil {
		_, _ = l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", l.key())
	}
	l.close(ctx)
}
