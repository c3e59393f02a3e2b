package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleRelease(t testing.TB) string {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"config/final.yml": "name: sample\n",
		"jobs/web/spec": `---
name: web
templates:
  ctl.sh: bin/ctl
  web.conf: config/web.conf
packages: [app]
properties:
  port: {default: 8080}
provides: [{name: web, type: http, properties: [port]}]
`,
		"jobs/web/monit":              "check process web\n",
		"jobs/web/templates/ctl.sh*":  "#!/bin/sh\necho {{ p \"port\" }}\n",
		"jobs/web/templates/web.conf": "port={{ p \"port\" }}\n",
		"jobs/web/templates/unused":   "not listed in spec, not packaged",
		"packages/app/spec":           "name: app\ndependencies: [lib]\nfiles: [app/**/*]\nexcluded_files: [app/*.bak]\n",
		"packages/app/packaging":      "cp -a app/* ${BOSH_INSTALL_TARGET}/\n",
		"packages/lib/spec":           "name: lib\nfiles: [lib.sh, big.bin]\n",
		"packages/lib/packaging":      "cp lib.sh big.bin ${BOSH_INSTALL_TARGET}/\n",
		"src/app/server.sh*":          "#!/bin/sh\n",
		"src/app/web/index.html":      "<h1>hi</h1>\n",
		"src/app/old.bak":             "excluded",
		"src/lib.sh":                  "lib() { :; }\n",
		"blobs/big.bin":               "0123456789",
		"config/blobs.yml":            "big.bin: {size: 10, sha: " + SHA256Digest([]byte("0123456789")).String() + "}\n",
		"NOTICE":                      "notice\n",
	})
	return dir
}

func listTar(t *testing.T, data []byte) map[string]*tar.Header {
	t.Helper()
	tr, err := openTar(bytes.NewReader(data))
	require.NoError(t, err)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out[h.Name] = h
	}
}

func TestTarballRoundTrip(t *testing.T) {
	dir := sampleRelease(t)
	d, err := ReadDir(dir)
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "sample.tgz")
	var added []string
	m, err := d.WriteTarball(out, CreateOptions{Version: "0+dev.1", Progress: func(kind, name, fp string) { added = append(added, kind+"/"+name) }})
	require.NoError(t, err)
	assert.Equal(t, []string{"job/web", "package/app", "package/lib", "license/license"}, added)
	assert.Equal(t, "sample", m.Name)
	assert.Equal(t, "non-git", m.CommitHash)

	ex := t.TempDir()
	tb, err := ReadTarball(out, ReadOptions{ExtractDir: ex})
	require.NoError(t, err)
	assert.Equal(t, m, tb.Manifest)
	require.Len(t, tb.Jobs, 1)
	web := tb.Jobs[0]
	assert.Equal(t, d.Job("web").Fingerprint, web.Fingerprint)
	assert.Equal(t, "check process web\n", string(web.Monit))
	assert.Equal(t, map[string][]byte{"ctl.sh": []byte("#!/bin/sh\necho {{ p \"port\" }}\n"), "web.conf": []byte("port={{ p \"port\" }}\n")}, web.Templates)
	assert.Equal(t, []LinkDef{{Name: "web", Type: "http", Properties: []string{"port"}}}, web.Spec.Provides)

	// Digests in release.MF are sha256 of the extracted inner archives.
	for entry, digest := range tb.Entries {
		data, err := os.ReadFile(filepath.Join(ex, entry))
		require.NoError(t, err)
		assert.Equal(t, SHA256Digest(data).String(), digest, entry)
	}
	assert.Len(t, tb.Entries, 4)

	// The outer layout (section 2.1) and the inner one (2.3).
	whole, err := os.ReadFile(out)
	require.NoError(t, err)
	names := keys(listTar(t, whole))
	assert.Equal(t, []string{"NOTICE", "jobs/", "jobs/web.tgz", "license.tgz", "packages/", "packages/app.tgz", "packages/lib.tgz", "release.MF"}, names)
	jobTar, _ := os.ReadFile(filepath.Join(ex, "jobs/web.tgz"))
	jh := listTar(t, jobTar)
	assert.Equal(t, []string{"./", "./job.MF", "./monit", "./templates/", "./templates/ctl.sh", "./templates/web.conf"}, keys(jh))
	assert.Equal(t, int64(0o755), jh["./templates/ctl.sh"].Mode)
	assert.Equal(t, int64(0o644), jh["./templates/web.conf"].Mode)
	appTar, _ := os.ReadFile(filepath.Join(ex, "packages/app.tgz"))
	assert.Equal(t, []string{"./", "./app/", "./app/server.sh", "./app/web/", "./app/web/index.html", "./packaging"}, keys(listTar(t, appTar)))
	libTar, _ := os.ReadFile(filepath.Join(ex, "packages/lib.tgz"))
	assert.Equal(t, []string{"./", "./big.bin", "./lib.sh", "./packaging"}, keys(listTar(t, libTar)))

	// Building twice gives the same bytes (fixed times, owners and order).
	out2 := filepath.Join(t.TempDir(), "again.tgz")
	_, err = d.WriteTarball(out2, CreateOptions{Version: "0+dev.1"})
	require.NoError(t, err)
	again, _ := os.ReadFile(out2)
	assert.Equal(t, SHA256Digest(whole), SHA256Digest(again))
}

func keys(m map[string]*tar.Header) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// rewriteTarball copies a release tarball, letting edit change release.MF and
// replace entries.
func rewriteTarball(t *testing.T, src, dst string, gzipped bool, edit func(name string, data []byte) []byte) {
	t.Helper()
	in, err := os.ReadFile(src)
	require.NoError(t, err)
	tr, err := openTar(bytes.NewReader(in))
	require.NoError(t, err)
	var buf bytes.Buffer
	var w io.Writer = &buf
	var gz *gzip.Writer
	if gzipped {
		gz = gzip.NewWriter(&buf)
		w = gz
	}
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		data = edit(h.Name, data)
		h.Size = int64(len(data))
		require.NoError(t, tw.WriteHeader(h))
		_, err = tw.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	if gz != nil {
		require.NoError(t, gz.Close())
	}
	require.NoError(t, os.WriteFile(dst, buf.Bytes(), 0o644))
}

func TestReadTarballDigestForms(t *testing.T) {
	d, err := ReadDir(sampleRelease(t))
	require.NoError(t, err)
	tmp := t.TempDir()
	orig := filepath.Join(tmp, "orig.tgz")
	_, err = d.WriteTarball(orig, CreateOptions{Version: "1"})
	require.NoError(t, err)
	inner := map[string][]byte{}
	rewriteTarball(t, orig, filepath.Join(tmp, "copy.tgz"), true, func(name string, data []byte) []byte { inner[name] = data; return data })

	// Bare SHA-1 (older CLIs, sha1ify-release), in a plain (uncompressed) tar.
	sha1ified := filepath.Join(tmp, "sha1.tar")
	rewriteTarball(t, orig, sha1ified, false, func(name string, data []byte) []byte {
		if name != "release.MF" {
			return data
		}
		m, err := ParseManifest(data)
		require.NoError(t, err)
		for i := range m.Jobs {
			m.Jobs[i].SHA1 = SHA1Hex(inner["jobs/"+m.Jobs[i].Name+".tgz"])
		}
		for i := range m.Packages {
			m.Packages[i].SHA1 = SHA1Hex(inner["packages/"+m.Packages[i].Name+".tgz"])
		}
		m.License.SHA1 = SHA1Hex(inner["license.tgz"]) + ";sha512:" + hexSHA512(inner["license.tgz"])
		out, err := m.Marshal()
		require.NoError(t, err)
		return out
	})
	tb, err := ReadTarball(sha1ified, ReadOptions{})
	require.NoError(t, err)
	assert.Len(t, tb.Entries["jobs/web.tgz"], 40)

	// A corrupted package archive is refused, naming it.
	bad := filepath.Join(tmp, "bad.tgz")
	rewriteTarball(t, orig, bad, true, func(name string, data []byte) []byte {
		if name == "packages/lib.tgz" {
			return append(append([]byte(nil), data...), 0)
		}
		return data
	})
	_, err = ReadTarball(bad, ReadOptions{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrDigestMismatch), err)
	assert.Contains(t, err.Error(), "packages/lib.tgz")

	// An archive listed in release.MF but absent.
	missing := filepath.Join(tmp, "missing.tgz")
	rewriteTarball(t, orig, missing, true, func(name string, data []byte) []byte {
		if name == "release.MF" {
			return bytes.Replace(data, []byte("- name: lib"), []byte("- name: ghost"), 1)
		}
		return data
	})
	_, err = ReadTarball(missing, ReadOptions{})
	require.ErrorContains(t, err, "package ghost is listed in release.MF but packages/ghost.tgz is not in the tarball")

	_, err = ReadTarball(filepath.Join(d.Path, "NOTICE"), ReadOptions{})
	require.ErrorContains(t, err, "not a gzip or tar archive")
}

func hexSHA512(b []byte) string {
	s := sha512.Sum512(b)
	return hex.EncodeToString(s[:])
}

func TestReadDirProblems(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"jobs/a/spec":          "name: b\n",
		"jobs/c/spec":          "name: c\ntemplates: {x.erb: bin/x}\npackages: [nope]\n",
		"packages/p/spec":      "name: p\nfiles: [missing/**]\n",
		"packages/p/packaging": "",
		"packages/q/spec":      "name: q\ndependencies: [r]\n",
		"packages/q/packaging": "",
		"packages/r/spec":      "name: r\ndependencies: [q]\n",
		"packages/r/packaging": "",
		"config/blobs.yml":     "gone.tgz: {size: 1, sha: abc}\n",
	})
	_, err := ReadDir(dir)
	require.Error(t, err)
	var de *DirError
	require.ErrorAs(t, err, &de)
	msg := err.Error()
	for _, want := range []string{
		`job directory "a" does not match job name "b"`,
		"job c: templates listed in spec are missing",
		`missing files for pattern "missing/**"`,
		"blob gone.tgz is listed in config/blobs.yml but cannot be read",
	} {
		assert.Contains(t, msg, want)
	}
}

func TestDigest(t *testing.T) {
	cases := []struct {
		in, out string
		err     bool
	}{
		{in: "3f786850e387550fdab836ed7e6dc881de23001b", out: "3f786850e387550fdab836ed7e6dc881de23001b"},
		{in: "sha1:3f786850e387550fdab836ed7e6dc881de23001b", out: "3f786850e387550fdab836ed7e6dc881de23001b"},
		{in: "sha256:ABCD", out: "sha256:abcd"},
		{in: "abc;sha512:def;md9:00", out: "abc;sha512:def;md9:00"},
		{in: "", err: true},
		{in: "sha256:", err: true},
		{in: "sha256:ab-cd", err: true},
	}
	for _, c := range cases {
		d, err := ParseDigest(c.in)
		if c.err {
			assert.Error(t, err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.out, d.String())
	}
	// The strongest known algorithm is verified.
	content := []byte("hello")
	d, err := ParseDigest("0000000000000000000000000000000000000000;" + SHA256Digest(content).String())
	require.NoError(t, err)
	require.NoError(t, d.Verify(bytes.NewReader(content), "x"), "sha256 wins over a wrong sha1")
	d, _ = ParseDigest(SHA1Hex(content) + ";sha256:00")
	require.ErrorIs(t, d.Verify(bytes.NewReader(content), "x"), ErrDigestMismatch)
	d, _ = ParseDigest("md9:00")
	require.ErrorContains(t, d.Verify(bytes.NewReader(content), "x"), "no known algorithm")
}
