package release

import (
	"crypto/sha1" //nolint:gosec // BOSH digest strings use SHA-1 where the format says so
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Digest algorithms of a BOSH digest string.
const (
	AlgoSHA1   = "sha1"
	AlgoSHA256 = "sha256"
	AlgoSHA512 = "sha512"
)

// DigestPart is one algo:hex pair of a digest string.
type DigestPart struct {
	Algo string
	Hex  string
}

// Digest is a BOSH digest string: one or more algo:hex pairs joined by ';'. A bare
// 40-hex string is SHA-1. The YAML key holding it is named sha1 even when it holds
// sha256:... (release.MF, blobs.yml sha, apply spec).
type Digest []DigestPart

// ErrDigestMismatch is returned (wrapped in a *DigestMismatchError) when content
// does not match its digest.
var ErrDigestMismatch = errors.New("digest mismatch")

// DigestMismatchError says what was checked, what was expected and what was found.
type DigestMismatchError struct {
	What     string
	Expected string
	Actual   string
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("%s: expected digest %s, got %s (the file is corrupt or was changed after it was built)", e.What, e.Expected, e.Actual)
}
func (e *DigestMismatchError) Unwrap() error { return ErrDigestMismatch }

// ParseDigest parses a digest string: split on ';', each part split on its first
// ':'; a part without ':' is SHA-1. Both halves must be alphanumeric. Unknown
// algorithms are kept (and ignored by Verify while a known one is present).
func ParseDigest(s string) (Digest, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("parsing digest: empty digest string")
	}
	var d Digest
	for _, part := range strings.Split(s, ";") {
		algo, hexs, ok := strings.Cut(part, ":")
		if !ok {
			algo, hexs = AlgoSHA1, part
		}
		if !alnum(algo) || !alnum(hexs) {
			return nil, fmt.Errorf("parsing digest %q: %q is not algo:hex with alphanumeric parts", s, part)
		}
		d = append(d, DigestPart{Algo: strings.ToLower(algo), Hex: strings.ToLower(hexs)})
	}
	return d, nil
}

func alnum(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// String serializes d: SHA-1 without a prefix, the others as algo:hex, joined by ';'.
func (d Digest) String() string {
	parts := make([]string, len(d))
	for i, p := range d {
		if p.Algo == AlgoSHA1 {
			parts[i] = p.Hex
		} else {
			parts[i] = p.Algo + ":" + p.Hex
		}
	}
	return strings.Join(parts, ";")
}

var strength = map[string]int{AlgoSHA1: 1, AlgoSHA256: 2, AlgoSHA512: 3}

// Strongest is the strongest known part (sha512 > sha256 > sha1); ok is false
// when no part has a known algorithm.
func (d Digest) Strongest() (DigestPart, bool) {
	var best DigestPart
	for _, p := range d {
		if strength[p.Algo] > strength[best.Algo] {
			best = p
		}
	}
	return best, best.Algo != ""
}

// NewHash returns a hash for a known algorithm, or nil.
func NewHash(algo string) hash.Hash {
	switch algo {
	case AlgoSHA1:
		return sha1.New() //nolint:gosec
	case AlgoSHA256:
		return sha256.New()
	case AlgoSHA512:
		return sha512.New()
	}
	return nil
}

// Verify reads r to the end and checks it against the strongest known part of d.
func (d Digest) Verify(r io.Reader, what string) error {
	p, ok := d.Strongest()
	if !ok {
		return fmt.Errorf("verifying %s: digest %q has no known algorithm (sha1, sha256, sha512)", what, d.String())
	}
	h := NewHash(p.Algo)
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("verifying %s: %w", what, err)
	}
	return d.Check(p.Algo, h.Sum(nil), what)
}

// Check compares a computed sum of algo with d's part for that algorithm.
func (d Digest) Check(algo string, sum []byte, what string) error {
	got := hex.EncodeToString(sum)
	for _, p := range d {
		if p.Algo == algo {
			if p.Hex != got {
				return &DigestMismatchError{What: what, Expected: d.String(), Actual: Digest{{algo, got}}.String()}
			}
			return nil
		}
	}
	return fmt.Errorf("verifying %s: digest %q has no %s part", what, d.String(), algo)
}

// SHA256Digest is the sha256:hex digest of b.
func SHA256Digest(b []byte) Digest {
	s := sha256.Sum256(b)
	return Digest{{AlgoSHA256, hex.EncodeToString(s[:])}}
}

// SHA1Hex is the lower-case hex SHA-1 of b (rendered templates, configuration hashes).
func SHA1Hex(b []byte) string {
	s := sha1.Sum(b) //nolint:gosec
	return hex.EncodeToString(s[:])
}

// digestString formats sum for algo as a digest string (sha1 bare).
func digestString(algo string, sum []byte) string {
	return Digest{{algo, hex.EncodeToString(sum)}}.String()
}
