#!/usr/bin/env bash
# Make a Jeffrey module misbehave on the kind cluster and watch the operator roll back to CORE:
# `make kind-fault`.
#
# The module simulator takes faults on POST :8000/fault {"kind": ...}. We send it from inside the
# pod with the image's own Python (no port-forward, no curl needed in the image).
#
# Environment: KIND_CLUSTER (jeffrey), FAULT (flood | latency | errors | memory | crash | none),
# MODULE (awareness-loop, a LOOPS module), NAMESPACE (jeffrey), WATCH=0 to return at once,
# WATCH_TIMEOUT (300 s).
set -euo pipefail

KIND_CLUSTER="${KIND_CLUSTER:-jeffrey}"
CONTEXT="kind-${KIND_CLUSTER}"
FAULT="${FAULT:-flood}"
MODULE="${MODULE:-awareness-loop}"
NAMESPACE="${NAMESPACE:-jeffrey}"
WATCH="${WATCH:-1}"
WATCH_TIMEOUT="${WATCH_TIMEOUT:-300}"

case "$FAULT" in
  flood|latency|errors|memory|crash|none) ;;
  *) echo "kind-fault: FAULT must be flood, latency, errors, memory, crash or none" >&2; exit 2 ;;
esac

k() { kubectl --context "$CONTEXT" "$@"; }

ready="$(k -n "$NAMESPACE" get deployment "$MODULE" -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)"
if [[ -z "$ready" || "$ready" == 0 ]]; then
  echo "kind-fault: ${NAMESPACE}/${MODULE} has no ready pod yet: wait until the integration has" >&2
  echo "reached its level (kubectl --context ${CONTEXT} -n ${NAMESPACE} get ji -w)" >&2
  exit 1
fi

echo "==> POST /fault {\"kind\": \"${FAULT}\"} to ${NAMESPACE}/${MODULE}"
k -n "$NAMESPACE" exec "deployment/${MODULE}" -c module -- python -c '
import json, sys, urllib.request
req = urllib.request.Request(
    "http://127.0.0.1:8000/fault",
    data=json.dumps({"kind": sys.argv[1]}).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(req, timeout=10) as rsp:
    print(rsp.status, rsp.read().decode())
' "$FAULT"

cat <<MSG

The default gates (defaultGates: true) see the fault in Prometheus; after the gate's "for" the
operator scales every level above CORE to 0 and records why in status.lastRollback:

  kubectl --context ${CONTEXT} -n ${NAMESPACE} get ji -w
  kubectl --context ${CONTEXT} -n ${NAMESPACE} get ji jeffrey -o jsonpath='{.status.lastRollback}'
  kubectl --context ${CONTEXT} -n ${NAMESPACE} get events --field-selector involvedObject.kind=JeffreyIntegration

Retry the climb once the fault is gone (the faulty pod is scaled away by the rollback):

  kubectl --context ${CONTEXT} -n ${NAMESPACE} annotate ji jeffrey jeffreyos.io/retry="\$(date +%s)" --overwrite
MSG

if [[ "$WATCH" == 1 ]]; then
  echo
  echo "==> watching (Ctrl-C to stop; ${WATCH_TIMEOUT}s at most)"
  timeout "$WATCH_TIMEOUT" kubectl --context "$CONTEXT" -n "$NAMESPACE" get ji -w || true
fi
