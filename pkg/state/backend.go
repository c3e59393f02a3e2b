package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dialect is what differs between SQLite and PostgreSQL; the SQL itself is shared.
type dialect struct {
	name                      string
	idType, intType, blobType string
	dollar                    bool // $1 placeholders
	// wrap turns a driver error into a kpaas error (corruption, lost connection).
	wrap func(err error) error
	// isUnique reports a unique-constraint violation.
	isUnique func(err error) bool
	// migrationLock serialises migrations between processes (inside the tx).
	migrationLock func(ctx context.Context, tx *sql.Tx) error
	// readTx are the options of a read-only snapshot.
	readTx *sql.TxOptions
	// afterImport fixes what explicit IDs leave behind (sequences).
	afterImport func(ctx context.Context, tx *sql.Tx) error

	cache sync.Map // query -> rebound query
}

// q rewrites ? placeholders to $n for PostgreSQL.
func (d *dialect) q(query string) string {
	if !d.dollar {
		return query
	}
	if v, ok := d.cache.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	out := b.String()
	d.cache.Store(query, out)
	return out
}

// backend is the shared implementation behind both stores.
type backend struct {
	*ops     // reads and single writes go straight to the database
	db       *sql.DB
	d        *dialect
	location string
	opts     Options
	schema   int
	sealer   *sealer
	keyErr   error // why secrets cannot be used (no or wrong key), nil when they can
	user     string
	host     string
}

func (b *backend) now() time.Time { return b.opts.now() }

func (b *backend) wrap(err error) error {
	if err == nil {
		return nil
	}
	return b.d.wrap(err)
}

// at says what failed where: "<doing> state store <location>: err", leaving
// out the location when err already names it.
func (b *backend) at(doing string, err error) error {
	err = b.wrap(err)
	if strings.Contains(err.Error(), b.location) {
		return fmt.Errorf("%s the state store: %w", doing, err)
	}
	return fmt.Errorf("%s state store %s: %w", doing, b.location, err)
}

// update runs fn in one write transaction.
func (b *backend) update(ctx context.Context, fn func(o *ops) error) (err error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return b.at("starting a transaction on", err)
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
		if err != nil {
			tx.Rollback()
		}
	}()
	if err = fn(&ops{b: b, q: tx, tx: true}); err != nil {
		if isConnErr(err) {
			return fmt.Errorf("%w; nothing of this transaction was recorded", err)
		}
		return err
	}
	if err = tx.Commit(); err != nil {
		err = b.wrap(err)
		if isConnErr(err) {
			return fmt.Errorf("committing to state store %s: %w; the commit may or may not have reached the server, so look (kpaas state export) before redoing anything by hand", b.location, err)
		}
		return b.at("committing to", err)
	}
	return nil
}

// read runs fn in one read-only snapshot.
func (b *backend) read(ctx context.Context, fn func(o *ops) error) error {
	tx, err := b.db.BeginTx(ctx, b.d.readTx)
	if err != nil {
		return b.at("reading", err)
	}
	defer tx.Rollback()
	return fn(&ops{b: b, q: tx, tx: true})
}

func (b *backend) Update(ctx context.Context, fn func(tx Tx) error) error {
	return b.update(ctx, func(o *ops) error { return fn(o) })
}

func (b *backend) Location() string   { return b.location }
func (b *backend) SchemaVersion() int { return b.schema }
func (b *backend) Close() error       { return b.db.Close() }

// migrate brings the schema up to date one step at a time, or refuses a store
// written by a newer kpaas.
func (b *backend) migrate(ctx context.Context, steps []migration) error {
	// Fast path: already current (no write lock taken).
	var cur sql.NullInt64
	err := b.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&cur)
	if err == nil && int(cur.Int64) == len(steps) {
		b.schema = len(steps)
		return nil
	}
	if err == nil && int(cur.Int64) > len(steps) {
		return b.tooNew(ctx, int(cur.Int64), len(steps))
	}
	if err != nil {
		if werr := b.wrap(err); errors.Is(werr, ErrCorrupt) || isConnErr(werr) {
			return werr
		}
	}
	for {
		done, err := b.migrateStep(ctx, steps)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func (b *backend) tooNew(ctx context.Context, v, known int) error {
	var by string
	_ = b.db.QueryRowContext(ctx, b.d.q(`SELECT kpaas_version FROM schema_migrations WHERE version = ?`), v).Scan(&by)
	return &SchemaTooNewError{Location: b.location, Version: v, WrittenBy: by, KnownVersion: known}
}

func (b *backend) migrateStep(ctx context.Context, steps []migration) (done bool, err error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return false, b.at("migrating", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if b.d.migrationLock != nil {
		if err := b.d.migrationLock(ctx, tx); err != nil {
			return false, b.at("migrating", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version `+b.d.intType+` PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at `+b.d.intType+` NOT NULL,
		kpaas_version TEXT NOT NULL DEFAULT '')`); err != nil {
		return false, b.at("migrating", err)
	}
	var cur sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&cur); err != nil {
		return false, fmt.Errorf("reading schema version of %s: %w", b.location, b.wrap(err))
	}
	v := int(cur.Int64)
	if v > len(steps) {
		tx.Rollback()
		return false, b.tooNew(ctx, v, len(steps))
	}
	if v == len(steps) {
		b.schema = v
		return true, tx.Commit()
	}
	m := steps[v]
	for _, stmt := range m.stmts {
		if _, err := tx.ExecContext(ctx, b.d.render(stmt)); err != nil {
			return false, fmt.Errorf("migrating state store %s to schema version %d (%s): %w", b.location, m.version, m.name, b.wrap(err))
		}
	}
	if _, err := tx.ExecContext(ctx, b.d.q(`INSERT INTO schema_migrations (version, name, applied_at, kpaas_version) VALUES (?, ?, ?, ?)`),
		m.version, m.name, b.now().UnixNano(), b.opts.Version); err != nil {
		return false, fmt.Errorf("recording schema version %d in %s: %w", m.version, b.location, b.wrap(err))
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrating state store %s to schema version %d: %w", b.location, m.version, b.wrap(err))
	}
	b.schema = m.version
	return false, nil
}

// setupKey checks the secrets key against the store: the first key used is
// recorded (as an encrypted check value); later a different key is refused.
// keyDir, when set, is where the key file lives (embedded stores).
func (b *backend) setupKey(ctx context.Context, keyDir string) error {
	var check string
	err := b.db.QueryRowContext(ctx, b.d.q(`SELECT value FROM meta WHERE key = ?`), "key_check").Scan(&check)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return b.at("reading", err)
	}
	hasCheck := err == nil
	key, source, err := loadKey(b.opts.Key, keyDir, !hasCheck)
	if err != nil {
		return err
	}
	if key == nil {
		if keyDir != "" {
			b.keyErr = fmt.Errorf("%w: the secrets in state store %s are encrypted and no key was found: restore the key file %s, or set %s to the key",
				ErrNoKey, b.location, source, KeyEnv)
		} else {
			b.keyErr = fmt.Errorf("%w: state store %s keeps its secrets encrypted; set %s to the store's key (32 bytes as base64; a new one: `head -c 32 /dev/urandom | base64`)",
				ErrNoKey, b.location, KeyEnv)
		}
		return nil
	}
	s, err := newSealer(key, source)
	if err != nil {
		return err
	}
	if !hasCheck {
		box := s.seal([]byte(keyCheckPlain), "key_check")
		if _, err := b.db.ExecContext(ctx, b.d.q(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`),
			"key_check", encodeB64(box)); err != nil {
			return fmt.Errorf("recording the key check in %s: %w", b.location, b.wrap(err))
		}
		if err := b.db.QueryRowContext(ctx, b.d.q(`SELECT value FROM meta WHERE key = ?`), "key_check").Scan(&check); err != nil {
			return b.at("reading", err)
		}
	}
	box, err := decodeB64(check)
	if err == nil {
		var plain []byte
		plain, err = s.open(box, "key_check")
		if err == nil && string(plain) != keyCheckPlain {
			err = errors.New("check value differs")
		}
	}
	if err != nil {
		b.keyErr = fmt.Errorf("%w: the key from %s (id %s) is not the key state store %s was written with; use that key (%s, or the %s file beside an embedded store)",
			ErrWrongKey, source, keyFingerprint(key), b.location, KeyEnv, KeyFileName)
		return nil
	}
	b.sealer = s
	return nil
}

func (b *backend) seal(plain, ad string) ([]byte, error) {
	if b.sealer == nil {
		return nil, b.keyErr
	}
	return b.sealer.seal([]byte(plain), ad), nil
}

func (b *backend) unseal(box []byte, ad string) (string, error) {
	if b.sealer == nil {
		return "", b.keyErr
	}
	p, err := b.sealer.open(box, ad)
	if err != nil {
		return "", fmt.Errorf("%w: a secret in state store %s (%s) does not decrypt with the key from %s: it was written with another key or changed",
			ErrWrongKey, b.location, strings.ReplaceAll(ad, "\x00", "/"), b.sealer.source)
	}
	return string(p), nil
}

// whoami names this process's operator as user@host.
func whoami(o Options) (string, string) {
	u, h := o.User, o.Host
	if u == "" {
		if cu, err := user.Current(); err == nil {
			u = cu.Username
		} else if v := os.Getenv("USER"); v != "" {
			u = v
		} else {
			u = "unknown"
		}
	}
	if h == "" {
		h, _ = os.Hostname()
		if h == "" {
			h = "unknown"
		}
	}
	return u, h
}

// ConnError: the connection to the store broke during an operation.
type ConnError struct {
	Location string
	Err      error
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("lost the connection to state store %s (%v): check that the server is up, then run the command again", e.Location, e.Err)
}
func (e *ConnError) Unwrap() error { return e.Err }

func isConnErr(err error) bool {
	var c *ConnError
	return errors.As(err, &c)
}
