#!/usr/bin/env bash
# The whole system on a kind cluster: `make kind-demo`.
#
#   1. create the kind cluster "jeffrey" (kind-config.yaml), unless it exists
#   2. build the image and load it into the cluster
#   3. install a small Prometheus (examples/kind/prometheus.yaml)
#   4. create the Jeffrey module Deployments at 0 replicas (examples/kind/modules.yaml)
#   5. install the chart with the built-in Redis (examples/kind/values-kind.yaml)
#   6. apply examples/jeffrey-full-ladder.yaml and watch the climb to PRODUCTION
#
# Needs docker, kind, kubectl (helm is fetched into .tools/bin when missing).
# Environment: KIND_CLUSTER (jeffrey), IMAGE (jeffrey-operator:dev), HELM, SKIP_BUILD=1 to reuse
# a loaded image, WATCH=0 to return instead of watching, WATCH_TIMEOUT (600 s).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KIND_CLUSTER="${KIND_CLUSTER:-jeffrey}"
IMAGE="${IMAGE:-jeffrey-operator:dev}"
CONTEXT="kind-${KIND_CLUSTER}"
RELEASE="${RELEASE:-jeffrey-operator}"
OPERATOR_NS="${OPERATOR_NS:-jeffrey-system}"
HELM="${HELM:-}"
WATCH="${WATCH:-1}"
WATCH_TIMEOUT="${WATCH_TIMEOUT:-600}"

say() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "kind-demo: '$1' is required" >&2; exit 1; }; }

need docker
need kind
need kubectl
if [[ -z "$HELM" ]]; then
  if [[ -x .tools/bin/helm ]]; then HELM=.tools/bin/helm
  elif command -v helm >/dev/null 2>&1; then HELM=helm
  else bash hack/get-helm.sh; HELM=.tools/bin/helm
  fi
fi
k() { kubectl --context "$CONTEXT" "$@"; }

say "kind cluster ${KIND_CLUSTER}"
if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  echo "cluster ${KIND_CLUSTER} exists: reusing it"
else
  kind create cluster --name "$KIND_CLUSTER" --config kind-config.yaml --wait 120s
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  say "build ${IMAGE} and load it into the cluster"
  docker build -t "$IMAGE" .
  kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"
fi

say "Prometheus (namespace jeffrey-monitoring)"
k apply -f examples/kind/prometheus.yaml
k -n jeffrey-monitoring rollout status deployment/prometheus --timeout=180s

say "Jeffrey module Deployments at 0 replicas (namespace jeffrey)"
k apply -f examples/kind/modules.yaml

say "the operator chart with the built-in Redis (namespace ${OPERATOR_NS})"
if [[ -f crds/jeffreyintegrations.jeffreyos.io.yaml ]]; then
  cp crds/jeffreyintegrations.jeffreyos.io.yaml charts/jeffrey-operator/crds/
fi
"$HELM" --kube-context "$CONTEXT" upgrade --install "$RELEASE" charts/jeffrey-operator \
  --namespace "$OPERATOR_NS" --create-namespace \
  -f examples/kind/values-kind.yaml \
  --wait --timeout 5m
# Helm never upgrades CRDs from crds/: apply them so a re-run picks up a changed CRD.
k apply --server-side --force-conflicts -f charts/jeffrey-operator/crds/

say "the JeffreyIntegration (examples/jeffrey-full-ladder.yaml)"
k apply -f examples/jeffrey-full-ladder.yaml

cat <<MSG

The operator now climbs CORE -> COGNITIVE -> EMOTIONAL -> CONSCIOUS -> LOOPS -> PRODUCTION,
one level at a time, each gated on Prometheus. Try:

  kubectl --context ${CONTEXT} -n jeffrey get ji -w
  kubectl --context ${CONTEXT} -n jeffrey describe ji jeffrey
  kubectl --context ${CONTEXT} -n jeffrey get deploy
  kubectl --context ${CONTEXT} -n jeffrey-monitoring port-forward svc/prometheus 9090   # http://localhost:9090

Then make a LOOPS module misbehave and watch the rollback to CORE:  make kind-fault
Delete everything:                                                  make kind-down
MSG

if [[ "$WATCH" == 1 ]]; then
  say "watching the climb (Ctrl-C to stop; ${WATCH_TIMEOUT}s at most)"
  timeout "$WATCH_TIMEOUT" kubectl --context "$CONTEXT" -n jeffrey get ji -w || true
fi
