#!/usr/bin/env bash
# Print k8s/callfs.yaml: the chart rendered for users without Helm. `make manifests` writes it;
# tests/chart fails when the committed file differs from this output.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
helm=${HELM:-$root/.tools/helm}
[ -x "$helm" ] || { echo "missing $helm (run: make tools)" >&2; exit 1; }

cat <<'HEADER'
# CallFS as plain Kubernetes manifests, for clusters without Helm. Generated; do not edit.
# Rendered from charts/callfs by `make manifests` (scripts/render-manifests.sh) as
#   helm template callfs charts/callfs --namespace callfs --kube-version 1.34.0 --skip-tests \
#     --set auth.existingSecret=callfs-auth
# that is the chart's default values, except that no Secret is committed here: create them.
#   kubectl create namespace callfs
#   kubectl -n callfs create secret generic callfs-auth \
#     --from-literal=api-keys="$(openssl rand -hex 24)" \
#     --from-literal=internal-proxy-secret="$(openssl rand -hex 24)" \
#     --from-literal=single-use-link-secret="$(openssl rand -hex 24)"
#   kubectl -n callfs create secret generic callfs-database \
#     --from-literal=dsn='postgres://USER:PASSWORD@HOST:5432/callfs?sslmode=require'
#   kubectl apply -f k8s/callfs.yaml
# Redis is expected at redis:6379 (CALLFS_DLM_REDIS_ADDR in the ConfigMap callfs-config).
# For anything else (bundled PostgreSQL and Redis, S3, TLS, ServiceMonitor) use the chart.
HEADER
cd "$root"
"$helm" template callfs charts/callfs --namespace callfs --kube-version 1.34.0 --skip-tests \
  --set auth.existingSecret=callfs-auth
