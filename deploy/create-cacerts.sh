#!/usr/bin/env bash
# The mesh CA as Istio's `cacerts` layout (ca-cert.pem, ca-key.pem, root-cert.pem,
# cert-chain.pem): a self-signed RSA root every node's agent signs workload certificates
# with. By default it becomes the Secret istio-system/cacerts in the current kubectl
# context (replaced if it exists); --out DIR only writes the four files.
#   deploy/create-cacerts.sh [--trust-domain cluster.local] [--days 3650] [--out DIR]
set -euo pipefail

trust_domain="cluster.local"
days=3650
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --trust-domain) trust_domain="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "create-cacerts: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
command -v openssl >/dev/null || { echo "create-cacerts: openssl is needed" >&2; exit 1; }

dir="$out"
if [ -z "$dir" ]; then
  command -v kubectl >/dev/null || { echo "create-cacerts: kubectl is needed (or use --out DIR)" >&2; exit 1; }
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
  -subj "/O=${trust_domain}/CN=ztunnel-ts mesh root" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$dir/ca-key.pem" -out "$dir/ca-cert.pem" 2>/dev/null
cp "$dir/ca-cert.pem" "$dir/root-cert.pem"
cp "$dir/ca-cert.pem" "$dir/cert-chain.pem"
chmod 600 "$dir/ca-key.pem"

if [ -n "$out" ]; then
  echo "create-cacerts: wrote ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem to $out"
  exit 0
fi
kubectl get namespace istio-system >/dev/null 2>&1 || kubectl create namespace istio-system
kubectl -n istio-system create secret generic cacerts \
  --from-file="$dir/ca-cert.pem" --from-file="$dir/ca-key.pem" \
  --from-file="$dir/root-cert.pem" --from-file="$dir/cert-chain.pem" \
  --dry-run=client -o yaml | kubectl apply -f -
echo "create-cacerts: Secret istio-system/cacerts holds the mesh CA (trust domain $trust_domain)"
