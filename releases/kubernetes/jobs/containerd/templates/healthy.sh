#!/bin/sh
# containerd is healthy when it answers on its socket.
exec /var/vcap/packages/containerd/bin/ctr --address /var/vcap/sys/run/containerd/containerd.sock version >/dev/null
