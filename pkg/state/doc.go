// Package state owns everything kpaas knows about an environment: configs,
// deployments and their last successful manifest, instances, VMs, disks (and
// orphans), IP reservations, stemcells, releases, compiled packages, variables
// (encrypted at rest), events, tasks and locks.
//
// One Store interface, two implementations sharing one schema: SQLite (pure Go,
// the embedded default under ~/.kpaas) and PostgreSQL (postgres://...). Both run
// the same versioned migrations, one step at a time, and refuse a store written
// by a newer kpaas. Every mutation is recorded as it happens; multi-row changes
// go through Store.Update, which is all or nothing.
//
// state must not import command, engine or CPI packages: it only stores.
package state
