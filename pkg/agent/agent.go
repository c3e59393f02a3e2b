// Package agent is kpaas-agent, the process that runs inside every VM: it
// reads its settings, serves the kpaas agent protocol (pkg/agent/protocol)
// over SSH, keeps blobs, installs packages and jobs in the BOSH layout, runs
// lifecycle scripts with timeouts, supervises the jobs' processes, reports
// state and vitals, streams logs, mounts disks and compiles packages.
//
// Everything on the VM lives under Layout.Root, so tests run a real agent in
// a temporary directory. It must not import the CLI side (pkg/agentclient,
// pkg/cmd, pkg/cli).
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// Options configure an Agent.
type Options struct {
	Layout     Layout
	Settings   *settings.Settings
	Logger     *slog.Logger
	Version    string
	Supervisor SupervisorOptions // Layout and Logger are filled in
	// Platform lets the agent change the machine: hostname, resolv.conf, the
	// ephemeral disk, and a real shutdown. Only on a VM whose root is "/".
	Platform bool
}

// Agent is one VM's agent.
type Agent struct {
	layout   Layout
	log      *slog.Logger
	version  string
	platform bool
	// fixedLogSize: the supervisor's log size was set by the agent's
	// options, not by the spec's logging.max_log_file_size
	fixedLogSize bool
	blobs        BlobStore
	supervisor   *Supervisor

	mu       sync.Mutex
	settings *settings.Settings
	spec     *protocol.ApplySpec
	loadErr  error // the applied jobs' processes could not be read
	cpuPrev  cpuTimes

	lifecycle sync.Mutex // apply, start, stop, drain one at a time
	diskMu    sync.Mutex
	compileMu sync.Mutex

	shutdown     chan struct{}
	shutdownOnce sync.Once
	sessions     atomic.Int64
}

// New builds an agent and restores what it had applied before a restart.
func New(opts Options) (*Agent, error) {
	if opts.Settings == nil {
		return nil, errors.New("agent settings are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := opts.Layout.Ensure(); err != nil {
		return nil, fmt.Errorf("preparing %s: %w", opts.Layout.Base(), err)
	}
	so := opts.Supervisor
	so.Layout, so.Logger = opts.Layout, opts.Logger
	if so.CgroupName == "" && os.Geteuid() == 0 {
		so.CgroupName = "kpaas-agent"
		if opts.Settings.AgentID != "" {
			so.CgroupName = "kpaas-agent-" + opts.Settings.AgentID
		}
	}
	a := &Agent{
		layout: opts.Layout, log: opts.Logger, version: opts.Version, platform: opts.Platform,
		blobs:        BlobStore{Dir: opts.Layout.Blobs()},
		supervisor:   NewSupervisor(so),
		settings:     opts.Settings,
		shutdown:     make(chan struct{}),
		fixedLogSize: opts.Supervisor.LogMaxSize != 0,
	}
	if b, err := json.Marshal(opts.Settings); err == nil {
		writeFileAtomic(opts.Layout.SettingsFile(), b, 0o600)
	}
	a.cpuPrev, _ = readCPUTimes()
	return a, nil
}

// Recover re-reads the applied spec after an agent restart and brings the
// jobs back, unless they were stopped on purpose (the stopped marker).
func (a *Agent) Recover() error {
	b, err := os.ReadFile(a.layout.SpecFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var spec protocol.ApplySpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("reading %s: %w", a.layout.SpecFile(), err)
	}
	a.mu.Lock()
	a.spec = &spec
	a.mu.Unlock()
	if err := a.loadJobs(); err != nil {
		return err
	}
	if err := a.remountDisks(context.Background()); err != nil {
		return fmt.Errorf("not starting the jobs: %w", err)
	}
	if _, err := os.Stat(a.layout.StoppedMarker()); err == nil {
		return nil
	}
	a.log.Info("restarting the applied jobs", "jobs", a.jobNames())
	return a.supervisor.Start()
}

// Done is closed when a shutdown was requested.
func (a *Agent) Done() <-chan struct{} { return a.shutdown }

// Close stops every process (agent exit without shutdown keeps nothing running).
func (a *Agent) Close(ctx context.Context) error { return a.supervisor.Stop(ctx) }

// Start starts the jobs' processes.
func (a *Agent) Start(ctx context.Context) error {
	a.lifecycle.Lock()
	defer a.lifecycle.Unlock()
	os.Remove(a.layout.StoppedMarker())
	return a.supervisor.Start()
}

// Stop stops the jobs' processes and marks the jobs stopped.
func (a *Agent) Stop(ctx context.Context) error {
	a.lifecycle.Lock()
	defer a.lifecycle.Unlock()
	if err := writeFileAtomic(a.layout.StoppedMarker(), nil, 0o644); err != nil {
		return err
	}
	return a.supervisor.Stop(ctx)
}

// State is get_state.
func (a *Agent) State(full bool) protocol.State {
	procs := a.supervisor.Processes()
	_, err := os.Stat(a.layout.StoppedMarker())
	a.mu.Lock()
	st := protocol.State{AgentID: a.settings.AgentID, VM: protocol.VMRef{Name: a.settings.VM.Name}, Processes: procs}
	if a.spec != nil {
		st.ApplySpec = *a.spec
	}
	loadErr := a.loadErr
	a.mu.Unlock()
	if st.Packages == nil {
		st.Packages = map[string]protocol.BlobRef{}
	}
	st.JobState = RollUp(err == nil, procs)
	if loadErr != nil && st.JobState != protocol.JobStopped {
		// the supervisor cannot tell: BOSH's "monit unreachable"
		st.JobState = protocol.JobUnknown
	}
	if full {
		st.Vitals = a.vitals()
	}
	return st
}

// Info is info.
func (a *Agent) Info() protocol.InfoResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	return protocol.InfoResponse{APIVersion: protocol.APIVersion, AgentVersion: a.version, AgentID: a.settings.AgentID, VMName: a.settings.VM.Name, Root: a.layout.Root}
}

// UpdateSettings saves update_settings.json and applies new authorized keys.
func (a *Agent) UpdateSettings(req protocol.UpdateSettingsRequest) error {
	b, _ := json.Marshal(req)
	if err := writeFileAtomic(a.layout.UpdateSettings(), b, 0o600); err != nil {
		return err
	}
	if req.TrustedCerts != "" && a.platform {
		if err := os.WriteFile("/usr/local/share/ca-certificates/kpaas-trusted.crt", []byte(req.TrustedCerts), 0o644); err == nil {
			exec.Command("update-ca-certificates").Run()
		}
	}
	if len(req.AuthorizedKeys) > 0 {
		a.mu.Lock()
		a.settings.Env.Kpaas.AuthorizedKeys = req.AuthorizedKeys
		s := *a.settings
		a.mu.Unlock()
		if b, err := json.Marshal(&s); err == nil {
			writeFileAtomic(a.layout.SettingsFile(), b, 0o600)
		}
	}
	return nil
}

// Shutdown stops the jobs and asks the process to exit (and, on a real VM,
// powers it off).
func (a *Agent) Shutdown(ctx context.Context) error {
	if err := a.Stop(ctx); err != nil {
		return err
	}
	a.shutdownOnce.Do(func() {
		close(a.shutdown)
		if a.platform {
			go func() {
				time.Sleep(time.Second)
				exec.Command("shutdown", "-h", "now").Run()
			}()
		}
	})
	return nil
}

func secs(n int) time.Duration { return time.Duration(n) * time.Second }

func decode[T any](body []byte) (T, error) {
	var v T
	if len(body) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, protocol.Errorf(protocol.ErrInvalidRequest, "decoding request: %v", err)
	}
	return v, nil
}

// Call runs a non-streaming RPC method with its JSON request and returns the value.
func (a *Agent) Call(ctx context.Context, method string, body []byte) (any, error) {
	switch method {
	case protocol.MethodPing:
		return "pong", nil
	case protocol.MethodInfo:
		return a.Info(), nil
	case protocol.MethodGetState:
		req, err := decode[protocol.GetStateRequest](body)
		if err != nil {
			return nil, err
		}
		return a.State(req.Full), nil
	case protocol.MethodPrepare:
		req, err := decode[protocol.PrepareRequest](body)
		if err != nil {
			return nil, err
		}
		return protocol.Empty{}, a.Prepare(ctx, req.Spec)
	case protocol.MethodApply:
		req, err := decode[protocol.ApplyRequest](body)
		if err != nil {
			return nil, err
		}
		a.lifecycle.Lock()
		defer a.lifecycle.Unlock()
		return protocol.Empty{}, a.Apply(ctx, req.Spec)
	case protocol.MethodStart:
		return protocol.Empty{}, a.Start(ctx)
	case protocol.MethodStop:
		return protocol.Empty{}, a.Stop(ctx)
	case protocol.MethodDrain:
		req, err := decode[protocol.DrainRequest](body)
		if err != nil {
			return nil, err
		}
		a.lifecycle.Lock()
		defer a.lifecycle.Unlock()
		res, err := a.Drain(ctx, req)
		return protocol.DrainResponse{Results: res}, err
	case protocol.MethodRunScript:
		req, err := decode[protocol.RunScriptRequest](body)
		if err != nil {
			return nil, err
		}
		res, err := a.RunScript(ctx, req.Name, req.Env)
		return protocol.RunScriptResponse{Results: res}, err
	case protocol.MethodRunErrand:
		req, err := decode[protocol.RunErrandRequest](body)
		if err != nil {
			return nil, err
		}
		return a.RunErrand(ctx, req)
	case protocol.MethodMountDisk:
		req, err := decode[protocol.DiskRequest](body)
		if err != nil {
			return nil, err
		}
		return protocol.Empty{}, a.MountDisk(ctx, req.CID)
	case protocol.MethodUnmountDisk:
		req, err := decode[protocol.DiskRequest](body)
		if err != nil {
			return nil, err
		}
		return protocol.Empty{}, a.UnmountDisk(ctx, req.CID)
	case protocol.MethodAddPersistentDisk:
		req, err := decode[protocol.AddPersistentDiskRequest](body)
		if err != nil {
			return nil, err
		}
		return protocol.Empty{}, a.AddPersistentDisk(req)
	case protocol.MethodRemovePersistentDisk:
		req, err := decode[protocol.DiskRequest](body)
		if err != nil {
			return nil, err
		}
		return protocol.Empty{}, a.RemovePersistentDisk(req)
	case protocol.MethodListDisk:
		return protocol.ListDiskResponse{CIDs: a.ListDisk()}, nil
	case protocol.MethodCompilePackage:
		req, err := decode[protocol.CompilePackageRequest](body)
		if err != nil {
			return nil, err
		}
		return a.CompilePackage(ctx, req)
	case protocol.MethodUpdateSettings:
		req, err := decode[protocol.UpdateSettingsRequest](body)
		if err != nil {
			return nil, err
		}
		return protocol.Empty{}, a.UpdateSettings(req)
	case protocol.MethodShutdown:
		return protocol.Empty{}, a.Shutdown(ctx)
	}
	return nil, protocol.Errorf(protocol.ErrUnknownMethod, "unknown method %q", method)
}

// toProtocolError types any error for the wire.
func toProtocolError(err error) *protocol.Error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &protocol.Error{Type: protocol.ErrTimeout, Message: err.Error()}
	}
	return &protocol.Error{Type: protocol.ErrInternal, Message: err.Error()}
}
