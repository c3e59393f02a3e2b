package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// CompilePackage compiles a package as BOSH's agent does (bosh-formats.md
// section 3): its direct dependencies installed and linked under
// /var/vcap/packages, the source unpacked in /var/vcap/data/compile/<pkg>,
// `bash -x packaging` run there with BOSH_COMPILE_TARGET,
// BOSH_INSTALL_TARGET, BOSH_PACKAGE_NAME, BOSH_PACKAGE_VERSION and
// BOSH_PACKAGES_DIR, and the install dir archived as a tar.gz kept in the
// blob store.
func (a *Agent) CompilePackage(ctx context.Context, req protocol.CompilePackageRequest) (*protocol.CompilePackageResponse, error) {
	if req.Name == "" || strings.ContainsAny(req.Name, "/ ") {
		return nil, protocol.Errorf(protocol.ErrInvalidRequest, "compile_package: invalid package name %q", req.Name)
	}
	a.compileMu.Lock()
	defer a.compileMu.Unlock()
	src, err := a.blobs.Resolve(protocol.BlobRef{BlobstoreID: req.BlobstoreID, SHA1: req.SHA1}, "package "+req.Name+" source")
	if err != nil {
		return nil, err
	}
	for name, dep := range req.Deps {
		dir, err := a.installPackage(name, dep)
		if err != nil {
			return nil, fmt.Errorf("installing dependency %s of %s: %w", name, req.Name, err)
		}
		if err := symlinkAtomic(dir, filepath.Join(a.layout.Packages(), name)); err != nil {
			return nil, err
		}
	}
	compileDir := filepath.Join(a.layout.Compile(), req.Name)
	os.RemoveAll(compileDir)
	unpack := compileDir + "-bosh-agent-unpack"
	os.RemoveAll(unpack)
	if err := extractArchive(src, unpack); err != nil {
		return nil, protocol.Errorf(protocol.ErrInvalidRequest, "package %s source: %v", req.Name, err)
	}
	if err := os.Rename(unpack, compileDir); err != nil {
		return nil, err
	}
	defer os.RemoveAll(compileDir)
	installDir := filepath.Join(a.layout.DataPackages(), req.Name, sha1Hex(req.Version+"-compiling-"+req.SHA1))
	os.RemoveAll(installDir)
	if err := os.MkdirAll(installDir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(installDir)
	link := filepath.Join(a.layout.Packages(), req.Name)
	if err := symlinkAtomic(installDir, link); err != nil {
		return nil, err
	}
	defer os.Remove(link)
	if _, err := os.Stat(filepath.Join(compileDir, "packaging")); err == nil {
		env := map[string]string{
			"BOSH_COMPILE_TARGET":  compileDir,
			"BOSH_INSTALL_TARGET":  link,
			"BOSH_PACKAGE_NAME":    req.Name,
			"BOSH_PACKAGE_VERSION": req.Version,
			"BOSH_PACKAGES_DIR":    a.layout.Packages(),
		}
		e := scriptEnv(env)
		// packaging scripts expect the agent's PATH, not the lifecycle one
		for i, kv := range e {
			if strings.HasPrefix(kv, "PATH=") {
				e[i] = "PATH=" + os.Getenv("PATH")
				if os.Getenv("PATH") == "" {
					e[i] = "PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
				}
			}
		}
		logBase := filepath.Join(a.layout.Data(), "compile", "logs", req.Name)
		os.MkdirAll(filepath.Dir(logBase), 0o755)
		os.Remove(logBase + ".stdout.log")
		os.Remove(logBase + ".stderr.log")
		r := scriptRun{path: "bash", args: []string{"-x", "packaging"}, env: e, dir: compileDir, timeout: a.timeout(req.Name, "packaging"), logBase: logBase}
		code, stderr, err := r.run(ctx)
		if errors.Is(err, errTimedOut) {
			return nil, protocol.Errorf(protocol.ErrTimeout, "compiling %s: packaging timed out after %s (log: %s.stderr.log)", req.Name, r.timeout, logBase)
		}
		if err != nil {
			return nil, protocol.Errorf(protocol.ErrCompileFailed, "compiling %s: %v", req.Name, err)
		}
		if code != 0 {
			return nil, protocol.Errorf(protocol.ErrCompileFailed, "compiling %s: packaging exited %d: %s", req.Name, code, tailLines(stderr, 20))
		}
	}
	tmp, err := os.CreateTemp(a.layout.Tmp(), "compiled-*.tgz")
	if err != nil {
		return nil, err
	}
	err = writeTarGz(tmp, installDir+"/", nil)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("archiving compiled %s: %w", req.Name, err)
	}
	id, size, err := a.blobs.PutFile(tmp.Name())
	if err != nil {
		return nil, err
	}
	return &protocol.CompilePackageResponse{BlobstoreID: id, SHA1: "sha256:" + id, Size: size}, nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
