#!/usr/bin/env bash
# Packages the local cloud's tests need (idempotent): busybox-static for the
# tiny test stemcell, iproute2 for the host-side leak checks, e2fsprogs to
# format and grow persistent disk images, util-linux for losetup, tar to
# unpack stemcells, runc to prove a container_host VM runs containers.
# debootstrap is for `kpaas create-stemcell --os debian`,
# which the default test run does not build.
set -euo pipefail
need=()
for p in busybox-static iproute2 e2fsprogs util-linux mount tar debootstrap runc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
# Loop devices for persistent disks.
modprobe loop 2>/dev/null || true
[ -e /dev/loop-control ] || echo "warning: /dev/loop-control is missing; the local cloud's disk tests will fail" >&2
# overlayfs for VM root filesystems.
modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || echo "warning: overlayfs is not available; the local cloud cannot start VMs" >&2
