#!/bin/sh
# post-start: succeed once the page answers on its health check.
set -e
. /var/vcap/packages/hello-lib/lib/log.sh
if wait_for_http "http://127.0.0.1:{{ p "hello.port" }}/health" {{ p "hello.post_start_timeout" }}; then
  log "post-start {{ spec.name }}/{{ spec.index }}: healthy" >> /var/vcap/sys/log/hello/lifecycle.log
  exit 0
fi
die "hello did not answer on port {{ p "hello.port" }} within {{ p "hello.post_start_timeout" }}s"
