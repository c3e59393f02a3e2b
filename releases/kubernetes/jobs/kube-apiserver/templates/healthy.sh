#!/bin/sh
# The API server is healthy when https://127.0.0.1:PORT/readyz answers 2xx.
exec curl -sSf -o /dev/null -m 3 --cacert /var/vcap/jobs/kube-apiserver/config/ca.crt \
  --resolve kubernetes:{{ p "kube-apiserver.port" }}:127.0.0.1 https://kubernetes:{{ p "kube-apiserver.port" }}/readyz
