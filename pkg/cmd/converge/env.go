// Package converge implements `kpaas converge` (one reconcile pass),
// `kpaas monitor` (watch and remediate, long-running), `kpaas cck` (scan
// and resolve problems as BOSH's cloud check) and `kpaas update-resurrection`.
// Health judgement is pkg/health; observation and gates are pkg/converge;
// remediation goes through pkg/engine, as deploy does.
package converge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/cmd/deploy"
	conv "github.com/kpaas/kpaas/pkg/converge"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/health"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/plan"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// PolicyFlags are the health and gate settings shared by converge and monitor.
type PolicyFlags struct {
	Interval     time.Duration
	AgentTimeout time.Duration
	Refused      time.Duration
	Grace        time.Duration
	MaxUnhealthy string
	MaxRetries   int
	Backoff      time.Duration
	DryRun       bool
}

func (p *PolicyFlags) add(fl *pflag.FlagSet) {
	fl.DurationVar(&p.Interval, "interval", 10*time.Second, "How often every agent is asked for its state")
	fl.DurationVar(&p.AgentTimeout, "agent-timeout", 30*time.Second, "An agent silent this long is unresponsive")
	fl.DurationVar(&p.Refused, "refused-timeout", 10*time.Second, "An agent whose address refuses connections (reset, host unreachable) this long is unresponsive (at most --agent-timeout)")
	fl.DurationVar(&p.Grace, "grace", 30*time.Second, "A job failing this long is unhealthy (debounces flapping)")
	fl.StringVar(&p.MaxUnhealthy, "max-unhealthy", "", "Remediate nothing when more instances than this (`N` or N%) are unhealthy (default: 20% with a minimum of 5, as BOSH's meltdown)")
	fl.IntVar(&p.MaxRetries, "max-retries", 5, "Remediations of one instance per hour")
	fl.DurationVar(&p.Backoff, "backoff", 10*time.Second, "Wait after a remediation before the next of the same instance (doubles each time)")
	fl.BoolVar(&p.DryRun, "dry-run", false, "Say what would be remediated, change nothing")
}

func (p *PolicyFlags) options() (conv.Options, error) {
	mu, err := health.ParseMaxUnhealthy(p.MaxUnhealthy)
	if err != nil {
		return conv.Options{}, fmt.Errorf("--max-unhealthy: %w", err)
	}
	return conv.Options{
		Policy:       health.Policy{Interval: p.Interval, AgentTimeout: p.AgentTimeout, RefusedTimeout: p.Refused, FailingGrace: p.Grace},
		Budget:       health.Budget{Max: p.MaxRetries, Backoff: p.Backoff},
		MaxUnhealthy: mu,
		DryRun:       p.DryRun,
	}, nil
}

// newReconciler wires a reconciler to the environment's state, agents,
// CPIs and engine.
func newReconciler(ctx context.Context, env *deploy.Env, o conv.Options, io *ui.IOStreams, json bool, report func(conv.Report), m *conv.Metrics) (*conv.Reconciler, error) {
	key, err := engine.ClientKey(ctx, env.Store)
	if err != nil {
		return nil, err
	}
	eng, err := env.Engine(ctx, nil, nil)
	if err != nil {
		return nil, err
	}
	set, err := env.CPIs(ctx)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	clouds := map[string]*manifest.CloudConfig{}
	return conv.New(conv.Deps{
		Store:  env.Store,
		Signer: key.Signer,
		Dial:   func(t agentclient.Target) conv.Agent { return eng.Dial(t) },
		HasVM: func(ctx context.Context, dep, az, cid string) (bool, error) {
			mu.Lock()
			cc, ok := clouds[dep]
			if !ok {
				cc, _ = cloudOf(ctx, env.Store, dep)
				clouds[dep] = cc
			}
			mu.Unlock()
			name := ""
			if cc != nil && az != "" {
				if z := cc.AZ(az); z != nil {
					name = z.CPI
				}
			}
			c, _, err := set.ForAZ(az, name)
			if err != nil {
				return false, err
			}
			return c.HasVM(ctx, cpi.VMCID(cid))
		},
		Remediator: &remediator{env: env, sink: ui.ProgressSinkFor(io, json)},
		Report:     report,
		Metrics:    m,
	}, o), nil
}

// cloudOf returns the cloud-config the deployment was last deployed with.
func cloudOf(ctx context.Context, st state.Reader, dep string) (*manifest.CloudConfig, error) {
	d, err := st.Deployment(ctx, dep)
	if err != nil {
		return nil, err
	}
	for _, id := range d.ConfigIDs {
		c, err := st.ConfigByID(ctx, id)
		if err == nil && c.Type == state.CloudConfig {
			cc, _, err := manifest.ParseCloudConfig("cloud-config", []byte(c.Content))
			return cc, err
		}
	}
	return nil, nil
}

// remediator carries fixes out with the engine, with the last successfully
// deployed manifest: restarts stop and start the jobs; recreates are a plan
// of recreates (same IPs, persistent disk reattached) run within the
// groups' max_in_flight, without canaries.
type remediator struct {
	env  *deploy.Env
	sink ui.ProgressSink
}

func (r *remediator) Remediate(ctx context.Context, dep string, fixes []conv.Fix) error {
	d, err := r.env.Store.Deployment(ctx, dep)
	if err != nil {
		return err
	}
	if d.Manifest == "" {
		return fmt.Errorf("deployment %s has never been deployed successfully: nothing to converge to", dep)
	}
	p, err := engine.Prepare(ctx, r.env.Store, r.env.Blobs, engine.PrepareInput{ManifestFile: "manifest of " + dep, ManifestData: []byte(d.Manifest), Deployment: dep})
	if err != nil {
		return err
	}
	eng, err := r.env.Engine(ctx, p.Cloud, r.sink)
	if err != nil {
		return err
	}
	eng.Canaries = &manifest.CountOrPercent{N: 0}
	by := map[string]conv.Fix{}
	dead := map[string]bool{} // host keys of agents judged dead
	vms := p.State.VMsByInstance()
	for _, f := range fixes {
		by[f.UUID] = f
		if v := vms[f.UUID]; f.AgentDead && len(v) > 0 && v[0].SSHHostKey != "" {
			dead[v[0].SSHHostKey] = true
		}
	}
	// The old VM's agent (its pinned host key) is not waited for; the new
	// VM at the same address has a new host key and is talked to as usual.
	dial := eng.Dial
	eng.Dial = func(t agentclient.Target) engine.Agent {
		if dead[t.HostKey] {
			return deadAgent{Agent: dial(t), name: t.Name, addr: t.Address}
		}
		return dial(t)
	}
	var restarts []*plan.Instance
	recreates := 0
	for _, i := range p.Plan.Instances() {
		f, ok := by[i.UUID]
		switch {
		case ok && f.Action == conv.ActionRestart:
			restarts = append(restarts, i)
			i.Action, i.Reasons = plan.ActionNone, nil
		case ok && f.Action == conv.ActionRecreate:
			i.Action, i.Reasons = plan.ActionRecreate, f.Reasons
			recreates++
		default:
			// Converge restores what was deployed, nothing else: pending
			// changes wait for the next deploy.
			i.Action, i.Reasons = plan.ActionNone, nil
		}
	}
	var errs []error
	if len(restarts) > 0 {
		if err := eng.Stop(ctx, p, restarts, false); err != nil {
			errs = append(errs, err)
		}
		if err := eng.Start(ctx, p, restarts); err != nil {
			errs = append(errs, err)
		}
	}
	if recreates > 0 {
		if err := eng.Apply(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deadAgent is the agent of a VM judged dead: stopping its jobs and
// unmounting its disk fail at once as a connection error (which the engine
// accepts for a VM about to be deleted) instead of waiting for timeouts.
type deadAgent struct {
	engine.Agent
	name, addr string
}

func (d deadAgent) err() error {
	return &agentclient.ConnectError{VM: d.name, Address: d.addr, Phase: agentclient.PhaseTCP, Err: errors.New("the agent was judged dead; not waiting for it")}
}

func (d deadAgent) StopJobs(ctx context.Context, o agentclient.StopOptions) error { return d.err() }
func (d deadAgent) UnmountDisk(ctx context.Context, cid string) error             { return d.err() }

// loadRules reads the resurrection config (enabled when there is none).
func loadRules(ctx context.Context, st state.Reader) (health.Resurrection, error) {
	var r health.Resurrection
	c, err := st.Config(ctx, state.ResurrectionConfig, state.DefaultConfigName)
	if errors.Is(err, state.ErrNotFound) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := yaml.Unmarshal([]byte(c.Content), &r); err != nil {
		return r, fmt.Errorf("resurrection config (version %d): %w", c.Version, err)
	}
	return r, nil
}

func printReport(w interface{ Write([]byte) (int, error) }, r conv.Report) {
	inst := ""
	if r.Instance != "" {
		inst = " " + r.Instance
	}
	fmt.Fprintf(w, "%s %s%s %s: %s\n", r.Time.Format("15:04:05"), r.Deployment, inst, strings.ToUpper(r.Kind), r.Message)
}
