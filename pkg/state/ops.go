package state

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ops implements Reader and Writer over the database or one transaction.
type ops struct {
	b  *backend
	q  querier
	tx bool
}

var _ Tx = (*ops)(nil)

func (o *ops) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r, err := o.q.ExecContext(ctx, o.b.d.q(query), args...)
	return r, o.b.wrap(err)
}

func (o *ops) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	r, err := o.q.QueryContext(ctx, o.b.d.q(query), args...)
	return r, o.b.wrap(err)
}

func (o *ops) row(ctx context.Context, query string, args ...any) *sql.Row {
	return o.q.QueryRowContext(ctx, o.b.d.q(query), args...)
}

// write runs fn in a transaction (or in the current one).
func (o *ops) write(ctx context.Context, fn func(o *ops) error) error {
	if o.tx {
		return fn(o)
	}
	return o.b.update(ctx, fn)
}

// bump records a change to a deployment (serial + 1); ErrNotFound if it does not exist.
func (o *ops) bump(ctx context.Context, deployment string) error {
	r, err := o.exec(ctx, `UPDATE deployments SET serial = serial + 1, updated_at = ? WHERE name = ?`, tn(o.b.now()), deployment)
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return notFound("deployment %q", deployment)
	}
	return nil
}

func tn(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nt(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func rawOut(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

func encodeB64(b []byte) string          { return base64.StdEncoding.EncodeToString(b) }
func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func orNow(t time.Time, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// ---- configs

const configCols = `id, type, name, version, content, created_at, created_by`

func scanConfig(sc interface{ Scan(...any) error }) (Config, error) {
	var c Config
	var typ string
	var at int64
	err := sc.Scan(&c.ID, &typ, &c.Name, &c.Version, &c.Content, &at, &c.CreatedBy)
	c.Type, c.CreatedAt = ConfigType(typ), nt(at)
	return c, err
}

func (o *ops) configs(ctx context.Context, query string, args ...any) ([]Config, error) {
	rows, err := o.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reading configs: %w", err)
	}
	defer rows.Close()
	var out []Config
	for rows.Next() {
		c, err := scanConfig(rows)
		if err != nil {
			return nil, fmt.Errorf("reading configs: %w", o.b.wrap(err))
		}
		out = append(out, c)
	}
	return out, o.b.wrap(rows.Err())
}

func (o *ops) Config(ctx context.Context, typ ConfigType, name string) (Config, error) {
	if name == "" {
		name = DefaultConfigName
	}
	c, err := scanConfig(o.row(ctx, `SELECT `+configCols+` FROM configs WHERE type = ? AND name = ? ORDER BY version DESC LIMIT 1`, string(typ), name))
	if errors.Is(err, sql.ErrNoRows) {
		return Config{}, notFound("%s config %q", typ, name)
	}
	if err != nil {
		return Config{}, fmt.Errorf("reading %s config %q: %w", typ, name, o.b.wrap(err))
	}
	return c, nil
}

func (o *ops) ConfigByID(ctx context.Context, id int64) (Config, error) {
	c, err := scanConfig(o.row(ctx, `SELECT `+configCols+` FROM configs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Config{}, notFound("config id %d", id)
	}
	if err != nil {
		return Config{}, fmt.Errorf("reading config id %d: %w", id, o.b.wrap(err))
	}
	return c, nil
}

func (o *ops) Configs(ctx context.Context, typ ConfigType) ([]Config, error) {
	q := `SELECT ` + configCols + ` FROM configs c WHERE version = (SELECT MAX(version) FROM configs m WHERE m.type = c.type AND m.name = c.name)`
	var args []any
	if typ != "" {
		q += ` AND type = ?`
		args = append(args, string(typ))
	}
	return o.configs(ctx, q+` ORDER BY type, name`, args...)
}

func (o *ops) ConfigVersions(ctx context.Context, typ ConfigType, name string) ([]Config, error) {
	if name == "" {
		name = DefaultConfigName
	}
	return o.configs(ctx, `SELECT `+configCols+` FROM configs WHERE type = ? AND name = ? ORDER BY version DESC`, string(typ), name)
}

func (o *ops) SaveConfig(ctx context.Context, c Config) (Config, bool, error) {
	if !c.Type.Valid() {
		return Config{}, false, fmt.Errorf("saving config: unknown config type %q (cloud, runtime or cpi)", c.Type)
	}
	if c.Name == "" {
		c.Name = DefaultConfigName
	}
	var out Config
	var changed bool
	err := o.write(ctx, func(o *ops) error {
		cur, err := o.Config(ctx, c.Type, c.Name)
		if err == nil && cur.Content == c.Content {
			out = cur
			return nil
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		c.Version = cur.Version + 1
		c.CreatedAt = orNow(c.CreatedAt, o.b.now())
		if c.CreatedBy == "" {
			c.CreatedBy = o.b.user + "@" + o.b.host
		}
		if err := o.row(ctx, `INSERT INTO configs (type, name, version, content, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			string(c.Type), c.Name, c.Version, c.Content, tn(c.CreatedAt), c.CreatedBy).Scan(&c.ID); err != nil {
			return fmt.Errorf("saving %s config %q: %w", c.Type, c.Name, o.b.wrap(err))
		}
		out, changed = c, true
		return nil
	})
	return out, changed, err
}

// ---- deployments

func (o *ops) Deployment(ctx context.Context, name string) (Deployment, error) {
	var d Deployment
	var c, u, l int64
	err := o.row(ctx, `SELECT name, manifest, serial, created_at, updated_at, last_deployed_at FROM deployments WHERE name = ?`, name).
		Scan(&d.Name, &d.Manifest, &d.Serial, &c, &u, &l)
	if errors.Is(err, sql.ErrNoRows) {
		return Deployment{}, notFound("deployment %q", name)
	}
	if err != nil {
		return Deployment{}, fmt.Errorf("reading deployment %q: %w", name, o.b.wrap(err))
	}
	d.CreatedAt, d.UpdatedAt, d.LastDeployedAt = nt(c), nt(u), nt(l)
	d.ConfigIDs = []int64{}
	rows, err := o.query(ctx, `SELECT config_id FROM deployment_configs WHERE deployment = ? ORDER BY config_id`, name)
	if err != nil {
		return Deployment{}, fmt.Errorf("reading deployment %q: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return Deployment{}, o.b.wrap(err)
		}
		d.ConfigIDs = append(d.ConfigIDs, id)
	}
	return d, o.b.wrap(rows.Err())
}

func (o *ops) Deployments(ctx context.Context) ([]Deployment, error) {
	rows, err := o.query(ctx, `SELECT name FROM deployments ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing deployments: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, o.b.wrap(err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, o.b.wrap(err)
	}
	out := make([]Deployment, 0, len(names))
	for _, n := range names {
		d, err := o.Deployment(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func (o *ops) CreateDeployment(ctx context.Context, name string) (Deployment, error) {
	if name == "" {
		return Deployment{}, errors.New("creating deployment: a name is needed")
	}
	now := tn(o.b.now())
	if _, err := o.exec(ctx, `INSERT INTO deployments (name, created_at, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`, name, now, now); err != nil {
		return Deployment{}, fmt.Errorf("creating deployment %q: %w", name, err)
	}
	return o.Deployment(ctx, name)
}

func (o *ops) RecordDeploySuccess(ctx context.Context, name, manifest string, configIDs []int64) error {
	return o.write(ctx, func(o *ops) error {
		if err := o.bump(ctx, name); err != nil {
			return fmt.Errorf("recording deploy of %q: %w", name, err)
		}
		if _, err := o.exec(ctx, `UPDATE deployments SET manifest = ?, last_deployed_at = ? WHERE name = ?`, manifest, tn(o.b.now()), name); err != nil {
			return fmt.Errorf("recording deploy of %q: %w", name, err)
		}
		if _, err := o.exec(ctx, `DELETE FROM deployment_configs WHERE deployment = ?`, name); err != nil {
			return fmt.Errorf("recording deploy of %q: %w", name, err)
		}
		for _, id := range configIDs {
			if _, err := o.exec(ctx, `INSERT INTO deployment_configs (deployment, config_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, name, id); err != nil {
				return fmt.Errorf("recording config %d used by %q: %w", id, name, err)
			}
		}
		return nil
	})
}

// sharedLinksKey is the meta row holding a deployment's shared link data.
func sharedLinksKey(deployment string) string { return "shared_links/" + deployment }

func (o *ops) SaveSharedLinks(ctx context.Context, deployment, data string) error {
	return o.write(ctx, func(o *ops) error {
		if _, err := o.exec(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, sharedLinksKey(deployment), data); err != nil {
			return fmt.Errorf("recording the shared links of %q: %w", deployment, err)
		}
		return nil
	})
}

func (o *ops) SharedLinks(ctx context.Context, deployment string) (string, error) {
	var v string
	err := o.row(ctx, `SELECT value FROM meta WHERE key = ?`, sharedLinksKey(deployment)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("shared links of deployment %q", deployment)
	}
	if err != nil {
		return "", fmt.Errorf("reading the shared links of %q: %w", deployment, err)
	}
	return v, nil
}

func (o *ops) DeleteDeployment(ctx context.Context, name string) error {
	return o.write(ctx, func(o *ops) error {
		if _, err := o.exec(ctx, `DELETE FROM meta WHERE key = ?`, sharedLinksKey(name)); err != nil {
			return fmt.Errorf("deleting deployment %q (shared links): %w", name, err)
		}
		for _, t := range []string{"deployment_configs", "instances", "vms", "disks", "ip_reservations", "variables"} {
			if _, err := o.exec(ctx, `DELETE FROM `+t+` WHERE deployment = ?`, name); err != nil {
				return fmt.Errorf("deleting deployment %q (%s): %w", name, t, err)
			}
		}
		r, err := o.exec(ctx, `DELETE FROM deployments WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("deleting deployment %q: %w", name, err)
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return notFound("deployment %q", name)
		}
		return nil
	})
}

// ---- the whole state of one deployment

func (o *ops) LoadDeployment(ctx context.Context, name string) (*DeploymentState, error) {
	if !o.tx {
		var st *DeploymentState
		err := o.b.read(ctx, func(o *ops) error {
			var err error
			st, err = o.LoadDeployment(ctx, name)
			return err
		})
		return st, err
	}
	d, err := o.Deployment(ctx, name)
	if err != nil {
		return nil, err
	}
	st := &DeploymentState{Deployment: d}
	if st.Instances, err = o.instances(ctx, name); err != nil {
		return nil, fmt.Errorf("loading instances of %q: %w", name, err)
	}
	if st.VMs, err = o.vms(ctx, name); err != nil {
		return nil, fmt.Errorf("loading vms of %q: %w", name, err)
	}
	if st.Disks, err = o.disks(ctx, name); err != nil {
		return nil, fmt.Errorf("loading disks of %q: %w", name, err)
	}
	if st.IPs, err = o.ips(ctx, `WHERE deployment = ?`, name); err != nil {
		return nil, fmt.Errorf("loading ip reservations of %q: %w", name, err)
	}
	return st, nil
}

func (o *ops) instances(ctx context.Context, deployment string) ([]Instance, error) {
	rows, err := o.query(ctx, `SELECT uuid, group_name, idx, az, bootstrap, desired_state, ignore_flag, spec, updated_at FROM instances WHERE deployment = ? ORDER BY group_name, idx`, deployment)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Instance, 0, 64)
	for rows.Next() {
		i := Instance{Deployment: deployment}
		var boot, ign, at int64
		var ds, spec string
		if err := rows.Scan(&i.UUID, &i.Group, &i.Index, &i.AZ, &boot, &ds, &ign, &spec, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		i.Bootstrap, i.DesiredState, i.Ignore, i.Spec, i.UpdatedAt = boot != 0, InstanceState(ds), ign != 0, rawOut(spec), nt(at)
		out = append(out, i)
	}
	return out, o.b.wrap(rows.Err())
}

func (o *ops) vms(ctx context.Context, deployment string) ([]VM, error) {
	rows, err := o.query(ctx, `SELECT cid, instance, agent_id, ips, stemcell, cloud_properties, ssh_host_key, ssh_host_private_key, active, created_at FROM vms WHERE deployment = ? ORDER BY instance, created_at`, deployment)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]VM, 0, 64)
	for rows.Next() {
		v := VM{Deployment: deployment}
		var ips, cp string
		var priv []byte
		var active, at int64
		if err := rows.Scan(&v.CID, &v.Instance, &v.AgentID, &ips, &v.Stemcell, &cp, &v.SSHHostKey, &priv, &active, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		v.IPs = splitComma(ips)
		v.CloudProperties, v.Active, v.CreatedAt = rawOut(cp), active != 0, nt(at)
		if len(priv) > 0 {
			if v.SSHHostPrivateKey, err = o.b.unseal(priv, "vm\x00"+v.CID); err != nil {
				return nil, fmt.Errorf("reading the ssh host key of vm %s: %w", v.CID, err)
			}
		}
		out = append(out, v)
	}
	return out, o.b.wrap(rows.Err())
}

func (o *ops) disks(ctx context.Context, deployment string) ([]Disk, error) {
	rows, err := o.query(ctx, `SELECT cid, instance, name, size_mb, cloud_properties, active, created_at FROM disks WHERE deployment = ? ORDER BY instance, created_at`, deployment)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Disk, 0, 64)
	for rows.Next() {
		d := Disk{Deployment: deployment}
		var cp string
		var active, at int64
		if err := rows.Scan(&d.CID, &d.Instance, &d.Name, &d.SizeMB, &cp, &active, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		d.CloudProperties, d.Active, d.CreatedAt = rawOut(cp), active != 0, nt(at)
		out = append(out, d)
	}
	return out, o.b.wrap(rows.Err())
}

func (o *ops) ips(ctx context.Context, where string, args ...any) ([]IPReservation, error) {
	rows, err := o.query(ctx, `SELECT network, ip, deployment, instance, static, created_at FROM ip_reservations `+where+` ORDER BY network, ip`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]IPReservation, 0, 64)
	for rows.Next() {
		var r IPReservation
		var st, at int64
		if err := rows.Scan(&r.Network, &r.IP, &r.Deployment, &r.Instance, &st, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		r.Static, r.CreatedAt = st != 0, nt(at)
		out = append(out, r)
	}
	return out, o.b.wrap(rows.Err())
}

// ---- instances

func (o *ops) SaveInstance(ctx context.Context, i Instance) error {
	if i.UUID == "" || i.Group == "" {
		return fmt.Errorf("saving instance %s: group and uuid are needed", i.Name())
	}
	if i.DesiredState == "" {
		i.DesiredState = Started
	}
	if !i.DesiredState.Valid() {
		return fmt.Errorf("saving instance %s: unknown desired state %q (started, stopped or detached)", i.Name(), i.DesiredState)
	}
	return o.write(ctx, func(o *ops) error {
		if err := o.bump(ctx, i.Deployment); err != nil {
			return fmt.Errorf("saving instance %s: %w", i.ID(), err)
		}
		_, err := o.exec(ctx, `INSERT INTO instances (uuid, deployment, group_name, idx, az, bootstrap, desired_state, ignore_flag, spec, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (uuid) DO UPDATE SET group_name = excluded.group_name, idx = excluded.idx, az = excluded.az,
			bootstrap = excluded.bootstrap, desired_state = excluded.desired_state, ignore_flag = excluded.ignore_flag,
			spec = excluded.spec, updated_at = excluded.updated_at`,
			i.UUID, i.Deployment, i.Group, i.Index, i.AZ, b2i(i.Bootstrap), string(i.DesiredState), b2i(i.Ignore), string(i.Spec), tn(o.b.now()))
		if err != nil {
			return fmt.Errorf("saving instance %s: %w", i.ID(), err)
		}
		return nil
	})
}

func (o *ops) updateInstance(ctx context.Context, deployment, uuid, set string, v any) error {
	return o.write(ctx, func(o *ops) error {
		if err := o.bump(ctx, deployment); err != nil {
			return err
		}
		r, err := o.exec(ctx, `UPDATE instances SET `+set+` = ?, updated_at = ? WHERE deployment = ? AND uuid = ?`, v, tn(o.b.now()), deployment, uuid)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return notFound("instance %s in deployment %q", uuid, deployment)
		}
		return nil
	})
}

func (o *ops) SetInstanceState(ctx context.Context, deployment, uuid string, s InstanceState) error {
	if !s.Valid() {
		return fmt.Errorf("setting instance %s: unknown desired state %q (started, stopped or detached)", uuid, s)
	}
	if err := o.updateInstance(ctx, deployment, uuid, "desired_state", string(s)); err != nil {
		return fmt.Errorf("setting instance %s to %s: %w", uuid, s, err)
	}
	return nil
}

func (o *ops) SetInstanceIgnore(ctx context.Context, deployment, uuid string, ignore bool) error {
	if err := o.updateInstance(ctx, deployment, uuid, "ignore_flag", b2i(ignore)); err != nil {
		return fmt.Errorf("setting ignore on instance %s: %w", uuid, err)
	}
	return nil
}

func (o *ops) DeleteInstance(ctx context.Context, deployment, uuid string) error {
	return o.write(ctx, func(o *ops) error {
		if err := o.bump(ctx, deployment); err != nil {
			return fmt.Errorf("deleting instance %s: %w", uuid, err)
		}
		r, err := o.exec(ctx, `DELETE FROM instances WHERE deployment = ? AND uuid = ?`, deployment, uuid)
		if err != nil {
			return fmt.Errorf("deleting instance %s: %w", uuid, err)
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return notFound("instance %s in deployment %q", uuid, deployment)
		}
		return nil
	})
}

// ---- VMs

func (o *ops) SaveVM(ctx context.Context, vm VM) error {
	if vm.CID == "" {
		return errors.New("saving vm: a CID is needed")
	}
	var priv []byte
	if vm.SSHHostPrivateKey != "" {
		var err error
		if priv, err = o.b.seal(vm.SSHHostPrivateKey, "vm\x00"+vm.CID); err != nil {
			return fmt.Errorf("saving vm %s: %w", vm.CID, err)
		}
	}
	return o.write(ctx, func(o *ops) error {
		if err := o.bump(ctx, vm.Deployment); err != nil {
			return fmt.Errorf("saving vm %s: %w", vm.CID, err)
		}
		_, err := o.exec(ctx, `INSERT INTO vms (cid, deployment, instance, agent_id, ips, stemcell, cloud_properties, ssh_host_key, ssh_host_private_key, active, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (cid) DO UPDATE SET deployment = excluded.deployment, instance = excluded.instance, agent_id = excluded.agent_id,
			ips = excluded.ips, stemcell = excluded.stemcell, cloud_properties = excluded.cloud_properties, ssh_host_key = excluded.ssh_host_key,
			ssh_host_private_key = excluded.ssh_host_private_key, active = excluded.active`,
			vm.CID, vm.Deployment, vm.Instance, vm.AgentID, strings.Join(vm.IPs, ","), vm.Stemcell, string(vm.CloudProperties),
			vm.SSHHostKey, priv, b2i(vm.Active), tn(orNow(vm.CreatedAt, o.b.now())))
		if err != nil {
			return fmt.Errorf("saving vm %s: %w", vm.CID, err)
		}
		return nil
	})
}

// deleteOwned deletes one row of a deployment-owned table by cid and bumps its deployment.
func (o *ops) deleteOwned(ctx context.Context, table, what, cid string) error {
	return o.write(ctx, func(o *ops) error {
		var dep string
		err := o.row(ctx, `SELECT deployment FROM `+table+` WHERE cid = ?`, cid).Scan(&dep)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("%s %s", what, cid)
		}
		if err != nil {
			return fmt.Errorf("deleting %s %s: %w", what, cid, o.b.wrap(err))
		}
		if err := o.bump(ctx, dep); err != nil {
			return fmt.Errorf("deleting %s %s: %w", what, cid, err)
		}
		if _, err := o.exec(ctx, `DELETE FROM `+table+` WHERE cid = ?`, cid); err != nil {
			return fmt.Errorf("deleting %s %s: %w", what, cid, err)
		}
		return nil
	})
}

func (o *ops) DeleteVM(ctx context.Context, cid string) error {
	return o.deleteOwned(ctx, "vms", "vm", cid)
}

// ---- disks

func (o *ops) SaveDisk(ctx context.Context, d Disk) error {
	if d.CID == "" {
		return errors.New("saving disk: a CID is needed")
	}
	return o.write(ctx, func(o *ops) error {
		if err := o.bump(ctx, d.Deployment); err != nil {
			return fmt.Errorf("saving disk %s: %w", d.CID, err)
		}
		_, err := o.exec(ctx, `INSERT INTO disks (cid, deployment, instance, name, size_mb, cloud_properties, active, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (cid) DO UPDATE SET deployment = excluded.deployment, instance = excluded.instance, name = excluded.name,
			size_mb = excluded.size_mb, cloud_properties = excluded.cloud_properties, active = excluded.active`,
			d.CID, d.Deployment, d.Instance, d.Name, d.SizeMB, string(d.CloudProperties), b2i(d.Active), tn(orNow(d.CreatedAt, o.b.now())))
		if err != nil {
			return fmt.Errorf("saving disk %s: %w", d.CID, err)
		}
		return nil
	})
}

func (o *ops) DeleteDisk(ctx context.Context, cid string) error {
	return o.deleteOwned(ctx, "disks", "disk", cid)
}

func (o *ops) OrphanDisk(ctx context.Context, cid string) error {
	return o.write(ctx, func(o *ops) error {
		var d Disk
		var cp string
		err := o.row(ctx, `SELECT deployment, instance, size_mb, cloud_properties FROM disks WHERE cid = ?`, cid).Scan(&d.Deployment, &d.Instance, &d.SizeMB, &cp)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("disk %s", cid)
		}
		if err != nil {
			return fmt.Errorf("orphaning disk %s: %w", cid, o.b.wrap(err))
		}
		inst, az := d.Instance, ""
		var group string
		if err := o.row(ctx, `SELECT group_name, az FROM instances WHERE uuid = ?`, d.Instance).Scan(&group, &az); err == nil {
			inst = group + "/" + d.Instance
		}
		if _, err := o.exec(ctx, `INSERT INTO orphaned_disks (cid, deployment, instance, az, size_mb, cloud_properties, orphaned_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			cid, d.Deployment, inst, az, d.SizeMB, cp, tn(o.b.now())); err != nil {
			return fmt.Errorf("orphaning disk %s: %w", cid, err)
		}
		return o.DeleteDisk(ctx, cid)
	})
}

func (o *ops) OrphanedDisks(ctx context.Context) ([]OrphanedDisk, error) {
	rows, err := o.query(ctx, `SELECT cid, deployment, instance, az, size_mb, cloud_properties, orphaned_at FROM orphaned_disks ORDER BY orphaned_at, cid`)
	if err != nil {
		return nil, fmt.Errorf("listing orphaned disks: %w", err)
	}
	defer rows.Close()
	var out []OrphanedDisk
	for rows.Next() {
		var d OrphanedDisk
		var cp string
		var at int64
		if err := rows.Scan(&d.CID, &d.Deployment, &d.Instance, &d.AZ, &d.SizeMB, &cp, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		d.CloudProperties, d.OrphanedAt = rawOut(cp), nt(at)
		out = append(out, d)
	}
	return out, o.b.wrap(rows.Err())
}

func (o *ops) DeleteOrphanedDisk(ctx context.Context, cid string) error {
	r, err := o.exec(ctx, `DELETE FROM orphaned_disks WHERE cid = ?`, cid)
	if err != nil {
		return fmt.Errorf("deleting orphaned disk %s: %w", cid, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return notFound("orphaned disk %s", cid)
	}
	return nil
}

// ---- IPs

func (o *ops) ReserveIP(ctx context.Context, r IPReservation) error {
	if r.Network == "" || r.IP == "" {
		return errors.New("reserving ip: network and ip are needed")
	}
	return o.write(ctx, func(o *ops) error {
		if err := o.bump(ctx, r.Deployment); err != nil {
			return fmt.Errorf("reserving ip %s on %s: %w", r.IP, r.Network, err)
		}
		res, err := o.exec(ctx, `INSERT INTO ip_reservations (network, ip, deployment, instance, static, created_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (network, ip) DO UPDATE SET static = excluded.static
			WHERE ip_reservations.deployment = excluded.deployment AND ip_reservations.instance = excluded.instance`,
			r.Network, r.IP, r.Deployment, r.Instance, b2i(r.Static), tn(orNow(r.CreatedAt, o.b.now())))
		if err != nil {
			return fmt.Errorf("reserving ip %s on %s: %w", r.IP, r.Network, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			held := &IPConflictError{Network: r.Network, IP: r.IP}
			_ = o.row(ctx, `SELECT deployment, instance FROM ip_reservations WHERE network = ? AND ip = ?`, r.Network, r.IP).Scan(&held.Deployment, &held.Instance)
			return held
		}
		return nil
	})
}

func (o *ops) ReleaseIP(ctx context.Context, network, ip string) error {
	return o.write(ctx, func(o *ops) error {
		var dep string
		err := o.row(ctx, `SELECT deployment FROM ip_reservations WHERE network = ? AND ip = ?`, network, ip).Scan(&dep)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("ip %s on network %s", ip, network)
		}
		if err != nil {
			return fmt.Errorf("releasing ip %s on %s: %w", ip, network, o.b.wrap(err))
		}
		if err := o.bump(ctx, dep); err != nil {
			return err
		}
		if _, err := o.exec(ctx, `DELETE FROM ip_reservations WHERE network = ? AND ip = ?`, network, ip); err != nil {
			return fmt.Errorf("releasing ip %s on %s: %w", ip, network, err)
		}
		return nil
	})
}

func (o *ops) IPReservations(ctx context.Context, network string) ([]IPReservation, error) {
	if network == "" {
		return o.ips(ctx, ``)
	}
	return o.ips(ctx, `WHERE network = ?`, network)
}

// ---- stemcells, releases, compiled packages

func (o *ops) SaveStemcell(ctx context.Context, s Stemcell) error {
	_, err := o.exec(ctx, `INSERT INTO stemcells (name, version, os, cid, cpi, api_version, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name, version, cpi) DO UPDATE SET os = excluded.os, cid = excluded.cid, api_version = excluded.api_version, uploaded_at = excluded.uploaded_at`,
		s.Name, s.Version, s.OS, s.CID, s.CPI, s.APIVersion, tn(orNow(s.UploadedAt, o.b.now())))
	if err != nil {
		return fmt.Errorf("saving stemcell %s/%s: %w", s.Name, s.Version, err)
	}
	return nil
}

func (o *ops) DeleteStemcell(ctx context.Context, name, version, cpi string) error {
	r, err := o.exec(ctx, `DELETE FROM stemcells WHERE name = ? AND version = ? AND cpi = ?`, name, version, cpi)
	if err != nil {
		return fmt.Errorf("deleting stemcell %s/%s: %w", name, version, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return notFound("stemcell %s/%s", name, version)
	}
	return nil
}

func (o *ops) Stemcells(ctx context.Context) ([]Stemcell, error) {
	rows, err := o.query(ctx, `SELECT name, version, os, cid, cpi, api_version, uploaded_at FROM stemcells ORDER BY name, version, cpi`)
	if err != nil {
		return nil, fmt.Errorf("listing stemcells: %w", err)
	}
	defer rows.Close()
	var out []Stemcell
	for rows.Next() {
		var s Stemcell
		var at int64
		if err := rows.Scan(&s.Name, &s.Version, &s.OS, &s.CID, &s.CPI, &s.APIVersion, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		s.UploadedAt = nt(at)
		out = append(out, s)
	}
	return out, o.b.wrap(rows.Err())
}

func (o *ops) SaveRelease(ctx context.Context, r Release) error {
	_, err := o.exec(ctx, `INSERT INTO releases (name, version, commit_hash, sha256, uploaded_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name, version) DO UPDATE SET commit_hash = excluded.commit_hash, sha256 = excluded.sha256, uploaded_at = excluded.uploaded_at`,
		r.Name, r.Version, r.CommitHash, r.SHA256, tn(orNow(r.UploadedAt, o.b.now())))
	if err != nil {
		return fmt.Errorf("saving release %s/%s: %w", r.Name, r.Version, err)
	}
	return nil
}

func (o *ops) DeleteRelease(ctx context.Context, name, version string) error {
	r, err := o.exec(ctx, `DELETE FROM releases WHERE name = ? AND version = ?`, name, version)
	if err != nil {
		return fmt.Errorf("deleting release %s/%s: %w", name, version, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return notFound("release %s/%s", name, version)
	}
	return nil
}

func (o *ops) Releases(ctx context.Context) ([]Release, error) {
	rows, err := o.query(ctx, `SELECT name, version, commit_hash, sha256, uploaded_at FROM releases ORDER BY name, version`)
	if err != nil {
		return nil, fmt.Errorf("listing releases: %w", err)
	}
	defer rows.Close()
	var out []Release
	for rows.Next() {
		var r Release
		var at int64
		if err := rows.Scan(&r.Name, &r.Version, &r.CommitHash, &r.SHA256, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		r.UploadedAt = nt(at)
		out = append(out, r)
	}
	return out, o.b.wrap(rows.Err())
}

func (o *ops) SaveCompiledPackage(ctx context.Context, p CompiledPackage) error {
	_, err := o.exec(ctx, `INSERT INTO compiled_packages (name, version, fingerprint, stemcell_os, stemcell_version, dependency_key, blob_sha256, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (fingerprint, stemcell_os, stemcell_version, dependency_key) DO UPDATE SET name = excluded.name, version = excluded.version, blob_sha256 = excluded.blob_sha256`,
		p.Name, p.Version, p.Fingerprint, p.StemcellOS, p.StemcellVersion, p.DependencyKey, p.BlobSHA256, tn(orNow(p.CreatedAt, o.b.now())))
	if err != nil {
		return fmt.Errorf("saving compiled package %s/%s: %w", p.Name, p.Version, err)
	}
	return nil
}

func (o *ops) CompiledPackage(ctx context.Context, fingerprint, stemcellOS, stemcellVersion, dependencyKey string) (CompiledPackage, error) {
	var p CompiledPackage
	var at int64
	err := o.row(ctx, `SELECT name, version, fingerprint, stemcell_os, stemcell_version, dependency_key, blob_sha256, created_at FROM compiled_packages
		WHERE fingerprint = ? AND stemcell_os = ? AND stemcell_version = ? AND dependency_key = ?`, fingerprint, stemcellOS, stemcellVersion, dependencyKey).
		Scan(&p.Name, &p.Version, &p.Fingerprint, &p.StemcellOS, &p.StemcellVersion, &p.DependencyKey, &p.BlobSHA256, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return CompiledPackage{}, notFound("compiled package %s for %s/%s", fingerprint, stemcellOS, stemcellVersion)
	}
	if err != nil {
		return CompiledPackage{}, fmt.Errorf("reading compiled package %s: %w", fingerprint, o.b.wrap(err))
	}
	p.CreatedAt = nt(at)
	return p, nil
}

func (o *ops) compiledPackages(ctx context.Context) ([]CompiledPackage, error) {
	rows, err := o.query(ctx, `SELECT name, version, fingerprint, stemcell_os, stemcell_version, dependency_key, blob_sha256, created_at FROM compiled_packages ORDER BY name, version, stemcell_os, stemcell_version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []CompiledPackage
	for rows.Next() {
		var p CompiledPackage
		var at int64
		if err := rows.Scan(&p.Name, &p.Version, &p.Fingerprint, &p.StemcellOS, &p.StemcellVersion, &p.DependencyKey, &p.BlobSHA256, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		p.CreatedAt = nt(at)
		out = append(out, p)
	}
	return out, o.b.wrap(rows.Err())
}

// ---- variables

func variableAD(deployment, name string) string { return "variable\x00" + deployment + "\x00" + name }

func (o *ops) PutVariable(ctx context.Context, v Variable) (int64, error) {
	if v.Name == "" {
		return 0, errors.New("saving variable: a name is needed")
	}
	box, err := o.b.seal(v.Value, variableAD(v.Deployment, v.Name))
	if err != nil {
		return 0, fmt.Errorf("saving variable %s: %w", v.Name, err)
	}
	var id int64
	if err := o.row(ctx, `INSERT INTO variables (deployment, name, type, value, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		v.Deployment, v.Name, v.Type, box, tn(orNow(v.CreatedAt, o.b.now()))).Scan(&id); err != nil {
		return 0, fmt.Errorf("saving variable %s: %w", v.Name, o.b.wrap(err))
	}
	return id, nil
}

func (o *ops) scanVariables(ctx context.Context, decrypt bool, query string, args ...any) ([]Variable, error) {
	rows, err := o.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Variable
	for rows.Next() {
		var v Variable
		var box []byte
		var at int64
		if err := rows.Scan(&v.ID, &v.Deployment, &v.Name, &v.Type, &box, &at); err != nil {
			return nil, o.b.wrap(err)
		}
		v.CreatedAt = nt(at)
		if decrypt {
			if v.Value, err = o.b.unseal(box, variableAD(v.Deployment, v.Name)); err != nil {
				return nil, fmt.Errorf("reading variable %s: %w", v.Name, err)
			}
		} else {
			v.Redacted = true
		}
		out = append(out, v)
	}
	return out, o.b.wrap(rows.Err())
}

const variableCols = `id, deployment, name, type, value, created_at`

func (o *ops) Variable(ctx context.Context, deployment, name string) (Variable, error) {
	vs, err := o.scanVariables(ctx, true, `SELECT `+variableCols+` FROM variables WHERE deployment = ? AND name = ? ORDER BY id DESC LIMIT 1`, deployment, name)
	if err != nil {
		return Variable{}, fmt.Errorf("reading variable %s: %w", name, err)
	}
	if len(vs) == 0 {
		return Variable{}, notFound("variable %s", name)
	}
	return vs[0], nil
}

func (o *ops) Variables(ctx context.Context, deployment string) ([]Variable, error) {
	vs, err := o.scanVariables(ctx, true, `SELECT `+variableCols+` FROM variables v WHERE deployment = ?
		AND id = (SELECT MAX(id) FROM variables m WHERE m.deployment = v.deployment AND m.name = v.name) ORDER BY name`, deployment)
	if err != nil {
		return nil, fmt.Errorf("reading variables of %q: %w", deployment, err)
	}
	return vs, nil
}

// ---- events

const eventCols = `id, happened_at, username, action, object_type, object_name, deployment, instance, task_id, error, context`

// eventChunk is how many events go in one multi-row INSERT (10 values each,
// well under SQLite's and PostgreSQL's limits on bound parameters).
const eventChunk = 500

func (o *ops) AppendEvents(ctx context.Context, events ...Event) ([]int64, error) {
	ids := make([]int64, 0, len(events))
	if len(events) == 0 {
		return ids, nil
	}
	insert := func(o *ops) error {
		for start := 0; start < len(events); start += eventChunk {
			chunk := events[start:min(start+eventChunk, len(events))]
			var q strings.Builder
			q.WriteString(`INSERT INTO events (happened_at, username, action, object_type, object_name, deployment, instance, task_id, error, context) VALUES `)
			args := make([]any, 0, len(chunk)*10)
			for i, e := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
				if e.User == "" {
					e.User = o.b.user + "@" + o.b.host
				}
				args = append(args, tn(orNow(e.Time, o.b.now())), e.User, e.Action, e.ObjectType, e.ObjectName, e.Deployment, e.Instance, e.TaskID, e.Error, string(e.Context))
			}
			q.WriteString(" RETURNING id")
			rows, err := o.query(ctx, q.String(), args...)
			if err != nil {
				return fmt.Errorf("recording %d events: %w", len(chunk), err)
			}
			got := make([]int64, 0, len(chunk))
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return o.b.wrap(err)
				}
				got = append(got, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("recording %d events: %w", len(chunk), o.b.wrap(err))
			}
			// IDs grow in row order within one statement; RETURNING need not keep it.
			slices.Sort(got)
			ids = append(ids, got...)
		}
		return nil
	}
	if len(events) <= eventChunk && !o.tx {
		return ids, insert(o) // one statement: atomic on its own
	}
	return ids, o.write(ctx, insert)
}

func (o *ops) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.Deployment != "" {
		add("deployment = ?", f.Deployment)
	}
	if f.Instance != "" {
		add("(instance = ? OR instance LIKE ?)", f.Instance)
		args = append(args, "%/"+f.Instance)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if !f.After.IsZero() {
		add("happened_at > ?", tn(f.After))
	}
	if !f.Before.IsZero() {
		add("happened_at < ?", tn(f.Before))
	}
	if f.BeforeID > 0 {
		add("id < ?", f.BeforeID)
	}
	q := `SELECT ` + eventCols + ` FROM events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY id DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	rows, err := o.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		var c string
		if err := rows.Scan(&e.ID, &at, &e.User, &e.Action, &e.ObjectType, &e.ObjectName, &e.Deployment, &e.Instance, &e.TaskID, &e.Error, &c); err != nil {
			return nil, o.b.wrap(err)
		}
		e.Time, e.Context = nt(at), rawOut(c)
		out = append(out, e)
	}
	return out, o.b.wrap(rows.Err())
}

// ---- tasks

func (o *ops) CreateTask(ctx context.Context, t Task) (int64, error) {
	if t.State == "" {
		t.State = TaskProcessing
	}
	if t.User == "" {
		t.User = o.b.user + "@" + o.b.host
	}
	var id int64
	if err := o.row(ctx, `INSERT INTO tasks (description, deployment, username, state, started_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		t.Description, t.Deployment, t.User, string(t.State), tn(orNow(t.StartedAt, o.b.now()))).Scan(&id); err != nil {
		return 0, fmt.Errorf("recording task %q: %w", t.Description, o.b.wrap(err))
	}
	return id, nil
}

func (o *ops) FinishTask(ctx context.Context, id int64, st TaskState, result, errMsg string) error {
	r, err := o.exec(ctx, `UPDATE tasks SET state = ?, ended_at = ?, result = ?, error = ? WHERE id = ?`, string(st), tn(o.b.now()), result, errMsg, id)
	if err != nil {
		return fmt.Errorf("finishing task %d: %w", id, err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return notFound("task %d", id)
	}
	return nil
}

const taskCols = `id, description, deployment, username, state, started_at, ended_at, result, error`

func (o *ops) tasks(ctx context.Context, query string, args ...any) ([]Task, error) {
	rows, err := o.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Task
	for rows.Next() {
		var t Task
		var st string
		var s, e int64
		if err := rows.Scan(&t.ID, &t.Description, &t.Deployment, &t.User, &st, &s, &e, &t.Result, &t.Error); err != nil {
			return nil, o.b.wrap(err)
		}
		t.State, t.StartedAt, t.EndedAt = TaskState(st), nt(s), nt(e)
		out = append(out, t)
	}
	return out, o.b.wrap(rows.Err())
}

func (o *ops) Task(ctx context.Context, id int64) (Task, error) {
	ts, err := o.tasks(ctx, `SELECT `+taskCols+` FROM tasks WHERE id = ?`, id)
	if err != nil {
		return Task{}, fmt.Errorf("reading task %d: %w", id, err)
	}
	if len(ts) == 0 {
		return Task{}, notFound("task %d", id)
	}
	return ts[0], nil
}

func (o *ops) Tasks(ctx context.Context, deployment string, limit int) ([]Task, error) {
	q, args := `SELECT `+taskCols+` FROM tasks`, []any{}
	if deployment != "" {
		q += ` WHERE deployment = ?`
		args = append(args, deployment)
	}
	q += ` ORDER BY id DESC`
	if limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, limit)
	}
	ts, err := o.tasks(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}
	return ts, nil
}

func splitComma(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func joinComma(ss []string) string { return strings.Join(ss, ",") }
