package stemcells_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/stemcells"
)

func TestWriteThenOpen(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	require.NoError(t, os.WriteFile(img, []byte("rootfs bytes"), 0o644))
	out := filepath.Join(dir, "s.tgz")
	mf := stemcells.Manifest{Name: "bosh-x", Version: "1.622", OperatingSystem: "debian-bookworm", APIVersion: 2, StemcellFormats: []string{"warden-tar"}, CloudProperties: map[string]any{"a": "b"}}
	require.NoError(t, stemcells.Write(out, mf, img))

	raw := readMember(t, out, "stemcell.MF")
	assert.Contains(t, raw, "version: \"1.622\"", "a version that looks like a number is quoted")
	sum := sha1.Sum([]byte("rootfs bytes"))
	assert.Contains(t, raw, "sha1: "+hex.EncodeToString(sum[:]), "sha1 is the bare SHA-1 of image")

	tb, err := stemcells.Open(out, t.TempDir())
	require.NoError(t, err)
	assert.Equal(t, "1.622", tb.Manifest.Version)
	assert.Equal(t, map[string]any{"a": "b"}, tb.Manifest.CloudProperties)
	b, _ := os.ReadFile(tb.ImagePath)
	assert.Equal(t, "rootfs bytes", string(b))
}

func readMember(t *testing.T, tgz, name string) string {
	fh, err := os.Open(tgz)
	require.NoError(t, err)
	defer fh.Close()
	gz, err := gzip.NewReader(fh)
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		require.NoError(t, err, "member %s not found", name)
		if h.Name == name {
			b, _ := io.ReadAll(tr)
			return string(b)
		}
	}
}

// writeTGZ writes a stemcell tarball by hand, as another tool would.
func writeTGZ(t *testing.T, members map[string]string) string {
	p := filepath.Join(t.TempDir(), "s.tgz")
	fh, err := os.Create(p)
	require.NoError(t, err)
	gz := gzip.NewWriter(fh)
	tw := tar.NewWriter(gz)
	for name, body := range members {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Now()}))
		_, _ = tw.Write([]byte(body))
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	require.NoError(t, fh.Close())
	return p
}

func TestOpenChecksTheImageSHA1AndTheManifest(t *testing.T) {
	sum := sha1.Sum([]byte("img"))
	good := "name: n\nversion: '1'\noperating_system: ubuntu-jammy\nsha1: " + hex.EncodeToString(sum[:]) + "\n"
	_, err := stemcells.Open(writeTGZ(t, map[string]string{"./stemcell.MF": good, "./image": "img"}), t.TempDir())
	require.NoError(t, err, "./-prefixed members (BOSH's packager) are read")

	_, err = stemcells.Open(writeTGZ(t, map[string]string{"stemcell.MF": good, "image": "tampered"}), t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is damaged")

	_, err = stemcells.Open(writeTGZ(t, map[string]string{"stemcell.MF": "sha1: x\n", "image": "img"}), t.TempDir())
	require.Error(t, err)
	for _, want := range []string{"name is missing", "version is missing", "operating_system is missing"} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = stemcells.Open(writeTGZ(t, map[string]string{"stemcell.MF": good}), t.TempDir())
	assert.ErrorContains(t, err, "has no image")

	tb, err := stemcells.Open(writeTGZ(t, map[string]string{"stemcell.MF": "name: n\nversion: '1'\noperating_system: o\nsha1: sha256:abc;sha1:" + hex.EncodeToString(sum[:]) + "\n", "image": "img"}), t.TempDir())
	require.NoError(t, err, "a multi-digest with a sha1 part is accepted")
	assert.Equal(t, 1, tb.Manifest.APIVersion, "api_version defaults to 1")
}

func TestTinyStemcell(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static is not installed (.ci/setup-local-cloud.sh installs it)")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "tiny.tgz")
	var progress strings.Builder
	now := func() time.Time { return time.Date(2026, 11, 26, 15, 32, 0, 0, time.UTC) }
	mf, err := stemcells.Tiny(context.Background(), stemcells.TinyOptions{BuildOptions: stemcells.BuildOptions{
		AgentBinary: "/bin/busybox", Out: out, Progress: &progress, Now: now}})
	require.NoError(t, err)
	assert.Equal(t, "2026.1126.1532", mf.Version)
	assert.Equal(t, "busybox", mf.OperatingSystem)
	assert.Equal(t, []string{"warden-tar"}, mf.StemcellFormats)
	assert.Contains(t, progress.String(), "Installing agent")

	tb, err := stemcells.Open(out, dir)
	require.NoError(t, err)
	list, err := exec.Command("tar", "-tzvf", tb.ImagePath).Output()
	require.NoError(t, err)
	for _, want := range []string{"./bin/busybox", "./bin/sh -> busybox", "./var/vcap/bosh/bin/kpaas-agent", "./var/vcap/store/", "./etc/passwd", "./sbin/blkid", "./sbin/mkfs.ext4", "./var/vcap/bosh/agent.json"} {
		assert.Contains(t, string(list), want)
	}
}

func TestBuildersRefuseADynamicAgent(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static is not installed")
	}
	_, err := stemcells.Tiny(context.Background(), stemcells.TinyOptions{BuildOptions: stemcells.BuildOptions{AgentBinary: "/bin/ls", Out: filepath.Join(t.TempDir(), "x.tgz")}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dynamically linked")
	_, err = stemcells.Tiny(context.Background(), stemcells.TinyOptions{BuildOptions: stemcells.BuildOptions{Out: filepath.Join(t.TempDir(), "x.tgz")}})
	assert.ErrorContains(t, err, "no agent binary given")
}

func TestTinyShimsFindAndMakeExtFilesystems(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static is not installed")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("e2fsprogs is not installed")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "tiny.tgz")
	_, err := stemcells.Tiny(context.Background(), stemcells.TinyOptions{BuildOptions: stemcells.BuildOptions{AgentBinary: "/bin/busybox", Out: out, WorkDir: filepath.Join(dir, "work")}})
	require.NoError(t, err)
	root := filepath.Join(dir, "work", "rootfs")
	sh := func(args ...string) (string, error) {
		cmd := exec.Command("/bin/busybox", append([]string{"sh"}, args...)...)
		cmd.Env = []string{"PATH=" + filepath.Join(root, "bin") + ":" + filepath.Join(root, "sbin") + ":/usr/bin:/bin"}
		b, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	img := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 8<<20), 0o644))
	typ, err := sh(filepath.Join(root, "sbin/blkid"), "-p", "-o", "value", "-s", "TYPE", img)
	assert.Error(t, err, "a blank disk has no filesystem")
	assert.Empty(t, typ)
	_, err = sh(filepath.Join(root, "sbin/mkfs.ext4"), "-q", "-F", img)
	require.NoError(t, err)
	typ, err = sh(filepath.Join(root, "sbin/blkid"), "-p", "-o", "value", "-s", "TYPE", img)
	require.NoError(t, err)
	assert.Equal(t, "ext4", typ)
	fsck, err := exec.Command("e2fsck", "-n", img).CombinedOutput()
	assert.NoError(t, err, "e2fsprogs accepts the filesystem: %s", fsck)
}
