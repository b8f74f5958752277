#!/usr/bin/env bash
# Node-to-node test in kind: a cluster with two workers, the agent's image and bundle, a
# client and an echo server in an ambient namespace on different nodes; traffic through
# the Service must cross HBONE with the right identities on both sides, a DENY policy
# must refuse it, and a deleted pod must be forgotten. Needs docker, kind and kubectl.
# Deletes the cluster at the end (KEEP=1 keeps it). Each step is printed as it starts.
#   scripts/kind-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cluster="${CLUSTER:-ztunnel-e2e}"
ns="e2e"
image="ztunnel-ts:dev"
ctx="kind-${cluster}"
step_no=0
step() {
  step_no=$((step_no + 1))
  printf '\n== step %d: %s\n' "$step_no" "$*"
}
fail() {
  echo "kind-e2e: FAILED at step ${step_no}: $*" >&2
  exit 1
}
k() { kubectl --context "$ctx" "$@"; }

for tool in docker kind kubectl curl; do
  command -v "$tool" >/dev/null || fail "$tool is needed"
done

cleanup() {
  for pid in "${forwards[@]:-}"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  done
  if [ "${KEEP:-0}" = "1" ]; then
    echo "kind-e2e: KEEP=1: cluster ${cluster} left running (kind delete cluster --name ${cluster})"
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
}
forwards=()
trap cleanup EXIT

step "create the kind cluster ${cluster} (one control plane, two workers)"
kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
kind create cluster --name "$cluster" --config deploy/overlays/kind/cluster.yaml --wait 120s

step "build ${image} and load it into the nodes"
docker build -f deploy/Dockerfile -t "$image" .
kind load docker-image "$image" --name "$cluster"

step "create the mesh CA secret and apply the bundle (kubectl apply -k deploy/overlays/kind)"
kubectl config use-context "$ctx" >/dev/null
deploy/create-cacerts.sh
k apply -k deploy/overlays/kind
k -n istio-system rollout status ds/ztunnel --timeout=180s

mapfile -t workers < <(k get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
[ "${#workers[@]}" -ge 2 ] || fail "expected two worker nodes, found ${#workers[@]}"
client_node="${workers[0]}"
server_node="${workers[1]}"

step "namespace ${ns} labelled ambient; client on ${client_node}, echo server on ${server_node}"
k create namespace "$ns"
k label namespace "$ns" istio.io/dataplane-mode=ambient
k -n "$ns" create serviceaccount client
k -n "$ns" create serviceaccount echo
k -n "$ns" apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: echo, labels: {app: echo}}
spec:
  serviceAccountName: echo
  nodeName: ${server_node}
  containers:
  - name: echo
    image: ${image}
    imagePullPolicy: Never
    command: ["node", "-e", "require('net').createServer((s) => s.pipe(s)).listen(8080)"]
    ports: [{name: tcp-echo, containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: tcp, port: 80, targetPort: tcp-echo}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  serviceAccountName: client
  nodeName: ${client_node}
  containers:
  - name: client
    image: ${image}
    imagePullPolicy: Never
    command: ["node", "-e", "setInterval(() => {}, 1 << 30)"]
EOF
k -n "$ns" wait --for=condition=Ready pod/echo pod/client --timeout=120s
echo_ip="$(k -n "$ns" get pod echo -o jsonpath='{.status.podIP}')"

# One connection from the client pod to the Service: 64 KiB out, the same 64 KiB back.
send() {
  k -n "$ns" exec client -- node -e "
    const net = require('net'), crypto = require('crypto');
    const out = crypto.randomBytes(65536); let back = Buffer.alloc(0);
    const s = net.connect(80, 'echo.${ns}.svc.cluster.local', () => { s.write(out); });
    s.on('data', (c) => { back = Buffer.concat([back, c]); if (back.length === out.length) { s.end(); console.log(back.equals(out) ? 'intact' : 'corrupt'); process.exit(back.equals(out) ? 0 : 1); } });
    s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
    setTimeout(() => { console.log('timeout'); process.exit(1); }, 10000);"
}
agent_on() { k -n istio-system get pods -l app=ztunnel --field-selector "spec.nodeName=$1" -o jsonpath='{.items[0].metadata.name}'; }
forward() {
  k -n istio-system port-forward "pod/$1" "$2:$3" >/dev/null 2>&1 &
  forwards+=("$!")
  for _ in $(seq 50); do curl -sS -o /dev/null "http://127.0.0.1:$2/" 2>/dev/null && return 0; sleep 0.2; done
  fail "port-forward to $1:$3 did not come up"
}

step "traffic through the Service crosses HBONE"
for _ in $(seq 30); do send >/dev/null 2>&1 && break; sleep 1; done
[ "$(send)" = "intact" ] || fail "the echo through echo.${ns}:80 did not come back intact"
client_agent="$(agent_on "$client_node")"
server_agent="$(agent_on "$server_node")"
forward "$client_agent" 25000 15000
forward "$client_agent" 25021 15020
forward "$server_agent" 25020 15020
forward "$server_agent" 26000 15000
curl -fsS http://127.0.0.1:25000/config_dump | grep -q "\"${echo_ip}\"" || fail "the client node's agent does not know the echo pod ${echo_ip}"
metrics="$(curl -fsS http://127.0.0.1:25020/stats/prometheus)"
echo "$metrics" | grep 'istio_tcp_connections_opened_total' | grep 'reporter="destination"' \
  | grep "source_principal=\"spiffe://cluster.local/ns/${ns}/sa/client\"" \
  | grep -q "destination_principal=\"spiffe://cluster.local/ns/${ns}/sa/echo\"" \
  || fail "the server node's metrics show no HBONE connection from the client's identity to the echo's"
curl -fsS http://127.0.0.1:25021/stats/prometheus | grep 'istio_tcp_connections_opened_total' | grep 'reporter="source"' \
  | grep "source_principal=\"spiffe://cluster.local/ns/${ns}/sa/client\"" \
  | grep -q "destination_principal=\"spiffe://cluster.local/ns/${ns}/sa/echo\"" \
  || fail "the client node's metrics show no HBONE connection from the client's identity to the echo's"
echo "kind-e2e: intact, and both agents counted it from spiffe://cluster.local/ns/${ns}/sa/client to .../sa/echo"

step "a DENY AuthorizationPolicy refuses it"
k apply -f - <<EOF
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-echo, namespace: ${ns}}
spec:
  action: DENY
  rules: [{to: [{operation: {ports: ["8080"]}}]}]
EOF
for _ in $(seq 30); do curl -fsS http://127.0.0.1:26000/config_dump | grep -q '"deny-echo"' && break; sleep 1; done
if send >/dev/null 2>&1; then fail "the connection went through despite the DENY policy"; fi
curl -fsS http://127.0.0.1:25020/stats/prometheus | grep 'istio_tcp_connections_failed_total' | grep -q 'response_flags="DENY"' \
  || fail "the connection failed, but the server node's agent counted no policy denial"
echo "kind-e2e: refused by the policy"

step "a deleted pod is forgotten"
k -n "$ns" delete pod echo --wait=true
for _ in $(seq 30); do curl -fsS http://127.0.0.1:25000/config_dump | grep -q "\"${echo_ip}\"" || break; sleep 1; done
if curl -fsS http://127.0.0.1:25000/config_dump | grep -q "\"${echo_ip}\""; then fail "the client node's agent still has ${echo_ip}"; fi

printf '\nkind-e2e: PASSED (%d steps)\n' "$step_no"
