#!/bin/sh
# smoke-test.sh: check a deployed cluster by hand. Nodes Ready; a Deployment of
# kpaas.local/echo:1 spread over the workers; its ClusterIP Service answering
# through the API server's service proxy (master -> pod routes), from worker/0
# (kube-proxy nftables), and from inside a pod on worker/0 (pod -> Service);
# that pod reaching every other pod directly (pod routes across VMs). Removes
# what it created.
#
#   KUBECONFIG=admin.kubeconfig sh manifests/k-paas/kubernetes/smoke-test.sh [DEPLOYMENT]
#
# KUBECTL (default: releases/kubernetes/src/kubectl/bin/kubectl, else kubectl)
# and KPAAS (default: kpaas) name the binaries; the workers are reached with
# `kpaas ssh` (root on the VM).
set -eu
d=${1:-k-paas-kubernetes}
kpaas=${KPAAS:-kpaas}
kubectl=${KUBECTL:-}
if [ -z "$kubectl" ]; then
	kubectl=$(dirname "$0")/../../../releases/kubernetes/src/kubectl/bin/kubectl
	[ -x "$kubectl" ] || kubectl=kubectl
fi
k() { "$kubectl" "$@"; }
fail() { echo "smoke-test: FAIL: $*" >&2; exit 1; }
t0=$(date +%s)
step() { printf 'smoke-test: %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

step "nodes"
k wait --for=condition=Ready node --all --timeout=120s >/dev/null || fail "not every node is Ready: $(k get nodes --no-headers)"
nodes=$(k get nodes --no-headers | wc -l)
k get nodes -o wide
replicas=$(( nodes * 2 ))

step "Deployment echo ($replicas replicas) and Service echo"
trap 'k delete deployment/echo service/echo --ignore-not-found --wait=false >/dev/null 2>&1 || true' EXIT
k apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, labels: {app: echo}}
spec:
  replicas: $replicas
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: echo}}}
      containers:
      - name: echo
        image: kpaas.local/echo:1
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
YAML
k rollout status deployment/echo --timeout=120s >/dev/null || fail "deployment echo not available: $(k get pods -o wide --no-headers)"
k get pods -l app=echo -o wide
spread=$(k get pods -l app=echo -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | wc -l)
[ "$spread" -eq "$nodes" ] || fail "pods on $spread of $nodes nodes"
pods=$(k get pods -l app=echo -o jsonpath='{range .items[*]}{.metadata.name}{" "}{end}')
ips=$(k get pods -l app=echo -o jsonpath='{range .items[*]}{.status.podIP}{" "}{end}')
svc=$(k get service echo -o jsonpath='{.spec.clusterIP}')

is_pod() { case " $pods " in *" $1 "*) return 0 ;; esac; return 1; }

step "Service through the API server's proxy"
seen=""
for _ in $(seq 1 $(( replicas * 3 ))); do
	r=$(k get --raw /api/v1/namespaces/default/services/echo:80/proxy/) || fail "service proxy"
	is_pod "$r" || fail "service proxy answered '$r'"
	case " $seen " in *" $r "*) ;; *) seen="$seen $r" ;; esac
done
echo "answered by:$seen"
[ $(echo $seen | wc -w) -ge 2 ] || fail "the service proxy reached one pod only"

step "Service $svc from worker/0 and from a pod on worker/0; that pod to every pod"
out=$("$kpaas" ssh -d "$d" worker/0 -c "
set -e
for i in 1 2 3 4; do echo node: \$(curl -sf -m 3 http://$svc/); done
ns=\$(ip netns list | awk '{print \$1}' | head -1)
for i in 1 2 3 4; do echo pod-svc: \$(ip netns exec \$ns curl -sf -m 3 http://$svc/); done
for ip in $ips; do echo pod-pod: \$ip \$(ip netns exec \$ns curl -sf -m 3 http://\$ip:8080/); done
" 2>&1) || fail "on worker/0: $out"
echo "$out"
echo "$out" | grep -q 'node: echo-' || fail "no answer from the Service on worker/0"
echo "$out" | grep -q 'pod-svc: echo-' || fail "no answer from the Service inside a pod"
n=$(echo "$out" | grep -c 'pod-pod: [0-9.]* echo-')
[ "$n" -eq "$replicas" ] || fail "a pod on worker/0 reached $n of $replicas pods"

step "OK"
