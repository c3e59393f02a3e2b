# Shared by the kubelet job's scripts.
NODE_NAME={{ spec.ip }}
NODE_IP={{ spec.ip }}
{{- $api := link "kube-apiserver" }}
API_SERVER=https://{{ (index $api.instances 0).address }}:{{ $api.P "kube-apiserver.port" }}
DATA=/var/vcap/data/kubelet
KUBECONFIG=$DATA/kubeconfig
LOG=/var/vcap/sys/log/kubelet
KUBECTL="/var/vcap/packages/kubectl/bin/kubectl --kubeconfig $KUBECONFIG"
export KUBECONFIG
