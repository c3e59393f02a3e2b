package state_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

func TestEmbeddedStoreKeepsItsKeyInAFileBesideIt(t *testing.T) {
	t.Setenv(state.KeyEnv, "")
	ctx := context.Background()
	dir := t.TempDir()
	s := statetest.OpenWith(t, dir, state.Options{})
	_, err := s.PutVariable(ctx, state.Variable{Name: "pw", Value: "v1"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	keyFile := filepath.Join(dir, state.KeyFileName)
	fi, err := os.Stat(keyFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	keyText, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	key, err := state.ParseKey(string(keyText))
	require.NoError(t, err)

	// Reopened, the key file is used again.
	s2 := statetest.OpenWith(t, dir, state.Options{})
	v, err := s2.Variable(ctx, "", "pw")
	require.NoError(t, err)
	assert.Equal(t, "v1", v.Value)
	require.NoError(t, s2.Close())

	// The same key through KPAAS_STATE_KEY works without the file.
	require.NoError(t, os.Rename(keyFile, keyFile+".bak"))
	t.Setenv(state.KeyEnv, string(keyText))
	s3 := statetest.OpenWith(t, dir, state.Options{})
	v, err = s3.Variable(ctx, "", "pw")
	require.NoError(t, err)
	assert.Equal(t, "v1", v.Value)
	assert.Equal(t, key, mustParse(t, string(keyText)))
	require.NoError(t, s3.Close())

	// No key at all: opening works (events, locks need no key), secrets say what is missing.
	t.Setenv(state.KeyEnv, "")
	s4 := statetest.OpenWith(t, dir, state.Options{})
	_, err = s4.Variable(ctx, "", "pw")
	require.ErrorIs(t, err, state.ErrNoKey)
	assert.Contains(t, err.Error(), "no key was found: restore the key file "+keyFile+", or set KPAAS_STATE_KEY")
	_, err = s4.PutVariable(ctx, state.Variable{Name: "other", Value: "x"})
	require.ErrorIs(t, err, state.ErrNoKey)
	_, err = os.Stat(keyFile)
	assert.ErrorIs(t, err, os.ErrNotExist, "no new key is made for a store that has one")

	// A wrong key in the environment is refused by name.
	t.Setenv(state.KeyEnv, state.NewKey())
	s5 := statetest.OpenWith(t, dir, state.Options{})
	_, err = s5.Variable(ctx, "", "pw")
	require.ErrorIs(t, err, state.ErrWrongKey)
	assert.Contains(t, err.Error(), "the key from $KPAAS_STATE_KEY")

	// A malformed key is a clear error at open.
	t.Setenv(state.KeyEnv, "not-a-key")
	_, err = state.Open(ctx, dir, state.Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "KPAAS_STATE_KEY: a state key must be 32 bytes")
}

func mustParse(t *testing.T, s string) []byte {
	k, err := state.ParseKey(s)
	require.NoError(t, err)
	return k
}

func TestSharedStoreWithoutKeyNamesTheVariable(t *testing.T) {
	t.Setenv(state.KeyEnv, "")
	ctx := context.Background()
	loc := statetest.Postgres.NewLocation(t)
	s := statetest.OpenWith(t, loc, state.Options{})
	_, err := s.PutVariable(ctx, state.Variable{Name: "pw", Value: "x"})
	require.ErrorIs(t, err, state.ErrNoKey)
	assert.Contains(t, err.Error(), "set KPAAS_STATE_KEY to the store's key")
	// Everything else works without a key.
	_, err = s.CreateDeployment(ctx, "cf")
	require.NoError(t, err)
}

func TestParseKey(t *testing.T) {
	hex := "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	k, err := state.ParseKey(hex)
	require.NoError(t, err)
	assert.Equal(t, byte(0x1f), k[31])
	k2, err := state.ParseKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
	require.NoError(t, err)
	assert.Equal(t, k, k2)
	_, err = state.ParseKey("c2hvcnQ=")
	assert.Error(t, err)
}

func TestConcurrentFirstOpensAgreeOnOneKey(t *testing.T) {
	t.Setenv(state.KeyEnv, "")
	ctx := context.Background()
	dir := t.TempDir()
	stores := make([]state.Store, 4)
	errs := make(chan error, len(stores))
	for i := range stores {
		go func() {
			s, err := state.Open(ctx, dir, state.Options{})
			stores[i] = s
			errs <- err
		}()
	}
	for range stores {
		require.NoError(t, <-errs)
	}
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	_, err := stores[0].PutVariable(ctx, state.Variable{Name: "pw", Value: "same-key"})
	require.NoError(t, err)
	for i, s := range stores {
		v, err := s.Variable(ctx, "", "pw")
		require.NoError(t, err, "store %d", i)
		assert.Equal(t, "same-key", v.Value)
	}
}
