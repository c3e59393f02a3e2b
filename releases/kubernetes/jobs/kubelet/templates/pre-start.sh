#!/bin/sh
# pre-start: the node's identity. Node name = the instance's IP; the Node
# authorizer wants CN=system:node:<name>, O=system:nodes. Makes a client
# certificate (kubeconfig) and a serving certificate (IP SAN = the instance's
# IP, verified by the API server with --kubelet-certificate-authority), both
# signed by the cluster CA.
set -e
. /var/vcap/jobs/kubelet/config/env.sh
cfg=/var/vcap/jobs/kubelet/config
pki=$DATA/pki
mkdir -p $pki $DATA/root $LOG
chmod 700 $pki
cd $pki
sign() { # sign NAME EXTENSIONS
  openssl genrsa -out $1.key 2048 2>/dev/null
  openssl req -new -key $1.key -subj "/O=system:nodes/CN=system:node:$NODE_NAME" -out $1.csr
  printf '%b\n' "$2" > $1.ext
  openssl x509 -req -in $1.csr -CA $cfg/ca.crt -CAkey $cfg/ca.key -set_serial 0x$(openssl rand -hex 16) \
    -days 3650 -extfile $1.ext -out $1.crt 2>/dev/null
  rm -f $1.csr $1.ext
}
sign node "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth"
sign serving "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:$NODE_IP"
cat > $KUBECONFIG.tmp <<KC
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    certificate-authority: $cfg/ca.crt
    server: $API_SERVER
users:
- name: system:node:$NODE_NAME
  user:
    client-certificate: $pki/node.crt
    client-key: $pki/node.key
contexts:
- name: node
  context: {cluster: cluster, user: system:node:$NODE_NAME}
current-context: node
KC
mv $KUBECONFIG.tmp $KUBECONFIG
rm -f $DATA/next-state
