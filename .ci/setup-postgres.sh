#!/usr/bin/env bash
# Installs PostgreSQL from Debian's packages and starts a cluster of its own
# ("kpaas", port 5433) listening on 127.0.0.1 only, with a role and database
# for the state store tests. Idempotent; run as root (by .ci/run).
#
# The tests find the server through the URL this script writes to
# /run/kpaas-test-postgres.url (or $KPAAS_TEST_POSTGRES, which wins). When the
# file is there, the PostgreSQL tests run and fail if the server is down; when
# it is absent they skip with a one-line reason.
set -euo pipefail

PORT=${KPAAS_PG_PORT:-5433}
CLUSTER=kpaas
ROLE=kpaas_test
PASS=kpaas_test
DB=kpaas_test
URLFILE=/run/kpaas-test-postgres.url

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_createcluster >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
VER=$(ls /usr/lib/postgresql | sort -V | tail -1)

if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VER $CLUSTER"; then
  pg_createcluster "$VER" "$CLUSTER" -p "$PORT" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
fi
CONFDIR=/etc/postgresql/$VER/$CLUSTER
sed -i -e '/^listen_addresses/d' -e '/^port/d' -e '/^fsync/d' -e '/^max_connections/d' "$CONFDIR/postgresql.conf"
mkdir -p "$CONFDIR/conf.d"
cat > "$CONFDIR/conf.d/kpaas-test.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
max_connections = 200
CONF

if ! pg_lsclusters -h | awk -v v="$VER" -v c="$CLUSTER" '$1==v && $2==c {print $4}' | grep -qx online; then
  pg_ctlcluster "$VER" "$CLUSTER" start
else
  pg_ctlcluster "$VER" "$CLUSTER" reload
fi

psql_admin() { su postgres -c "psql -X -q -p $PORT -v ON_ERROR_STOP=1 $*"; }
for i in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1 -p $PORT" && break
  sleep 1
done
if ! su postgres -c "psql -X -tA -p $PORT -c \"SELECT 1 FROM pg_roles WHERE rolname='$ROLE'\"" | grep -q 1; then
  psql_admin "-c \"CREATE ROLE $ROLE LOGIN PASSWORD '$PASS'\""
fi
if ! su postgres -c "psql -X -tA -p $PORT -c \"SELECT 1 FROM pg_database WHERE datname='$DB'\"" | grep -q 1; then
  psql_admin "-c \"CREATE DATABASE $DB OWNER $ROLE\""
fi

echo "postgres://$ROLE:$PASS@127.0.0.1:$PORT/$DB?sslmode=disable" > "$URLFILE"
echo "PostgreSQL $VER cluster $CLUSTER on 127.0.0.1:$PORT; test URL in $URLFILE"
