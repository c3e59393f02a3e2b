package state

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeyEnv names the environment variable holding the secrets key (base64 or
// hex of 32 bytes), required for shared (PostgreSQL) stores.
const KeyEnv = "KPAAS_STATE_KEY"

// KeyFileName is the key file kept beside an embedded store.
const KeyFileName = "state.key"

const keyCheckPlain = "kpaas state key check v1"

// sealer encrypts secrets with AES-256-GCM. Each value is bound to where it
// lives (additional data), so a ciphertext copied to another row does not open.
type sealer struct {
	aead   cipher.AEAD
	source string // where the key came from, for messages
}

// ParseKey decodes a key given as base64 or hex of 32 bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("a state key must be 32 bytes, written as base64 or hex (make one with `head -c 32 /dev/urandom | base64`)")
}

// NewKey returns a fresh random key, base64-encoded.
func NewKey() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func newSealer(key []byte, source string) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, source: source}, nil
}

// fingerprint identifies a key without revealing it.
func keyFingerprint(key []byte) string {
	sum := sha256.Sum256(append([]byte("kpaas-key-id:"), key...))
	return hex.EncodeToString(sum[:6])
}

func (s *sealer) seal(plain []byte, ad string) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead()+1)
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	out := append([]byte{1}, nonce...)
	return s.aead.Seal(out, nonce, plain, []byte(ad))
}

func (s *sealer) open(box []byte, ad string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(box) < 1+n+s.aead.Overhead() || box[0] != 1 {
		return nil, errors.New("not a kpaas secret (bad format)")
	}
	return s.aead.Open(nil, box[1:1+n], box[1+n:], []byte(ad))
}

// keySource finds the secrets key: explicit, then $KPAAS_STATE_KEY, then (dir
// not empty) the key file in dir. create says whether a missing key file may be
// made (a new embedded store).
func loadKey(explicit []byte, dir string, create bool) (key []byte, source string, err error) {
	if explicit != nil {
		if len(explicit) != 32 {
			return nil, "", errors.New("state key must be 32 bytes")
		}
		return explicit, "the given key", nil
	}
	if v, ok := os.LookupEnv(KeyEnv); ok && strings.TrimSpace(v) != "" {
		k, err := ParseKey(v)
		if err != nil {
			return nil, "", fmt.Errorf("reading %s: %w", KeyEnv, err)
		}
		return k, "$" + KeyEnv, nil
	}
	if dir == "" {
		return nil, "", nil
	}
	path := filepath.Join(dir, KeyFileName)
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseKey(string(b))
		if err != nil {
			return nil, "", fmt.Errorf("reading key file %s: %w", path, err)
		}
		return k, path, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("reading key file: %w", err)
	}
	if !create {
		return nil, path, nil
	}
	if err := writeFileAtomic(path, []byte(NewKey()+"\n"), 0o600); err != nil {
		return nil, "", fmt.Errorf("creating key file: %w", err)
	}
	b, err = os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	k, err := ParseKey(string(b))
	return k, path, err
}

// writeFileAtomic writes a file with a temp file, fsync and rename; it never
// replaces an existing file (a second process racing to create the key loses
// and reads the winner's key).
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// link fails if path exists: first writer wins.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
