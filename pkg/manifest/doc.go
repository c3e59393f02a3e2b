// Package manifest owns the typed model of the BOSH v2 documents kpaas reads:
// deployment manifests (including the create-env flavour with resource_pools and
// cloud_provider), cloud-configs, runtime-configs (addons and their
// include/exclude placement rules) and cpi-configs.
//
// Documents are parsed from YAML bytes through yaml.v3 nodes, so that every
// problem is reported with file:line and a readable YAML path such as
// `instance_groups[2] (router).vm_type`. Parsing collects every type problem at
// once; Validate methods collect every semantic problem at once (as a
// *multierror.Error of *Problem); unknown keys are warnings, returned beside the
// error, never errors.
//
// A value that is a ((placeholder)) where a typed value (an int, a list, a map) is
// expected parses as the zero value and is recorded in the node's Meta: before
// interpolation such a value is not an error, and checks that need it are skipped.
// After interpolation no placeholders remain and every check applies.
//
// The package also holds the pure helpers the planner needs: update-block values
// (CountOrPercent, WatchTime), subnet IP ranges as IPSet, addon placement.
//
// It does no I/O (callers read files) and must not import pkg/interpolate, the
// state store, the engine or any CPI.
package manifest
