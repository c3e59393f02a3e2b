package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DBFileName is the SQLite database inside an embedded state directory.
const DBFileName = "state.db"

// SQLiteStore is the embedded store: one SQLite file (WAL mode) in a
// directory, with the secrets key file beside it.
type SQLiteStore struct{ *backend }

var _ Store = (*SQLiteStore)(nil)

// OpenSQLite opens (creating it if needed) the embedded store in dir.
func OpenSQLite(ctx context.Context, dir string, opts Options) (*SQLiteStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, DBFileName)
	// Owner-only from the start: SQLite gives its -wal and -shm files the same mode.
	if fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		fh.Close()
	} else {
		return nil, fmt.Errorf("opening state store %s: %w", path, err)
	}
	q := url.Values{}
	q.Set("_busy_timeout", "10000")
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening state store %s: %w", path, err)
	}
	// Connections are cheap; a few let readers run beside a writer (WAL).
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	user, host := whoami(opts)
	b := &backend{db: db, location: path, opts: opts, user: user, host: host}
	b.ops = &ops{b: b, q: db}
	b.d = &dialect{
		name: "sqlite", idType: "INTEGER PRIMARY KEY AUTOINCREMENT", intType: "INTEGER", blobType: "BLOB",
		wrap:     func(err error) error { return wrapSQLite(path, err) },
		isUnique: isSQLiteUnique,
		readTx:   &sql.TxOptions{ReadOnly: true},
	}
	if err := openRetryingBusy(ctx, func() error { return b.open(ctx, dir) }); err != nil {
		db.Close()
		return nil, err
	}
	return &SQLiteStore{b}, nil
}

// openRetryingBusy retries open while SQLite says the database is busy. A new
// connection switches the file to WAL (pragma journal_mode), and SQLite can
// answer SQLITE_BUSY to that at once, without waiting out busy_timeout, when
// other processes are opening or migrating the same new file: kpaas deploy and
// kpaas monitor started together must both get the store.
func openRetryingBusy(ctx context.Context, open func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	wait := 5 * time.Millisecond
	for {
		err := open()
		if err == nil || sqliteCode(err)&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

func (b *backend) open(ctx context.Context, keyDir string) error {
	if err := b.db.PingContext(ctx); err != nil {
		return b.at("opening", err)
	}
	if err := b.migrate(ctx, migrations); err != nil {
		return err
	}
	return b.setupKey(ctx, keyDir)
}

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

func wrapSQLite(path string, err error) error {
	if err == nil {
		return nil
	}
	var ce *CorruptError
	var se *storeError
	if errors.As(err, &ce) || errors.As(err, &se) {
		return err // already explained
	}
	switch sqliteCode(err) & 0xff {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return &CorruptError{Location: path, Err: err}
	case sqlite3.SQLITE_FULL:
		return &storeError{fmt.Sprintf("the disk holding state store %s is full; nothing of this change was recorded: free some space and run the command again", path), err}
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM:
		return &storeError{fmt.Sprintf("cannot write state store %s (check its permissions and those of its directory)", path), err}
	}
	return err
}

// storeError explains a driver error once; wrapping it again leaves it as is.
type storeError struct {
	msg string
	err error
}

func (e *storeError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func isSQLiteUnique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
