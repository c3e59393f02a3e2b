#!/bin/sh
# pre-start: record the first creation once, count every start.
set -e
STORE=${STORE_DIR:-/var/vcap/store/store-writer}
mkdir -p "$STORE"
if [ ! -f "$STORE/created" ]; then
  echo "{{ spec.id }} $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STORE/created"
fi
starts=$(cat "$STORE/starts" 2>/dev/null || echo 0)
echo $((starts + 1)) > "$STORE/starts"
chown -R vcap:vcap "$STORE" 2>/dev/null || true
