package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// StateEnv names the environment variable that sets the store's location.
const StateEnv = "KPAAS_STATE"

// ResolveLocation picks the store's location: the --state flag, then
// $KPAAS_STATE, then ~/.kpaas.
func ResolveLocation(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if v := os.Getenv(StateEnv); v != "" {
		return v, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("cannot find the home directory for the default state store ~/.kpaas: set --state DIR or KPAAS_STATE")
	}
	return filepath.Join(home, ".kpaas"), nil
}

// IsPostgres reports whether a location names a PostgreSQL database.
func IsPostgres(location string) bool {
	return strings.HasPrefix(location, "postgres://") || strings.HasPrefix(location, "postgresql://")
}

// Open opens the store at location: postgres://... for PostgreSQL, anything
// else is the directory of an embedded (SQLite) store.
func Open(ctx context.Context, location string, opts Options) (Store, error) {
	if IsPostgres(location) {
		return OpenPostgres(ctx, location, opts)
	}
	return OpenSQLite(ctx, location, opts)
}
