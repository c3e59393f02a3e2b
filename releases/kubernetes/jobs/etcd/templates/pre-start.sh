#!/bin/sh
# pre-start: etcd's data directory on the persistent disk, owned by vcap, 0700
# (etcd refuses a data dir others can read).
set -e
mkdir -p /var/vcap/store/etcd/data /var/vcap/sys/log/etcd
chown vcap:vcap /var/vcap/store/etcd /var/vcap/store/etcd/data /var/vcap/sys/log/etcd
chmod 700 /var/vcap/store/etcd/data
