package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// Layout is the BOSH on-VM layout under Root ("/" on a real VM; a temporary
// directory in tests, so the agent runs without touching the host).
type Layout struct {
	Root string
}

// Path joins p (an absolute on-VM path such as "/var/vcap/jobs") under Root.
func (l Layout) Path(p string) string { return filepath.Join(l.Root, p) }

func (l Layout) Base() string             { return l.Path("/var/vcap") }
func (l Layout) Bosh() string             { return l.Path("/var/vcap/bosh") }
func (l Layout) Data() string             { return l.Path("/var/vcap/data") }
func (l Layout) Store() string            { return l.Path("/var/vcap/store") }
func (l Layout) StoreMigration() string   { return l.Path("/var/vcap/store_migration_target") }
func (l Layout) Jobs() string             { return l.Path("/var/vcap/jobs") }
func (l Layout) Packages() string         { return l.Path("/var/vcap/packages") }
func (l Layout) DataJobs() string         { return l.Path("/var/vcap/data/jobs") }
func (l Layout) DataPackages() string     { return l.Path("/var/vcap/data/packages") }
func (l Layout) Compile() string          { return l.Path("/var/vcap/data/compile") }
func (l Layout) Blobs() string            { return l.Path("/var/vcap/data/blobs") }
func (l Layout) Tmp() string              { return l.Path("/var/vcap/data/tmp") }
func (l Layout) SysLog() string           { return l.Path("/var/vcap/sys/log") }
func (l Layout) SysRun() string           { return l.Path("/var/vcap/sys/run") }
func (l Layout) Instance() string         { return l.Path("/var/vcap/instance") }
func (l Layout) SpecFile() string         { return filepath.Join(l.Bosh(), "spec.json") }
func (l Layout) SettingsFile() string     { return filepath.Join(l.Bosh(), "settings.json") }
func (l Layout) UpdateSettings() string   { return filepath.Join(l.Bosh(), "update_settings.json") }
func (l Layout) DiskHintsFile() string    { return filepath.Join(l.Bosh(), "persistent_disk_hints.json") }
func (l Layout) MountsFile() string       { return filepath.Join(l.Bosh(), "mounted_disks.json") }
func (l Layout) StoppedMarker() string    { return filepath.Join(l.Bosh(), "stopped") }
func (l Layout) JobDir(job string) string { return filepath.Join(l.Jobs(), job) }
func (l Layout) JobLogDir(job string) string {
	return filepath.Join(l.SysLog(), job)
}

// Ensure creates the skeleton: data dirs, /var/vcap/sys -> data/sys.
func (l Layout) Ensure() error {
	for _, d := range []string{l.Bosh(), l.Data(), l.Jobs(), l.Packages(), l.DataJobs(), l.DataPackages(),
		l.Compile(), l.Blobs(), l.Tmp(), l.Instance(), l.Path("/var/vcap/data/sys/log"), l.Path("/var/vcap/data/sys/run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	sys := l.Path("/var/vcap/sys")
	if fi, err := os.Lstat(sys); err == nil {
		if fi.Mode()&os.ModeSymlink == 0 && !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory or symlink", sys)
		}
	} else if os.IsNotExist(err) {
		if err := os.Symlink(l.Path("/var/vcap/data/sys"), sys); err != nil {
			return fmt.Errorf("linking %s: %w", sys, err)
		}
	} else {
		return err
	}
	return nil
}

// JobDirs creates the per-job directories BOSH creates on apply.
func (l Layout) JobDirs(job string) error {
	for _, d := range []string{filepath.Join(l.Data(), job), filepath.Join(l.Data(), job, "tmp"),
		filepath.Join(l.Path("/var/vcap/data/sys/log"), job), filepath.Join(l.Path("/var/vcap/data/sys/run"), job)} {
		if err := os.MkdirAll(d, 0o770); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
		chownGroup(d, vcapGID()) // root:vcap as BOSH, so jobs running as vcap can write
	}
	return nil
}

// writeFileAtomic writes data to path through a temp file, fsync and rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// symlinkAtomic points link at target, replacing whatever link was there.
func symlinkAtomic(target, link string) error {
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	tmp := link + ".tmp-link"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}
