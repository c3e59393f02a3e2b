#!/bin/sh
# post-start: wait for containerd, then import the sandbox and smoke-test
# images into the CRI namespace (k8s.io).
set -e
ctr="/var/vcap/packages/containerd/bin/ctr --address /var/vcap/sys/run/containerd/containerd.sock"
i=0
until $ctr version >/dev/null 2>&1; do
  i=$((i+1)); [ $i -lt 60 ] || { echo "containerd did not answer within 60s (logs in /var/vcap/sys/log/containerd/)" >&2; exit 1; }
  sleep 1
done
{{- range p "containerd.import_images" }}
$ctr -n k8s.io images import {{ . }}
{{- end }}
