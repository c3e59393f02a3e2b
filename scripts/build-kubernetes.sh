#!/bin/sh
# build-kubernetes.sh: make the inputs of releases/kubernetes that are never
# committed (like `bosh sync-blobs` plus a source build):
#   - kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#     kube-proxy and kubectl from k8s.io/kubernetes (src/build/kubernetes),
#     etcd (src/build/etcd) and containerd v2 (src/build/containerd), static
#     binaries at the versions pinned in config/versions.env and the go.mod
#     files, whose go.sum the go command checks every module against;
#   - the pause and echo images (src/k8s-images);
#   - Debian's runc, CNI plugins and nftables (.debs checked against
#     config/blobs.yml by sync-debs.sh).
# Each binary must report its pinned version. Nothing is rebuilt when the
# inputs did not change since the last build (src/.build-stamp).
#
#   GO      the go command (default: go on PATH, else /usr/local/go/bin/go)
#   FORCE=1 rebuild even when up to date
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
rel=$repo/releases/kubernetes
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
die() { echo "build-kubernetes: $*" >&2; exit 1; }
[ -x "$GO" ] || die "Go not found (looked for go on PATH and /usr/local/go/bin/go)"
. "$rel/config/versions.env"
t0=$(date +%s)
step() { printf 'build-kubernetes: %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

sh "$repo/scripts/sync-debs.sh" "$rel"

k8s_bins="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
outputs=""
for b in $k8s_bins etcd; do outputs="$outputs $rel/src/$b/bin/$b"; done
for b in containerd containerd-shim-runc-v2 ctr; do outputs="$outputs $rel/src/containerd/bin/$b"; done
outputs="$outputs $rel/src/k8s-images/images/pause.tar $rel/src/k8s-images/images/echo.tar"

stamp=$( { "$GO" version; cat "$0" "$rel/config/versions.env"; cat "$rel"/src/build/*/go.mod "$rel"/src/build/*/go.sum; cat "$rel"/src/k8s-images/*/*.go; } | sha256sum | cut -d' ' -f1)
uptodate=1
for f in $outputs; do [ -s "$f" ] || uptodate=0; done
if [ "${FORCE:-}" != 1 ] && [ $uptodate = 1 ] && [ "$(cat "$rel/src/.build-stamp" 2>/dev/null)" = "$stamp" ]; then
	echo "build-kubernetes: binaries are up to date (v$KUBERNETES_VERSION, etcd $ETCD_VERSION, containerd $CONTAINERD_VERSION)"
	exit 0
fi
rm -f "$rel/src/.build-stamp"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# version: the same check the release's users would make: BIN ARGS must print WANT.
version() {
	want=$1; shift
	got=$("$@" 2>&1 | head -3) || die "$* failed: $got"
	case "$got" in *"$want"*) ;; *) die "$1 reports '$got', want $want";; esac
}

minor=${KUBERNETES_VERSION#*.}; minor=${minor%%.*}
step "Kubernetes v$KUBERNETES_VERSION (a cold Go build cache takes about 6 minutes)"
grep -q "k8s.io/kubernetes v$KUBERNETES_VERSION\$" "$rel/src/build/kubernetes/go.mod" ||
	die "src/build/kubernetes/go.mod does not require k8s.io/kubernetes v$KUBERNETES_VERSION (config/versions.env)"
ld="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1"
ld="$ld -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=v$KUBERNETES_VERSION"
pkgs=""
for b in $k8s_bins; do pkgs="$pkgs k8s.io/kubernetes/cmd/$b"; done
(cd "$rel/src/build/kubernetes" && "$GO" build -trimpath -ldflags "$ld" -o "$tmp/" $pkgs)
for b in $k8s_bins; do
	[ "$b" = kubectl ] || version "Kubernetes v$KUBERNETES_VERSION" "$tmp/$b" --version
done
version "v$KUBERNETES_VERSION" "$tmp/kubectl" version --client

step "etcd $ETCD_VERSION"
grep -q "go.etcd.io/etcd/server/v3 v$ETCD_VERSION\$" "$rel/src/build/etcd/go.mod" ||
	die "src/build/etcd/go.mod does not require etcd v$ETCD_VERSION (config/versions.env)"
(cd "$rel/src/build/etcd" && "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
version "etcd Version: $ETCD_VERSION" "$tmp/etcd" --version

step "containerd $CONTAINERD_VERSION"
grep -q "github.com/containerd/containerd/v2 v$CONTAINERD_VERSION\$" "$rel/src/build/containerd/go.mod" ||
	die "src/build/containerd/go.mod does not require containerd v$CONTAINERD_VERSION (config/versions.env)"
ld="-s -w -X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION"
(cd "$rel/src/build/containerd" && "$GO" build -trimpath -ldflags "$ld" -o "$tmp/" \
	github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr)
version "v$CONTAINERD_VERSION" "$tmp/containerd" --version

step "images kpaas.local/pause:1 and kpaas.local/echo:1"
mkdir -p "$tmp/images"
(cd "$repo" && "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/images/" ./releases/kubernetes/src/k8s-images/pause ./releases/kubernetes/src/k8s-images/echo ./releases/kubernetes/src/k8s-images/mkimage)
"$tmp/images/mkimage" -binary "$tmp/images/pause" -name kpaas.local/pause:1 -o "$tmp/images/pause.tar"
"$tmp/images/mkimage" -binary "$tmp/images/echo" -name kpaas.local/echo:1 -port 8080 -o "$tmp/images/echo.tar"

# install: only now, so an interrupted build leaves the previous binaries
for b in $k8s_bins etcd; do
	mkdir -p "$rel/src/$b/bin"; mv "$tmp/$b" "$rel/src/$b/bin/$b"
done
mkdir -p "$rel/src/containerd/bin" "$rel/src/k8s-images/images"
for b in containerd containerd-shim-runc-v2 ctr; do mv "$tmp/$b" "$rel/src/containerd/bin/$b"; done
mv "$tmp/images/pause.tar" "$tmp/images/echo.tar" "$rel/src/k8s-images/images/"
echo "$stamp" > "$rel/src/.build-stamp"
step "done: releases/kubernetes is ready for \`kpaas create-release\` / \`kpaas upload-release releases/kubernetes\`"
