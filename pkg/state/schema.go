package state

import "strings"

// migration is one step of the schema. Steps are applied in order, each in
// its own transaction, and recorded in schema_migrations.
type migration struct {
	version int
	name    string
	stmts   []string // with {{ID}}, {{INT}}, {{BLOB}} for the dialect to fill in
}

// migrations is the schema's history. Append only: never edit a released step.
var migrations = []migration{
	{1, "initial schema", []string{
		`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
		`CREATE TABLE configs (
			id {{ID}},
			type TEXT NOT NULL,
			name TEXT NOT NULL,
			version {{INT}} NOT NULL,
			content TEXT NOT NULL,
			created_at {{INT}} NOT NULL,
			created_by TEXT NOT NULL DEFAULT '',
			UNIQUE (type, name, version))`,
		`CREATE TABLE deployments (
			name TEXT PRIMARY KEY,
			manifest TEXT NOT NULL DEFAULT '',
			serial {{INT}} NOT NULL DEFAULT 0,
			created_at {{INT}} NOT NULL,
			updated_at {{INT}} NOT NULL,
			last_deployed_at {{INT}} NOT NULL DEFAULT 0)`,
		`CREATE TABLE deployment_configs (
			deployment TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
			config_id {{INT}} NOT NULL REFERENCES configs (id),
			PRIMARY KEY (deployment, config_id))`,
		`CREATE TABLE instances (
			uuid TEXT PRIMARY KEY,
			deployment TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
			group_name TEXT NOT NULL,
			idx {{INT}} NOT NULL,
			az TEXT NOT NULL DEFAULT '',
			bootstrap {{INT}} NOT NULL DEFAULT 0,
			desired_state TEXT NOT NULL,
			ignore_flag {{INT}} NOT NULL DEFAULT 0,
			spec TEXT NOT NULL DEFAULT '',
			updated_at {{INT}} NOT NULL,
			UNIQUE (deployment, group_name, idx))`,
		`CREATE TABLE vms (
			cid TEXT PRIMARY KEY,
			deployment TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
			instance TEXT NOT NULL DEFAULT '',
			agent_id TEXT NOT NULL DEFAULT '',
			ips TEXT NOT NULL DEFAULT '',
			stemcell TEXT NOT NULL DEFAULT '',
			cloud_properties TEXT NOT NULL DEFAULT '',
			ssh_host_key TEXT NOT NULL DEFAULT '',
			ssh_host_private_key {{BLOB}},
			active {{INT}} NOT NULL DEFAULT 0,
			created_at {{INT}} NOT NULL)`,
		`CREATE INDEX vms_deployment ON vms (deployment, instance, created_at)`,
		`CREATE TABLE disks (
			cid TEXT PRIMARY KEY,
			deployment TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
			instance TEXT NOT NULL DEFAULT '',
			name TEXT NOT NULL DEFAULT '',
			size_mb {{INT}} NOT NULL DEFAULT 0,
			cloud_properties TEXT NOT NULL DEFAULT '',
			active {{INT}} NOT NULL DEFAULT 0,
			created_at {{INT}} NOT NULL)`,
		`CREATE INDEX disks_deployment ON disks (deployment, instance, created_at)`,
		`CREATE TABLE orphaned_disks (
			cid TEXT PRIMARY KEY,
			deployment TEXT NOT NULL,
			instance TEXT NOT NULL DEFAULT '',
			az TEXT NOT NULL DEFAULT '',
			size_mb {{INT}} NOT NULL DEFAULT 0,
			cloud_properties TEXT NOT NULL DEFAULT '',
			orphaned_at {{INT}} NOT NULL)`,
		`CREATE TABLE ip_reservations (
			network TEXT NOT NULL,
			ip TEXT NOT NULL,
			deployment TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
			instance TEXT NOT NULL DEFAULT '',
			static {{INT}} NOT NULL DEFAULT 0,
			created_at {{INT}} NOT NULL,
			PRIMARY KEY (network, ip))`,
		`CREATE INDEX ip_reservations_deployment ON ip_reservations (deployment, network, ip)`,
		`CREATE TABLE stemcells (
			name TEXT NOT NULL,
			version TEXT NOT NULL,
			os TEXT NOT NULL DEFAULT '',
			cid TEXT NOT NULL,
			cpi TEXT NOT NULL DEFAULT '',
			api_version {{INT}} NOT NULL DEFAULT 0,
			uploaded_at {{INT}} NOT NULL,
			PRIMARY KEY (name, version, cpi))`,
		`CREATE TABLE releases (
			name TEXT NOT NULL,
			version TEXT NOT NULL,
			commit_hash TEXT NOT NULL DEFAULT '',
			sha256 TEXT NOT NULL DEFAULT '',
			uploaded_at {{INT}} NOT NULL,
			PRIMARY KEY (name, version))`,
		`CREATE TABLE compiled_packages (
			name TEXT NOT NULL,
			version TEXT NOT NULL,
			fingerprint TEXT NOT NULL,
			stemcell_os TEXT NOT NULL,
			stemcell_version TEXT NOT NULL,
			dependency_key TEXT NOT NULL DEFAULT '',
			blob_sha256 TEXT NOT NULL,
			created_at {{INT}} NOT NULL,
			PRIMARY KEY (fingerprint, stemcell_os, stemcell_version, dependency_key))`,
		`CREATE TABLE variables (
			id {{ID}},
			deployment TEXT NOT NULL DEFAULT '',
			name TEXT NOT NULL,
			type TEXT NOT NULL DEFAULT '',
			value {{BLOB}} NOT NULL,
			created_at {{INT}} NOT NULL)`,
		`CREATE INDEX variables_name ON variables (deployment, name, id)`,
		`CREATE TABLE events (
			id {{ID}},
			happened_at {{INT}} NOT NULL,
			username TEXT NOT NULL DEFAULT '',
			action TEXT NOT NULL DEFAULT '',
			object_type TEXT NOT NULL DEFAULT '',
			object_name TEXT NOT NULL DEFAULT '',
			deployment TEXT NOT NULL DEFAULT '',
			instance TEXT NOT NULL DEFAULT '',
			task_id {{INT}} NOT NULL DEFAULT 0,
			error TEXT NOT NULL DEFAULT '',
			context TEXT NOT NULL DEFAULT '')`,
		`CREATE INDEX events_time ON events (happened_at)`,
		`CREATE INDEX events_deployment ON events (deployment, id)`,
		`CREATE TABLE tasks (
			id {{ID}},
			description TEXT NOT NULL DEFAULT '',
			deployment TEXT NOT NULL DEFAULT '',
			username TEXT NOT NULL DEFAULT '',
			state TEXT NOT NULL,
			started_at {{INT}} NOT NULL,
			ended_at {{INT}} NOT NULL DEFAULT 0,
			result TEXT NOT NULL DEFAULT '',
			error TEXT NOT NULL DEFAULT '')`,
		`CREATE TABLE locks (
			name TEXT PRIMARY KEY,
			holder TEXT NOT NULL,
			pid {{INT}} NOT NULL,
			op TEXT NOT NULL,
			started_at {{INT}} NOT NULL,
			expires_at {{INT}} NOT NULL,
			token TEXT NOT NULL)`,
	}},
}

// KnownSchemaVersion is the newest schema this kpaas knows.
func KnownSchemaVersion() int { return len(migrations) }

func (d *dialect) render(stmt string) string {
	return strings.NewReplacer("{{ID}}", d.idType, "{{INT}}", d.intType, "{{BLOB}}", d.blobType).Replace(stmt)
}
