#!/bin/sh
# pre-stop: remember whether the VM goes away (BOSH_VM_NEXT_STATE=delete) for
# the drain script, which the agent runs next without that variable.
. /var/vcap/jobs/kubelet/config/env.sh
mkdir -p $DATA
echo "${BOSH_VM_NEXT_STATE:-keep}" > $DATA/next-state
