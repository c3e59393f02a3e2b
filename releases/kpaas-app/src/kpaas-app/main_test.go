package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testDB connects to the test PostgreSQL (.ci/setup-postgres.sh) in a schema
// of its own, dropped at the end; it skips when there is none.
func testDB(t *testing.T) *pgxpool.Pool {
	u := os.Getenv("KPAAS_TEST_POSTGRES")
	if u == "" {
		b, err := os.ReadFile("/run/kpaas-test-postgres.url")
		if err != nil {
			t.Skip("no test PostgreSQL: set KPAAS_TEST_POSTGRES or run .ci/setup-postgres.sh")
		}
		u = strings.TrimSpace(string(b))
	}
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, u)
	require.NoError(t, err)
	schema := fmt.Sprintf("kpaas_app_test_%d", time.Now().UnixNano())
	_, err = admin.Exec(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	})
	pu, err := url.Parse(u)
	require.NoError(t, err)
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()
	db, err := pgxpool.New(ctx, pu.String())
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return db
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestAppRecordsVisitsAndNotesInPostgreSQL(t *testing.T) {
	db := testDB(t)
	s := &server{db: db, instance: "app/7"}
	s.migrate(context.Background())
	srv := httptest.NewServer(s.routes())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	page := body(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode, page)
	assert.Contains(t, page, "Served by <b>app/7</b>; this was visit number <b>1</b>")
	resp, err = http.Get(srv.URL + "/")
	require.NoError(t, err)
	assert.Contains(t, body(t, resp), "visit number <b>2</b>")

	resp, err = http.PostForm(srv.URL+"/notes", url.Values{"text": {"<hello & welcome>"}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":1}`, body(t, resp))
	resp, err = http.PostForm(srv.URL+"/notes", url.Values{"text": {"  "}})
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	body(t, resp)

	resp, err = http.Get(srv.URL + "/notes")
	require.NoError(t, err)
	notes := body(t, resp)
	assert.Contains(t, notes, `"text":"\u003chello \u0026 welcome\u003e"`)
	assert.Contains(t, notes, `"instance":"app/7"`)
	resp, err = http.Get(srv.URL + "/")
	require.NoError(t, err)
	assert.Contains(t, body(t, resp), "&lt;hello &amp; welcome&gt;", "notes are HTML-escaped on the page")

	var n int
	require.NoError(t, db.QueryRow(context.Background(), "SELECT count(*) FROM visits WHERE instance = 'app/7'").Scan(&n))
	assert.Equal(t, 3, n)
}

func TestAppWithoutItsDatabase(t *testing.T) {
	// A loopback port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	db, err := pgxpool.New(context.Background(), "postgres://app:x@"+addr+"/app?connect_timeout=1")
	require.NoError(t, err)
	defer db.Close()
	srv := httptest.NewServer((&server{db: db, instance: "app/0"}).routes())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/health")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the process is alive: HAProxy keeps it")
	body(t, resp)
	for _, p := range []string{"/", "/ready", "/notes"} {
		resp, err = http.Get(srv.URL + p)
		require.NoError(t, err)
		b := body(t, resp)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, p)
		assert.NotEmpty(t, b)
	}
}
