#!/bin/sh
# pre-start: create the cluster on the persistent disk the first time.
set -e
data=/var/vcap/store/postgres/15
mkdir -p /var/vcap/store/postgres /var/vcap/sys/run/postgres /var/vcap/sys/log/postgres
chown vcap:vcap /var/vcap/store/postgres /var/vcap/sys/run/postgres /var/vcap/sys/log/postgres
if [ ! -f "$data/PG_VERSION" ]; then
  setpriv --reuid=vcap --regid=vcap --init-groups \
    /var/vcap/packages/postgres/bin/initdb -D "$data" -U vcap --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
    >> /var/vcap/sys/log/postgres/initdb.log 2>&1
fi
