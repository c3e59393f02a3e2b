package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{"3f786850e387550fdab836ed7e6dc881de23001b", "sha256:abc", "a;sha512:b", ";", "x:y:z", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		again, err := ParseDigest(d.String())
		if err != nil {
			t.Fatalf("%q parsed, but its String %q does not: %v", s, d.String(), err)
		}
		if again.String() != d.String() {
			t.Fatalf("round trip of %q: %q != %q", s, again.String(), d.String())
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1", "0+dev.1", "1.2-rc.1+dev.3", "1..2", "+", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		if v.Compare(v) != 0 {
			t.Fatalf("%q is not equal to itself", s)
		}
		n := v.NextDev()
		if v.Compare(n) >= 0 {
			t.Fatalf("NextDev of %q is %q, not greater", s, n)
		}
	})
}

// A tarball whose release.MF comes last (some tools write it so) still verifies:
// every algorithm is computed while its archives stream past.
func TestReadTarballManifestLast(t *testing.T) {
	d, err := ReadDir(sampleRelease(t))
	require.NoError(t, err)
	tmp := t.TempDir()
	orig := filepath.Join(tmp, "orig.tgz")
	_, err = d.WriteTarball(orig, CreateOptions{Version: "1"})
	require.NoError(t, err)
	data, err := os.ReadFile(orig)
	require.NoError(t, err)
	tr, err := openTar(bytes.NewReader(data))
	require.NoError(t, err)
	type entry struct {
		h    *tar.Header
		data []byte
	}
	var entries []entry
	var mf entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		b, _ := io.ReadAll(tr)
		if h.Name == "release.MF" {
			mf = entry{h, b}
			continue
		}
		entries = append(entries, entry{h, b})
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range append(entries, mf) {
		require.NoError(t, tw.WriteHeader(e.h))
		_, err := tw.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	last := filepath.Join(tmp, "last.tgz")
	require.NoError(t, os.WriteFile(last, buf.Bytes(), 0o644))
	tb, err := ReadTarball(last, ReadOptions{})
	require.NoError(t, err)
	require.Len(t, tb.Entries, 4)
	require.Equal(t, "web", tb.Jobs[0].Name)
}
