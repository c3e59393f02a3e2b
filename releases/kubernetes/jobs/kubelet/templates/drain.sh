#!/bin/sh
# drain (BOSH protocol: prints one integer, the seconds to wait, on stdout).
# On an update (job_changed) the node keeps its pods: the kubelet restarts and
# containerd's shims keep the containers. When the jobs stop for good
# (job_shutdown: stop, recreate, scale-down, delete) the node is cordoned and
# drained; when the VM is deleted its Node object is deleted too, so a
# scaled-down worker leaves the cluster. Nothing is tried when the API server
# does not answer (the master is going away too, as in delete-deployment).
. /var/vcap/jobs/kubelet/config/env.sh
mkdir -p $LOG
exec 3>&1 >>$LOG/drain.log 2>&1
echo "$(date -u +%FT%TZ) drain $*: next state $(cat $DATA/next-state 2>/dev/null)"
K="$KUBECTL --request-timeout=10s"
if [ "$1" = job_shutdown ] && [ -s "$KUBECONFIG" ] && $K get node "$NODE_NAME" >/dev/null; then
  $K drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --force \
    --grace-period=10 --timeout={{ p "kubelet.drain_timeout" }}s || echo "drain failed; going on"
  if [ "$(cat $DATA/next-state 2>/dev/null)" = delete ]; then
    $K delete node "$NODE_NAME" --wait=false || echo "delete node failed; going on"
  fi
fi
echo 0 >&3
