package release

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeTree writes files (path -> content) under root; a path ending in "*" is
// written executable (the star is dropped).
func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		mode := os.FileMode(0o644)
		if p[len(p)-1] == '*' {
			p, mode = p[:len(p)-1], 0o755
		}
		full := filepath.Join(root, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), mode))
		require.NoError(t, os.Chmod(full, mode))
	}
}

// The release bosh-cli's integration test builds with init-release,
// generate-job job1, generate-package pkg1/pkg2 (create_release_test.go).
func boshCLITestRelease(t testing.TB) string {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"config/final.yml":        "---\nname: release\n",
		"jobs/job1/spec":          "---\nname: job1\n\ntemplates: {}\n\npackages: [pkg1, pkg2]\n\nproperties: {}\n",
		"jobs/job1/monit":         "",
		"packages/pkg1/spec":      "---\nname: pkg1\n\ndependencies: [pkg2]\n\nfiles: []\n",
		"packages/pkg1/packaging": "set -e\n",
		"packages/pkg2/spec":      "---\nname: pkg2\n\ndependencies: []\n\nfiles: []\n",
		"packages/pkg2/packaging": "set -e\n",
		"LICENSE":                 "LICENSE",
	})
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "jobs/job1/templates"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "src"), 0o755))
	return dir
}

// Expected values are bosh-cli's own (integration/create_release_test.go),
// reference/bosh-formats.md section 1.9.
func TestFingerprintsMatchBoshCLI(t *testing.T) {
	dir := boshCLITestRelease(t)
	d, err := ReadDir(dir)
	require.NoError(t, err)
	assert.Equal(t, "f54520d6563c438bf0bc5bb674777db171b78d848a057a3faec0e9b572c3a76c", d.Job("job1").Fingerprint)
	assert.Equal(t, "34581dd0d93735e444a32450e3ae3951258c936479b45e08f1fa074740c7e392", d.Package("pkg2").Fingerprint)
	assert.Equal(t, "08441a1962e8141645edb0f2ddb91330454f2f1a3954d7f27fa256eb5e7b4ed6", d.Package("pkg1").Fingerprint)
	require.NotNil(t, d.License)
	assert.Equal(t, "42a33a7295936a632c8f54e70f2553975ee38a476d6aae93f3676e68c9db2f86", d.License.Fingerprint)

	// Adding a src file and a blob (add-blob lists it in config/blobs.yml).
	writeTree(t, dir, map[string]string{
		"src/in-src":         "in-src",
		"blobs/in-blobs":     "in-blobs",
		"config/blobs.yml":   "in-blobs:\n  size: 8\n  sha: " + SHA256Digest([]byte("in-blobs")).String() + "\n",
		"packages/pkg1/spec": "---\nname: pkg1\n\ndependencies: [pkg2]\n\nfiles:\n- in-src\n- in-blobs\n",
	})
	d, err = ReadDir(dir)
	require.NoError(t, err)
	assert.Equal(t, "00ebebd8dd5a533a91f9de34b0cf708772fca87ada7e37e63bec00ece2e0634c", d.Package("pkg1").Fingerprint)
	assert.Equal(t, "34581dd0d93735e444a32450e3ae3951258c936479b45e08f1fa074740c7e392", d.Package("pkg2").Fingerprint, "pkg2 did not change")
}

func TestLicenseFingerprintFinalRelease(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"LICENSE": "This is a license"})
	lic, err := readLicense(dir)
	require.NoError(t, err)
	assert.Equal(t, "953db9e6b90f5f4ff81d39f3780ba7b528d07381384a2c6cb40479c043d341b1", lic.Fingerprint)
}

// The fingerprint string itself, built by hand from section 1.9's rules.
func TestFingerprintChunks(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"b/run*": "#!/bin/sh\n", "a": "x", "packaging": "set -e\n"})
	require.NoError(t, os.Symlink("a", filepath.Join(dir, "link")))
	files := []File{
		{Name: "packaging", Path: filepath.Join(dir, "packaging"), ExcludeMode: true},
		{Name: "link", Path: filepath.Join(dir, "link")},
		{Name: "b/run", Path: filepath.Join(dir, "b/run")},
		{Name: "a", Path: filepath.Join(dir, "a")},
	}
	got, err := Fingerprint(files, []string{"zeta", "alpha"})
	require.NoError(t, err)
	s := "v2" +
		"a" + SHA256Digest([]byte("x")).String() + "100644" +
		"b/run" + SHA256Digest([]byte("#!/bin/sh\n")).String() + "100755" +
		"link" + SHA256Digest([]byte("a")).String() + "symlink" +
		"packaging" + SHA256Digest([]byte("set -e\n")).String() +
		"alpha,zeta"
	assert.Equal(t, SHA256Digest([]byte(s))[0].Hex, got)

	// Followed, the link counts as its target's content with the link's own mode (0777).
	files[1].FollowSymlinks = true
	got, err = Fingerprint(files, []string{"zeta", "alpha"})
	require.NoError(t, err)
	s = "v2" +
		"a" + SHA256Digest([]byte("x")).String() + "100644" +
		"b/run" + SHA256Digest([]byte("#!/bin/sh\n")).String() + "100755" +
		"link" + SHA256Digest([]byte("x")).String() + "100755" +
		"packaging" + SHA256Digest([]byte("set -e\n")).String() +
		"alpha,zeta"
	assert.Equal(t, SHA256Digest([]byte(s))[0].Hex, got)
}

func TestGlob(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"app/a.sh": "", "app/lib/b.sh": "", "app/lib/deep/c.txt": "", "other/d.sh": "", "top.sh": "",
	})
	cases := []struct {
		pattern string
		want    []string
	}{
		{"app/*", []string{"app/a.sh"}},
		{"app/**/*", []string{"app/a.sh", "app/lib/b.sh", "app/lib/deep/c.txt"}},
		{"app/**/*.sh", []string{"app/a.sh", "app/lib/b.sh"}},
		{"**/*.sh", []string{"app/a.sh", "app/lib/b.sh", "other/d.sh", "top.sh"}},
		{"top.sh", []string{"top.sh"}},
		{"missing/*", nil},
		{"app/lib", nil}, // a directory is not a file
	}
	for _, c := range cases {
		t.Run(c.pattern, func(t *testing.T) {
			got, err := globFiles(dir, c.pattern)
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}
