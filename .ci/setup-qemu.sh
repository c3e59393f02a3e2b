#!/usr/bin/env bash
# QEMU for cpi/qemu's tests (idempotent): qemu-system-x86 and qemu-utils from
# Debian, the tools the qcow2 stemcell build needs, and the qcow2 stemcell
# itself, built once (2-4 minutes, debootstrap from Debian's archive) and
# cached at $KPAAS_QCOW2_STEMCELL (default /var/cache/kpaas/qcow2-stemcell.tgz),
# where cpi/qemu's tests look for it. Run as root (by .ci/run).
set -euo pipefail
need=()
for p in qemu-system-x86 qemu-utils genisoimage e2fsprogs iproute2 debootstrap extlinux syslinux-common tar; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
modprobe tun 2>/dev/null || true
[ -e /dev/net/tun ] || echo "warning: /dev/net/tun is missing; cpi/qemu cannot give VMs a tap device" >&2

OUT=${KPAAS_QCOW2_STEMCELL:-/var/cache/kpaas/qcow2-stemcell.tgz}
if [ ! -s "$OUT" ]; then
  ROOT=$(cd "$(dirname "$0")/.." && pwd)
  export PATH=$PATH:/usr/local/go/bin
  BIN=$(mktemp -d)
  trap 'rm -rf "$BIN"' EXIT
  (cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/kpaas-agent" ./cmd/kpaas-agent && go build -o "$BIN/kpaas" ./cmd/kpaas)
  mkdir -p "$(dirname "$OUT")"
  "$BIN/kpaas" create-stemcell --os debian --format qcow2 --agent "$BIN/kpaas-agent" -o "$OUT.tmp"
  mv "$OUT.tmp" "$OUT"
fi
