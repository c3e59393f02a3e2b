package state

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// GlobalLock guards what deployments share: configs, stemcells, releases.
const GlobalLock = "global"

// DefaultLockTTL is how long a lock lives without a heartbeat.
const DefaultLockTTL = 60 * time.Second

// DeploymentLock is the name of a deployment's lock.
func DeploymentLock(deployment string) string { return "deployment:" + deployment }

func describeLock(name string) string {
	if name == GlobalLock {
		return "the global lock (configs, stemcells, releases)"
	}
	if d, ok := strings.CutPrefix(name, "deployment:"); ok {
		return "deployment " + d
	}
	return "lock " + name
}

// LockRequest asks for a lock.
type LockRequest struct {
	Name string        // GlobalLock or DeploymentLock(name)
	Op   string        // what the holder does: deploy, delete-deployment, update-cloud-config, ...
	TTL  time.Duration // without a heartbeat the lock expires after this (DefaultLockTTL when 0)
	// Heartbeat is how often the lock is refreshed (TTL/3 when 0; negative: never, for tests).
	Heartbeat time.Duration
}

// LockInfo describes a held lock.
type LockInfo struct {
	Name    string    `json:"name"`
	Holder  string    `json:"holder"`
	PID     int       `json:"pid"`
	Op      string    `json:"op"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
}

// Lock is a held lock. A heartbeat keeps it alive until Release; if the lock
// is broken (kpaas unlock) or lost, Lost is closed and Err says why.
type Lock struct {
	LockInfo
	token string
	b     *backend
	ttl   time.Duration

	stop     chan struct{}
	done     chan struct{}
	lost     chan struct{}
	mu       sync.Mutex
	err      error
	released bool
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (b *backend) Lock(ctx context.Context, req LockRequest) (*Lock, error) {
	if req.Name == "" {
		return nil, errors.New("taking a lock: a name is needed")
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = DefaultLockTTL
	}
	now := b.now()
	pid := b.opts.PID
	if pid == 0 {
		pid = os.Getpid()
	}
	l := &Lock{
		LockInfo: LockInfo{Name: req.Name, Holder: b.user + "@" + b.host, PID: pid, Op: req.Op, Since: now, Expires: now.Add(ttl)},
		token:    newToken(), b: b, ttl: ttl,
		stop: make(chan struct{}), done: make(chan struct{}), lost: make(chan struct{}),
	}
	for attempt := 0; ; attempt++ {
		r, err := b.db.ExecContext(ctx, b.d.q(`INSERT INTO locks (name, holder, pid, op, started_at, expires_at, token) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, op = excluded.op,
			started_at = excluded.started_at, expires_at = excluded.expires_at, token = excluded.token
			WHERE locks.expires_at <= ?`),
			l.Name, l.Holder, l.PID, l.Op, tn(now), tn(l.Expires), l.token, tn(now))
		if err != nil {
			return nil, fmt.Errorf("taking %s: %w", describeLock(req.Name), b.wrap(err))
		}
		if n, _ := r.RowsAffected(); n == 1 {
			break
		}
		held, err := b.lockInfo(ctx, req.Name)
		if errors.Is(err, ErrNotFound) && attempt < 3 {
			continue // released in between: try again
		}
		if err != nil {
			return nil, fmt.Errorf("taking %s: %w", describeLock(req.Name), err)
		}
		if attempt < 3 && b.abandoned(held, pid) {
			// Its holder died on this host (kill -9, a crash) without
			// releasing: expire it now instead of waiting out its TTL.
			if _, err := b.db.ExecContext(ctx, b.d.q(`UPDATE locks SET expires_at = ? WHERE name = ? AND holder = ? AND pid = ? AND started_at = ?`),
				tn(now), held.Name, held.Holder, held.PID, tn(held.Since)); err != nil {
				return nil, fmt.Errorf("taking %s: %w", describeLock(req.Name), b.wrap(err))
			}
			continue
		}
		return nil, &LockError{Name: held.Name, Holder: held.Holder, PID: held.PID, Op: held.Op, Since: held.Since, Expires: held.Expires, Now: now}
	}
	hb := req.Heartbeat
	if hb == 0 {
		hb = ttl / 3
	}
	if hb > 0 {
		go l.heartbeat(hb)
	} else {
		close(l.done)
	}
	return l, nil
}

// abandoned says whether a held lock's holder is a process of this very
// host (the real host name, not one set in Options) that no longer exists.
// Locks held from other hosts are left to expire (or `kpaas unlock`): a pid
// means nothing there.
func (b *backend) abandoned(held LockInfo, self int) bool {
	host, err := os.Hostname()
	if err != nil || host == "" || b.host != host || held.PID <= 0 || held.PID == self {
		return false
	}
	_, hh, ok := strings.Cut(held.Holder, "@")
	if !ok || hh != host {
		return false
	}
	return errors.Is(syscall.Kill(held.PID, 0), syscall.ESRCH)
}

func (b *backend) lockInfo(ctx context.Context, name string) (LockInfo, error) {
	var li LockInfo
	var s, e int64
	err := b.db.QueryRowContext(ctx, b.d.q(`SELECT name, holder, pid, op, started_at, expires_at FROM locks WHERE name = ?`), name).
		Scan(&li.Name, &li.Holder, &li.PID, &li.Op, &s, &e)
	if errors.Is(err, sql.ErrNoRows) {
		return li, notFound("lock %s", name)
	}
	if err != nil {
		return li, b.wrap(err)
	}
	li.Since, li.Expires = nt(s), nt(e)
	return li, nil
}

func (l *Lock) heartbeat(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			err := l.Refresh(ctx)
			cancel()
			if errors.Is(err, ErrLockLost) {
				return
			}
			// Other errors (a connection blip) are retried at the next beat;
			// the lock is lost only when its row says so.
		}
	}
}

// Refresh pushes the lock's expiry forward by its TTL. It returns ErrLockLost
// (and closes Lost) when someone broke the lock.
func (l *Lock) Refresh(ctx context.Context) error {
	exp := l.b.now().Add(l.ttl)
	r, err := l.b.db.ExecContext(ctx, l.b.d.q(`UPDATE locks SET expires_at = ? WHERE name = ? AND token = ?`), tn(exp), l.Name, l.token)
	if err != nil {
		return fmt.Errorf("refreshing %s: %w", describeLock(l.Name), l.b.wrap(err))
	}
	if n, _ := r.RowsAffected(); n == 0 {
		l.markLost(fmt.Errorf("%w: %s was broken or expired while held by this process (%s)", ErrLockLost, describeLock(l.Name), l.Op))
		return l.Err()
	}
	l.mu.Lock()
	l.Expires = exp
	l.mu.Unlock()
	return nil
}

func (l *Lock) markLost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
		close(l.lost)
	}
}

// Lost is closed when the lock is no longer held by this process.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Err says why the lock was lost (nil while held).
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Release stops the heartbeat and frees the lock. Releasing twice is harmless.
func (l *Lock) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	l.mu.Unlock()
	select {
	case <-l.done:
	default:
		close(l.stop)
		<-l.done
	}
	if _, err := l.b.db.ExecContext(ctx, l.b.d.q(`DELETE FROM locks WHERE name = ? AND token = ?`), l.Name, l.token); err != nil {
		return fmt.Errorf("releasing %s: %w", describeLock(l.Name), l.b.wrap(err))
	}
	return nil
}

func (b *backend) Locks(ctx context.Context) ([]LockInfo, error) {
	rows, err := b.db.QueryContext(ctx, b.d.q(`SELECT name, holder, pid, op, started_at, expires_at FROM locks WHERE expires_at > ? ORDER BY name`), tn(b.now()))
	if err != nil {
		return nil, fmt.Errorf("listing locks: %w", b.wrap(err))
	}
	defer rows.Close()
	var out []LockInfo
	for rows.Next() {
		var li LockInfo
		var s, e int64
		if err := rows.Scan(&li.Name, &li.Holder, &li.PID, &li.Op, &s, &e); err != nil {
			return nil, b.wrap(err)
		}
		li.Since, li.Expires = nt(s), nt(e)
		out = append(out, li)
	}
	return out, b.wrap(rows.Err())
}

func (b *backend) Unlock(ctx context.Context, name string) error {
	r, err := b.db.ExecContext(ctx, b.d.q(`DELETE FROM locks WHERE name = ?`), name)
	if err != nil {
		return fmt.Errorf("breaking %s: %w", describeLock(name), b.wrap(err))
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return notFound("lock %s", name)
	}
	return nil
}
