// Package cmdutiltest seeds real state stores for command tests: a
// deployment with instances, VMs and disks recorded through pkg/state's API,
// optionally backed by real kpaas-agent processes on loopback. It must not
// be imported by non-test code.
package cmdutiltest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	act "github.com/kpaas/kpaas/pkg/agentclient/agentclienttest"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/state"
)

// Open opens (creating) an SQLite store in dir the way kpaas does (the key
// file beside the store), closed when the test ends; commands that open the
// same dir read what the test wrote.
func Open(t testing.TB, dir string, now func() time.Time) state.Store {
	t.Helper()
	s, err := state.Open(context.Background(), dir, state.Options{Now: now, Version: "test", User: "alice", Host: "ws1"})
	if err != nil {
		t.Fatalf("opening state store %s: %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Instance is one instance to record, with its active VM when VMCID is set.
type Instance struct {
	Group, UUID, AZ, VMType string
	Index                   int
	Bootstrap               bool
	DesiredState            state.InstanceState // default started
	Ignore                  bool
	VMCID                   string
	IP                      string // default network IP (may carry a port: 127.0.0.1:40123)
	HostKey                 string // pinned host public key
	AgentID                 string
	DiskCIDs                []string
	DiskSizeMB              int
	VMCreatedAt             time.Time
}

// Spec is the instance spec recorded for i (vm_type and networks, as BOSH's).
func Spec(i Instance) json.RawMessage {
	spec := map[string]any{"deployment": "", "name": i.Group, "index": i.Index, "id": i.UUID, "az": i.AZ,
		"vm_type":  map[string]any{"name": i.VMType, "cloud_properties": map[string]any{}},
		"networks": map[string]any{"default": map[string]any{"ip": i.IP, "default": []string{"dns", "gateway"}}}}
	b, _ := json.Marshal(spec)
	return b
}

// Seed records deployment dep with manifest (as the last successful deploy) and insts.
func Seed(t testing.TB, s state.Store, dep, manifest string, insts []Instance) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.CreateDeployment(ctx, dep)
	must(err)
	if manifest != "" {
		must(s.RecordDeploySuccess(ctx, dep, manifest, nil))
	}
	for _, i := range insts {
		st := i.DesiredState
		if st == "" {
			st = state.Started
		}
		must(s.SaveInstance(ctx, state.Instance{Deployment: dep, Group: i.Group, Index: i.Index, UUID: i.UUID, AZ: i.AZ,
			Bootstrap: i.Bootstrap, DesiredState: st, Ignore: i.Ignore, Spec: Spec(i)}))
		if i.VMCID != "" {
			agentID := i.AgentID
			if agentID == "" {
				agentID = "agent-" + i.UUID
			}
			must(s.SaveVM(ctx, state.VM{CID: i.VMCID, Deployment: dep, Instance: i.UUID, AgentID: agentID, IPs: []string{i.IP},
				Stemcell: "ubuntu-jammy/1.0", SSHHostKey: i.HostKey, Active: true, CreatedAt: i.VMCreatedAt}))
		}
		for _, d := range i.DiskCIDs {
			must(s.SaveDisk(ctx, state.Disk{CID: d, Deployment: dep, Instance: i.UUID, SizeMB: i.DiskSizeMB, Active: true}))
		}
	}
}

// StartAgent starts a real kpaas-agent on loopback for instance i, accepting
// the store's client key (created if needed), and fills in i's IP, host key
// and VM CID so that Seed records a VM kpaas can reach.
func StartAgent(t testing.TB, bin string, s state.Store, i *Instance) *act.Agent {
	t.Helper()
	key, err := cmdutil.EnsureClientKey(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	client := act.Keys{Signer: key.Signer, PEM: key.PrivatePEM, Public: key.Public}
	a := act.Start(t, bin, act.Options{Name: i.Group + "/" + i.UUID, Client: &client})
	i.IP, i.HostKey = a.Addr, a.Host.Public
	if i.VMCID == "" {
		i.VMCID = "vm-" + i.UUID
	}
	return a
}

// ApplyJob installs one job on a's VM whose processes are declared by
// bpmYAML (the bpm.yml "processes:" list) and starts it, as the deploy
// engine would; it does not wait for the processes to run.
func ApplyJob(t testing.TB, a *act.Agent, job, bpmYAML string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := agentclient.NewPool(agentclient.Options{})
	defer pool.Close()
	c := pool.Client(a.Target())
	archive := act.TarGz(map[string]act.File{job + "/config/bpm.yml": {Body: "processes:\n" + bpmYAML}})
	id := act.SHA256(archive)
	if err := c.PutBlob(ctx, id, int64(len(archive)), bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	idx := 0
	spec := protocol.ApplySpec{Deployment: "dep", Name: job, Index: &idx, ID: a.Name, Packages: map[string]protocol.BlobRef{},
		Job:                      protocol.Job{Name: job, Templates: []protocol.JobTemplate{{Name: job, Version: "v1"}}},
		RenderedTemplatesArchive: &protocol.BlobRef{SHA1: "sha256:" + id, BlobstoreID: id}}
	if err := c.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// StopJobs stops a's jobs (get_state then says stopped).
func StopJobs(t testing.TB, a *act.Agent) {
	t.Helper()
	pool := agentclient.NewPool(agentclient.Options{})
	defer pool.Close()
	if err := pool.Client(a.Target()).Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
