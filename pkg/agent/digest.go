package agent

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
)

// digestAlgo is one entry of a BOSH digest string.
type digestAlgo struct {
	algo string // sha1, sha256, sha512
	hex  string
}

// parseDigest parses a BOSH digest string: "algo:hex" entries joined by ';',
// a bare 40-hex entry being SHA-1 (bosh-formats.md section 0). It returns the
// strongest known entry.
func parseDigest(s string) (digestAlgo, error) {
	var best digestAlgo
	rank := map[string]int{"sha1": 1, "sha256": 2, "sha512": 3}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		algo, hx, ok := strings.Cut(part, ":")
		if !ok {
			algo, hx = "sha1", part
		}
		algo = strings.ToLower(algo)
		if _, err := hex.DecodeString(hx); err != nil {
			return digestAlgo{}, fmt.Errorf("digest %q: %q is not hex", s, hx)
		}
		if rank[algo] > rank[best.algo] {
			best = digestAlgo{algo: algo, hex: strings.ToLower(hx)}
		}
	}
	if best.algo == "" {
		return digestAlgo{}, fmt.Errorf("digest %q has no sha1, sha256 or sha512 entry", s)
	}
	return best, nil
}

func (d digestAlgo) newHash() hash.Hash {
	switch d.algo {
	case "sha512":
		return sha512.New()
	case "sha256":
		return sha256.New()
	default:
		return sha1.New()
	}
}

// verifyFileDigest checks path's bytes against a BOSH digest string.
func verifyFileDigest(path, digest string) error {
	d, err := parseDigest(digest)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := d.newHash()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.hex {
		return fmt.Errorf("%s digest of %s is %s, expected %s", d.algo, path, got, d.hex)
	}
	return nil
}

func sha1Hex(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}
