// Package blobstore is kpaas's content-addressed store of release tarballs,
// package sources and compiled packages: a blob is a file named by the
// SHA-256 of its bytes, under <state dir>/blobs/<2 hex>/<64 hex>. Writes are
// atomic (temporary file, then rename), so a crash leaves no partial blob.
package blobstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is returned for a blob that is not in the store.
var ErrNotFound = errors.New("blob not found")

// Store is a blobstore directory.
type Store struct{ dir string }

// Open opens (creating) the blobstore in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("opening blobstore %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func valid(id string) bool {
	if len(id) != 64 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// Path is where blob id lives (whether or not it exists).
func (s *Store) Path(id string) string { return filepath.Join(s.dir, id[:2], id) }

// Has reports whether blob id is stored.
func (s *Store) Has(id string) bool {
	if !valid(id) {
		return false
	}
	_, err := os.Stat(s.Path(id))
	return err == nil
}

// Put stores r's bytes and returns their SHA-256 (hex) and size.
func (s *Store) Put(r io.Reader) (string, int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-")
	if err != nil {
		return "", 0, fmt.Errorf("blobstore: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("blobstore: writing blob: %w", err)
	}
	id := hex.EncodeToString(h.Sum(nil))
	dst := s.Path(id)
	if _, err := os.Stat(dst); err == nil {
		return id, n, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", 0, fmt.Errorf("blobstore: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", 0, fmt.Errorf("blobstore: %w", err)
	}
	return id, n, nil
}

// PutFile stores the file at path.
func (s *Store) PutFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("blobstore: %w", err)
	}
	defer f.Close()
	return s.Put(f)
}

// Open opens blob id for reading.
func (s *Store) Open(id string) (*os.File, error) {
	if !valid(id) {
		return nil, fmt.Errorf("blobstore: %q is not a SHA-256: %w", id, ErrNotFound)
	}
	f, err := os.Open(s.Path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blobstore: blob %s: %w", id, ErrNotFound)
	}
	return f, err
}

// Size is blob id's size in bytes.
func (s *Store) Size(id string) (int64, error) {
	fi, err := os.Stat(s.Path(id))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("blobstore: blob %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Delete removes blob id (no error if absent).
func (s *Store) Delete(id string) error {
	if !valid(id) {
		return nil
	}
	if err := os.Remove(s.Path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blobstore: %w", err)
	}
	return nil
}
