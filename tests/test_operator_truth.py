"""What on-call sees, read from the API the way kubectl reads it (emulated API over real HTTP):
drift corrections, Event and message sizes, conditions at the current generation, retry advice."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import socket
import subprocess
import time
from typing import Any

import pytest

from emulator_fixtures import require_kubectl
from jeffrey_emulator import deployment_manifest
from jeffrey_operator.adapters.prometheus.client import PrometheusClient, RetryPolicy
from jeffrey_operator.adapters.prometheus.gates import PrometheusGates
from jeffrey_operator.core.models import GateResult, GateStatus
from jeffrey_operator.core.ports import GateContext, GateReport, GateVerdict, StateStoreUnavailable
from jeffrey_operator.runtime import logs
from operator_fixtures import FAST, Cluster, example, wait_for
from prom_fixtures import free_port


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def decision_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The decision log lines as a JSON pipeline reads them."""
    formatter = logs.JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == logs.DECISIONS.name]


def test_replicas_changed_by_someone_else_are_restored_and_said(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logs.DECISIONS.name)
    cluster.start_operator()
    cluster.apply_example()
    cluster.wait_phase("Stable")
    time.sleep(0.3)
    assert not [e for e in cluster.events() if e["reason"] == "ReplicasRestored"]  # the climb is no drift

    cluster.emu.patch("deployments", "jeffrey", "curiosity-loop", {"spec": {"replicas": 0}})  # kubectl scale
    wait_for(lambda: cluster.replicas()["curiosity-loop"] == 1, what="curiosity-loop restored")
    event = wait_for(
        lambda: next((e for e in cluster.events() if e["reason"] == "ReplicasRestored"), None),
        what="the ReplicasRestored event",
    )
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "JeffreyIntegration"
    assert event["involvedObject"]["name"] == "jeffrey"
    message = event["message"]
    assert "Deployment curiosity-loop" in message and "spec.replicas 0" in message
    assert "restored to 1" in message and "spec.paused" in message
    (drift,) = [line for line in decision_lines(caplog) if line["event"] == "drift"]
    assert (drift["namespace"], drift["name"], drift["deployment"]) == (
        "jeffrey",
        "jeffrey",
        "curiosity-loop",
    )
    assert (drift["found"], drift["restored"], drift["phase"], drift["level"]) == (
        0,
        1,
        "Stable",
        "PRODUCTION",
    )
    assert drift["reason"] == "ReplicasRestored" and drift["severity"] == "warning"


def test_every_transition_is_a_log_line(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=logs.DECISIONS.name)
    cluster.start_operator()
    cluster.apply_example()
    status = cluster.wait_phase("Stable")
    lines = [line for line in decision_lines(caplog) if line["event"] == "transition"]
    assert [(x["phase"], x["reason"], x["level"]) for x in lines] == [
        (t["phase"], t["reason"], t.get("toLevel", "none")) for t in status["transitions"]
    ]
    assert {(x["namespace"], x["name"]) for x in lines} == {("jeffrey", "jeffrey")}


def test_a_long_invalid_message_is_cut_at_a_word(cluster: Cluster) -> None:
    cluster.start_operator()
    ji = example()
    ji["spec"]["promotion"] = dict(FAST)
    for level in ji["spec"]["levels"]:  # 30 Deployments that do not exist
        level["modules"] = [{"deployment": f"missing-{level['level'].lower()}-{i}"} for i in range(5)]
    cluster.emu.create(ji)
    status = cluster.wait_phase("Invalid")
    assert len(status["message"]) <= 300 and status["message"].endswith("…")
    assert status["message"].startswith("30 problems: spec.levels[0].modules[0].deployment: ")
    event = wait_for(
        lambda: next((e for e in cluster.events() if e["reason"] == "DeploymentNotFound"), None),
        what="the Invalid event",
    )
    assert len(event["message"].encode()) <= 1024
    assert event["message"].endswith("…") and not event["message"][:-1].endswith(" ")
    assert event["message"].startswith(status["message"][:-1].rstrip(" ;,:.("))


class Unreachable:
    """A gate port as the Prometheus one answers with nobody listening."""

    async def evaluate(self, ctx: GateContext) -> GateReport:
        gates = tuple(
            GateStatus(
                name=g.name, query=g.query, max=g.max, result=GateResult.INCONCLUSIVE, message="refused"
            )
            for g in ctx.spec.gates
        )
        return GateReport(
            verdict=GateVerdict.INCONCLUSIVE,
            gates=gates,
            source_available=False,
            message="Prometheus at http://prometheus:9090 unavailable: connection refused",
        )


def test_turning_gates_off_leaves_no_stale_condition(cluster: Cluster) -> None:
    cluster.gates = Unreachable()
    cluster.start_operator()
    cluster.apply_example(gates=[{"name": "bus", "query": "up", "max": 1000}])
    status = wait_for(
        lambda: (s := cluster.status()).get("reason") == "WaitingForGates" and s,
        what="holding for Prometheus",
    )
    assert condition(status, "MetricsAvailable")["status"] == "False"
    assert "connection refused" in status["message"]

    cluster.patch_spec({"gates": []})
    status = cluster.wait_phase("Stable")
    generation = cluster.ji()["metadata"]["generation"]
    assert generation == 2 and status["observedGeneration"] == generation
    assert condition(status, "MetricsAvailable") | {"lastTransitionTime": ""} == {
        "type": "MetricsAvailable",
        "status": "True",
        "reason": "NoGatesConfigured",
        "message": "no health gates configured: Prometheus is not queried",
        "lastTransitionTime": "",
        "observedGeneration": generation,
    }
    assert condition(status, "GatesHealthy")["status"] == "True"
    assert condition(status, "GatesHealthy")["reason"] == "NoGatesConfigured"
    assert {c["observedGeneration"] for c in status["conditions"]} == {generation}


def test_rolled_back_says_how_to_retry_and_a_new_value_retries(cluster: Cluster) -> None:
    cluster.start_operator()
    ji = example()
    cluster.deployments_for(ji, "jeffrey")
    cluster.emu.deployments.set_behaviour("jeffrey", "awareness-loop", ready=False)
    cluster.apply_example(create_deployments=False, promotion={**FAST, "readinessTimeout": "1s"})
    status = cluster.wait_phase("RolledBack")
    command = 'kubectl annotate ji jeffrey -n jeffrey jeffreyos.io/retry="$(date +%s)" --overwrite'
    assert command in status["message"] and "jeffreyctl retry jeffrey" in status["message"]
    assert status["message"].startswith("rolled back to CORE: ")
    assert "awareness-loop" in status["message"]
    assert command in condition(status, "Stalled")["message"]
    event = wait_for(
        lambda: next((e for e in cluster.events() if e["reason"] == "RolledBack"), None),
        what="the RolledBack event",
    )
    assert command in event["message"]
    cluster.emu.create(deployment_manifest("unrelated", "jeffrey", replicas=0))  # any other change: no retry
    time.sleep(0.5)
    assert cluster.status()["phase"] == "RolledBack"


class FlakyStore:
    """A state store that is away until told otherwise (the Redis adapter raises the same)."""

    def __init__(self) -> None:
        self.down = True

    async def publish(self, namespace: str, name: str, status: Any, **_: Any) -> int:
        if self.down:
            raise StateStoreUnavailable("Error 111 connecting to redis:6379. Connection refused.")
        return 1

    async def forget(self, namespace: str, name: str) -> None:
        return None


def test_the_state_store_coming_back_is_a_recovery_line(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logs.DECISIONS.name)
    store = FlakyStore()
    cluster.store = store
    cluster.start_operator()
    cluster.apply_example()
    wait_for(
        lambda: any(
            c["type"] == "StateStoreAvailable" and c["status"] == "False"
            for c in cluster.status().get("conditions", [])
        ),
        what="StateStoreAvailable=False",
    )
    assert not [x for x in decision_lines(caplog) if x["event"] == "recovery"]
    store.down = False
    wait_for(
        lambda: [x for x in decision_lines(caplog) if x["event"] == "recovery"], within=40, what="recovery"
    )
    (line,) = [x for x in decision_lines(caplog) if x["event"] == "recovery"]
    assert (line["namespace"], line["name"], line["reason"]) == ("jeffrey", "jeffrey", "StateStoreSynced")
    assert {"level", "phase"} <= set(line)


def test_an_unreachable_prometheus_is_named_once_with_its_cause(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The real Prometheus gates against a port nobody listens on: status, condition, Event and
    log line lead with the connection error, once, whatever the number of gates."""
    caplog.set_level(logging.INFO, logger=logs.DECISIONS.name)
    port = free_port()
    cluster.gates = PrometheusGates(PrometheusClient(retry=RetryPolicy(attempts=1)))
    cluster.start_operator()
    url = f"http://127.0.0.1:{port}"
    cluster.apply_example(
        defaultGates=True, analysis={"interval": "1s", "prometheus": {"url": url, "timeout": "1s"}}
    )
    status = wait_for(
        lambda: (
            (s := cluster.status()).get("reason") == "WaitingForGates"
            and any("circuit open" in g.get("message", "") for g in s.get("gates", []))
            and s
        ),
        within=20,
        what="holding with the circuit open",
    )
    message = status["message"]
    assert len(message) <= 300
    assert message.startswith(f"holding CORE: Prometheus at {url} unavailable: {url} unreachable: ")
    assert message.count("unreachable") == 1  # the cause once, not once per gate
    metrics_available = condition(status, "MetricsAvailable")
    assert metrics_available["status"] == "False" and f"{url} unreachable" in metrics_available["message"]
    held = [g for g in status["gates"] if g["result"] == "Inconclusive"]
    assert len(held) > 3
    assert all(f"{url} unreachable" in g["message"] for g in held)  # the detail, per gate
    event = next(e for e in cluster.events() if e["reason"] == "WaitingForGates")
    assert len(event["message"].encode()) <= 1024 and event["message"].count(f"{url} unreachable") == 1
    # who says so, as `kubectl describe` shows it: the operator, from this host (a pod: its name)
    assert event["source"]["component"] == event["reportingComponent"] == "jeffrey-operator"
    assert event["reportingInstance"] == (os.environ.get("HOSTNAME") or socket.gethostname())
    assert event["metadata"]["name"].startswith("jeffrey-operator-")
    (hold,) = [x for x in decision_lines(caplog) if x["event"] == "hold"]
    assert (hold["reason"], hold["active"]) == ("PrometheusUnavailable", "CORE")
    assert hold["phase"] in ("Promoting", "Validating")  # whichever step the first evaluation met
    assert hold["message"].count(f"{url} unreachable") == 1


def test_a_state_store_condition_from_before_the_store_was_disabled_is_removed(cluster: Cluster) -> None:
    ji = cluster.apply_example()
    old = {
        "type": "StateStoreAvailable",
        "status": "True",
        "reason": "StateStoreSynced",
        "message": "the Redis state store mirrors this status",
        "lastTransitionTime": "2026-01-01T00:00:00.000Z",
        "observedGeneration": 1,
    }
    cluster.emu.store.set_status("ji", "jeffrey", ji["metadata"]["name"], {"conditions": [old]})
    cluster.start_operator()  # without --redis-url
    status = cluster.wait_phase("Stable")
    assert "StateStoreAvailable" not in {c["type"] for c in status["conditions"]}


@pytest.fixture(name="kubectl")
def kubectl_fixture(cluster: Cluster, tmp_path: Any) -> Any:
    # The real kubectl 1.31 (never whatever `kubectl` is on PATH): one lookup for every test.
    binary = require_kubectl()
    kubeconfig = cluster.emu.write_kubeconfig(tmp_path / "kubeconfig")
    path = f"{pathlib.Path(binary).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": path}

    def run(command: str) -> str:
        """A shell command line, as on-call would paste it."""
        proc = subprocess.run(
            ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run


def test_the_retry_advice_works_pasted_into_a_shell(cluster: Cluster, kubectl: Any) -> None:
    """kubectl describe shows the advice in full; pasting it retries; repeating a value does not."""
    cluster.start_operator()
    ji = example()
    cluster.deployments_for(ji, "jeffrey")
    cluster.emu.deployments.set_behaviour("jeffrey", "awareness-loop", ready=False)
    cluster.apply_example(create_deployments=False, promotion={**FAST, "readinessTimeout": "1s"})
    status = cluster.wait_phase("RolledBack")
    command = status["message"].split("to retry: ", 1)[1].split(" (or: ", 1)[0]
    assert command.startswith("kubectl annotate ji jeffrey -n jeffrey ")
    wait_for(lambda: any(e["reason"] == "RolledBack" for e in cluster.events()), what="the RolledBack event")
    described = kubectl("kubectl describe ji jeffrey -n jeffrey")
    (event_line,) = [line for line in described.splitlines() if "  RolledBack  " in line]
    assert command in event_line and event_line.rstrip().endswith("(or: jeffreyctl retry jeffrey)")
    assert "  jeffrey-operator  " in event_line  # the From column: the operator, not "kopf"

    cluster.emu.deployments.set_behaviour("jeffrey", "awareness-loop", ready=True)
    kubectl(command)  # exactly what the message says
    status = cluster.wait_phase("Stable")
    token = status["lastRetryToken"]
    assert token.isdigit()

    before = cluster.ji()["metadata"]["resourceVersion"]
    kubectl(f"kubectl annotate ji jeffrey -n jeffrey jeffreyos.io/retry={token} --overwrite")
    time.sleep(0.3)
    assert cluster.ji()["metadata"]["resourceVersion"] == before  # no change: nothing to hear of
