#!/bin/sh
# Healthy when the routes were synced within the last 30 seconds.
s=/var/vcap/data/pod-routes/synced
[ -f $s ] && [ $(( $(date +%s) - $(stat -c %Y $s) )) -lt 30 ]
