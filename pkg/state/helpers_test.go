package state_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

// rawDB opens a store's database directly, around the state package.
func rawDB(t *testing.T, b statetest.Backend, loc string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if b.Name == "postgres" {
		db, err = sql.Open("pgx", loc)
	} else {
		db, err = sql.Open("sqlite", "file:"+filepath.Join(loc, state.DBFileName)+"?_busy_timeout=5000")
	}
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func execRaw(t *testing.T, b statetest.Backend, loc, stmt string) {
	t.Helper()
	_, err := rawDB(t, b, loc).Exec(stmt)
	require.NoError(t, err)
}

func rawVariableBytes(t *testing.T, b statetest.Backend, loc string) [][]byte {
	t.Helper()
	rows, err := rawDB(t, b, loc).Query(`SELECT value FROM variables`)
	require.NoError(t, err)
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var v []byte
		require.NoError(t, rows.Scan(&v))
		out = append(out, v)
	}
	require.NoError(t, rows.Err())
	return out
}
