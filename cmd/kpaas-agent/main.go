// Command kpaas-agent runs inside every VM kpaas creates: it reads its
// settings (a file, an OpenStack config drive or metadata service, vSphere
// guestinfo), serves the kpaas agent protocol over SSH (default port 6868)
// and supervises the jobs kpaas applies. Build it static: CGO_ENABLED=0.
//
//	kpaas-agent [--root DIR] [--settings FILE | --config agent.json] [--listen ADDR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/kpaas/kpaas/pkg/agent"
	"github.com/kpaas/kpaas/pkg/agent/settings"
)

var version = "dev"

func main() {
	if runAsInit() {
		return
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "kpaas-agent: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	root := flag.String("root", "/", "Directory holding /var/vcap (a temporary directory in tests)")
	settingsPath := flag.String("settings", "", "Read settings from this file (File source)")
	configPath := flag.String("config", "", "BOSH-style agent.json listing settings sources (default ROOT/var/vcap/bosh/agent.json)")
	listen := flag.String("listen", "", "SSH listen address (default: settings env.kpaas.listen, else :6868)")
	logLevel := flag.String("log-level", "info", "Log level: debug, info, warn, error")
	platform := flag.String("platform", "auto", "Manage hostname, resolv.conf, ephemeral disk, shutdown: true, false, auto (= root is /)")
	minBackoff := flag.Duration("restart-backoff", time.Second, "First restart delay of a failed process (doubles up to 60s)")
	showVersion := flag.Bool("version", false, "Print the version and exit")
	cpuProfile := flag.String("cpuprofile", "", "Write a CPU profile to `file` until exit (debugging)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *showVersion {
		fmt.Println("kpaas-agent", version)
		return nil
	}
	var lv slog.Level
	lv.UnmarshalText([]byte(*logLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))

	absRoot, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	layout := agent.Layout{Root: absRoot}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	st, from, err := readSettings(ctx, layout, *settingsPath, *configPath)
	if err != nil {
		return err
	}
	log.Info("settings read", "source", from, "agent_id", st.AgentID)
	if *listen != "" {
		st.Env.Kpaas.Listen = *listen
	}
	a, err := agent.New(agent.Options{
		Layout: layout, Settings: st, Logger: log, Version: version,
		Platform:   *platform == "true" || (*platform == "auto" && absRoot == "/"),
		Supervisor: agent.SupervisorOptions{MinBackoff: *minBackoff},
	})
	if err != nil {
		return err
	}
	if _, err := a.ServerConfig(); err != nil {
		return err
	}
	for _, w := range a.SetupPlatform(ctx) {
		log.Warn("platform setup", "err", w)
	}
	ln, err := net.Listen("tcp", a.ListenAddress())
	if err != nil {
		return fmt.Errorf("listening on %s: %w", a.ListenAddress(), err)
	}
	// The test harness and operators learn the bound port from this line.
	log.Info("listening", "addr", ln.Addr().String())
	if err := a.Recover(); err != nil {
		log.Error("bringing jobs back after restart", "err", err)
	}
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	go a.RotateLogsEvery(serveCtx, 5*time.Minute)
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(serveCtx, ln) }()
	select {
	case <-ctx.Done():
		log.Info("signal received: stopping jobs")
	case <-a.Done():
		log.Info("shutdown requested")
		a.WaitSessions(5 * time.Second)
	case err := <-errc:
		if err != nil {
			return err
		}
	}
	stopServe()
	stopCtx, c := context.WithTimeout(context.Background(), 2*time.Minute)
	defer c()
	return a.Close(stopCtx)
}

func readSettings(ctx context.Context, layout agent.Layout, settingsPath, configPath string) (*settings.Settings, string, error) {
	var sources []settings.Source
	switch {
	case settingsPath != "":
		sources = []settings.Source{settings.FileSource{Path: settingsPath}}
	default:
		if configPath == "" {
			configPath = filepath.Join(layout.Bosh(), "agent.json")
		}
		srcs, err := settings.LoadAgentConfig(configPath)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, "", err
		}
		sources = srcs
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, src, err := settings.ReadFirst(rctx, sources)
	if err == nil {
		return st, src.Name(), nil
	}
	// As BOSH's agent: fall back to the settings saved at the last boot.
	cached := layout.SettingsFile()
	if st, cerr := settings.Load(cached); cerr == nil {
		return st, "cached " + cached, nil
	}
	if len(sources) == 0 {
		return nil, "", fmt.Errorf("no settings: pass --settings FILE or --config agent.json (none at %s)", configPath)
	}
	return nil, "", err
}
