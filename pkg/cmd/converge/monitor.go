package converge

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/cmd/deploy"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	conv "github.com/kpaas/kpaas/pkg/converge"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// LeaderLock is the name of the lock the monitors of one store elect a
// leader with.
const LeaderLock = "monitor"

// MonitorOptions of `kpaas monitor`.
type MonitorOptions struct {
	IO          *ui.IOStreams
	Factory     *cmdutil.Factory
	Deployments []string
	JSON        bool
	Listen      string
	SystemdUnit bool
	Policy      PolicyFlags
	// Ready, when set, receives the address the HTTP endpoint listens on.
	Ready func(addr string)
}

// NewCmdMonitor builds `kpaas monitor`.
func NewCmdMonitor(f *cmdutil.Factory, runF func(*MonitorOptions) error) *cobra.Command {
	opts := &MonitorOptions{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:   "monitor [-d DEP]",
		Short: "Watch every deployment and restore unhealthy instances (long-running, foreground)",
		Long: `Watch every deployment of the state store (or only -d DEP): every --interval each agent
is asked for its state over a pooled SSH connection, the CPI is asked about the VMs of
agents that stop answering, and unhealthy instances are remediated as ` + "`kpaas converge`" + `
does (missing VM or agent silent for --agent-timeout: recreate; job failing for --grace:
restart, then recreate), with the same gates (deploy lock, --max-unhealthy meltdown,
resurrection rules, a retry budget with backoff). What it sees and does is printed
(NDJSON with --json) and recorded as events.

Several monitors may run against one store: one leads (it holds the "monitor" lock; on
PostgreSQL the lock lives in the database), the others wait and take over when it goes.

Prometheus metrics are served at http://LISTEN/metrics and a health check at /healthz
(200 when this monitor is running; the body says whether it leads).`,
		Example: `  kpaas monitor
  kpaas monitor -d hello --interval 5s --agent-timeout 15s
  kpaas monitor --listen 127.0.0.1:9696 --json
  kpaas monitor --systemd-unit > /etc/systemd/system/kpaas-monitor.service`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.Globals.JSON
			if f.Globals.Deployment != "" {
				opts.Deployments = []string{f.Globals.Deployment}
			}
			if runF != nil {
				return runF(opts)
			}
			return monitorRun(cmd.Context(), opts)
		},
	}
	opts.Policy.add(cmd.Flags())
	cmd.Flags().StringVar(&opts.Listen, "listen", "127.0.0.1:9696", "Address of the metrics and health endpoint (`HOST:PORT`; port 0 picks one)")
	cmd.Flags().BoolVar(&opts.SystemdUnit, "systemd-unit", false, "Print a systemd unit that runs this monitor, and exit")
	return cmd
}

const unitTemplate = `[Unit]
Description=kpaas monitor: keeps deployments healthy
After=network-online.target

[Service]
ExecStart=%s monitor --state %s
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`

type monitor struct {
	opts    *MonitorOptions
	env     *deploy.Env
	rec     *conv.Reconciler
	metrics *conv.Metrics
	mu      sync.Mutex
	leader  bool
	out     sync.Mutex
}

func (m *monitor) print(r conv.Report) {
	m.out.Lock()
	defer m.out.Unlock()
	if m.opts.JSON {
		b, _ := json.Marshal(r) // one line per report (NDJSON)
		_, _ = m.opts.IO.Out.Write(append(b, '\n'))
		return
	}
	printReport(m.opts.IO.Out, r)
}

func monitorRun(ctx context.Context, opts *MonitorOptions) error {
	if opts.SystemdUnit {
		loc, err := state.ResolveLocation(opts.Factory.Globals.State)
		if err != nil {
			return err
		}
		exe := "/usr/local/bin/kpaas"
		fmt.Fprintf(opts.IO.Out, unitTemplate, exe, loc)
		return nil
	}
	o, err := opts.Policy.options()
	if err != nil {
		return cmdutil.FlagErrorf("%v", err)
	}
	env, err := deploy.OpenEnv(ctx, opts.Factory)
	if err != nil {
		return err
	}
	defer env.Close()
	m := &monitor{opts: opts, env: env, metrics: conv.NewMetrics()}
	m.rec, err = newReconciler(ctx, env, o, opts.IO, opts.JSON, m.print, m.metrics)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("monitor endpoint %s: %w (choose another with --listen)", opts.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		lead := m.leader
		m.mu.Unlock()
		fmt.Fprintf(w, "ok leader=%v\n", lead)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	m.print(conv.Report{Time: time.Now(), Kind: "started", Message: fmt.Sprintf("metrics on http://%s/metrics, interval %s, agent timeout %s", ln.Addr(), o.Policy.Interval, o.Policy.AgentTimeout)})
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}
	return m.loop(ctx, o)
}

func (m *monitor) setLeader(b bool) {
	m.mu.Lock()
	m.leader = b
	m.mu.Unlock()
	if b {
		m.metrics.Leader.Set(1)
	} else {
		m.metrics.Leader.Set(0)
	}
}

func (m *monitor) elector() (conv.Leader, error) {
	loc, err := state.ResolveLocation(m.opts.Factory.Globals.State)
	if err != nil {
		return nil, err
	}
	if state.IsPostgres(loc) {
		return &conv.PGLeader{URL: loc, Scope: m.env.Store.Location()}, nil
	}
	return &conv.StoreLeader{Store: m.env.Store, Name: LeaderLock}, nil
}

func (m *monitor) loop(ctx context.Context, o conv.Options) error {
	interval := o.Policy.Defaults().Interval
	el, err := m.elector()
	if err != nil {
		return err
	}
	defer el.Release(context.Background())
	leading, waiting := false, false
	for {
		if !leading {
			ok, holder, err := el.TryLead(ctx)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return nil
				}
				m.print(conv.Report{Time: time.Now(), Kind: "error", Message: err.Error()})
			case !ok:
				if !waiting {
					m.print(conv.Report{Time: time.Now(), Kind: "standby", Message: fmt.Sprintf("another monitor leads (%s): waiting", holder)})
					waiting = true
				}
			default:
				leading, waiting = true, false
				m.setLeader(true)
				m.print(conv.Report{Time: time.Now(), Kind: "leader", Message: "this monitor leads"})
			}
		} else if err := el.Check(ctx); err != nil {
			m.print(conv.Report{Time: time.Now(), Kind: "standby", Message: err.Error()})
			leading = false
			m.setLeader(false)
		}
		wait := interval
		if leading {
			next, err := m.pass(ctx, o)
			if err != nil && ctx.Err() == nil {
				m.print(conv.Report{Time: time.Now(), Kind: "error", Message: err.Error()})
			}
			// Look again sooner when an agent's timeout or a job's grace
			// period ends before the next interval.
			wait = min(max(next, 200*time.Millisecond), interval)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil // Ctrl-C: a clean stop
		}
	}
}

func (m *monitor) pass(ctx context.Context, o conv.Options) (time.Duration, error) {
	m.metrics.Passes.Inc()
	next := o.Policy.Defaults().Interval
	deps := m.opts.Deployments
	if len(deps) == 0 {
		all, err := m.env.Store.Deployments(ctx)
		if err != nil {
			return next, err
		}
		for _, d := range all {
			if d.Manifest != "" {
				deps = append(deps, d.Name)
			}
		}
		sort.Strings(deps)
	}
	rules, err := loadRules(ctx, m.env.Store)
	if err != nil {
		return next, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, d := range deps {
		wg.Add(1)
		go func(d string) {
			defer wg.Done()
			out, err := m.rec.Pass(ctx, d, rules)
			if err != nil && ctx.Err() == nil {
				m.print(conv.Report{Time: time.Now(), Deployment: d, Kind: "error", Message: err.Error()})
				return
			}
			mu.Lock()
			if out.Next > 0 && out.Next < next {
				next = out.Next
			}
			mu.Unlock()
		}(d)
	}
	wg.Wait()
	return next, nil
}
