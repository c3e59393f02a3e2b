#!/bin/sh
# pre-start: pod -> Service -> pod on the same bridge needs bridged traffic to
# pass netfilter (per network namespace); forwarding for the pod routes.
mkdir -p /var/vcap/sys/log/kube-proxy
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
echo 1 > /proc/sys/net/ipv4/ip_forward
exit 0
