// Command kpaas-app is the quickstart's web app: each instance serves a page
// that records the visit in PostgreSQL and shows what the database holds, so
// a user sees the whole path work (HAProxy -> app instances -> PostgreSQL).
//
//	GET  /         HTML: this instance, visit count, latest notes
//	GET  /health   200 while the process runs (HAProxy's check)
//	GET  /ready    200 when the database answers
//	GET  /notes    JSON list of notes
//	POST /notes    body text=...: add a note (JSON {"id":N})
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

type note struct {
	ID       int64     `json:"id"`
	Text     string    `json:"text"`
	Instance string    `json:"instance"`
	At       time.Time `json:"at"`
}

type server struct {
	db       *pgxpool.Pool
	instance string
}

const schema = `
CREATE TABLE IF NOT EXISTS visits (id bigserial PRIMARY KEY, instance text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS notes (id bigserial PRIMARY KEY, text text NOT NULL, instance text NOT NULL, at timestamptz NOT NULL DEFAULT now());`

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><title>kpaas-lite</title></head>
<body>
<h1>kpaas-lite is running</h1>
<p class="instance">Served by <b>{{.Instance}}</b>; this was visit number <b>{{.Visits}}</b> recorded in PostgreSQL.</p>
<form method="post" action="/notes"><input name="text" placeholder="write a note"> <button>save</button></form>
<ul>{{range .Notes}}<li>{{.Text}} <small>({{.Instance}}, {{.At.Format "2006-01-02 15:04:05"}})</small></li>{{end}}</ul>
</body></html>
`))

func main() {
	addr := flag.String("listen", ":8080", "address to listen on")
	dsn := flag.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (postgres://user:pass@host:port/db)")
	instance := flag.String("instance", os.Getenv("APP_INSTANCE"), "name shown on the page")
	flag.Parse()
	if *dsn == "" {
		log.Fatal("kpaas-app: --database-url (or DATABASE_URL) is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		log.Fatalf("kpaas-app: database URL: %v", err)
	}
	defer db.Close()
	s := &server{db: db, instance: *instance}
	go s.migrate(ctx)
	srv := &http.Server{Addr: *addr, Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("kpaas-app %s listening on %s", s.instance, *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// migrate creates the tables, retrying while the database is not up yet.
func (s *server) migrate(ctx context.Context) {
	for {
		_, err := s.db.Exec(ctx, schema)
		if err == nil {
			return
		}
		log.Printf("kpaas-app: creating tables: %v (retrying)", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if err := s.db.Ping(r.Context()); err != nil {
			http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// GET /wait?d=5s answers after d (at most 20s): a long-lived request, to
	// see one survive an HAProxy reload.
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 || d > 20*time.Second {
			http.Error(w, "d must be a duration up to 20s, such as 5s", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(d):
			fmt.Fprintf(w, "waited %s\n", d)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /notes", s.listNotes)
	mux.HandleFunc("POST /notes", s.addNote)
	return mux
}

func (s *server) fail(w http.ResponseWriter, what string, err error) {
	log.Printf("kpaas-app: %s: %v", what, err)
	http.Error(w, fmt.Sprintf("%s: %v (is the postgres instance running? try `kpaas recreate -d kpaas-lite postgres`)", what, err), http.StatusServiceUnavailable)
}

func (s *server) notes(ctx context.Context) ([]note, error) {
	rows, err := s.db.Query(ctx, `SELECT id, text, instance, at FROM notes ORDER BY id DESC LIMIT 20`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []note{}
	for rows.Next() {
		var n note
		if err := rows.Scan(&n.ID, &n.Text, &n.Instance, &n.At); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (s *server) index(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var visits int64
	if _, err := s.db.Exec(ctx, `INSERT INTO visits (instance) VALUES ($1)`, s.instance); err != nil {
		s.fail(w, "recording the visit", err)
		return
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM visits`).Scan(&visits); err != nil {
		s.fail(w, "counting visits", err)
		return
	}
	ns, err := s.notes(ctx)
	if err != nil {
		s.fail(w, "reading notes", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, map[string]any{"Instance": s.instance, "Visits": visits, "Notes": ns})
}

func (s *server) listNotes(w http.ResponseWriter, r *http.Request) {
	ns, err := s.notes(r.Context())
	if err != nil {
		s.fail(w, "reading notes", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ns)
}

func (s *server) addNote(w http.ResponseWriter, r *http.Request) {
	text := strings.TrimSpace(r.FormValue("text"))
	if text == "" {
		http.Error(w, "text is empty: POST /notes with text=...", http.StatusBadRequest)
		return
	}
	var id int64
	if err := s.db.QueryRow(r.Context(), `INSERT INTO notes (text, instance) VALUES ($1, $2) RETURNING id`, text, s.instance).Scan(&id); err != nil {
		s.fail(w, "saving the note", err)
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int64{"id": id})
}
