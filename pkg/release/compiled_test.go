package release

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStemcellMatchesSameOSAndMajorVersion(t *testing.T) {
	assert.True(t, StemcellMatches("ubuntu-jammy/1.622", "ubuntu-jammy", "1.622"))
	assert.True(t, StemcellMatches("ubuntu-jammy/1.622", "ubuntu-jammy", "1.700"), "minor versions float")
	assert.True(t, StemcellMatches("busybox/1", "busybox", "1.3"))
	assert.False(t, StemcellMatches("ubuntu-jammy/1.622", "ubuntu-jammy", "2.1"), "another major")
	assert.False(t, StemcellMatches("ubuntu-jammy/1.622", "ubuntu-noble", "1.622"), "another os")
	assert.False(t, StemcellMatches("nonsense", "nonsense", ""))

	m := &Manifest{CompiledPackages: []CompiledPackageRef{
		{Name: "a", Version: "v1", Stemcell: "ubuntu-jammy/1.5"},
		{Name: "a", Version: "v2", Stemcell: "ubuntu-jammy/1.9"},
	}}
	got, ok := m.CompiledFor("a", "ubuntu-jammy", "1.9")
	require.True(t, ok)
	assert.Equal(t, "v2", got.Version, "an exact stemcell match wins")
	got, ok = m.CompiledFor("a", "ubuntu-jammy", "1.7")
	require.True(t, ok)
	assert.Equal(t, "v1", got.Version)
	_, ok = m.CompiledFor("a", "ubuntu-noble", "1.9")
	assert.False(t, ok)
	assert.Equal(t, []string{"ubuntu-jammy/1.5", "ubuntu-jammy/1.9"}, m.CompiledStemcells())
}

func helloTarball(t *testing.T) string {
	d, err := ReadDir(helloDir)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "hello.tgz")
	_, err = d.WriteTarball(p, CreateOptions{Version: "1"})
	require.NoError(t, err)
	return p
}

var bareSHA1 = regexp.MustCompile(`^[0-9a-f]{40}$`)

func TestCompiledTarballRoundTripsWithSHA1AndSHA256Digests(t *testing.T) {
	src, err := ReadTarball(helloTarball(t), ReadOptions{})
	require.NoError(t, err)
	contents := map[string]string{"hello-lib": "compiled lib bytes", "hello-scripts": "compiled scripts bytes"}
	var in []CompiledInput
	for n, c := range contents {
		in = append(in, CompiledInput{Name: n, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(c)), nil }})
	}
	for _, sha1Digests := range []bool{true, false} {
		dest := filepath.Join(t.TempDir(), "compiled.tgz")
		_, err := WriteCompiledTarball(dest, src, in, ExportOptions{Stemcell: "busybox/1", SHA1: sha1Digests})
		require.NoError(t, err)
		tb, err := ReadTarball(dest, ReadOptions{})
		require.NoError(t, err, "the compiled release verifies")
		m := tb.Manifest
		assert.True(t, m.IsCompiled())
		assert.Empty(t, m.Packages)
		require.Len(t, m.CompiledPackages, 2)
		assert.Len(t, tb.Jobs, len(src.Jobs), "jobs are carried over")
		for _, cp := range m.CompiledPackages {
			assert.Equal(t, "busybox/1", cp.Stemcell)
			var want string
			if sha1Digests {
				s := sha1.Sum([]byte(contents[cp.Name]))
				want = hex.EncodeToString(s[:])
			} else {
				s := sha256.Sum256([]byte(contents[cp.Name]))
				want = "sha256:" + hex.EncodeToString(s[:])
			}
			assert.Equal(t, want, cp.SHA1, cp.Name)
			for _, sp := range src.Manifest.Packages {
				if sp.Name == cp.Name {
					assert.Equal(t, sp.Fingerprint, cp.Fingerprint)
					assert.Equal(t, sp.Dependencies, cp.Dependencies)
				}
			}
		}
	}
	_, err = WriteCompiledTarball(filepath.Join(t.TempDir(), "x.tgz"), src, in[:1], ExportOptions{Stemcell: "busybox/1"})
	assert.ErrorContains(t, err, "is not compiled for stemcell busybox/1")
}

func TestRewriteDigestsToBareSHA1StillVerifies(t *testing.T) {
	src := helloTarball(t)
	dest := filepath.Join(t.TempDir(), "sha1.tgz")
	_, err := RewriteDigests(src, dest, true)
	require.NoError(t, err)
	tb, err := ReadTarball(dest, ReadOptions{})
	require.NoError(t, err)
	for _, j := range tb.Manifest.Jobs {
		assert.Regexp(t, bareSHA1, j.SHA1, j.Name)
	}
	for _, p := range tb.Manifest.Packages {
		assert.Regexp(t, bareSHA1, p.SHA1, p.Name)
	}
	// A wrong bare SHA-1 is caught: the digest is checked, not just parsed.
	bad := filepath.Join(t.TempDir(), "bad.tgz")
	fh, err := os.Create(bad)
	require.NoError(t, err)
	gz := gzip.NewWriter(fh)
	tw := tar.NewWriter(gz)
	require.NoError(t, EachEntry(dest, func(name string, r io.Reader) error {
		b, _ := io.ReadAll(r)
		if name == "release.MF" {
			b = []byte(strings.Replace(string(b), tb.Manifest.Jobs[0].SHA1, strings.Repeat("0", 40), 1))
		}
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Size: int64(len(b)), Mode: 0o644}))
		_, err := tw.Write(b)
		return err
	}))
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	require.NoError(t, fh.Close())
	_, err = ReadTarball(bad, ReadOptions{})
	assert.ErrorIs(t, err, ErrDigestMismatch)

	back := filepath.Join(t.TempDir(), "back.tgz")
	_, err = RewriteDigests(dest, back, false)
	require.NoError(t, err)
	tb2, err := ReadTarball(back, ReadOptions{})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(tb2.Manifest.Jobs[0].SHA1, "sha256:"))
}
