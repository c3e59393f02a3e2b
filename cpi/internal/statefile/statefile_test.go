package statefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
)

type rec struct {
	Name string `json:"name"`
}

func TestWriteLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	for _, sync := range []bool{true, false} {
		require.NoError(t, WriteJSON(path, rec{Name: "a"}, sync))
		got, err := Load[rec](path, cpi.VMNotFound("x"), "record x")
		require.NoError(t, err)
		assert.Equal(t, "a", got.Name)
	}
	_, err := os.Stat(path + ".tmp")
	assert.True(t, os.IsNotExist(err), "the temp file is renamed away")
}

func TestLoadMissingAndBroken(t *testing.T) {
	dir := t.TempDir()
	nf := cpi.DiskNotFound("d-1")
	_, err := Load[rec](filepath.Join(dir, "none.json"), nf, "disk d-1")
	assert.Same(t, nf, err)
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte("{"), 0o600))
	_, err = Load[rec](bad, nf, "disk d-1")
	var ce *cpi.Error
	require.True(t, errors.As(err, &ce))
	assert.Contains(t, err.Error(), "reading disk d-1")
}

func TestLockIsExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := Lock(path, "the test cloud")
	require.NoError(t, err)
	got := make(chan struct{})
	go func() {
		u, err := Lock(path, "the test cloud")
		if err == nil {
			u()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a second Lock succeeded while the first was held")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	<-got
}
