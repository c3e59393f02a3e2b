package blobstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPutOpenIsContentAddressed(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	sum := sha256.Sum256([]byte("hello"))
	want := hex.EncodeToString(sum[:])

	id, n, err := s.Put(strings.NewReader("hello"))
	require.NoError(t, err)
	assert.Equal(t, want, id)
	assert.EqualValues(t, 5, n)
	assert.True(t, s.Has(id))

	id2, _, err := s.Put(strings.NewReader("hello"))
	require.NoError(t, err)
	assert.Equal(t, id, id2, "same bytes, same blob")

	f, err := s.Open(id)
	require.NoError(t, err)
	b, _ := io.ReadAll(f)
	f.Close()
	assert.Equal(t, "hello", string(b))
	size, err := s.Size(id)
	require.NoError(t, err)
	assert.EqualValues(t, 5, size)

	tmp, _ := os.ReadDir(s.Dir() + "/tmp")
	assert.Empty(t, tmp, "no temporary file left behind")

	require.NoError(t, s.Delete(id))
	assert.False(t, s.Has(id))
	_, err = s.Open(id)
	assert.True(t, errors.Is(err, ErrNotFound))
	_, err = s.Open("../../etc/passwd")
	assert.True(t, errors.Is(err, ErrNotFound), "ids that are not SHA-256 never name a path")
}
