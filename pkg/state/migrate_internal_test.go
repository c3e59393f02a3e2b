package state

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMigrationsGoOneStepAtATime swaps in a schema history of its own and
// checks that each step is applied and recorded on its own, and that a step
// that fails leaves the store at the step before it.
func TestMigrationsGoOneStepAtATime(t *testing.T) {
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	ctx := context.Background()
	dir := t.TempDir()
	key := []byte("0123456789abcdef0123456789abcdef")

	v1 := migration{1, "first", []string{`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`, `CREATE TABLE a (x {{INT}})`}}
	v2 := migration{2, "second", []string{`CREATE TABLE b (y {{BLOB}})`, `INSERT INTO a (x) VALUES (2)`}}
	v3 := migration{3, "broken", []string{`CREATE TABLE c (z INTEGER)`, `INSERT INTO no_such_table VALUES (1)`}}

	migrations = []migration{v1}
	s, err := OpenSQLite(ctx, dir, Options{Key: key, Version: "v1.0"})
	require.NoError(t, err)
	assert.Equal(t, 1, s.SchemaVersion())
	require.NoError(t, s.Close())

	migrations = []migration{v1, v2}
	s, err = OpenSQLite(ctx, dir, Options{Key: key, Version: "v2.0"})
	require.NoError(t, err)
	assert.Equal(t, 2, s.SchemaVersion())
	rows, err := s.db.Query(`SELECT version, name, kpaas_version FROM schema_migrations ORDER BY version`)
	require.NoError(t, err)
	var got []string
	for rows.Next() {
		var v int
		var n, kv string
		require.NoError(t, rows.Scan(&v, &n, &kv))
		got = append(got, n+"@"+kv)
	}
	rows.Close()
	assert.Equal(t, []string{"first@v1.0", "second@v2.0"}, got)
	require.NoError(t, s.Close())

	migrations = []migration{v1, v2, v3}
	_, err = OpenSQLite(ctx, dir, Options{Key: key})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "to schema version 3 (broken)")

	migrations = []migration{v1, v2}
	s, err = OpenSQLite(ctx, dir, Options{Key: key})
	require.NoError(t, err, "the failed step left nothing behind")
	var n int
	require.NoError(t, s.db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'c'`).Scan(&n))
	assert.Zero(t, n)
	require.NoError(t, s.Close())
}
