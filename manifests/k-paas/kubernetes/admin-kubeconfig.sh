#!/bin/sh
# admin-kubeconfig.sh: print a kubeconfig for the cluster's admin (O=system:masters)
# made from the deployment's generated variables kubernetes_ca and kubernetes_admin.
#
#   sh manifests/k-paas/kubernetes/admin-kubeconfig.sh [DEPLOYMENT [MASTER_IP [PORT]]] > admin.kubeconfig
#
# DEPLOYMENT defaults to k-paas-kubernetes, MASTER_IP to 10.232.0.10 (local/vars.yml).
# Needs jq and base64; KPAAS names the kpaas binary (default: kpaas on PATH), the
# state comes from KPAAS_STATE / ~/.kpaas as for every kpaas command.
set -eu
d=${1:-k-paas-kubernetes}
ip=${2:-10.232.0.10}
port=${3:-6443}
kpaas=${KPAAS:-kpaas}
command -v jq >/dev/null || { echo "admin-kubeconfig: jq is needed (apt-get install jq)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$("$kpaas" state export --include-secrets -o "$tmp/state.json" 2>&1) || { echo "$out" >&2; exit 1; }
# the newest value of variable $1 of deployment $d, field $2, base64 on one line
val() {
	jq -r --arg d "$d" --arg n "$1" --arg f "$2" \
		'[.variables[] | select(.deployment == $d and .name == $n)] | sort_by(.id) | last | .value | fromjson | .[$f] // empty' \
		"$tmp/state.json" | base64 -w0
}
ca=$(val kubernetes_ca certificate)
crt=$(val kubernetes_admin certificate)
key=$(val kubernetes_admin private_key)
[ -n "$ca" ] && [ -n "$crt" ] && [ -n "$key" ] || {
	echo "admin-kubeconfig: deployment $d has no kubernetes_ca/kubernetes_admin variables (deployed? right KPAAS_STATE?)" >&2
	exit 1
}
cat <<KC
apiVersion: v1
kind: Config
clusters:
- name: $d
  cluster:
    server: https://$ip:$port
    certificate-authority-data: $ca
users:
- name: $d-admin
  user:
    client-certificate-data: $crt
    client-key-data: $key
contexts:
- name: $d
  context: {cluster: $d, user: $d-admin}
current-context: $d
KC
