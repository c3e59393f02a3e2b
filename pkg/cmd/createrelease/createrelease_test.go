package createrelease

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/release"
	"github.com/kpaas/kpaas/pkg/ui"
)

func factory(t *testing.T, jsonOut bool) (*cmdutil.Factory, *ui.IOStreams) {
	t.Helper()
	ios, _, _, _ := ui.Test()
	return &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: jsonOut}, Now: func() time.Time { return time.Unix(1700000000, 0) }}, ios
}

func TestFlags(t *testing.T) {
	cases := []struct {
		argv    string
		want    Options
		wantErr string
	}{
		{argv: "", want: Options{Dir: "."}},
		{argv: "rel --tarball /tmp/x.tgz --name n --version 1.2 --force --final", want: Options{Dir: "rel", Tarball: "/tmp/x.tgz", Name: "n", Version: "1.2", Force: true, Final: true}},
		{argv: "--timestamp-version", want: Options{Dir: ".", TimestampVersion: true}},
		{argv: "--timestamp-version --version 2", wantErr: "cannot be used together"},
		{argv: "--timestamp-version --final", wantErr: "cannot be used with --final"},
		{argv: "--version 1..2", wantErr: "--version"},
		{argv: "a b", wantErr: "accepts at most 1 arg"},
	}
	for _, c := range cases {
		t.Run(c.argv, func(t *testing.T) {
			f, _ := factory(t, false)
			var got *Options
			cmd := NewCmdCreateRelease(f, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(strings.Fields(c.argv))
			cmd.SetOut(&strings.Builder{})
			cmd.SetErr(&strings.Builder{})
			err := cmd.Execute()
			if c.wantErr != "" {
				require.ErrorContains(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			got.IO, got.Now = nil, nil
			assert.Equal(t, c.want, *got)
		})
	}
}

// helloRelease copies releases/kpaas-hello to a temporary directory (outside
// the kpaas git tree, so it is "non-git" and nothing is written in the repo).
func helloRelease(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs("../../../releases/kpaas-hello")
	require.NoError(t, err)
	dst := filepath.Join(t.TempDir(), "kpaas-hello")
	require.NoError(t, os.CopyFS(dst, os.DirFS(src)))
	// CopyFS drops modes: restore the executable bits git keeps.
	require.NoError(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		return os.Chmod(filepath.Join(dst, rel), info.Mode().Perm())
	}))
	return dst
}

func run(t *testing.T, jsonOut bool, args ...string) (string, string, error) {
	t.Helper()
	f, ios := factory(t, jsonOut)
	cmd := NewCmdCreateRelease(f, nil)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return ios.Out.(interface{ String() string }).String(), ios.ErrOut.(interface{ String() string }).String(), err
}

func TestCreateHelloReleaseAndReadIt(t *testing.T) {
	dir := helloRelease(t)
	tarball := filepath.Join(t.TempDir(), "hello.tgz")
	stdout, stderr, err := run(t, true, dir, "--tarball", tarball)
	require.NoError(t, err, stderr)

	var v releaseView
	require.NoError(t, json.Unmarshal([]byte(stdout), &v), stdout)
	assert.Equal(t, "kpaas-hello", v.Name)
	assert.Equal(t, "0+dev.1", v.Version)
	assert.Equal(t, "non-git", v.CommitHash)
	assert.Equal(t, tarball, v.Tarball)
	assert.Contains(t, stderr, "Building release kpaas-hello/0+dev.1")
	assert.Contains(t, stderr, "Added job 'hello/")
	assert.Contains(t, stderr, "Added package 'hello-scripts/")

	tb, err := release.ReadTarball(tarball, release.ReadOptions{})
	require.NoError(t, err)
	m := tb.Manifest
	assert.Equal(t, "kpaas-hello", m.Name)
	var jobs, pkgs []string
	for _, j := range m.Jobs {
		jobs = append(jobs, j.Name)
		assert.True(t, strings.HasPrefix(j.SHA1, "sha256:"), j.SHA1)
	}
	for _, p := range m.Packages {
		pkgs = append(pkgs, p.Name)
	}
	assert.Equal(t, []string{"greeter", "hello", "smoke-tests", "store-writer"}, jobs)
	assert.Equal(t, []string{"hello-lib", "hello-scripts"}, pkgs)
	assert.Equal(t, []string{"hello-lib"}, m.Packages[1].Dependencies)
	require.NotNil(t, m.License)
	hello := tb.Job("hello")
	require.NotNil(t, hello)
	assert.Equal(t, []string{"hello-lib", "hello-scripts"}, hello.Spec.Packages)
	assert.Contains(t, string(hello.Templates["bpm.yml"]), `{{ p "hello.port" }}`)
	assert.Equal(t, "http", hello.Spec.Provides[0].Type)

	// The directory's fingerprints are the tarball's.
	d, err := release.ReadDir(dir)
	require.NoError(t, err)
	for _, j := range m.Jobs {
		assert.Equal(t, d.Job(j.Name).Fingerprint, j.Fingerprint, j.Name)
	}
	order, err := release.SortPackages([]release.PackageNode{{Name: "hello-scripts", Dependencies: m.Packages[1].Dependencies}, {Name: "hello-lib"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"hello-lib", "hello-scripts"}, order)

	// The release manifest is recorded; the next dev build is 0+dev.2 and
	// lands beside it by default; same content, same fingerprints.
	_, err = os.Stat(filepath.Join(dir, "dev_releases/kpaas-hello/kpaas-hello-0+dev.1.yml"))
	require.NoError(t, err)
	stdout, stderr, err = run(t, false, dir)
	require.NoError(t, err, stderr)
	assert.Contains(t, stdout, "Version      0+dev.2")
	assert.Contains(t, stdout, "JOB")
	assert.Contains(t, stdout, "hello-scripts/")
	tb2, err := release.ReadTarball(filepath.Join(dir, "dev_releases/kpaas-hello/kpaas-hello-0+dev.2.tgz"), release.ReadOptions{})
	require.NoError(t, err)
	assert.Equal(t, m.Jobs, tb2.Manifest.Jobs)

	// Final releases count from 1; dev releases then follow the final one.
	_, _, err = run(t, false, dir, "--final")
	require.NoError(t, err)
	stdout, _, err = run(t, true, dir)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.Equal(t, "1+dev.1", v.Version)

	_, _, err = run(t, false, dir, "--final", "--version", "1")
	require.ErrorContains(t, err, "release kpaas-hello/1 already exists")
}

func TestCreateReleaseRefusesDirtyGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := helloRelease(t)
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.email=t@example.com", "-c", "user.name=t"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-qm", "release")
	stdout, stderr, err := run(t, true, dir, "--tarball", filepath.Join(t.TempDir(), "a.tgz"))
	require.NoError(t, err, stderr)
	var v releaseView
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.Regexp(t, `^[0-9a-f]{7,}$`, v.CommitHash)
	assert.False(t, v.UncommittedChanges)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "jobs/hello/templates/index.html"), []byte("changed"), 0o644))
	_, _, err = run(t, false, dir, "--tarball", filepath.Join(t.TempDir(), "b.tgz"))
	require.ErrorContains(t, err, "has uncommitted changes")
	stdout, _, err = run(t, true, dir, "--force", "--tarball", filepath.Join(t.TempDir(), "c.tgz"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.True(t, v.UncommittedChanges)
}

func TestCreateReleaseBadDir(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "jobs/x"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jobs/x/spec"), []byte("name: y\n"), 0o644))
	_, _, err := run(t, false, dir)
	require.ErrorContains(t, err, `job directory "x" does not match job name "y"`)

	empty := t.TempDir()
	_, _, err = run(t, false, empty)
	require.ErrorContains(t, err, "no release name")
}

func TestPrintRelease(t *testing.T) {
	ios, _, out, _ := ui.Test()
	fp := strings.Repeat("ab", 32)
	v := releaseView{Name: "r", Version: "1+dev.2", CommitHash: "abc1234", UncommittedChanges: true, Tarball: "/tmp/r.tgz",
		Jobs:     []artifactView{{Name: "web", Fingerprint: fp, SHA1: "sha256:11", Packages: []string{"a", "b"}}},
		Packages: []artifactView{{Name: "a", Fingerprint: fp, SHA1: "sha256:22"}, {Name: "b", Fingerprint: fp, SHA1: "sha256:33", Deps: []string{"a"}}},
		License:  &artifactView{Name: "license", Fingerprint: fp, SHA1: "sha256:44"}}
	require.NoError(t, printRelease(ios, v))
	assert.Equal(t, `Name         r
Version      1+dev.2
Commit Hash  abc1234+
Archive      /tmp/r.tgz

JOB               DIGEST     PACKAGES
web/abababababab  sha256:11  a, b

PACKAGE         DIGEST     DEPENDENCIES
a/abababababab  sha256:22  -
b/abababababab  sha256:33  a

License  license/abababababab  sha256:44

1 job(s), 2 package(s)
`, out.String())
}

func TestTarballPathIsADirectory(t *testing.T) {
	dir := helloRelease(t)
	_, _, err := run(t, false, dir, "--tarball", t.TempDir())
	require.ErrorContains(t, err, "is a directory: give a file path")
}
