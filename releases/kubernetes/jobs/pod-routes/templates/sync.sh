#!/bin/bash
# Every few seconds: list the nodes' pod CIDRs and InternalIPs and make the
# routing table hold exactly "CIDR via IP proto N" for every other node;
# routes of this protocol no node claims any more are deleted.
kc={{ p "pod-routes.kubeconfig" }}
proto={{ p "pod-routes.protocol" }}
self={{ spec.ip }}
stamp=/var/vcap/data/pod-routes/synced
mkdir -p /var/vcap/data/pod-routes
kubectl=/var/vcap/packages/kubectl/bin/kubectl
trap 'exit 0' TERM INT
last=""
while :; do
  if [ -s "$kc" ] && out=$($kubectl --kubeconfig "$kc" --request-timeout=5s get nodes -o \
      'jsonpath={range .items[*]}{.spec.podCIDR}{" "}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}' 2>/tmp/pod-routes.err); then
    want=" "
    ok=1
    while read -r cidr ip; do
      [ -n "$cidr" ] && [ -n "$ip" ] || continue
      [ "$ip" = "$self" ] && continue
      want="$want$cidr "
      ip route replace "$cidr" via "$ip" proto "$proto" || ok=0
    done <<< "$out"
    while read -r dst _; do
      [ -n "$dst" ] || continue
      case "$want" in *" $dst "*) ;; *) ip route del "$dst" proto "$proto" || ok=0 ;; esac
    done < <(ip route show proto "$proto")
    if [ "$want" != "$last" ]; then echo "$(date -u +%FT%TZ) routes:$want"; last=$want; fi
    [ $ok = 1 ] && touch $stamp
  else
    echo "$(date -u +%FT%TZ) listing nodes failed: $(tail -1 /tmp/pod-routes.err 2>/dev/null)" >&2
  fi
  sleep {{ p "pod-routes.interval" }} & wait $!
done
