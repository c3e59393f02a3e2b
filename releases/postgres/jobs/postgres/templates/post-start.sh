#!/bin/sh
# post-start: wait until PostgreSQL accepts connections, then create or update
# the roles and databases the manifest lists.
set -e
bin=/var/vcap/packages/postgres/bin
sock=/var/vcap/sys/run/postgres
i=0
until setpriv --reuid=vcap --regid=vcap --init-groups $bin/pg_isready -q -h $sock -p {{ p "postgres.port" }}; do
  i=$((i+1)); [ $i -lt 60 ] || { echo "postgres did not accept connections within 60s" >&2; exit 1; }
  sleep 1
done
setpriv --reuid=vcap --regid=vcap --init-groups \
  $bin/psql -v ON_ERROR_STOP=1 -q -h $sock -p {{ p "postgres.port" }} -U vcap -d postgres -f /var/vcap/jobs/postgres/config/setup.sql
