package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// packageDir is where package name/ref is installed: BOSH's
// /var/vcap/data/packages/<pkg>/<sha1hex("<version>-<digest>")>.
func (a *Agent) packageDir(name string, ref protocol.BlobRef) string {
	return filepath.Join(a.layout.DataPackages(), name, sha1Hex(ref.Version+"-"+ref.SHA1+ref.BlobstoreID))
}

// installPackage verifies and extracts a package blob (once) and returns its directory.
func (a *Agent) installPackage(name string, ref protocol.BlobRef) (string, error) {
	dir := a.packageDir(name, ref)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	blob, err := a.blobs.Resolve(ref, "package "+name)
	if err != nil {
		return "", err
	}
	tmp := dir + ".installing"
	os.RemoveAll(tmp)
	if err := extractArchive(blob, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", protocol.Errorf(protocol.ErrInvalidRequest, "package %s: %v", name, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// Prepare fetches what apply will need ahead of time: it checks every blob
// of spec is here and unpacks the packages, so apply is quick.
func (a *Agent) Prepare(ctx context.Context, spec protocol.ApplySpec) error {
	var missing []string
	check := func(ref protocol.BlobRef, what string) error {
		_, err := a.blobs.Resolve(ref, what)
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Type == protocol.ErrBlobMissing {
			missing = append(missing, pe.Message)
			return nil
		}
		return err
	}
	for name, ref := range spec.Packages {
		if err := check(ref, "package "+name); err != nil {
			return err
		}
	}
	if r := spec.RenderedTemplatesArchive; r != nil && (r.BlobstoreID != "" || r.SHA1 != "") {
		if err := check(*r, "rendered templates archive"); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return protocol.Errorf(protocol.ErrBlobMissing, "%d blobs missing: %v", len(missing), missing)
	}
	for name, ref := range spec.Packages {
		if _, err := a.installPackage(name, ref); err != nil {
			return err
		}
	}
	return nil
}

// Apply installs spec's packages and rendered job templates in the BOSH
// layout, writes spec.json and the instance files, and loads the jobs'
// process declarations. Jobs must have been stopped by the caller (the
// director's order: drain, stop, apply, start), except when the apply only
// changes templates of jobs whose processes reload in place (see
// reloadable): then the running processes get their reload signal.
func (a *Agent) Apply(ctx context.Context, spec protocol.ApplySpec) error {
	busy := a.supervisor.CheckIdle()
	if err := a.Prepare(ctx, spec); err != nil {
		return err
	}
	if err := a.layout.Ensure(); err != nil {
		return err
	}
	// The rendered templates first: whether running processes can take
	// this apply depends on them, and nothing may change before that is known.
	var rendered string
	if len(spec.Job.Templates) > 0 {
		r := spec.RenderedTemplatesArchive
		if r == nil || (r.BlobstoreID == "" && r.SHA1 == "") {
			return protocol.Errorf(protocol.ErrInvalidRequest, "apply spec has jobs but no rendered_templates_archive")
		}
		blob, err := a.blobs.Resolve(*r, "rendered templates archive")
		if err != nil {
			return err
		}
		rendered, err = os.MkdirTemp(a.layout.Tmp(), "rendered-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(rendered)
		if err := extractArchive(blob, rendered); err != nil {
			return protocol.Errorf(protocol.ErrInvalidRequest, "rendered templates archive: %v", err)
		}
	}
	var reload map[string]*BPMConfig
	if busy != nil {
		var why error
		if reload, why = a.reloadable(spec, rendered); why != nil {
			msg := busy.Error()
			var pe *protocol.Error
			if errors.As(busy, &pe) {
				msg = pe.Message
			}
			return protocol.Errorf(protocol.ErrBusy, "%s and this apply cannot reload it in place (%v): stop the jobs before applying it",
				strings.TrimSuffix(msg, "; stop the jobs before applying new ones"), why)
		}
	}
	// Packages: /var/vcap/packages/<pkg> -> data dir.
	pkgNames := make([]string, 0, len(spec.Packages))
	for name, ref := range spec.Packages {
		dir, err := a.installPackage(name, ref)
		if err != nil {
			return err
		}
		if err := symlinkAtomic(dir, filepath.Join(a.layout.Packages(), name)); err != nil {
			return fmt.Errorf("linking package %s: %w", name, err)
		}
		pkgNames = append(pkgNames, name)
	}
	sort.Strings(pkgNames)

	// Jobs: rendered templates archive dir <job>/ -> data/jobs/<job>/<hash>.
	gid := vcapGID()
	keep := map[string]bool{}
	for _, t := range spec.Job.Templates {
		src := filepath.Join(rendered, t.Name)
		if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
			return protocol.Errorf(protocol.ErrInvalidRequest, "rendered templates archive has no directory %s/ for job %s", t.Name, t.Name)
		}
		dst := filepath.Join(a.layout.DataJobs(), t.Name, sha1Hex(t.Version+"-"+t.SHA1+"-"+spec.RenderedTemplatesArchive.SHA1+spec.RenderedTemplatesArchive.BlobstoreID))
		if err := installJobDir(src, dst, gid); err != nil {
			return fmt.Errorf("installing job %s: %w", t.Name, err)
		}
		for _, p := range pkgNames {
			if err := symlinkAtomic(filepath.Join(a.layout.Packages(), p), filepath.Join(dst, "packages", p)); err != nil {
				return err
			}
		}
		if err := symlinkAtomic(dst, a.layout.JobDir(t.Name)); err != nil {
			return fmt.Errorf("linking job %s: %w", t.Name, err)
		}
		if err := a.layout.JobDirs(t.Name); err != nil {
			return err
		}
		keep[t.Name] = true
	}
	// Jobs no longer in the spec disappear from /var/vcap/jobs (their data stays).
	if entries, err := os.ReadDir(a.layout.Jobs()); err == nil {
		for _, e := range entries {
			if !keep[e.Name()] {
				os.Remove(filepath.Join(a.layout.Jobs(), e.Name()))
			}
		}
	}
	if err := a.writeInstanceFiles(spec); err != nil {
		return err
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(a.layout.SpecFile(), b, 0o600); err != nil {
		return fmt.Errorf("writing spec.json: %w", err)
	}
	a.mu.Lock()
	a.spec = &spec
	a.mu.Unlock()
	// The packages and jobs are unpacked: blobs the spec no longer names and
	// that nobody uploaded lately need not fill the ephemeral disk.
	inUse := map[string]bool{}
	for _, p := range spec.Packages {
		inUse[p.BlobstoreID] = true
	}
	if r := spec.RenderedTemplatesArchive; r != nil {
		inUse[r.BlobstoreID] = true
	}
	if n := a.blobs.Prune(inUse, BlobRetention, time.Now()); n > 0 {
		a.log.Info("pruned unused blobs", "count", n)
	}
	if busy != nil {
		return a.supervisor.Reload(reload)
	}
	return a.loadJobs()
}

// reloadable says whether spec can be applied while the jobs' processes run,
// by signalling them instead of restarting them, and returns the new bpm.yml
// of each job to signal. It can when the packages and the set of jobs are
// the same, and every job whose rendered templates (in rendered/<job>/)
// differ from the installed ones declares the same processes in its bpm.yml,
// each with a reload signal and otherwise unchanged, and at least one job
// changed. The error says why not.
func (a *Agent) reloadable(spec protocol.ApplySpec, rendered string) (map[string]*BPMConfig, error) {
	a.mu.Lock()
	old := a.spec
	a.mu.Unlock()
	if old == nil {
		return nil, errors.New("nothing was applied before")
	}
	if len(old.Packages) != len(spec.Packages) {
		return nil, errors.New("packages added or removed")
	}
	for name, ref := range spec.Packages {
		if o, ok := old.Packages[name]; !ok || o.Version != ref.Version || o.SHA1 != ref.SHA1 || o.BlobstoreID != ref.BlobstoreID {
			return nil, fmt.Errorf("package %s changed", name)
		}
	}
	jobNames := func(s *protocol.ApplySpec) string {
		var n []string
		for _, t := range s.Job.Templates {
			n = append(n, t.Name)
		}
		sort.Strings(n)
		return strings.Join(n, ",")
	}
	if jobNames(old) != jobNames(&spec) {
		return nil, errors.New("jobs added or removed")
	}
	out := map[string]*BPMConfig{}
	for _, t := range spec.Job.Templates {
		same, err := sameTree(filepath.Join(rendered, t.Name), a.layout.JobDir(t.Name), "packages")
		if err != nil {
			return nil, fmt.Errorf("comparing job %s with the installed one: %w", t.Name, err)
		}
		if same {
			continue
		}
		loaded, ok := a.supervisor.bpmProcesses(t.Name)
		if !ok {
			return nil, fmt.Errorf("job %s changed and has no bpm processes", t.Name)
		}
		cfg, err := LoadBPM(filepath.Join(rendered, t.Name, "config", "bpm.yml"))
		if err != nil {
			return nil, fmt.Errorf("job %s changed: %w", t.Name, err)
		}
		if len(cfg.Processes) != len(loaded) {
			return nil, fmt.Errorf("job %s: processes added or removed", t.Name)
		}
		for i := range cfg.Processes {
			np := &cfg.Processes[i]
			lp, ok := loaded[np.Name]
			switch {
			case !ok:
				return nil, fmt.Errorf("job %s: process %s added", t.Name, np.Name)
			case np.Reload == nil:
				return nil, fmt.Errorf("job %s changed and its process %s declares no reload signal", t.Name, np.Name)
			case !sameExceptReload(lp, np):
				return nil, fmt.Errorf("job %s: the definition of process %s in bpm.yml changed", t.Name, np.Name)
			}
		}
		out[t.Name] = cfg
	}
	if len(out) == 0 {
		// the same jobs again: an apply still needs them stopped, as before
		return nil, errors.New("no job's templates changed: nothing to reload")
	}
	return out, nil
}

// sameTree reports whether directories a and b hold the same files, symlinks
// and contents, ignoring the top-level entries named in skip (in either).
func sameTree(a, b string, skip ...string) (bool, error) {
	da, err := treeDigest(a, skip)
	if err != nil {
		return false, err
	}
	db, err := treeDigest(b, skip)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return da == db, nil
}

func treeDigest(root string, skip []string) (string, error) {
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		if slices.Contains(skip, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			fmt.Fprintf(h, "d %s\n", rel)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "l %s %s\n", rel, l)
		default:
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "f %s %d\n", rel, len(b))
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// BlobRetention is how long an unreferenced blob is kept after an apply.
var BlobRetention = time.Hour

// loadJobs hands the applied jobs to the supervisor.
func (a *Agent) loadJobs() error {
	var jobs []JobConfig
	for _, name := range a.jobNames() {
		jc := JobConfig{Name: name}
		a.mu.Lock()
		for _, t := range a.spec.Job.Templates {
			if t.Name == name && t.Timeouts["stop"] > 0 {
				jc.StopTimeout = secs(t.Timeouts["stop"])
			}
		}
		if jc.StopTimeout == 0 && a.settings.Env.Kpaas.Timeouts["stop"] > 0 {
			jc.StopTimeout = secs(a.settings.Env.Kpaas.Timeouts["stop"])
		}
		a.mu.Unlock()
		jobs = append(jobs, jc)
	}
	if !a.fixedLogSize {
		a.supervisor.SetLogMaxSize(a.maxLogFileSize())
	}
	err := a.supervisor.Load(jobs)
	a.mu.Lock()
	a.loadErr = err
	a.mu.Unlock()
	return err
}

func (a *Agent) writeInstanceFiles(spec protocol.ApplySpec) error {
	idx := ""
	if spec.Index != nil {
		idx = strconv.Itoa(*spec.Index)
	}
	for name, v := range map[string]string{"deployment": spec.Deployment, "name": spec.Name, "az": spec.AZ, "index": idx, "id": spec.ID} {
		if err := writeFileAtomic(filepath.Join(a.layout.Instance(), name), []byte(v), 0o644); err != nil {
			return fmt.Errorf("writing instance file %s: %w", name, err)
		}
	}
	return nil
}

// installJobDir copies a rendered job into dst with BOSH's modes: dirs 0750,
// files under bin/ 0750, others 0640, group vcap when it exists.
func installJobDir(src, dst string, gid int) error {
	if _, err := os.Stat(dst); err == nil {
		return nil // same content already installed
	}
	// The job's parent directory must stay traversable by vcap: creating it
	// as a side effect of MkdirAll(tmp, 0750) left it root:root 0750.
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".installing"
	os.RemoveAll(tmp)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(tmp, rel)
		if d.IsDir() {
			if err := os.MkdirAll(target, 0o750); err != nil {
				return err
			}
			return chownGroup(target, gid)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			l, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o640)
		if filepath.Dir(rel) == "bin" || filepath.Base(filepath.Dir(rel)) == "bin" {
			mode = 0o750
		}
		if err := os.WriteFile(target, b, mode); err != nil {
			return err
		}
		os.Chmod(target, mode)
		return chownGroup(target, gid)
	})
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func vcapGID() int {
	if os.Geteuid() != 0 {
		return -1
	}
	g, err := user.LookupGroup("vcap")
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(g.Gid)
	return n
}

func chownGroup(path string, gid int) error {
	if gid < 0 {
		return nil
	}
	return os.Lchown(path, 0, gid)
}
