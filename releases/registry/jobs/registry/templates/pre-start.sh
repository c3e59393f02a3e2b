#!/bin/sh
# pre-start: the image store on the persistent disk, the htpasswd file from the password.
set -e
mkdir -p /var/vcap/store/registry /var/vcap/data/registry /var/vcap/sys/log/registry
/var/vcap/packages/registry-htpasswd/bin/registry-htpasswd '{{ p "registry.username" }}' /var/vcap/data/registry/htpasswd < /var/vcap/jobs/registry/config/password
chown -R vcap:vcap /var/vcap/store/registry /var/vcap/data/registry /var/vcap/sys/log/registry
chmod 640 /var/vcap/jobs/registry/config/password /var/vcap/jobs/registry/config/tls.key
chgrp vcap /var/vcap/jobs/registry/config/tls.key
