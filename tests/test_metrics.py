"""The operator's own metrics (jeffrey_operator.adapters.telemetry): values, label hygiene, serving."""

from __future__ import annotations

import datetime
import math
import urllib.request

from jeffrey_operator.adapters import telemetry as metrics
from jeffrey_operator.core.engine import Decision
from jeffrey_operator.core.models import (
    CheckResult,
    CheckStatus,
    GateResult,
    GateStatus,
    JeffreyIntegrationStatus,
    Level,
    Phase,
    RollbackRecord,
    Transition,
)


def sample(metric: str, /, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(metric, labels)


def stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status(**kw: object) -> JeffreyIntegrationStatus:
    return JeffreyIntegrationStatus.model_validate(kw)


def test_observe_status_sets_levels_phase_and_time_in_phase() -> None:
    now = datetime.datetime.now(datetime.UTC)
    st = status(
        current_level=Level.COGNITIVE,
        target_level=Level.PRODUCTION,
        phase=Phase.VALIDATING,
        phase_since=stamp(now - datetime.timedelta(seconds=30)),
    )
    metrics.observe_status("ns-a", "ji", st, now)
    labels = {"namespace": "ns-a", "name": "ji"}
    assert sample("jeffrey_integration_level", **labels) == 1
    assert sample("jeffrey_integration_target_level", **labels) == 5
    phases = {p.value: sample("jeffrey_integration_phase", phase=p.value, **labels) for p in Phase}
    assert phases.pop("Validating") == 1
    assert set(phases.values()) == {0}
    since = sample("jeffrey_phase_since_seconds", **labels)
    assert since is not None and 29 <= since <= 40  # computed at scrape time

    metrics.observe_status("ns-a", "ji", status(phase=Phase.PENDING), datetime.datetime.now(datetime.UTC))
    assert sample("jeffrey_integration_level", **labels) == -1
    assert sample("jeffrey_integration_phase", phase="Validating", **labels) == 0
    assert sample("jeffrey_integration_phase", phase="Pending", **labels) == 1


def test_transitions_rollbacks_and_gates_are_counted() -> None:
    labels = {"namespace": "ns-b", "name": "ji"}
    metrics.record_transition("ns-b", "ji", None, Level.CORE, "Promoting")
    metrics.record_transition("ns-b", "ji", None, Level.CORE, "Promoting")
    metrics.record_rollback("ns-b", "ji", "GateBreach")
    t = {"from_level": "none", "to_level": "CORE", "reason": "Promoting"}
    assert sample("jeffrey_transitions_total", **labels, **t) == 2
    assert sample("jeffrey_rollbacks_total", **labels, reason="GateBreach") == 1

    metrics.record_gates(
        "ns-b",
        "ji",
        [
            GateStatus(name="bus", result=GateResult.BREACH, value=5000),
            GateStatus(name="cpu", result=GateResult.INCONCLUSIVE, value=None),
            GateStatus(name="loops", result=GateResult.INACTIVE, value=3),
        ],
    )
    assert sample("jeffrey_gate_evaluations_total", **labels, gate="bus", result="Breach") == 1
    assert sample("jeffrey_gate_value", **labels, gate="bus") == 5000
    cpu = sample("jeffrey_gate_value", **labels, gate="cpu")
    assert cpu is not None and math.isnan(cpu)
    assert sample("jeffrey_gate_evaluations_total", **labels, gate="loops", result="Inactive") is None
    assert sample("jeffrey_gate_value", **labels, gate="loops") is None


def test_forget_removes_only_that_integration() -> None:
    for name in ("gone", "kept"):
        metrics.observe_status(
            "ns-c",
            name,
            status(current_level=Level.CORE, phase=Phase.STABLE),
            datetime.datetime.now(datetime.UTC),
        )
        metrics.record_rollback("ns-c", name, "GateBreach")
        metrics.record_gates("ns-c", name, [GateStatus(name="bus", result=GateResult.PASS, value=1)])
    metrics.forget("ns-c", "gone")
    text = _exposition()
    assert 'name="gone"' not in text
    assert text.count('name="kept"') >= 10
    assert sample("jeffrey_integration_level", namespace="ns-c", name="kept") == 0
    metrics.forget("ns-c", "gone")  # twice is fine


def test_operator_telemetry_observes_a_decision() -> None:
    old = status(
        phase=Phase.VALIDATING,
        current_level=Level.CORE,
        transition_seq=4,
        transitions=[
            Transition(
                seq=4,
                time=stamp(datetime.datetime.now(datetime.UTC)),
                to_level=Level.CORE,
                phase=Phase.STABLE,
                reason="Old",
            )
        ],
    )
    rollback = RollbackRecord(
        time=stamp(datetime.datetime.now(datetime.UTC)),
        from_level=Level.COGNITIVE,
        reason="GateBreach",
        gate="bus",
    )
    new = old.model_copy(
        update={
            "phase": Phase.ROLLING_BACK,
            "transition_seq": 5,
            "transitions": [
                *old.transitions,
                Transition(
                    seq=5,
                    time=stamp(datetime.datetime.now(datetime.UTC)),
                    from_level=Level.COGNITIVE,
                    to_level=Level.CORE,
                    phase=Phase.ROLLING_BACK,
                    reason="GateBreach",
                ),
            ],
            "last_rollback": rollback,
            "gates": [GateStatus(name="bus", result=GateResult.BREACH, value=4321)],
        }
    )
    telemetry = metrics.OperatorTelemetry()
    before = sample("jeffrey_reconcile_duration_seconds_count") or 0
    telemetry.observe("ns-d", "ji", Decision(status=new), old, 0.02)
    telemetry.observe("ns-d", "ji", Decision(status=new), new, 0.02)  # nothing new the second time
    labels = {"namespace": "ns-d", "name": "ji"}
    t = {"from_level": "COGNITIVE", "to_level": "CORE", "reason": "GateBreach"}
    assert sample("jeffrey_transitions_total", **labels, **t) == 1
    assert (
        sample("jeffrey_transitions_total", **labels, from_level="none", to_level="CORE", reason="Old")
        is None
    )
    assert sample("jeffrey_rollbacks_total", **labels, reason="GateBreach") == 1
    assert sample("jeffrey_gate_evaluations_total", **labels, gate="bus", result="Breach") == 2
    assert sample("jeffrey_integration_phase", **labels, phase="RollingBack") == 1
    assert sample("jeffrey_reconcile_duration_seconds_count") == before + 2
    telemetry.forget("ns-d", "ji")
    assert sample("jeffrey_integration_phase", **labels, phase="RollingBack") is None


def test_process_wide_metrics() -> None:
    metrics.set_state_store_up(True)
    assert sample("jeffrey_state_store_up") == 1
    metrics.set_state_store_up(False)
    assert sample("jeffrey_state_store_up") == 0
    before = sample("jeffrey_api_writes_total", verb="patch", resource="deployments") or 0
    metrics.record_api_write("patch", "deployments")
    assert sample("jeffrey_api_writes_total", verb="patch", resource="deployments") == before + 1
    count = sample("jeffrey_prometheus_query_duration_seconds_count") or 0
    metrics.observe_prometheus_query(0.01)
    assert sample("jeffrey_prometheus_query_duration_seconds_count") == count + 1
    errors = sample("jeffrey_prometheus_errors_total", reason="timeout") or 0
    metrics.record_prometheus_error("timeout")
    assert sample("jeffrey_prometheus_errors_total", reason="timeout") == errors + 1
    with metrics.time_reconcile():
        pass


def test_every_documented_metric_is_exported() -> None:
    text = _exposition()
    for name in (
        "jeffrey_integration_level",
        "jeffrey_integration_target_level",
        "jeffrey_integration_phase",
        "jeffrey_transitions_total",
        "jeffrey_rollbacks_total",
        "jeffrey_gate_evaluations_total",
        "jeffrey_check_runs_total",
        "jeffrey_gate_value",
        "jeffrey_reconcile_duration_seconds",
        "jeffrey_prometheus_query_duration_seconds",
        "jeffrey_prometheus_errors_total",
        "jeffrey_phase_since_seconds",
        "jeffrey_state_store_up",
        "jeffrey_api_writes_total",
    ):
        assert f"# HELP {name} " in text, name


def test_serve_uses_the_dedicated_registry() -> None:
    from prom_fixtures import free_port

    port = free_port()
    metrics.serve(port, addr="127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "jeffrey_integration_level" in text
    assert "python_gc_objects_collected_total" not in text  # not the global registry


def _exposition() -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.REGISTRY).decode()


def test_docs_list_every_operator_metric() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    for family in metrics.REGISTRY.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"| `{name}` |" in docs, f"{name} is not documented in docs/metrics.md"


def test_check_runs_are_born_at_zero_and_counted_once_per_result() -> None:
    labels = {"namespace": "ns-checks", "name": "ji", "check": "core-smoke"}
    running = CheckStatus(name="core-smoke", level=Level.CORE, result=CheckResult.RUNNING, attempt=1)
    metrics.record_checks("ns-checks", "ji", [], [running])
    for result in ("Pass", "Fail", "Inconclusive", "Invalid"):
        assert sample("jeffrey_check_runs_total", **labels, result=result) == 0
    passed = running.model_copy(update={"result": CheckResult.PASS})
    metrics.record_checks("ns-checks", "ji", [running], [passed])
    metrics.record_checks("ns-checks", "ji", [passed], [passed])  # the same run: not counted again
    again = passed.model_copy(update={"attempt": 2})
    metrics.record_checks("ns-checks", "ji", [passed], [again])  # a new run that passed
    assert sample("jeffrey_check_runs_total", **labels, result="Pass") == 2
    assert sample("jeffrey_check_runs_total", **labels, result="Fail") == 0
    metrics.forget("ns-checks", "ji")
    assert sample("jeffrey_check_runs_total", **labels, result="Pass") is None
