#!/bin/sh
# ruby renders ERB job templates (pkg/render/erb): Debian's ruby 3.x, standard library only.
set -eu
if command -v ruby >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends ruby >/dev/null
ruby -v
