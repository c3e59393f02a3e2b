#!/bin/sh
# ctl start|stop: a pidfile-supervised loop, as monit-era jobs are written.
RUN_DIR=/var/vcap/sys/run/greeter
LOG_DIR=/var/vcap/sys/log/greeter
DATA_DIR=/var/vcap/data/greeter
PIDFILE=$RUN_DIR/greeter.pid
. /var/vcap/packages/hello-lib/lib/log.sh

case "$1" in
  start)
    mkdir -p "$RUN_DIR" "$LOG_DIR" "$DATA_DIR"
    (
      while true; do
{{- range (link "backend").instances }}
        if wget -q -O "$DATA_DIR/{{ .index }}.html" "http://{{ .address }}:{{ (link "backend").P "hello.port" }}/"; then
          log "fetched {{ .name }}/{{ .index }} at {{ .address }}" >> "$LOG_DIR/greeter.log"
        else
          log "could not fetch {{ .name }}/{{ .index }} at {{ .address }}" >> "$LOG_DIR/greeter.log"
        fi
{{- end }}
        sleep {{ p "greeter.interval" }}
      done
    ) </dev/null >/dev/null 2>&1 &
    echo $! > "$PIDFILE"
    ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      kill "$(cat "$PIDFILE")" 2>/dev/null || true
      rm -f "$PIDFILE"
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 1
    ;;
esac
