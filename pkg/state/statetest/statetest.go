// Package statetest gives tests real state stores: an SQLite store in a temp
// directory and, when a server is configured, a PostgreSQL store in a schema
// of its own. It must not be imported by non-test code.
package statetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/kpaas/kpaas/pkg/state"
)

// PostgresEnv names the variable holding the test server's URL.
const PostgresEnv = "KPAAS_TEST_POSTGRES"

// PostgresURLFile is written by .ci/setup-postgres.sh.
const PostgresURLFile = "/run/kpaas-test-postgres.url"

// Key is a fixed secrets key for tests.
var Key = []byte("0123456789abcdef0123456789abcdef")

// PostgresURL returns the test server's URL, or "" and why there is none.
func PostgresURL() (string, string) {
	if v := os.Getenv(PostgresEnv); v != "" {
		return v, ""
	}
	if b, err := os.ReadFile(PostgresURLFile); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), ""
	}
	return "", "no PostgreSQL server configured (set " + PostgresEnv + " or run .ci/setup-postgres.sh as root)"
}

// Backend makes fresh, empty store locations of one kind.
type Backend struct {
	Name string
	// NewLocation returns the location of a new empty store, removed when the test ends.
	NewLocation func(t testing.TB) string
}

// Open opens a store at loc with the test key, closed when the test ends.
func Open(t testing.TB, loc string) state.Store {
	t.Helper()
	return OpenWith(t, loc, state.Options{Key: Key, Version: "test"})
}

// OpenWith opens a store at loc with opts, closed when the test ends.
func OpenWith(t testing.TB, loc string, opts state.Options) state.Store {
	t.Helper()
	s, err := state.Open(context.Background(), loc, opts)
	if err != nil {
		t.Fatalf("opening state store %s: %v", loc, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// SQLite is the embedded backend.
var SQLite = Backend{Name: "sqlite", NewLocation: func(t testing.TB) string { return t.TempDir() }}

// Postgres is the shared backend; each location is a schema of its own.
var Postgres = Backend{Name: "postgres", NewLocation: func(t testing.TB) string {
	t.Helper()
	base, why := PostgresURL()
	if base == "" {
		t.Skip(why)
	}
	return NewPostgresSchema(t, base)
}}

// Backends are every backend, in order; a test runs its body on each one.
func Backends() []Backend { return []Backend{SQLite, Postgres} }

// NewPostgresSchema creates an empty schema on the server at base and returns
// a URL whose connections use it; the schema is dropped when the test ends.
func NewPostgresSchema(t testing.TB, base string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("PostgreSQL test server %s: %v", base, err)
	}
	defer db.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("PostgreSQL test server %s is configured but not usable (run .ci/setup-postgres.sh): %v", base, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec("DROP SCHEMA " + schema + " CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parsing %s: %v", base, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
