#!/bin/sh
# quickstart.sh: deploy kpaas-lite (HAProxy -> 2 app instances -> PostgreSQL)
# on this machine's local cloud. Run as root on Debian bookworm (what `make
# quickstart` runs). Idempotent: a second run changes nothing and is fast.
#
#   KPAAS_STATE   state directory (default ~/.kpaas)
#   QS_DIR        where the stemcell is cached (default <repo>/.quickstart)
#   QS_SKIP_APT=1 do not install Debian packages (they are already there)
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
QS_DIR=${QS_DIR:-$repo/.quickstart}
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
kpaas=$repo/bin/kpaas
t0=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }
die() { echo "quickstart: $*" >&2; exit 1; }
# secret NAME: a generated variable's value, from the state export.
secret() {
	"$kpaas" state export --include-secrets 2>/dev/null |
		awk -v n="\"name\": \"$1\"," 'index($0, n) { f = 1 } f && /"value":/ { sub(/.*"value": "\\"/, ""); sub(/\\"",?$/, ""); print; exit }'
}

main() {
[ "$(id -u)" = 0 ] || die "run as root: the local cloud uses namespaces, a bridge and loop devices (sudo make quickstart)"
[ -x "$GO" ] || die "Go 1.26 not found (looked for go on PATH and /usr/local/go/bin/go): install it from https://go.dev/dl/"

step "Debian packages"
if [ -z "${QS_SKIP_APT:-}" ]; then
	need=""
	for p in debootstrap iproute2 util-linux e2fsprogs tar gzip ca-certificates curl make git; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
	done
	if [ -n "$need" ] || [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep _Packages | head -1)" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -q
	fi
	if [ -n "$need" ]; then
		echo "installing:$need"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
	else
		echo "all installed"
	fi
fi

step "Building kpaas and kpaas-agent"
make -s build GO="$GO"

step "Stemcell (Debian bookworm)"
mkdir -p "$QS_DIR"
# Rebuilt only when what goes into it changed (a new stemcell version makes
# every VM be recreated): the agent built without its version stamp and VCS
# stamp (bin/kpaas-agent's bytes change with every commit; these do not) and
# the stemcell builder's sources.
CGO_ENABLED=0 "$GO" build -trimpath -buildvcs=false -ldflags '-s -w' -o "$QS_DIR/kpaas-agent.unstamped" ./cmd/kpaas-agent
key=$( { sha256sum < "$QS_DIR/kpaas-agent.unstamped"
	for f in stemcells/*.go pkg/cmd/createstemcell/*.go; do
		case $f in *_test.go) ;; *) printf '%s ' "$f"; sha256sum < "$f" ;; esac
	done; } | sha256sum | cut -d' ' -f1)
if [ ! -s "$QS_DIR/stemcell.tgz" ] || [ "$(cat "$QS_DIR/stemcell.key" 2>/dev/null)" != "$key" ]; then
	"$kpaas" create-stemcell --os debian --agent "$repo/bin/kpaas-agent" -o "$QS_DIR/stemcell.tgz.tmp"
	mv "$QS_DIR/stemcell.tgz.tmp" "$QS_DIR/stemcell.tgz"
	echo "$key" > "$QS_DIR/stemcell.key"
else
	echo "$QS_DIR/stemcell.tgz is up to date (agent and stemcell builder unchanged)"
fi
"$kpaas" upload-stemcell "$QS_DIR/stemcell.tgz"

step "Releases (haproxy, postgres, kpaas-app, registry)"
make -s releases GO="$GO"
for r in haproxy postgres kpaas-app registry; do
	"$kpaas" upload-release "releases/$r"
done

step "Cloud-config"
"$kpaas" update-cloud-config manifests/quickstart/cloud-config.yml -n

step "Deploying kpaas-lite"
"$kpaas" deploy -d kpaas-lite manifests/quickstart/kpaas-lite.yml -l manifests/quickstart/vars.yml -n

ip=$(awk '/^haproxy_ip:/{print $2}' manifests/quickstart/vars.yml)
reg=$(awk '/^registry_ip:/{print $2}' manifests/quickstart/vars.yml)
step "Done"
stats_pw=$(secret haproxy_stats_password)
reg_pw=$(secret registry_password)
cat <<MSG
kpaas-lite is running. Point a browser at:

  http://$ip/              the app (each visit is recorded in PostgreSQL)
  http://$ip:8404/stats    HAProxy's stats (user admin, password $stats_pw)
  https://$reg:5000/v2/    the image registry (user admin, password $reg_pw;
                           its CA: bin/kpaas state export --include-secrets, variable registry_ca)

From another machine: ssh -L 8080:$ip:80 root@$(hostname) and open http://localhost:8080/
Remove it all:        bin/kpaas delete-deployment -d kpaas-lite -n
MSG
}

# The whole script is read before it runs: editing it during a run is safe.
main "$@"
