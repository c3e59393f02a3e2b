#!/bin/sh
# post-start: wait until the API server is ready, then apply the release's
# RBAC objects (config/rbac.yml) with the admin certificate.
set -e
i=0
until /var/vcap/jobs/kube-apiserver/bin/healthy 2>/dev/null; do
  i=$((i+1)); [ $i -lt 120 ] || { echo "kube-apiserver: /readyz not ready within 120s (logs in /var/vcap/sys/log/kube-apiserver/)" >&2; exit 1; }
  sleep 1
done
/var/vcap/packages/kubectl/bin/kubectl --kubeconfig /var/vcap/jobs/kube-apiserver/config/admin.kubeconfig \
  apply --server-side --force-conflicts -f /var/vcap/jobs/kube-apiserver/config/rbac.yml
