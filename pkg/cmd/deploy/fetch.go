package deploy

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// IsURL reports whether an upload argument is an http(s) URL.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// DownloadError is a failed fetch of a release or stemcell URL.
type DownloadError struct {
	URL    string
	Status string // HTTP status, when the server answered
	Err    error
}

func (e *DownloadError) Error() string {
	if e.Status != "" {
		return fmt.Sprintf("downloading %s: server answered %s; check the URL, or download it yourself and upload the file", e.URL, e.Status)
	}
	return fmt.Sprintf("downloading %s: %v", e.URL, e.Err)
}
func (e *DownloadError) Unwrap() error { return e.Err }

// DigestMismatchError: the downloaded file does not have the digest given
// with --sha1 (or the manifest's releases[].sha1).
type DigestMismatchError struct {
	URL, Want, Got string
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("downloaded %s has digest %s, expected %s: the file changed or the digest is wrong; nothing was uploaded", e.URL, e.Got, e.Want)
}

// newDigest parses a bare SHA-1 (40 hex) or "sha256:HEX" digest.
func newDigest(d string) (hash.Hash, string, error) {
	d = strings.TrimSpace(d)
	if hexs, ok := strings.CutPrefix(d, "sha256:"); ok {
		if _, err := hex.DecodeString(hexs); err != nil || len(hexs) != 64 {
			return nil, "", fmt.Errorf("digest %q: sha256: needs 64 hex digits", d)
		}
		return sha256.New(), "sha256:" + strings.ToLower(hexs), nil
	}
	if _, err := hex.DecodeString(d); err != nil || len(d) != 40 {
		return nil, "", fmt.Errorf("digest %q: expected a bare SHA-1 (40 hex digits) or sha256:HEX", d)
	}
	return sha1.New(), strings.ToLower(d), nil
}

// Fetch streams url into a temporary file, reporting bytes and rate on
// progress about once a second, and checks digest when it is not empty. The
// caller removes the file with cleanup.
func Fetch(ctx context.Context, url, digest, suffix string, progress io.Writer, now func() time.Time) (path string, cleanup func(), err error) {
	cleanup = func() {}
	var h hash.Hash
	var want string
	if digest != "" {
		if h, want, err = newDigest(digest); err != nil {
			return "", cleanup, err
		}
	}
	if now == nil {
		now = time.Now
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", cleanup, &DownloadError{URL: url, Err: err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", cleanup, &DownloadError{URL: url, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", cleanup, &DownloadError{URL: url, Status: resp.Status}
	}
	f, err := os.CreateTemp("", "kpaas-download-*"+suffix)
	if err != nil {
		return "", cleanup, err
	}
	cleanup = func() { os.Remove(f.Name()) }
	w := io.Writer(f)
	if h != nil {
		w = io.MultiWriter(f, h)
	}
	pw := &progressWriter{out: progress, url: url, total: resp.ContentLength, start: now(), now: now}
	_, err = io.Copy(io.MultiWriter(w, pw), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", func() {}, &DownloadError{URL: url, Err: err}
	}
	pw.report(true)
	if h != nil {
		got := hex.EncodeToString(h.Sum(nil))
		if strings.HasPrefix(want, "sha256:") {
			got = "sha256:" + got
		}
		if got != want {
			cleanup()
			return "", func() {}, &DigestMismatchError{URL: url, Want: want, Got: got}
		}
	}
	return f.Name(), cleanup, nil
}

type progressWriter struct {
	out         io.Writer
	url         string
	total, n    int64
	start, last time.Time
	now         func() time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	p.report(false)
	return len(b), nil
}

func (p *progressWriter) report(final bool) {
	if p.out == nil {
		return
	}
	t := p.now()
	if !final && t.Sub(p.last) < time.Second {
		return
	}
	p.last = t
	secs := t.Sub(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.n) / secs
	}
	of := ""
	if p.total > 0 {
		of = fmt.Sprintf(" of %s", size(p.total))
	}
	state := "downloading"
	if final {
		state = "downloaded"
	}
	fmt.Fprintf(p.out, "%s %s: %s%s at %s/s\n", state, p.url, size(p.n), of, size(int64(rate)))
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
