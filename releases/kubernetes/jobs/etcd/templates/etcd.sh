#!/bin/bash
# Runs etcd. On TERM/INT it first waits (up to 15 s) for a kube-apiserver on
# this VM to exit: the agent stops every process of the VM at once, and an API
# server whose etcd is gone takes its whole shutdown timeout to stop. etcd
# runs in its own process group (set -m) so the agent's signal to this
# script's group does not reach it directly.
set -m
/var/vcap/packages/etcd/bin/etcd "$@" &
pid=$!
stop() {
  for _ in $(seq 1 30); do
    pgrep -x kube-apiserver >/dev/null || break
    sleep 0.5
  done
  kill -TERM "$pid" 2>/dev/null
}
trap stop TERM INT
rc=0
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid"
  rc=$?
done
exit $rc
