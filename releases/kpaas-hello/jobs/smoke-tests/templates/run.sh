#!/bin/sh
# run: the errand. Exit 0 when every hello instance serves the expected text.
. /var/vcap/packages/hello-lib/lib/log.sh
failed=0
{{- range (link "backend").instances }}
page=$(wget -q -O - "http://{{ .address }}:{{ (link "backend").P "hello.port" }}/" 2>&1)
if echo "$page" | grep -q "{{ p "smoke_tests.expect" }}"; then
  log "ok {{ .name }}/{{ .index }} ({{ .address }})"
else
  log "FAILED {{ .name }}/{{ .index }} ({{ .address }}): expected '{{ p "smoke_tests.expect" }}'"
  failed=$((failed + 1))
fi
{{- end }}
if [ "$failed" -gt 0 ]; then
  die "$failed instance(s) failed"
fi
log "all {{ len (link "backend").instances }} instance(s) passed"
