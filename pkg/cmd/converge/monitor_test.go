package converge

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	cpicmd "github.com/kpaas/kpaas/pkg/cmd/cpi"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
	"github.com/kpaas/kpaas/pkg/ui"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestMonitorsElectOneLeaderOnPostgres: two monitors on one PostgreSQL
// store; one leads, the other stands by and takes over when the first stops.
func TestMonitorsElectOneLeaderOnPostgres(t *testing.T) {
	base, why := statetest.PostgresURL()
	if base == "" {
		t.Skip(why)
	}
	loc := statetest.NewPostgresSchema(t, base)
	t.Setenv("HOME", t.TempDir()) // the blobstore and local cloud of a PostgreSQL store live under ~/.kpaas
	t.Setenv(state.KeyEnv, base64.StdEncoding.EncodeToString(statetest.Key))
	addrs := make(chan string, 2)
	start := func() (*syncBuffer, context.CancelFunc, chan error) {
		out := &syncBuffer{}
		f := &cmdutil.Factory{IO: &ui.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: out},
			Globals: &cmdutil.GlobalOptions{State: loc, JSON: true}, Drivers: cpicmd.Drivers, Now: time.Now,
			Logger: func() *slog.Logger { return slog.New(slog.DiscardHandler) }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		opts := &MonitorOptions{IO: f.IO, Factory: f, JSON: true, Listen: "127.0.0.1:0"}
		opts.Policy.Interval = 100 * time.Millisecond
		opts.Ready = func(a string) { addrs <- a }
		go func() { done <- monitorRun(ctx, opts) }()
		return out, cancel, done
	}
	out1, stop1, done1 := start()
	require.Eventually(t, func() bool { return strings.Contains(out1.String(), `"kind":"leader"`) }, 20*time.Second, 20*time.Millisecond, out1.String())
	addr1 := <-addrs
	metrics := httpGet(t, "http://"+addr1+"/metrics")
	assert.Contains(t, metrics, "kpaas_monitor_leader 1")
	assert.Contains(t, metrics, "kpaas_monitor_passes_total")
	assert.Equal(t, "ok leader=true\n", httpGet(t, "http://"+addr1+"/healthz"))
	out2, stop2, done2 := start()
	addr2 := <-addrs
	defer func() { stop2(); <-done2 }()
	require.Eventually(t, func() bool { return strings.Contains(out2.String(), `"kind":"standby"`) }, 20*time.Second, 20*time.Millisecond, out2.String())
	assert.Contains(t, out2.String(), "backend pid")
	assert.Equal(t, "ok leader=false\n", httpGet(t, "http://"+addr2+"/healthz"))
	stop1()
	require.NoError(t, <-done1)
	require.Eventually(t, func() bool { return strings.Contains(out2.String(), `"kind":"leader"`) }, 20*time.Second, 20*time.Millisecond, out2.String())
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	return string(b)
}
