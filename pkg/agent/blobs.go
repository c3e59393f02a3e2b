package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// BlobStore keeps blobs by the SHA-256 of their bytes under one directory. A
// blob is written to a temporary file while it is hashed and renamed into
// place only when the digest matches, so a truncated or corrupted upload
// never becomes visible.
type BlobStore struct {
	Dir string
}

// ValidSHA256 reports whether s is 64 lower-case hex digits.
func ValidSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// Path is where blob id would be stored.
func (b BlobStore) Path(id string) string { return filepath.Join(b.Dir, id) }

// Has reports whether blob id is present.
func (b BlobStore) Has(id string) bool {
	if !ValidSHA256(id) {
		return false
	}
	_, err := os.Stat(b.Path(id))
	return err == nil
}

// Put streams r into the store and keeps it as id if its SHA-256 is id.
func (b BlobStore) Put(id string, r io.Reader) (int64, error) {
	if !ValidSHA256(id) {
		return 0, protocol.Errorf(protocol.ErrInvalidRequest, "blob id %q is not a lower-case SHA-256 hex digest", id)
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(b.Dir, ".upload-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	n, err := copyHashing(f, h, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("receiving blob %s: %w", id, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != id {
		return n, protocol.Errorf(protocol.ErrDigestMismatch, "blob %s: received %d bytes whose sha256 is %s; the blob was not kept", id, n, got)
	}
	if err := os.Rename(tmp, b.Path(id)); err != nil {
		return n, err
	}
	return n, nil
}

// PutFile moves a local file into the store, computing its id.
func (b BlobStore) PutFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", 0, err
	}
	id := hex.EncodeToString(h.Sum(nil))
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return "", 0, err
	}
	if err := os.Rename(path, b.Path(id)); err != nil {
		return "", 0, err
	}
	return id, n, nil
}

// Open opens blob id.
func (b BlobStore) Open(id string) (*os.File, error) {
	if !ValidSHA256(id) {
		return nil, protocol.Errorf(protocol.ErrInvalidRequest, "blob id %q is not a lower-case SHA-256 hex digest", id)
	}
	f, err := os.Open(b.Path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, protocol.Errorf(protocol.ErrBlobMissing, "blob %s is not on this VM; upload it with `blob put`", id)
	}
	return f, err
}

// Resolve finds the blob a BlobRef names and checks it against ref.SHA1.
// blobstore_id is the SHA-256 hex; when empty, a "sha256:" digest names it.
func (b BlobStore) Resolve(ref protocol.BlobRef, what string) (string, error) {
	id := ref.BlobstoreID
	if id == "" {
		if d, err := parseDigest(ref.SHA1); err == nil && d.algo == "sha256" {
			id = d.hex
		}
	}
	if !b.Has(id) {
		return "", protocol.Errorf(protocol.ErrBlobMissing, "%s: blob %q (digest %s) is not on this VM; upload it first", what, id, ref.SHA1)
	}
	if ref.SHA1 != "" {
		d, err := parseDigest(ref.SHA1)
		if err != nil {
			return "", protocol.Errorf(protocol.ErrInvalidRequest, "%s: %v", what, err)
		}
		if d.algo != "sha256" || d.hex != id {
			if err := verifyFileDigest(b.Path(id), ref.SHA1); err != nil {
				return "", protocol.Errorf(protocol.ErrDigestMismatch, "%s: %v", what, err)
			}
		}
	}
	return b.Path(id), nil
}

// copyHashing copies r to w and into h, hashing and writing each 1 MiB
// chunk in parallel while the next one is read; memory stays at a few
// chunks whatever the size.
func copyHashing(w io.Writer, h hash.Hash, r io.Reader) (int64, error) {
	const chunkSize, chunks = 1 << 20, 4
	type chunk struct {
		b    []byte
		refs atomic.Int32
	}
	free := make(chan *chunk, chunks)
	for i := 0; i < chunks; i++ {
		free <- &chunk{b: make([]byte, chunkSize)}
	}
	toHash, toWrite := make(chan *chunk, chunks), make(chan *chunk, chunks)
	release := func(c *chunk) {
		if c.refs.Add(-1) == 0 {
			free <- c
		}
	}
	var wg sync.WaitGroup
	var werr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		for c := range toHash {
			h.Write(c.b)
			release(c)
		}
	}()
	go func() {
		defer wg.Done()
		for c := range toWrite {
			if werr == nil {
				_, werr = w.Write(c.b)
			}
			release(c)
		}
	}()
	var n int64
	var rerr error
	for {
		c := <-free
		c.b = c.b[:cap(c.b)]
		m, err := io.ReadFull(r, c.b)
		if m > 0 {
			n += int64(m)
			c.b = c.b[:m]
			c.refs.Store(2)
			toHash <- c
			toWrite <- c
		} else {
			free <- c
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(toHash)
	close(toWrite)
	wg.Wait()
	if rerr != nil {
		return n, rerr
	}
	return n, werr
}

// Prune removes blobs not in keep whose last change is older than age (so a
// blob uploaded for the next apply survives this one). It returns how many
// were removed.
func (b BlobStore) Prune(keep map[string]bool, age time.Duration, now time.Time) int {
	entries, err := os.ReadDir(b.Dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if keep[name] || !ValidSHA256(name) {
			continue
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < age {
			continue
		}
		if os.Remove(filepath.Join(b.Dir, name)) == nil {
			n++
		}
	}
	return n
}
