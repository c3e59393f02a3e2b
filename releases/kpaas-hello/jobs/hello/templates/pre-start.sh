#!/bin/sh
# pre-start: prepare the document root on the ephemeral disk.
set -e
. /var/vcap/packages/hello-lib/lib/log.sh
mkdir -p /var/vcap/data/hello/www /var/vcap/sys/log/hello
chown -R vcap:vcap /var/vcap/data/hello 2>/dev/null || true
log "pre-start {{ spec.name }}/{{ spec.index }}" >> /var/vcap/sys/log/hello/lifecycle.log
