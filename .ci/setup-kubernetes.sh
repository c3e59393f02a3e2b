#!/usr/bin/env bash
# The Kubernetes e2e stage (e2e/kubernetes_test.go, issue 13), run by .ci/run
# as root before `make test` (idempotent):
#  - Debian packages: util-linux (unshare, nsenter), iproute2, e2fsprogs,
#    debootstrap (the test's Debian stemcell, cached in /var/cache/kpaas) and
#    what scripts/build-kubernetes.sh needs to fetch the Debian .debs (apt);
#  - the release's inputs: scripts/build-kubernetes.sh builds kube-*, etcd,
#    containerd and kubectl from the Go module proxy into the gitignored
#    releases/kubernetes/src/*/bin (about 6 minutes on 2 cores from a cold Go
#    cache, seconds when nothing changed) and fetches runc, the CNI plugins
#    and nftables from Debian's archive.
# Under CI=true TestKubernetes fails (not skips) when the binaries are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

need=()
for p in util-linux iproute2 e2fsprogs debootstrap ca-certificates tar gzip; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ] || [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep _Packages | head -1)" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if [ ! -f scripts/build-kubernetes.sh ]; then
  echo "setup-kubernetes: scripts/build-kubernetes.sh is missing: the Kubernetes release cannot be built" >&2
  exit 1
fi
start=$(date +%s)
sh scripts/build-kubernetes.sh
echo "setup-kubernetes: releases/kubernetes inputs ready in $(( $(date +%s) - start ))s"
