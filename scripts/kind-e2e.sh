#!/usr/bin/env bash
# Node-to-node test in kind: a cluster with two workers, the agent's image and bundle, a
# client and an echo server in an ambient namespace on different nodes; traffic through
# the Service must cross HBONE with the right identities on both sides, a DENY policy
# must refuse it, and a deleted pod must be forgotten. Needs docker, kind, kubectl, curl.
# Two passes on the same cluster, one per bundle (VARIANT=base or VARIANT=controller runs
# one of them only):
#   base        deploy/overlays/kind: the agents read the API server and hold the CA key;
#   controller  deploy/overlays/kind-controller: zt-controller is the CA and the xDS
#               server, and the agents' /config_dump must say so (discovery xds, a remote
#               CA, certificates issued).
# The first pass's bundle and workloads are deleted before the second is applied.
# Deletes the cluster at the end (KEEP=1 keeps it). Each step is printed as it starts.
#   scripts/kind-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cluster="${CLUSTER:-ztunnel-e2e}"
ns="e2e"
image="ztunnel-ts:dev"
ctx="kind-${cluster}"
controller_addr="zt-controller.istio-system.svc:15012"
case "${VARIANT:-all}" in
  all) variants=(base controller) ;;
  base | controller) variants=("$VARIANT") ;;
  *) echo "kind-e2e: VARIANT must be base, controller or all (got ${VARIANT})" >&2; exit 2 ;;
esac
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

stop_forwards() {
  for pid in "${forwards[@]:-}"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  done
  forwards=()
}
cleanup() {
  stop_forwards
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
kubectl config use-context "$ctx" >/dev/null

# The base bundle: each agent reads the API server and signs with the CA key itself.
apply_base() {
  step "[base] create the mesh CA secret and apply the bundle (kubectl apply -k deploy/overlays/kind)"
  deploy/create-cacerts.sh
  k apply -k deploy/overlays/kind
  k -n istio-system rollout status ds/ztunnel --timeout=180s
}

# The controller bundle: zt-controller alone holds the CA key and reads the API server.
apply_controller() {
  step "[controller] create the mesh CA secret and apply the bundle (kubectl apply -k deploy/overlays/kind-controller)"
  deploy/create-cacerts.sh
  k apply -k deploy/overlays/kind-controller
  k -n istio-system rollout status deploy/zt-controller --timeout=180s
  step "[controller] the controller publishes the mesh root (ConfigMap istio-ca-root-cert), the agents start"
  for _ in $(seq 60); do k -n istio-system get configmap istio-ca-root-cert >/dev/null 2>&1 && break; sleep 1; done
  k -n istio-system get configmap istio-ca-root-cert -o jsonpath='{.data.root-cert\.pem}' | grep -q 'BEGIN CERTIFICATE' \
    || fail "zt-controller did not publish the ConfigMap istio-system/istio-ca-root-cert with root-cert.pem"
  k -n istio-system rollout status ds/ztunnel --timeout=180s
  [ "$(k -n istio-system get ds ztunnel -o jsonpath='{.spec.template.spec.automountServiceAccountToken}')" = "false" ] \
    || fail "the agents mount an API token"
  if k get clusterrolebinding ztunnel-discovery >/dev/null 2>&1; then fail "the agents are still bound to ztunnel-discovery"; fi
}

# The agent pod's /config_dump (read inside the pod: its admin port is on the node's
# loopback) must show the mesh from delta xDS and certificates from the remote CA, both at
# the controller's address.
check_controller_dump() {
  k -n istio-system exec "$1" -c ztunnel -- node -e '
    const want = process.argv[1];
    fetch("http://127.0.0.1:15000/config_dump").then((r) => r.json()).then((d) => {
      const c = d.config ?? {}, problems = [];
      if (c.discovery !== "xds") problems.push("discovery is " + c.discovery + ", not xds");
      if (c.xdsAddress !== want) problems.push("xdsAddress is " + c.xdsAddress);
      if (c.caAddress !== want) problems.push("caAddress is " + c.caAddress + " (null: the built-in CA)");
      if (d.source?.kind !== "xds") problems.push("source is " + d.source?.kind);
      else if (d.source.state !== "connected") problems.push("xDS stream is " + d.source.state);
      if (!(d.certificates ?? []).some((x) => x.state === "Available")) problems.push("no certificate issued");
      console.log(problems.length ? problems.join("; ") : "source xds, CA remote, certificates issued");
      process.exit(problems.length ? 1 : 0);
    }).catch((e) => { console.log("config_dump: " + e.message); process.exit(1); });' "$controller_addr"
}

# Removes a pass's workloads and bundle (the agents remove their node rules: no successor).
teardown() {
  step "[$1] delete the workloads and the bundle ($2)"
  stop_forwards
  k delete namespace "$ns" --wait=true --timeout=120s
  k delete -k "$2" --wait=true --timeout=180s --ignore-not-found
  k wait --for=delete namespace/istio-system --timeout=180s 2>/dev/null || true
}

# One pass: the workloads, traffic, policy and forgetting, on whichever bundle is applied.
mesh_checks() {
  local variant="$1"
  mapfile -t workers < <(k get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  [ "${#workers[@]}" -ge 2 ] || fail "expected two worker nodes, found ${#workers[@]}"
  client_node="${workers[0]}"
  server_node="${workers[1]}"

  step "[${variant}] namespace ${ns} labelled ambient; client on ${client_node}, echo server on ${server_node}"
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

  step "[${variant}] traffic through the Service crosses HBONE"
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

  step "[${variant}] a DENY AuthorizationPolicy refuses it"
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

  if [ "$variant" = controller ]; then
    step "[${variant}] both agents' /config_dump: the mesh from zt-controller's xDS, certificates from its CA"
    for agent in "$client_agent" "$server_agent"; do
      out="$(check_controller_dump "$agent")" || fail "${agent}: ${out}"
      echo "kind-e2e: ${agent}: ${out}"
    done
  fi

  step "[${variant}] a deleted pod is forgotten"
  k -n "$ns" delete pod echo --wait=true
  for _ in $(seq 30); do curl -fsS http://127.0.0.1:25000/config_dump | grep -q "\"${echo_ip}\"" || break; sleep 1; done
  if curl -fsS http://127.0.0.1:25000/config_dump | grep -q "\"${echo_ip}\""; then fail "the client node's agent still has ${echo_ip}"; fi
}

for variant in "${variants[@]}"; do
  case "$variant" in
    base) overlay=deploy/overlays/kind; apply_base ;;
    controller) overlay=deploy/overlays/kind-controller; apply_controller ;;
  esac
  mesh_checks "$variant"
  echo "kind-e2e: ${variant}: passed"
  if [ "$variant" != "${variants[-1]}" ]; then teardown "$variant" "$overlay"; fi
done

printf '\nkind-e2e: PASSED (%s; %d steps)\n' "${variants[*]}" "$step_no"
