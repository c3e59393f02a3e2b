#!/bin/sh
# writer: keep a heartbeat on the persistent disk.
STORE=${STORE_DIR:-/var/vcap/store/store-writer}
mkdir -p "$STORE"
while true; do
  date -u +%s > "$STORE/heartbeat.tmp" && mv "$STORE/heartbeat.tmp" "$STORE/heartbeat"
  sleep {{ p "store_writer.interval" }}
done
