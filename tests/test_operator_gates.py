"""The whole loop with real health gates: the operator (on the emulated API) judging a real
Prometheus that scrapes real module simulators every second."""

from __future__ import annotations

import time
from typing import Any

import pytest

from jeffrey_emulator import deployment_manifest
from jeffrey_operator.adapters.prometheus.gates import PrometheusGates
from operator_fixtures import Cluster, wait_for
from prom_fixtures import PrometheusServer, SimulatorFleet

pytestmark = pytest.mark.slow

LEVELS = {"CORE": ["memory", "neural-bus"], "COGNITIVE": ["auto-learner"], "LOOPS": ["awareness-loop"]}


def integration(namespace: str, prometheus_url: str, **promotion: str) -> dict[str, Any]:
    return {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegration",
        "metadata": {"name": "jeffrey", "namespace": namespace},
        "spec": {
            "targetLevel": "LOOPS",
            "levels": [
                {"level": lv, "modules": [{"deployment": d} for d in ds]} for lv, ds in LEVELS.items()
            ],
            "promotion": {"readinessTimeout": "10s", "validationWindow": "2s", "cooldown": "0s", **promotion},
            "analysis": {"interval": "1s", "prometheus": {"url": prometheus_url, "timeout": "2s"}},
            "defaultGates": True,
        },
    }


@pytest.fixture(name="gated_cluster")
def gated_fixture(
    request: pytest.FixtureRequest, cluster: Cluster, prometheus: PrometheusServer, simulators: SimulatorFleet
) -> tuple[Cluster, str]:
    """The operator with real gates, and simulators of its own for each test (a namespace each:
    the gates select series by namespace, so one test's faults never leak into another's)."""
    namespace = request.node.name.removeprefix("test_").replace("_", "-")[:40].strip("-")
    simulators.start([d for ds in LEVELS.values() for d in ds], namespace)
    cluster.emu.ensure_namespace(namespace)
    for deployments in LEVELS.values():
        for name in deployments:
            cluster.emu.create(deployment_manifest(name, namespace, replicas=0))
    cluster.gates = PrometheusGates()
    cluster.start_operator()
    return cluster, namespace


def test_healthy_climb_then_a_bus_flood_rolls_back_to_core(
    gated_cluster: tuple[Cluster, str], prometheus: PrometheusServer, simulators: SimulatorFleet
) -> None:
    gated, ns = gated_cluster
    gated.emu.create(integration(ns, prometheus.url))
    status = gated.wait_phase("Stable", within=60, namespace=ns)
    assert status["currentLevel"] == "LOOPS"
    gates = {g["name"]: g for g in status["gates"]}
    assert gates and all(g["result"] in ("Pass", "Inactive") for g in gates.values())
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["GatesHealthy"]["status"] == "True" and conds["MetricsAvailable"]["status"] == "True"

    loop = next(s for s in simulators.sims if s.module == "awareness-loop" and s.namespace == ns)
    flooded_at = time.monotonic()
    loop.set_fault("flood")

    def rolled_back() -> bool:
        replicas = gated.replicas(ns)
        return replicas["awareness-loop"] == 0 and replicas["auto-learner"] == 0

    wait_for(rolled_back, within=30, what="every non-CORE Deployment at 0")
    latency = time.monotonic() - flooded_at
    status = gated.wait_phase("RolledBack", namespace=ns)
    record = status["lastRollback"]
    assert record["reason"] == "GateBreach"
    assert record["gate"] == "rollback-bus-rate"
    assert record["value"] > record["threshold"] == 1000
    assert record["fromLevel"] == "LOOPS"
    assert gated.replicas(ns)["memory"] == 1
    warning = [e for e in gated.events(ns) if e["reason"] == "GateBreach"]
    assert warning and "rollback-bus-rate" in warning[0]["message"]
    # 1 s scrape + 1 s evaluation + for 0 s: the floor is 2 s; leave room for a loaded CI machine.
    assert latency < 15, latency


def test_prometheus_down_during_validation_holds_then_resumes(
    gated_cluster: tuple[Cluster, str], prometheus: PrometheusServer
) -> None:
    gated, ns = gated_cluster
    gated.emu.create(integration(ns, prometheus.url, validationWindow="4s"))
    wait_for(lambda: gated.status(namespace=ns).get("phase") == "Validating", within=30, what="Validating")
    prometheus.stop()
    try:
        time.sleep(6)
        status = gated.status(namespace=ns)
        assert "lastRollback" not in status
        assert status["phase"] == "Validating"
        conds = {c["type"]: c for c in status["conditions"]}
        assert conds["MetricsAvailable"]["status"] == "False"
        assert set(gated.replicas(ns).values()) != {0}
    finally:
        prometheus.start()
    status = gated.wait_phase("Stable", within=60, namespace=ns)
    assert status["currentLevel"] == "LOOPS"
    assert "lastRollback" not in status
