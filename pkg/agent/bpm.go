package agent

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// BPMConfig is /var/vcap/jobs/<job>/config/bpm.yml (bosh-formats.md section 5).
type BPMConfig struct {
	Processes []BPMProcess `yaml:"processes"`
}

// BPMProcess is one process of a bpm.yml. HealthCheck and ShutdownTimeout are
// kpaas extensions (bpm ignores unknown keys, so a bpm.yml using them still
// works under BOSH).
type BPMProcess struct {
	Name       string            `yaml:"name"`
	Executable string            `yaml:"executable"`
	Args       []string          `yaml:"args"`
	Env        map[string]string `yaml:"env"`
	Workdir    string            `yaml:"workdir"`
	Hooks      struct {
		PreStart string `yaml:"pre_start"`
	} `yaml:"hooks"`
	Limits struct {
		Memory       string  `yaml:"memory"`
		OpenFiles    *uint64 `yaml:"open_files"`
		Processes    *int64  `yaml:"processes"`
		CoreFileSize *uint64 `yaml:"core_file_size"`
	} `yaml:"limits"`
	EphemeralDisk     bool `yaml:"ephemeral_disk"`
	PersistentDisk    bool `yaml:"persistent_disk"`
	AdditionalVolumes []struct {
		Path      string `yaml:"path"`
		Writable  bool   `yaml:"writable"`
		MountOnly bool   `yaml:"mount_only"`
	} `yaml:"additional_volumes"`
	Capabilities   []string `yaml:"capabilities"`
	ShutdownSignal string   `yaml:"shutdown_signal"`
	Unsafe         struct {
		Privileged bool `yaml:"privileged"`
	} `yaml:"unsafe"`
	HealthCheck     *HealthCheck `yaml:"health_check"`
	ShutdownTimeout string       `yaml:"shutdown_timeout"`
	// Reload (kpaas extension) is how the process reloads its configuration
	// in place: when an apply changes only the job's rendered templates (not
	// its packages, not this process definition), the agent sends the signal
	// to the running process instead of stopping and starting it.
	Reload *Reload `yaml:"reload"`
}

// Reload is a process's in-place reload: the signal sent to its main process
// (HUP, USR1 or USR2; HAProxy in master-worker mode reloads on USR2).
type Reload struct {
	Signal string `yaml:"signal"`
}

var reloadSignals = map[string]syscall.Signal{"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2}

// signal is the reload signal; ok is false when the name is not one of reloadSignals.
func (r *Reload) signal() (syscall.Signal, bool) {
	s, ok := reloadSignals[strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(r.Signal)), "SIG")]
	return s, ok
}

// sameExceptReload reports whether two process declarations differ at most in
// their reload signal (the change a reload can apply).
func sameExceptReload(a, b *BPMProcess) bool {
	x, y := *a, *b
	x.Reload, y.Reload = nil, nil
	return reflect.DeepEqual(x, y)
}

// HealthCheck says when a process counts as running: a TCP port that accepts
// connections, an HTTP URL answering 2xx/3xx, or a command exiting 0.
type HealthCheck struct {
	TCP      string `yaml:"tcp"`     // "host:port" or "port" (127.0.0.1)
	HTTP     string `yaml:"http"`    // URL
	Command  string `yaml:"command"` // run with /bin/sh -c
	Interval string `yaml:"interval"`
	Timeout  string `yaml:"timeout"`
}

// LoadBPM reads and validates a bpm.yml.
func LoadBPM(path string) (*BPMConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c BPMConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	if len(c.Processes) == 0 {
		return nil, fmt.Errorf("%s: processes: at least one process is required", path)
	}
	seen := map[string]bool{}
	for i, p := range c.Processes {
		switch {
		case p.Name == "":
			return nil, fmt.Errorf("%s: processes[%d].name is required", path, i)
		case seen[p.Name]:
			return nil, fmt.Errorf("%s: processes[%d]: duplicate name %q", path, i, p.Name)
		case p.Executable == "":
			return nil, fmt.Errorf("%s: processes[%d] (%s): executable is required", path, i, p.Name)
		case p.ShutdownSignal != "" && p.ShutdownSignal != "TERM" && p.ShutdownSignal != "INT":
			return nil, fmt.Errorf("%s: processes[%d] (%s): shutdown_signal must be TERM or INT, not %q", path, i, p.Name, p.ShutdownSignal)
		}
		if _, err := capabilityNumbers(p.Capabilities); err != nil {
			return nil, fmt.Errorf("%s: processes[%d] (%s): capabilities: %w", path, i, p.Name, err)
		}
		if _, err := parseMemory(p.Limits.Memory); err != nil {
			return nil, fmt.Errorf("%s: processes[%d] (%s): limits.memory: %w", path, i, p.Name, err)
		}
		if p.ShutdownTimeout != "" {
			if _, err := parseDuration(p.ShutdownTimeout); err != nil {
				return nil, fmt.Errorf("%s: processes[%d] (%s): shutdown_timeout: %w", path, i, p.Name, err)
			}
		}
		if p.Reload != nil {
			if _, ok := p.Reload.signal(); !ok {
				return nil, fmt.Errorf("%s: processes[%d] (%s): reload.signal must be HUP, USR1 or USR2, not %q", path, i, p.Name, p.Reload.Signal)
			}
		}
		seen[p.Name] = true
	}
	return &c, nil
}

var memRe = regexp.MustCompile(`^(\d+)([KMGT]?)B?$`)

// parseMemory parses "256M", "1G", "1024" (bytes); "" is no limit.
func parseMemory(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	m := memRe.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size such as 256M or 1G", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m[2]]
	return n << shift, nil
}

// parseDuration accepts Go durations ("15s") and bare seconds ("15").
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}
