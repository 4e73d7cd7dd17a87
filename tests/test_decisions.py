"""What on-call reads, decided in the pure core: messages, retry guidance, conditions, log notes."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest

from engine_world import T0, World
from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.engine import Note
from jeffrey_operator.core.gates.defaults import gates_for
from jeffrey_operator.core.gates.evaluate import QueryOutcome, evaluate, summarize
from jeffrey_operator.core.messages import ELLIPSIS, retry_command, shorten
from jeffrey_operator.core.models import (
    GateResult,
    GateStatus,
    JeffreyIntegrationSpec,
    Level,
    Phase,
)
from jeffrey_operator.core.ports import CheckOutcomeKind, GateMode, GateReport, GateVerdict
from jeffrey_operator.runtime import logs
from test_checks import job_check, outcome, settle
from test_checks import spec as checks_spec
from test_engine import FULL, breach, cond

# ------------------------------------------------------------------------------------ shortening


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("fits exactly", 12, "fits exactly"),
        ("gate bus-rate: 1500 > max 1000", 22, "gate bus-rate: 1500" + ELLIPSIS),
        ("gate bus-rate: 1500 > max 1000", 20, "gate bus-rate" + ELLIPSIS),
        ("a; b; c; d; e; f", 10, "a; b" + ELLIPSIS),
        ("x" * 50, 10, "x" * 7 + ELLIPSIS),  # one word longer than the limit: cut inside it
        ("é" * 20, 11, "é" * 4 + ELLIPSIS),  # bytes, not characters (UTF-8)
    ],
)
def test_shorten_cuts_at_a_word_with_an_ellipsis(text: str, limit: int, expected: str) -> None:
    got = shorten(text, limit)
    assert got == expected
    assert len(got.encode()) <= limit


# ---------------------------------------------------------------------------- root cause, once


def unavailable_report(n: int = 10) -> GateReport:
    """What ten default gates say with an unreachable Prometheus (through the real judge)."""
    spec = JeffreyIntegrationSpec.model_validate({**FULL, "defaultGates": True})
    gates = list(gates_for(spec))[:n]
    cause = (
        "http://prometheus:9090 unreachable: Cannot connect to host prometheus:9090 ssl:default "
        "[Name or service not known] (circuit open: failing fast until a trial succeeds)"
    )
    return evaluate(
        gates,
        {},
        {g.name: QueryOutcome.unavailable(cause) for g in gates},
        [],
        T0,
        mode=GateMode.PROMOTION,
        active_level=Level.PRODUCTION,
    )


def test_the_same_cause_across_gates_is_said_once() -> None:
    report = unavailable_report()
    assert report.verdict is GateVerdict.INCONCLUSIVE and not report.source_available
    assert report.message.count("Name or service not known") == 1
    assert report.message.startswith("metrics source unavailable: http://prometheus:9090 unreachable")


def test_status_message_leads_with_the_root_cause_within_300_chars() -> None:
    w = World.of({**FULL, "defaultGates": True})
    report = unavailable_report()
    w.gates = report
    for _ in range(4):
        w.step()
    assert w.status.reason == c.WAITING_FOR_GATES
    assert len(w.status.message) <= 300
    assert "Name or service not known" in w.status.message
    # the full detail stays per gate
    assert all(
        "Name or service not known" in g.message for g in w.status.gates if g.result.value != "Inactive"
    )


def test_distinct_causes_are_all_named() -> None:
    a = GateStatus(name="a", result=GateResult.INCONCLUSIVE, message="no data")
    b = GateStatus(name="b", result=GateResult.PENDING_BREACH, message="1200 > max 1000 for 5s of 30s")
    c_ = GateStatus(name="c", result=GateResult.INCONCLUSIVE, message="no data")
    report = summarize([a, b, c_])
    assert (
        report.message
        == "no data (gates a, c: Inconclusive); 1200 > max 1000 for 5s of 30s (gate b: PendingBreach)"
    )


# ----------------------------------------------------------------------------------- retry advice


def rolled_back(**kw: Any) -> World:
    w = World.of(FULL, namespace="prod", name="jeffrey", **kw)
    w.run()
    w.gates = breach()
    w.step()
    w.gates = GateReport()
    w.step()
    assert w.status.phase == Phase.ROLLED_BACK
    return w


def test_rolled_back_says_exactly_how_to_retry() -> None:
    w = rolled_back()
    command = 'kubectl annotate ji jeffrey -n prod jeffreyos.io/retry="$(date +%s)" --overwrite'
    assert command == retry_command("prod", "jeffrey")
    assert w.status.message.startswith("rolled back to CORE: ")
    assert command in w.status.message and "jeffreyctl retry jeffrey" in w.status.message
    stalled = c.get_condition(w.status.conditions, c.STALLED)
    assert stalled is not None and stalled.status.value == "True"
    assert command in stalled.message
    event = w.decisions[-1].events[-1]
    assert event.reason == c.ROLLED_BACK and command in event.message


def test_a_long_cause_is_cut_but_the_retry_advice_never_is() -> None:
    w = World.of(FULL, namespace="prod", name="jeffrey")
    w.run()
    long_gate = GateStatus(
        name="bus-rate",
        value=5000.0,
        max=1000.0,
        result=GateResult.BREACH,
        series="{" + ",".join(f'label{i}="{"v" * 20}"' for i in range(20)) + "}",
    )
    w.gates = GateReport(verdict=GateVerdict.BREACH, gates=(long_gate,), breach=long_gate)
    w.step()
    w.gates = GateReport()
    w.step()
    assert len(w.status.message) <= 300
    assert w.status.message.endswith("(or: jeffreyctl retry jeffrey)")
    assert ELLIPSIS in w.status.message
    assert w.status.message.startswith("rolled back to CORE: gate bus-rate: 5000 ({label0=")


# ------------------------------------------------------------------------------------- conditions


def test_turning_gates_off_makes_gate_conditions_truthful_at_the_current_generation() -> None:
    w = World.of({**FULL, "defaultGates": True})
    w.gates = GateReport(verdict=GateVerdict.INCONCLUSIVE, source_available=False, message="down")
    for _ in range(3):
        w.step()
    assert cond(w.status, c.METRICS_AVAILABLE) == ("False", c.PROMETHEUS_UNAVAILABLE)
    # spec.defaultGates: false (a new generation); no gate port is asked any more
    w.spec = JeffreyIntegrationSpec.model_validate({**FULL, "defaultGates": False})
    w.generation = 2
    w.gates = GateReport()
    w.run()
    assert w.status.phase == Phase.STABLE
    assert cond(w.status, c.GATES_HEALTHY) == ("True", c.NO_GATES_CONFIGURED)
    assert cond(w.status, c.METRICS_AVAILABLE) == ("True", c.NO_GATES_CONFIGURED)
    assert {x.observed_generation for x in w.status.conditions} == {2}
    assert w.status.observed_generation == 2


def test_conditions_not_rederived_are_restamped_not_left_behind() -> None:
    w = rolled_back()
    before = {x.type: (x.status, x.reason) for x in w.status.conditions}
    w.generation = 7  # e.g. a label change; no gate is evaluated while rolled back... until retry
    w.spec = w.spec.model_copy(update={"rollback": w.spec.rollback.model_copy()})
    d = w.step()
    assert {x.observed_generation for x in d.status.conditions} == {7}
    kept = {x.type: (x.status, x.reason) for x in d.status.conditions}
    assert kept[c.GATES_HEALTHY] == before[c.GATES_HEALTHY]


# -------------------------------------------------------------------------------------- log notes


def notes(w: World) -> list[Note]:
    return [n for d in w.decisions for n in d.notes]


def test_every_transition_is_one_note() -> None:
    w = World.of(FULL)
    w.run()
    transitions = w.status.transitions
    found = [n for n in notes(w) if n.kind == "transition"]
    assert [(n.phase, n.reason, n.level) for n in found] == [
        (t.phase, t.reason, t.to_level) for t in transitions
    ]


def test_a_breach_rollback_note_names_gate_value_and_threshold() -> None:
    w = rolled_back()
    (rollback,) = [n for n in notes(w) if n.kind == "rollback"]
    assert (rollback.gate, rollback.value, rollback.threshold) == ("bus-rate", 5000.0, 1000.0)
    assert (rollback.reason, rollback.phase, rollback.level) == (
        c.GATE_BREACH,
        Phase.ROLLING_BACK,
        Level.PRODUCTION,
    )


def test_a_readiness_rollback_note_names_the_modules() -> None:
    w = World.of({**FULL, "promotion": {"readinessTimeout": "5s"}}, stuck={"theory-of-mind"})
    w.run()
    (rollback,) = [n for n in notes(w) if n.kind == "rollback"]
    assert rollback.reason == c.READINESS_TIMEOUT and rollback.modules == ("theory-of-mind",)


def test_outage_hold_and_recovery_are_one_note_each() -> None:
    w = World.of(FULL)
    w.run()
    ok = GateStatus(name="bus-rate", query="q", value=10.0, max=1000.0, result=GateResult.PASS)
    w.gates = GateReport(gates=(ok,))
    w.step()
    down = ok.model_copy(update={"result": GateResult.INCONCLUSIVE, "message": "unreachable"})
    w.gates = GateReport(
        verdict=GateVerdict.INCONCLUSIVE, gates=(down,), source_available=False, message="Prometheus down"
    )
    for _ in range(3):
        w.step()
    w.gates = GateReport(gates=(ok,))
    for _ in range(3):
        w.step()
    kinds = [(n.kind, n.reason) for n in notes(w) if n.kind in ("hold", "recovery")]
    assert kinds == [("hold", c.PROMETHEUS_UNAVAILABLE), ("recovery", c.PROMETHEUS_AVAILABLE)]
    assert [n.message for n in notes(w) if n.kind == "hold"] == ["Prometheus down"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"paused": True}, c.PAUSED), ({"targetLevel": "ULTRA"}, None)],
)
def test_pause_and_invalid_are_hold_notes(change: dict[str, Any], reason: str | None) -> None:
    raw = copy.deepcopy(FULL)
    raw.update(change)
    if reason is None:  # invalid: a gate with min > max
        raw = {**FULL, "gates": [{"name": "g", "query": "up", "min": 2, "max": 1}]}
        reason = c.INVALID_GATE_BOUNDS
    w = World.of(raw)
    w.step()
    assert [(n.kind, n.reason) for n in notes(w)] == [("hold", reason)]


def test_a_scaling_back_to_what_status_already_wanted_is_marked_a_correction() -> None:
    w = World.of(FULL)
    w.run()
    assert not any(a.correction for d in w.decisions for a in d.actions)  # the climb is no drift
    w.scale("curiosity-loop", 0)  # someone else: kubectl scale --replicas=0
    d = w.step()
    (action,) = d.actions
    assert (action.deployment, action.found, action.replicas, action.correction) == (
        "curiosity-loop",
        0,
        1,
        True,
    )


# ---------------------------------------------------------------------------------- the log lines


def capture(fmt: logging.Formatter) -> tuple[list[str], logging.Handler]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(fmt.format(record))

    handler = Collect(logging.INFO)
    logs.DECISIONS.addHandler(handler)
    logs.DECISIONS.setLevel(logging.INFO)
    return lines, handler


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_each_note_is_one_parsable_line_with_the_fields(fmt: str) -> None:
    formatter: logging.Formatter = logs.JsonFormatter() if fmt == "json" else logs.TextFormatter()
    lines, handler = capture(formatter)
    try:
        w = rolled_back()
        for d in w.decisions:
            logs.log_notes("prod", "jeffrey", d.notes)
    finally:
        logs.DECISIONS.removeHandler(handler)
        logs.DECISIONS.setLevel(logging.NOTSET)
    assert len(lines) == len(notes(w))
    if fmt == "json":
        docs = [json.loads(line) for line in lines]
    else:
        docs = [dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv) for line in lines]
    for doc in docs:
        assert {"event", "namespace", "name", "level", "phase", "reason"} <= set(doc), doc
        assert (doc["namespace"], doc["name"]) == ("prod", "jeffrey")
    rollback = next(d for d in docs if d["event"] == "rollback")
    assert rollback["gate"] == "bus-rate" and rollback["reason"] == "GateBreach"
    assert float(rollback["value"]) == 5000 and float(rollback["threshold"]) == 1000
    assert [d["event"] for d in docs].count("transition") == len(w.status.transitions) - 1


def test_metrics_available_names_the_root_cause_once() -> None:
    w = World.of({**FULL, "defaultGates": True})
    w.gates = unavailable_report()
    for _ in range(3):
        w.step()
    found = c.get_condition(w.status.conditions, c.METRICS_AVAILABLE)
    assert found is not None and found.status.value == "False"
    assert found.message.count("Name or service not known") == 1 and len(found.message) <= 300


def test_gates_that_do_not_apply_now_are_not_called_passing() -> None:
    w = World.of(FULL)
    w.run()
    inactive = GateStatus(name="loops-only", result=GateResult.INACTIVE, message="when=promotion")
    w.gates = GateReport(gates=(inactive,))
    w.step()
    assert cond(w.status, c.GATES_HEALTHY) == ("True", c.NO_GATES)


def test_the_hold_message_follows_what_holds_not_every_value() -> None:
    w = World.of(FULL)
    down = GateStatus(name="bus-rate", result=GateResult.INCONCLUSIVE, message="metrics source unavailable")
    w.gates = GateReport(
        verdict=GateVerdict.INCONCLUSIVE, gates=(down,), source_available=False, message="down"
    )
    for _ in range(3):
        w.step()
    assert w.status.message == "holding CORE: down"
    pending = GateStatus(name="bus-rate", result=GateResult.PENDING_BREACH, value=1200, message="1200 for 5s")
    w.gates = GateReport(verdict=GateVerdict.INCONCLUSIVE, gates=(pending,), message="1200 for 5s of 30s")
    d = w.step()
    assert w.status.message == "holding CORE: 1200 for 5s of 30s"
    assert d.events == () and d.notes[-1].kind == "recovery"  # Prometheus is back; still holding
    moved = pending.model_copy(update={"value": 1300, "message": "1300 for 6s"})
    w.gates = GateReport(verdict=GateVerdict.INCONCLUSIVE, gates=(moved,), message="1300 for 6s of 30s")
    w.step()
    assert w.status.message == "holding CORE: 1200 for 5s of 30s"  # same hold: no write per value


def prometheus_down(gate: GateStatus) -> GateReport:
    """What the gates say while Prometheus refuses connections ("down", the cause)."""
    down = gate.model_copy(update={"result": GateResult.INCONCLUSIVE, "message": "refused"})
    return GateReport(verdict=GateVerdict.INCONCLUSIVE, gates=(down,), source_available=False, message="down")


def holds_after(w: World, steps: int, seconds: float, since: int = 0) -> list[tuple[str, str]]:
    """Step ``steps`` times, ``seconds`` apart; the hold notes since note ``since``."""
    for _ in range(steps):
        w.step()
        w.advance(seconds)
    assert w.status.reason == c.WAITING_FOR_GATES
    return [(n.reason, n.message) for n in notes(w)[since:] if n.kind == "hold"]


def test_an_outage_during_validation_is_one_hold_line() -> None:
    w = World.of(FULL)
    w.gates = prometheus_down(GateStatus(name="bus-rate"))
    assert holds_after(w, 5, 10) == [(c.PROMETHEUS_UNAVAILABLE, "down")]


def test_an_outage_met_as_the_climb_starts_holding_is_still_the_outage_line() -> None:
    """Gates pass, the validation window runs, then Prometheus goes away: the step in which the
    climb starts holding is the step that first sees the outage. One hold line, and it names
    the outage (before: the climb's WaitingForGates line, timing decided which one on-call got)."""
    w = World.of({**FULL, "promotion": {"validationWindow": "60s"}})
    ok = GateStatus(name="bus-rate", query="q", value=10.0, max=1000.0, result=GateResult.PASS)
    w.gates = GateReport(gates=(ok,))
    for _ in range(5):
        w.step()
    assert w.status.phase == Phase.VALIDATING and w.status.reason != c.WAITING_FOR_GATES
    assert cond(w.status, c.METRICS_AVAILABLE)[0] == "True"
    before = len(notes(w))
    w.gates = prometheus_down(ok)
    assert holds_after(w, 3, 5, since=before) == [(c.PROMETHEUS_UNAVAILABLE, "down")]


def test_a_check_holding_the_climb_says_how_to_retry() -> None:
    w = World.of(checks_spec(job_check(onFailure="hold")), namespace="prod", name="jeffrey")
    settle(w)
    outcome(w, "core-smoke", CheckOutcomeKind.FAILED, "BackoffLimitExceeded: Job has reached the limit")
    settle(w)
    assert w.status.reason == c.CHECK_FAILED and len(w.status.message) <= 300
    assert w.status.message.startswith("holding: check core-smoke failed: ")
    stalled = c.get_condition(w.status.conditions, c.STALLED)
    assert stalled is not None and retry_command("prod", "jeffrey") in stalled.message
