#!/usr/bin/env bash
# A real OpenStack (Keystone, Placement, Glance, Neutron, Nova with the fake
# virt driver, Cinder; Debian 12's Zed packages) on loopback for the
# cpi/openstack integration tests: ../shared/openstack/setup.sh, about 4.5
# minutes and 2 GiB on a fresh machine. The tests find the cloud through the
# demorc path recorded in /tmp/kpaas-ci/openstack-rc (or OS_AUTH_URL when set).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${KPAAS_SHARED:-$(pwd)/../shared}
setup=$shared/openstack/setup.sh
pointer=/tmp/kpaas-ci/openstack-rc
export BASE=${OSTACK_BASE:-/tmp/ostack}

if [ ! -f "$setup" ]; then
  echo "setup-openstack: $setup not found; the cpi/openstack integration tests will skip"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "setup-openstack: needs root (apt-get, MariaDB, RabbitMQ); the cpi/openstack integration tests will skip"
  exit 0
fi
if [ -f "$BASE/demorc" ] && curl -sf --max-time 3 http://127.0.0.1:5000/v3 >/dev/null 2>&1 \
   && curl -sf --max-time 3 http://127.0.0.1:8774/ >/dev/null 2>&1; then
  echo "setup-openstack: an OpenStack from $BASE is already answering; reusing it"
else
  start=$(date +%s)
  bash "$setup" all > /tmp/kpaas-ci-openstack-setup.log 2>&1 || {
    echo "setup-openstack: $setup failed; last lines of /tmp/kpaas-ci-openstack-setup.log:" >&2
    tail -40 /tmp/kpaas-ci-openstack-setup.log >&2
    exit 1
  }
  echo "setup-openstack: OpenStack ready in $(( $(date +%s) - start ))s (log: /tmp/kpaas-ci-openstack-setup.log)"
fi
mkdir -p "$(dirname "$pointer")"
echo "$BASE/demorc" > "$pointer"
echo "setup-openstack: recorded $BASE/demorc in $pointer"
