"""The climb and the rollback, for real: kind, Prometheus, the module simulators, the chart.

Prepared by ``hack/kind-demo.sh`` (``make kind-demo WATCH=0``): namespace ``jeffrey`` holds the
module Deployments and ``examples/jeffrey-full-ladder.yaml``; the operator runs in
``jeffrey-system`` with the built-in Redis; Prometheus in ``jeffrey-monitoring``.
The tests run in file order: the rollback test starts from the climb's PRODUCTION.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import ROOT, Kube, wait_for

pytestmark = pytest.mark.e2e

NAMESPACE = "jeffrey"
NAME = "jeffrey"
OPERATOR_NS = "jeffrey-system"
OPERATOR = "jeffrey-operator"
EXAMPLE = ROOT / "examples" / "jeffrey-full-ladder.yaml"
FAULTY_MODULE = "awareness-loop"  # a LOOPS module
LEVELS = ["CORE", "COGNITIVE", "EMOTIONAL", "CONSCIOUS", "LOOPS", "PRODUCTION"]


def integration(kube: Kube) -> dict[str, Any]:
    return kube.json("-n", NAMESPACE, "get", "jeffreyintegration", NAME)


def status(kube: Kube) -> dict[str, Any]:
    return integration(kube).get("status") or {}


def ladder() -> dict[str, list[dict[str, Any]]]:
    spec = yaml.safe_load(EXAMPLE.read_text())["spec"]
    return {lvl["level"]: lvl["modules"] for lvl in spec["levels"]}


def deployment(kube: Kube, name: str) -> dict[str, Any]:
    return kube.json("-n", NAMESPACE, "get", "deployment", name)


def prometheus_query(kube: Kube, query: str) -> list[dict[str, Any]]:
    """Ask the demo Prometheus through the API server's service proxy (no port-forward)."""
    path = (
        "/api/v1/namespaces/jeffrey-monitoring/services/prometheus:http/proxy/api/v1/query?"
        + urllib.parse.urlencode({"query": query})
    )
    body = json.loads(kube.run("get", "--raw", path))
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def post_fault(kube: Kube, module: str, kind: str) -> str:
    script = (
        "import json, sys, urllib.request\n"
        "req = urllib.request.Request('http://127.0.0.1:8000/fault', method='POST',\n"
        "    data=json.dumps({'kind': sys.argv[1]}).encode(), headers={'Content-Type': 'application/json'})\n"
        "print(urllib.request.urlopen(req, timeout=10).status)\n"
    )
    return kube.run(
        "-n", NAMESPACE, "exec", f"deployment/{module}", "-c", "module", "--", "python", "-c", script, kind
    )


@pytest.mark.timeout(300)
def test_operator_and_crd_are_installed(kube: Kube) -> None:
    crd = kube.json("get", "crd", "jeffreyintegrations.jeffreyos.io")
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established.get("Established") == "True"
    kube.run("-n", OPERATOR_NS, "rollout", "status", f"deployment/{OPERATOR}", "--timeout=180s", timeout=200)
    dep = kube.json("-n", OPERATOR_NS, "get", "deployment", OPERATOR)
    assert dep["status"].get("availableReplicas", 0) >= 1
    # The chart's namespaced mode: a Role in the watched namespace, no cluster-wide workload rights.
    kube.run("-n", NAMESPACE, "get", "role", OPERATOR)
    kube.run("-n", OPERATOR_NS, "get", "lease", OPERATOR)  # leader election, created by the operator


@pytest.mark.timeout(1200)
def test_climbs_to_production(kube: Kube) -> None:
    kube.apply(EXAMPLE)
    if status(kube).get("phase") == "RolledBack":
        # Left over from an earlier run: ask for a new climb.
        kube.run(
            "-n",
            NAMESPACE,
            "annotate",
            "jeffreyintegration",
            NAME,
            f"jeffreyos.io/retry=e2e-{time.time():.0f}",
            "--overwrite",
        )

    seen: list[str] = []

    def at_production() -> dict[str, Any] | None:
        st = status(kube)
        level = st.get("currentLevel")
        if level and (not seen or seen[-1] != level):
            seen.append(level)
        if level == "PRODUCTION" and st.get("phase") == "Stable":
            return st
        return None

    st = wait_for(at_production, timeout=1080, interval=5, what="currentLevel PRODUCTION, phase Stable")
    obj = integration(kube)
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    # One level at a time, never skipping (we may start the watch mid-climb).
    indexes = [LEVELS.index(level) for level in seen]
    assert indexes == sorted(indexes), seen

    for level, modules in ladder().items():
        for module in modules:
            dep = deployment(kube, module["deployment"])
            want = module.get("replicas", 1)
            assert dep["spec"]["replicas"] == want, (level, module)
            if not module.get("optional", False):
                assert dep["status"].get("readyReplicas", 0) == want, (level, module)


@pytest.mark.timeout(300)
def test_operator_metrics_reach_prometheus(kube: Kube) -> None:
    selector = f'{{namespace="{NAMESPACE}", name="{NAME}"}}'

    def level_is_production() -> list[dict[str, Any]] | None:
        result = prometheus_query(kube, f"jeffrey_integration_level{selector}")
        return result if result and float(result[0]["value"][1]) == LEVELS.index("PRODUCTION") else None

    wait_for(level_is_production, timeout=120, what="jeffrey_integration_level == 5 in Prometheus")
    assert prometheus_query(
        kube, f'jeffrey_integration_phase{{namespace="{NAMESPACE}", phase="Stable"}} == 1'
    )
    # The module metrics contract arrives with namespace and module labels.
    series = prometheus_query(kube, f'jeffrey_bus_messages_published_total{{namespace="{NAMESPACE}"}}')
    modules = {s["metric"].get("module") for s in series}
    assert "neural-bus" in modules, series


@pytest.mark.timeout(600)
def test_flood_rolls_back_to_core(kube: Kube) -> None:
    before = status(kube)
    if before.get("currentLevel") != "PRODUCTION":
        pytest.fail(f"needs the climb of test_climbs_to_production first; status: {before}")

    post_fault(kube, FAULTY_MODULE, "flood")

    def rolled_back() -> dict[str, Any] | None:
        st = status(kube)
        return st if st.get("phase") == "RolledBack" and st.get("currentLevel") == "CORE" else None

    st = wait_for(rolled_back, timeout=540, interval=3, what="phase RolledBack at CORE after the flood")
    last = st["lastRollback"]
    assert last["fromLevel"] in {"LOOPS", "PRODUCTION"}
    assert last["reason"]
    assert st["reason"]

    # Every level above CORE is scaled to 0; CORE stays up.
    for level, modules in ladder().items():
        for module in modules:
            dep = deployment(kube, module["deployment"])
            if level == "CORE":
                assert dep["spec"]["replicas"] == module.get("replicas", 1), module
            else:
                assert dep["spec"]["replicas"] == 0, (level, module)

    # The rollback is on record: an Event on the JeffreyIntegration.
    events = kube.json(
        "-n",
        NAMESPACE,
        "get",
        "events",
        "--field-selector",
        f"involvedObject.kind=JeffreyIntegration,involvedObject.name={NAME}",
    )["items"]
    assert any("roll" in (e.get("reason", "") + e.get("message", "")).lower() for e in events), events
