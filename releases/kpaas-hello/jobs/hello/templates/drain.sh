#!/bin/sh
# drain JOB_CHANGE HASH_CHANGE [PACKAGES...]: log why, then tell the agent how long to wait.
mkdir -p /var/vcap/sys/log/hello
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) drain $*" >> /var/vcap/sys/log/hello/lifecycle.log
echo {{ p "hello.drain_seconds" }}
