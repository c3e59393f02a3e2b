package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// DumpFormat is the version of the export format.
const DumpFormat = 1

// ExportOptions choose what an export holds.
type ExportOptions struct {
	// IncludeSecrets puts variable values and VM host private keys in the
	// dump in clear text; without it they are redacted.
	IncludeSecrets bool
}

// Dump is a whole store as JSON: `kpaas state export` writes it, `kpaas state
// import` reads it. A JSON contract: fields are added, never renamed.
type Dump struct {
	Format           int               `json:"format"`
	SchemaVersion    int               `json:"schema_version"`
	ExportedAt       time.Time         `json:"exported_at"`
	Source           string            `json:"source"`
	SecretsIncluded  bool              `json:"secrets_included"`
	Configs          []Config          `json:"configs"`
	Deployments      []Deployment      `json:"deployments"`
	Instances        []Instance        `json:"instances"`
	VMs              []VM              `json:"vms"`
	Disks            []Disk            `json:"disks"`
	OrphanedDisks    []OrphanedDisk    `json:"orphaned_disks"`
	IPs              []IPReservation   `json:"ip_reservations"`
	Stemcells        []Stemcell        `json:"stemcells"`
	Releases         []Release         `json:"releases"`
	CompiledPackages []CompiledPackage `json:"compiled_packages"`
	Variables        []Variable        `json:"variables"`
	Events           []Event           `json:"events"`
	Tasks            []Task            `json:"tasks"`
}

func (b *backend) Export(ctx context.Context, opts ExportOptions) (*Dump, error) {
	d := &Dump{Format: DumpFormat, SchemaVersion: b.schema, ExportedAt: b.now().UTC(), Source: b.location, SecretsIncluded: opts.IncludeSecrets}
	err := b.read(ctx, func(o *ops) error {
		var err error
		if d.Configs, err = o.configs(ctx, `SELECT `+configCols+` FROM configs ORDER BY id`); err != nil {
			return err
		}
		if d.Deployments, err = o.Deployments(ctx); err != nil {
			return err
		}
		for _, dep := range d.Deployments {
			is, err := o.instances(ctx, dep.Name)
			if err != nil {
				return fmt.Errorf("exporting instances of %q: %w", dep.Name, err)
			}
			d.Instances = append(d.Instances, is...)
			vms, err := o.exportVMs(ctx, dep.Name, opts.IncludeSecrets)
			if err != nil {
				return fmt.Errorf("exporting vms of %q: %w", dep.Name, err)
			}
			d.VMs = append(d.VMs, vms...)
			ds, err := o.disks(ctx, dep.Name)
			if err != nil {
				return fmt.Errorf("exporting disks of %q: %w", dep.Name, err)
			}
			d.Disks = append(d.Disks, ds...)
		}
		if d.OrphanedDisks, err = o.OrphanedDisks(ctx); err != nil {
			return err
		}
		if d.IPs, err = o.ips(ctx, ``); err != nil {
			return fmt.Errorf("exporting ip reservations: %w", err)
		}
		if d.Stemcells, err = o.Stemcells(ctx); err != nil {
			return err
		}
		if d.Releases, err = o.Releases(ctx); err != nil {
			return err
		}
		if d.CompiledPackages, err = o.compiledPackages(ctx); err != nil {
			return fmt.Errorf("exporting compiled packages: %w", err)
		}
		if d.Variables, err = o.scanVariables(ctx, opts.IncludeSecrets, `SELECT `+variableCols+` FROM variables ORDER BY id`); err != nil {
			return fmt.Errorf("exporting variables: %w", err)
		}
		if d.Events, err = o.Events(ctx, EventFilter{}); err != nil {
			return err
		}
		for i, j := 0, len(d.Events)-1; i < j; i, j = i+1, j-1 { // oldest first
			d.Events[i], d.Events[j] = d.Events[j], d.Events[i]
		}
		if d.Tasks, err = o.tasks(ctx, `SELECT `+taskCols+` FROM tasks ORDER BY id`); err != nil {
			return fmt.Errorf("exporting tasks: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !opts.IncludeSecrets {
		for i := range d.Configs {
			d.Configs[i].Content = RedactYAML(d.Configs[i].Content)
		}
		for i := range d.Deployments {
			d.Deployments[i].Manifest = RedactYAML(d.Deployments[i].Manifest)
		}
	}
	d.nonNil()
	return d, nil
}

// nonNil makes empty lists [] rather than null in JSON.
func (d *Dump) nonNil() {
	if d.Configs == nil {
		d.Configs = []Config{}
	}
	if d.Deployments == nil {
		d.Deployments = []Deployment{}
	}
	if d.Instances == nil {
		d.Instances = []Instance{}
	}
	if d.VMs == nil {
		d.VMs = []VM{}
	}
	if d.Disks == nil {
		d.Disks = []Disk{}
	}
	if d.OrphanedDisks == nil {
		d.OrphanedDisks = []OrphanedDisk{}
	}
	if d.IPs == nil {
		d.IPs = []IPReservation{}
	}
	if d.Stemcells == nil {
		d.Stemcells = []Stemcell{}
	}
	if d.Releases == nil {
		d.Releases = []Release{}
	}
	if d.CompiledPackages == nil {
		d.CompiledPackages = []CompiledPackage{}
	}
	if d.Variables == nil {
		d.Variables = []Variable{}
	}
	if d.Events == nil {
		d.Events = []Event{}
	}
	if d.Tasks == nil {
		d.Tasks = []Task{}
	}
}

// exportVMs reads VMs keeping the host private key only when secrets are asked for.
func (o *ops) exportVMs(ctx context.Context, deployment string, secrets bool) ([]VM, error) {
	if secrets {
		return o.vms(ctx, deployment)
	}
	rows, err := o.query(ctx, `SELECT cid FROM vms WHERE deployment = ? AND ssh_host_private_key IS NOT NULL ORDER BY cid`, deployment)
	if err != nil {
		return nil, err
	}
	hasKey := map[string]bool{}
	for rows.Next() {
		var cid string
		if err := rows.Scan(&cid); err != nil {
			rows.Close()
			return nil, o.b.wrap(err)
		}
		hasKey[cid] = true
	}
	rows.Close()
	vms, err := o.vmsNoSecrets(ctx, deployment)
	if err != nil {
		return nil, err
	}
	for i := range vms {
		if hasKey[vms[i].CID] {
			vms[i].SSHHostPrivateKey = redacted
		}
	}
	return vms, nil
}

const redacted = "<redacted>"

func (o *ops) vmsNoSecrets(ctx context.Context, deployment string) ([]VM, error) {
	rows, err := o.query(ctx, `SELECT cid, instance, agent_id, ips, stemcell, cloud_properties, ssh_host_key, active, created_at FROM vms WHERE deployment = ? ORDER BY instance, created_at`, deployment)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []VM
	for rows.Next() {
		v := VM{Deployment: deployment}
		var ips, cp string
		var active, at int64
		if err := rows.Scan(&v.CID, &v.Instance, &v.AgentID, &ips, &v.Stemcell, &cp, &v.SSHHostKey, &active, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		if ips != "" {
			v.IPs = splitComma(ips)
		}
		v.CloudProperties, v.Active, v.CreatedAt = rawOut(cp), active != 0, nt(at)
		out = append(out, v)
	}
	return out, o.b.wrap(rows.Err())
}

func (b *backend) isEmpty(ctx context.Context) (bool, error) {
	for _, t := range []string{"configs", "deployments", "stemcells", "releases", "variables", "events", "tasks", "orphaned_disks", "compiled_packages"} {
		var n int64
		if err := b.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t).Scan(&n); err != nil {
			return false, b.at("reading", err)
		}
		if n > 0 {
			return false, nil
		}
	}
	return true, nil
}

// Import loads a dump into an empty store, all or nothing. IDs of configs,
// variables, events and tasks are kept, so references between them hold.
func (b *backend) Import(ctx context.Context, d *Dump) error {
	if d.Format != DumpFormat {
		return fmt.Errorf("importing: the dump has format %d, this kpaas reads format %d", d.Format, DumpFormat)
	}
	if !d.SecretsIncluded {
		return fmt.Errorf("importing: the export of %s has its secrets redacted (variables, host keys, secret values in configs and manifests); export it again with `kpaas state export --include-secrets`", d.Source)
	}
	empty, err := b.isEmpty(ctx)
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("importing into %s: %w (import only into a new store, so nothing is overwritten)", b.location, ErrNotEmpty)
	}
	return b.update(ctx, func(o *ops) error {
		for _, c := range d.Configs {
			if _, err := o.exec(ctx, `INSERT INTO configs (id, type, name, version, content, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				c.ID, string(c.Type), c.Name, c.Version, c.Content, tn(c.CreatedAt), c.CreatedBy); err != nil {
				return fmt.Errorf("importing %s config %q v%d: %w", c.Type, c.Name, c.Version, err)
			}
		}
		for _, dep := range d.Deployments {
			if _, err := o.exec(ctx, `INSERT INTO deployments (name, manifest, serial, created_at, updated_at, last_deployed_at) VALUES (?, ?, ?, ?, ?, ?)`,
				dep.Name, dep.Manifest, dep.Serial, tn(dep.CreatedAt), tn(dep.UpdatedAt), tn(dep.LastDeployedAt)); err != nil {
				return fmt.Errorf("importing deployment %q: %w", dep.Name, err)
			}
			for _, id := range dep.ConfigIDs {
				if _, err := o.exec(ctx, `INSERT INTO deployment_configs (deployment, config_id) VALUES (?, ?)`, dep.Name, id); err != nil {
					return fmt.Errorf("importing config %d of deployment %q: %w", id, dep.Name, err)
				}
			}
		}
		for _, i := range d.Instances {
			if _, err := o.exec(ctx, `INSERT INTO instances (uuid, deployment, group_name, idx, az, bootstrap, desired_state, ignore_flag, spec, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				i.UUID, i.Deployment, i.Group, i.Index, i.AZ, b2i(i.Bootstrap), string(i.DesiredState), b2i(i.Ignore), string(i.Spec), tn(i.UpdatedAt)); err != nil {
				return fmt.Errorf("importing instance %s: %w", i.ID(), err)
			}
		}
		for _, vm := range d.VMs {
			var priv []byte
			if vm.SSHHostPrivateKey != "" {
				if priv, err = o.b.seal(vm.SSHHostPrivateKey, "vm\x00"+vm.CID); err != nil {
					return fmt.Errorf("importing vm %s: %w", vm.CID, err)
				}
			}
			if _, err := o.exec(ctx, `INSERT INTO vms (cid, deployment, instance, agent_id, ips, stemcell, cloud_properties, ssh_host_key, ssh_host_private_key, active, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				vm.CID, vm.Deployment, vm.Instance, vm.AgentID, joinComma(vm.IPs), vm.Stemcell, string(vm.CloudProperties), vm.SSHHostKey, priv, b2i(vm.Active), tn(vm.CreatedAt)); err != nil {
				return fmt.Errorf("importing vm %s: %w", vm.CID, err)
			}
		}
		for _, x := range d.Disks {
			if _, err := o.exec(ctx, `INSERT INTO disks (cid, deployment, instance, name, size_mb, cloud_properties, active, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				x.CID, x.Deployment, x.Instance, x.Name, x.SizeMB, string(x.CloudProperties), b2i(x.Active), tn(x.CreatedAt)); err != nil {
				return fmt.Errorf("importing disk %s: %w", x.CID, err)
			}
		}
		for _, x := range d.OrphanedDisks {
			if _, err := o.exec(ctx, `INSERT INTO orphaned_disks (cid, deployment, instance, az, size_mb, cloud_properties, orphaned_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				x.CID, x.Deployment, x.Instance, x.AZ, x.SizeMB, string(x.CloudProperties), tn(x.OrphanedAt)); err != nil {
				return fmt.Errorf("importing orphaned disk %s: %w", x.CID, err)
			}
		}
		for _, r := range d.IPs {
			if _, err := o.exec(ctx, `INSERT INTO ip_reservations (network, ip, deployment, instance, static, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
				r.Network, r.IP, r.Deployment, r.Instance, b2i(r.Static), tn(r.CreatedAt)); err != nil {
				return fmt.Errorf("importing ip %s on %s: %w", r.IP, r.Network, err)
			}
		}
		for _, s := range d.Stemcells {
			if err := o.SaveStemcell(ctx, s); err != nil {
				return fmt.Errorf("importing: %w", err)
			}
		}
		for _, r := range d.Releases {
			if err := o.SaveRelease(ctx, r); err != nil {
				return fmt.Errorf("importing: %w", err)
			}
		}
		for _, p := range d.CompiledPackages {
			if err := o.SaveCompiledPackage(ctx, p); err != nil {
				return fmt.Errorf("importing: %w", err)
			}
		}
		for _, v := range d.Variables {
			box, err := o.b.seal(v.Value, variableAD(v.Deployment, v.Name))
			if err != nil {
				return fmt.Errorf("importing variable %s: %w", v.Name, err)
			}
			if _, err := o.exec(ctx, `INSERT INTO variables (id, deployment, name, type, value, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
				v.ID, v.Deployment, v.Name, v.Type, box, tn(v.CreatedAt)); err != nil {
				return fmt.Errorf("importing variable %s: %w", v.Name, err)
			}
		}
		for _, e := range d.Events {
			if _, err := o.exec(ctx, `INSERT INTO events (id, `+eventCols[len("id, "):]+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				e.ID, tn(e.Time), e.User, e.Action, e.ObjectType, e.ObjectName, e.Deployment, e.Instance, e.TaskID, e.Error, string(e.Context)); err != nil {
				return fmt.Errorf("importing event %d: %w", e.ID, err)
			}
		}
		for _, t := range d.Tasks {
			if _, err := o.exec(ctx, `INSERT INTO tasks (`+taskCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				t.ID, t.Description, t.Deployment, t.User, string(t.State), tn(t.StartedAt), tn(t.EndedAt), t.Result, t.Error); err != nil {
				return fmt.Errorf("importing task %d: %w", t.ID, err)
			}
		}
		if o.b.d.afterImport != nil {
			if err := o.b.d.afterImport(ctx, o.q.(*sql.Tx)); err != nil {
				return fmt.Errorf("importing: %w", o.b.wrap(err))
			}
		}
		return nil
	})
}
