package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/registry"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/engine"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Env is what the deployment commands work with: the state, the blobstore
// and (opened on demand) the CPIs and agents.
type Env struct {
	F     *cmdutil.Factory
	Store state.Store
	Blobs *blobstore.Store
	cpis  *registry.Set
	pool  *agentclient.Pool
}

// OpenEnv opens the state store and the blobstore beside it.
func OpenEnv(ctx context.Context, f *cmdutil.Factory) (*Env, error) {
	return openEnv(ctx, f, false)
}

// OpenEnvReadOnly opens them for a plan: an embedded store that does not
// exist yet is an error rather than created, so a plan writes nothing.
func OpenEnvReadOnly(ctx context.Context, f *cmdutil.Factory) (*Env, error) {
	return openEnv(ctx, f, true)
}

func openEnv(ctx context.Context, f *cmdutil.Factory, readOnly bool) (*Env, error) {
	if readOnly {
		loc, err := state.ResolveLocation(f.Globals.State)
		if err != nil {
			return nil, err
		}
		if !state.IsPostgres(loc) {
			for _, p := range []string{loc, cmdutil.BlobstoreDir(loc)} {
				if _, err := os.Stat(p); err != nil {
					return nil, fmt.Errorf("no state at %s: upload a stemcell and a release and save a cloud-config first (`kpaas upload-stemcell`, `kpaas upload-release`, `kpaas update-cloud-config`)", loc)
				}
			}
		}
	}
	st, err := f.OpenState(ctx)
	if err != nil {
		return nil, err
	}
	loc, err := state.ResolveLocation(f.Globals.State)
	if err != nil {
		st.Close()
		return nil, err
	}
	bs, err := blobstore.Open(cmdutil.BlobstoreDir(loc))
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Env{F: f, Store: st, Blobs: bs}, nil
}

// Close releases everything.
func (e *Env) Close() {
	if e.pool != nil {
		e.pool.Close()
	}
	e.Store.Close()
}

// CPIs opens the CPIs of the cpi-config (the local cloud by default).
func (e *Env) CPIs(ctx context.Context) (*registry.Set, error) {
	if e.cpis == nil {
		s, err := e.F.OpenCPIs(ctx, e.Store)
		if err != nil {
			return nil, err
		}
		e.cpis = s
	}
	return e.cpis, nil
}

// Engine builds an engine for the cloud-config cc.
func (e *Env) Engine(ctx context.Context, cc *manifest.CloudConfig, sink ui.ProgressSink) (*engine.Engine, error) {
	set, err := e.CPIs(ctx)
	if err != nil {
		return nil, err
	}
	key, err := engine.ClientKey(ctx, e.Store)
	if err != nil {
		return nil, err
	}
	if e.pool == nil {
		e.pool = agentclient.NewPool(agentclient.Options{DialTimeout: 5 * time.Second, Logger: e.F.Logger()})
	}
	pool := e.pool
	return &engine.Engine{
		State: e.Store, Blobs: e.Blobs, ClientKey: key, Sink: sink, Now: e.F.Now,
		CPIs: func(az string) (cpi.CPI, string, error) {
			name := ""
			if cc != nil && az != "" {
				if z := cc.AZ(az); z != nil {
					name = z.CPI
				}
			}
			return set.ForAZ(az, name)
		},
		Dial: func(t agentclient.Target) engine.Agent { return pool.Client(t) },
		// InUse (engine.ProbeIP) stays off: where the VM's network is not on
		// the host yet, the probe follows the default route, and a proxy
		// there accepts any connection (as on this CI's machines).
	}, nil
}

// Lock takes the deployment's lock for op.
func (e *Env) Lock(ctx context.Context, deployment, op string) (*state.Lock, error) {
	if deployment == "" {
		return nil, errors.New("no deployment name")
	}
	l, err := e.Store.Lock(ctx, state.LockRequest{Name: state.DeploymentLock(deployment), Op: op})
	if err != nil {
		return nil, fmt.Errorf("locking deployment %s: %w", deployment, err)
	}
	return l, nil
}
