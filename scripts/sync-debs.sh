#!/bin/sh
# sync-debs.sh RELEASE_DIR
#   Fetch every Debian package listed in RELEASE_DIR/config/blobs.yml into
#   RELEASE_DIR/blobs/ with `apt-get download NAME=VERSION` (apt checks it against
#   the archive's signed index) and check its sha256 against blobs.yml. Blobs
#   already present with the right digest are left alone. Like `bosh sync-blobs`.
# sync-debs.sh --lock RELEASE_DIR DIR PKG...
#   (Re)write the DIR/ entries of config/blobs.yml from the archive's current
#   candidates of PKG... (after a Debian point release changed them).
set -eu
die() { echo "sync-debs: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get not found: the releases package Debian's .debs (run on Debian)"

if [ "${1:-}" = "--lock" ]; then
	[ $# -ge 4 ] || die "usage: sync-debs.sh --lock RELEASE_DIR DIR PKG..."
	rel=$1; rel=$2; dir=$3; shift 3
	tmp=$(mktemp -d); chmod 755 "$tmp"; trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download "$@") || die "apt-get download $* failed (apt-get update first?)"
	out="$rel/config/blobs.yml"; touch "$out"
	# keep the entries of other directories
	awk -v d="$dir/" 'BEGIN{keep=1} /^[^ ]/{keep=(index($0,d)!=1)} keep' "$out" > "$tmp/blobs.yml"
	mkdir -p "$rel/blobs/$dir"
	for f in "$tmp"/*.deb; do
		b=$(basename "$f")
		printf '%s/%s:\n  size: %s\n  sha: sha256:%s\n' "$dir" "$b" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)" >> "$tmp/blobs.yml"
		cp "$f" "$rel/blobs/$dir/$b"
	done
	cp "$tmp/blobs.yml" "$out"
	echo "sync-debs: wrote $out"
	exit 0
fi

rel=${1:?usage: sync-debs.sh RELEASE_DIR}
list="$rel/config/blobs.yml"
[ -f "$list" ] || exit 0
awk '/^[^ #].*:$/{n=substr($0,1,length($0)-1)} /^  sha: /{sub(/^sha256:/,"",$2); print n, $2}' "$list" |
while read -r name sum; do
	f="$rel/blobs/$name"
	if [ -f "$f" ] && echo "$sum  $f" | sha256sum -c --status; then continue; fi
	b=$(basename "$name"); pkg=${b%%_*}; ver=${b#*_}; ver=${ver%_*}; ver=$(echo "$ver" | sed 's/%3a/:/g')
	mkdir -p "$(dirname "$f")"
	echo "sync-debs: apt-get download $pkg=$ver"
	(cd "$(dirname "$f")" && apt-get download -q "$pkg=$ver" >/dev/null) ||
		die "cannot download $pkg=$ver for $f: run apt-get update, or if Debian replaced it, scripts/sync-debs.sh --lock $rel $(dirname "$name") ..."
	echo "$sum  $f" | sha256sum -c --status || die "$f: sha256 differs from $list (not the package kpaas was tested with)"
done
