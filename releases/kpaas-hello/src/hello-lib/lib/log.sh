# Shell helpers shared by the kpaas-hello jobs. POSIX sh (the tiny stemcell has busybox only).

# log MESSAGE...: one line on stdout with a UTC timestamp.
log() {
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*"
}

# die MESSAGE...: log to stderr and exit 1.
die() {
  log "ERROR: $*" >&2
  exit 1
}

# wait_for_http URL SECONDS: succeed as soon as URL answers, fail after SECONDS.
wait_for_http() {
  url=$1
  left=$2
  while [ "$left" -gt 0 ]; do
    if wget -q -O /dev/null "$url" 2>/dev/null; then
      return 0
    fi
    sleep 1
    left=$((left - 1))
  done
  return 1
}
