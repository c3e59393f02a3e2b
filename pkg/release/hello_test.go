package release

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const helloDir = "../../releases/kpaas-hello"

// The hello release's packages build with nothing but sh and cp, following the
// compilation contract (section 3): the package's files in the compile
// directory, packaging run there, direct dependencies installed, results in
// BOSH_INSTALL_TARGET.
func TestHelloPackagesBuildWithoutACompiler(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	d, err := ReadDir(helloDir)
	require.NoError(t, err)
	order, err := SortPackages([]PackageNode{
		{Name: "hello-scripts", Dependencies: d.Package("hello-scripts").Dependencies},
		{Name: "hello-lib", Dependencies: d.Package("hello-lib").Dependencies},
	})
	require.NoError(t, err)
	require.Equal(t, []string{"hello-lib", "hello-scripts"}, order)

	packagesDir := t.TempDir()
	for _, name := range order {
		p := d.Package(name)
		compile := t.TempDir()
		for _, f := range p.Files {
			copyFile(t, f.Path, filepath.Join(compile, filepath.FromSlash(f.Name)))
		}
		install := filepath.Join(packagesDir, name)
		require.NoError(t, os.MkdirAll(install, 0o755))
		cmd := exec.Command(sh, "-e", "packaging")
		cmd.Dir = compile
		cmd.Env = append(os.Environ(), "BOSH_COMPILE_TARGET="+compile, "BOSH_INSTALL_TARGET="+install,
			"BOSH_PACKAGE_NAME="+name, "BOSH_PACKAGE_VERSION="+p.Fingerprint+".1", "BOSH_PACKAGES_DIR="+packagesDir)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "packaging %s: %s", name, out)
	}
	info, err := os.Stat(filepath.Join(packagesDir, "hello-scripts/bin/hello-server"))
	require.NoError(t, err)
	assert.NotZero(t, info.Mode()&0o111, "hello-server is executable")
	_, err = os.Stat(filepath.Join(packagesDir, "hello-lib/lib/log.sh"))
	require.NoError(t, err)

	// The library really works under sh.
	out, err := exec.Command(sh, "-c", ". "+filepath.Join(packagesDir, "hello-lib/lib/log.sh")+"; log hi").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ hi\n$`, string(out))
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	info, err := in.Stat()
	require.NoError(t, err)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

// BenchmarkReadDirHello reads and fingerprints the kpaas-hello release.
func BenchmarkReadDirHello(b *testing.B) {
	for b.Loop() {
		if _, err := ReadDir(helloDir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadDirLarge reads and fingerprints a synthetic release of 40 jobs
// (5 templates each) and 40 packages (25 source files of 8 KiB each, 8 MiB in all).
func BenchmarkReadDirLarge(b *testing.B) {
	dir := b.TempDir()
	files := map[string]string{"config/final.yml": "name: large\n"}
	chunk := make([]byte, 8<<10)
	for i := range chunk {
		chunk[i] = byte('a' + i%26)
	}
	for j := 0; j < 40; j++ {
		spec := fmt.Sprintf("name: job%d\ntemplates:\n", j)
		for k := 0; k < 5; k++ {
			spec += fmt.Sprintf("  t%d.yml: config/t%d.yml\n", k, k)
			files[fmt.Sprintf("jobs/job%d/templates/t%d.yml", j, k)] = fmt.Sprintf("port: {{ p \"port\" }} # %d", k)
		}
		files[fmt.Sprintf("jobs/job%d/spec", j)] = spec + fmt.Sprintf("packages: [pkg%d]\nproperties: {port: {default: 80}}\n", j)
		files[fmt.Sprintf("jobs/job%d/monit", j)] = ""
		deps := "[]"
		if j > 0 {
			deps = fmt.Sprintf("[pkg%d]", j-1)
		}
		files[fmt.Sprintf("packages/pkg%d/spec", j)] = fmt.Sprintf("name: pkg%d\ndependencies: %s\nfiles: [pkg%d/**/*]\n", j, deps, j)
		files[fmt.Sprintf("packages/pkg%d/packaging", j)] = "cp -a . ${BOSH_INSTALL_TARGET}\n"
		for f := 0; f < 25; f++ {
			files[fmt.Sprintf("src/pkg%d/d%d/f%d", j, f%5, f)] = string(chunk)
		}
	}
	writeTree(b, dir, files)
	b.ResetTimer()
	for b.Loop() {
		if _, err := ReadDir(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteTarballHello builds the kpaas-hello tarball.
func BenchmarkWriteTarballHello(b *testing.B) {
	d, err := ReadDir(helloDir)
	require.NoError(b, err)
	out := filepath.Join(b.TempDir(), "hello.tgz")
	for b.Loop() {
		if _, err := d.WriteTarball(out, CreateOptions{Version: "1"}); err != nil {
			b.Fatal(err)
		}
	}
}
