#!/bin/sh
# post-start: wait until the node is registered, then make it schedulable
# again (a stop drains/cordons it).
. /var/vcap/jobs/kubelet/config/env.sh
i=0
until $KUBECTL get node "$NODE_NAME" >/dev/null 2>&1; do
  i=$((i+1)); [ $i -lt 120 ] || { echo "node $NODE_NAME did not register with $API_SERVER within 120s (logs in $LOG/)" >&2; exit 1; }
  sleep 1
done
$KUBECTL uncordon "$NODE_NAME"
