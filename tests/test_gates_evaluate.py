"""Pure tables for gate judging (jeffrey_operator.core.gates.evaluate): no network, fake ``now``."""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

import pytest

from jeffrey_operator.core.gates.defaults import DEFAULT_GATE_NAMES, default_gates, gates_for
from jeffrey_operator.core.gates.evaluate import (
    QueryOutcome,
    Series,
    breached_threshold,
    evaluate,
    format_time,
    inactive_reason,
    judge_gate,
    parse_time,
)
from jeffrey_operator.core.models import (
    DefaultGateOverrides,
    GateResult,
    GateSpec,
    GateStatus,
    GateWhen,
    JeffreyIntegrationSpec,
    Level,
    OnNoData,
)
from jeffrey_operator.core.ports import GateMode, GateReport, GateVerdict

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def gate(name: str = "g", /, **kw: object) -> GateSpec:
    return GateSpec.model_validate({"name": name, "query": "q", **kw})


def one(value: float, **labels: str) -> QueryOutcome:
    return QueryOutcome.values([Series.of(value, **labels)])


def run(spec: GateSpec, timeline: Sequence[tuple[float, QueryOutcome]]) -> list[GateStatus]:
    """Feed a timeline of (seconds, outcome) to one gate, each step seeing the previous status."""
    out: list[GateStatus] = []
    previous: GateStatus | None = None
    for seconds, outcome in timeline:
        previous = judge_gate(spec, "q", outcome, previous, at(seconds))
        out.append(previous)
    return out


# ----------------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("bounds", "value", "expected"),
    [
        ({"max": 1000}, 999.9, GateResult.PASS),
        ({"max": 1000}, 1000, GateResult.PASS),  # breach only when greater
        ({"max": 1000}, 1000.1, GateResult.BREACH),
        ({"min": 5}, 5, GateResult.PASS),
        ({"min": 5}, 4.9, GateResult.BREACH),
        ({"min": 5, "max": 10}, 7, GateResult.PASS),
        ({"min": 5, "max": 10}, 11, GateResult.BREACH),
        ({"min": 5, "max": 10}, 4, GateResult.BREACH),
        ({"max": 1000}, math.inf, GateResult.BREACH),
        ({"min": 0}, -math.inf, GateResult.BREACH),
        ({}, 1e12, GateResult.PASS),  # no bound: informational
    ],
)
def test_bounds(bounds: dict[str, float], value: float, expected: GateResult) -> None:
    status = judge_gate(gate(**bounds), "q", one(value), None, T0)
    assert status.result is expected
    assert status.value == value
    assert status.min == bounds.get("min") and status.max == bounds.get("max")


def test_breach_message_names_value_and_threshold() -> None:
    status = judge_gate(gate(max=1000), 'sum(x{namespace="a"})', one(5012.5, namespace="a"), None, T0)
    assert status.result is GateResult.BREACH
    assert status.query == 'sum(x{namespace="a"})'
    assert status.series == '{namespace="a"}'
    assert "5012.5 > max 1000" in status.message
    assert breached_threshold(status) == 1000


def test_unlabelled_result_reads_as_a_plain_value() -> None:
    status = judge_gate(gate(max=1000), "q", one(1200), None, T0)
    assert (status.series, status.message) == ("", "1200 > max 1000")
    status = judge_gate(gate(max=1000, **{"for": "2s"}), "q", one(1200), status, at(2))
    assert status.message == "1200 > max 1000 for 2s (for: 2s)"


@pytest.mark.parametrize(
    ("status", "threshold"),
    [
        (GateStatus(name="g", value=12, max=10, min=1), 10),
        (GateStatus(name="g", value=0, max=10, min=1), 1),
        (GateStatus(name="g", value=5, max=10, min=1), None),
        (GateStatus(name="g", value=None, max=10), 10),  # no data (onNoData=fail): the bound
    ],
)
def test_breached_threshold(status: GateStatus, threshold: float | None) -> None:
    assert breached_threshold(status) == threshold


# ----------------------------------------------------------------------------------- series


def test_several_series_breach_if_any_and_name_the_worst() -> None:
    outcome = QueryOutcome.values(
        [
            Series.of(10, module="a"),
            Series.of(1500, module="b"),
            Series.of(1200, module="c"),
            Series.of(3, module="d"),
        ]
    )
    status = judge_gate(gate(max=1000), "q", outcome, None, T0)
    assert status.result is GateResult.BREACH
    assert status.series == '{module="b"}'
    assert status.value == 1500
    assert "2 of 4 series out of bounds" in status.message


def test_several_series_in_bounds_report_the_closest_to_the_bound() -> None:
    outcome = QueryOutcome.values(
        [Series.of(10, module="a"), Series.of(70, module="b"), Series.of(30, module="c")]
    )
    status = judge_gate(gate(max=80), "q", outcome, None, T0)
    assert status.result is GateResult.PASS
    assert (status.series, status.value) == ('{module="b"}', 70)
    assert "all 3 series" in status.message


def test_min_bound_names_the_lowest_series() -> None:
    outcome = QueryOutcome.values(
        [Series.of(10, module="a"), Series.of(2, module="b"), Series.of(4, module="c")]
    )
    status = judge_gate(gate(min=5), "q", outcome, None, T0)
    assert (status.result, status.series, status.value) == (GateResult.BREACH, '{module="b"}', 2)


def test_nan_series_are_ignored_and_only_nan_is_no_data() -> None:
    mixed = QueryOutcome.values([Series.of(math.nan, module="a"), Series.of(2000, module="b")])
    assert judge_gate(gate(max=1000), "q", mixed, None, T0).series == '{module="b"}'
    only_nan = QueryOutcome.values([Series.of(math.nan, module="a")])
    status = judge_gate(gate(max=1000, onNoData="fail"), "q", only_nan, None, T0)
    assert status.result is GateResult.BREACH and status.value is None and "no data" in status.message


# ------------------------------------------------------------------------------ for / since


def test_for_sustained_breach_timeline() -> None:
    """The worked example of the module docstring: max 1000, for 30s, evaluated every 10 s."""
    statuses = run(
        gate(max=1000, **{"for": "30s"}),
        [(0, one(400)), (10, one(1500)), (30, one(1600)), (40, one(1700)), (50, one(900))],
    )
    assert [s.result for s in statuses] == [
        GateResult.PASS,
        GateResult.PENDING_BREACH,
        GateResult.PENDING_BREACH,
        GateResult.BREACH,
        GateResult.PASS,
    ]
    assert [s.since for s in statuses] == [format_time(at(t)) for t in (0, 10, 10, 10, 50)]
    assert "20s of 30s" in statuses[2].message
    assert "for 30s" in statuses[3].message


def test_spike_shorter_than_for_never_breaches() -> None:
    statuses = run(
        gate(max=1000, **{"for": "3s"}),
        [(t / 2, one(5000 if 1 <= t / 2 < 3.5 else 100)) for t in range(16)],  # 2.5 s spike, every 0.5 s
    )
    assert GateResult.BREACH not in {s.result for s in statuses}
    assert GateResult.PENDING_BREACH in {s.result for s in statuses}
    assert statuses[-1].result is GateResult.PASS


def test_sub_second_for_is_exact() -> None:
    statuses = run(gate(max=1, **{"for": "1500ms"}), [(0.0, one(2)), (1.499, one(2)), (1.5, one(2))])
    assert [s.result for s in statuses] == [
        GateResult.PENDING_BREACH,
        GateResult.PENDING_BREACH,
        GateResult.BREACH,
    ]


@pytest.mark.parametrize(
    "interruption",
    [
        QueryOutcome.unavailable("unreachable"),
        QueryOutcome.values([Series.of(10)]),
        QueryOutcome.no_data(),  # onNoData=hold
    ],
    ids=["unavailable", "back-in-bounds", "no-data-hold"],
)
def test_anything_but_out_of_bounds_restarts_the_for_clock(interruption: QueryOutcome) -> None:
    statuses = run(
        gate(max=100, **{"for": "10s"}),
        [(0, one(500)), (6, one(500)), (7, interruption), (8, one(500)), (17, one(500)), (18, one(500))],
    )
    assert [s.result for s in statuses][3:] == [
        GateResult.PENDING_BREACH,
        GateResult.PENDING_BREACH,
        GateResult.BREACH,
    ]
    assert statuses[5].since == format_time(at(8))


def test_offending_series_may_change_while_the_gate_stays_out_of_bounds() -> None:
    a_high = QueryOutcome.values([Series.of(500, module="a"), Series.of(1, module="b")])
    b_high = QueryOutcome.values([Series.of(1, module="a"), Series.of(500, module="b")])
    statuses = run(gate(max=100, **{"for": "5s"}), [(0, a_high), (3, b_high), (5, b_high)])
    assert [s.result for s in statuses] == [
        GateResult.PENDING_BREACH,
        GateResult.PENDING_BREACH,
        GateResult.BREACH,
    ]
    assert statuses[-1].series == '{module="b"}'


def test_pass_since_is_kept_while_passing() -> None:
    statuses = run(gate(max=100), [(0, one(1)), (5, one(2)), (9, one(3))])
    assert {s.since for s in statuses} == {format_time(at(0))}


def test_unreadable_previous_since_restarts_at_now() -> None:
    previous = GateStatus(name="g", result=GateResult.PENDING_BREACH, since="garbage")
    status = judge_gate(gate(max=1, **{"for": "5s"}), "q", one(2), previous, at(100))
    assert (status.result, status.since) == (GateResult.PENDING_BREACH, format_time(at(100)))


# ------------------------------------------------------------------------------- no data


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (OnNoData.HOLD, GateResult.INCONCLUSIVE),
        (OnNoData.FAIL, GateResult.BREACH),
        (OnNoData.PASS, GateResult.PASS),
    ],
)
def test_no_data_follows_on_no_data(policy: OnNoData, expected: GateResult) -> None:
    status = judge_gate(gate(max=1, onNoData=policy.value), "q", QueryOutcome.no_data(), None, T0)
    assert status.result is expected
    assert status.value is None
    assert "no data" in status.message


def test_no_data_fail_respects_for() -> None:
    statuses = run(
        gate(max=1, onNoData="fail", **{"for": "4s"}),
        [(0, QueryOutcome.no_data()), (4, QueryOutcome.no_data())],
    )
    assert [s.result for s in statuses] == [GateResult.PENDING_BREACH, GateResult.BREACH]


# ------------------------------------------------------------------------- unavailable, invalid


def test_unavailable_is_inconclusive_and_keeps_the_last_value() -> None:
    previous = judge_gate(gate(max=1000), "q", one(420, namespace="a"), None, at(0))
    status = judge_gate(
        gate(max=1000), "q", QueryOutcome.unavailable("unreachable: refused"), previous, at(5)
    )
    assert status.result is GateResult.INCONCLUSIVE
    assert (status.value, status.series) == (420, '{namespace="a"}')
    assert "unavailable" in status.message and "last value 420" in status.message


def test_invalid_is_reported_never_a_breach() -> None:
    g = gate(max=0, onNoData="fail")
    report = evaluate(
        [g],
        {"g": "sum("},
        {"g": QueryOutcome.invalid("parse error")},
        [],
        T0,
        mode=GateMode.PROMOTION,
        active_level=Level.CORE,
    )
    assert report.gates[0].result is GateResult.INVALID
    assert "parse error" in report.gates[0].message
    assert report.verdict is GateVerdict.INCONCLUSIVE
    assert report.breach is None
    assert report.source_available


# -------------------------------------------------------------------------------- activity


@pytest.mark.parametrize(
    ("when", "from_level", "mode", "active_level", "active"),
    [
        (GateWhen.ALWAYS, Level.CORE, GateMode.PROMOTION, Level.CORE, True),
        (GateWhen.ALWAYS, Level.CORE, GateMode.CONTINUOUS, Level.PRODUCTION, True),
        (GateWhen.ALWAYS, Level.CORE, GateMode.NONE, Level.PRODUCTION, False),
        (GateWhen.ALWAYS, Level.CORE, GateMode.PROMOTION, None, False),
        (GateWhen.PROMOTION, Level.CORE, GateMode.PROMOTION, Level.COGNITIVE, True),
        (GateWhen.PROMOTION, Level.CORE, GateMode.CONTINUOUS, Level.COGNITIVE, False),
        (GateWhen.CONTINUOUS, Level.CORE, GateMode.CONTINUOUS, Level.COGNITIVE, True),
        (GateWhen.CONTINUOUS, Level.CORE, GateMode.PROMOTION, Level.COGNITIVE, False),
        (GateWhen.PROMOTION, Level.LOOPS, GateMode.PROMOTION, Level.CONSCIOUS, False),
        (GateWhen.PROMOTION, Level.LOOPS, GateMode.PROMOTION, Level.LOOPS, True),
        (GateWhen.PROMOTION, Level.LOOPS, GateMode.PROMOTION, Level.PRODUCTION, True),
        (GateWhen.ALWAYS, Level.PRODUCTION, GateMode.CONTINUOUS, Level.LOOPS, False),
    ],
)
def test_activity(
    when: GateWhen, from_level: Level, mode: GateMode, active_level: Level | None, active: bool
) -> None:
    g = gate(max=1, when=when.value, fromLevel=from_level.value)
    report = evaluate([g], {}, {"g": one(5)}, [], T0, mode=mode, active_level=active_level)
    assert (report.gates[0].result is not GateResult.INACTIVE) is active
    assert report.verdict is (GateVerdict.BREACH if active else GateVerdict.PASS)
    assert bool(inactive_reason(g, mode, active_level)) is not active


def test_inactive_gates_need_no_outcome_and_active_ones_without_one_are_inconclusive() -> None:
    active, idle = gate("active", max=1), gate("idle", max=1, when="continuous")
    report = evaluate([active, idle], {}, {}, [], T0, mode=GateMode.PROMOTION, active_level=Level.CORE)
    assert [s.result for s in report.gates] == [GateResult.INCONCLUSIVE, GateResult.INACTIVE]
    assert "when=continuous" in report.gates[1].message


# ------------------------------------------------------------------------------- verdicts


def _report(
    *outcomes: QueryOutcome, previous: Sequence[GateStatus] = (), now: float = 0, for_: str = "0s"
) -> GateReport:
    gates = [gate(f"g{i}", max=100, **{"for": for_}) for i in range(len(outcomes))]
    return evaluate(
        gates,
        {g.name: f"query-{g.name}" for g in gates},
        {g.name: o for g, o in zip(gates, outcomes, strict=True)},
        previous,
        at(now),
        mode=GateMode.CONTINUOUS,
        active_level=Level.PRODUCTION,
    )


@pytest.mark.parametrize(
    ("outcomes", "verdict", "available"),
    [
        ((one(1), one(2)), GateVerdict.PASS, True),
        ((one(1), one(200)), GateVerdict.BREACH, True),
        ((one(1), QueryOutcome.no_data()), GateVerdict.INCONCLUSIVE, True),
        ((one(1), QueryOutcome.unavailable("down")), GateVerdict.INCONCLUSIVE, False),
        ((one(200), QueryOutcome.unavailable("down")), GateVerdict.BREACH, False),  # a measured breach counts
        ((QueryOutcome.invalid("x"), one(1)), GateVerdict.INCONCLUSIVE, True),
    ],
)
def test_verdict(outcomes: tuple[QueryOutcome, ...], verdict: GateVerdict, available: bool) -> None:
    report = _report(*outcomes)
    assert report.verdict is verdict
    assert report.source_available is available
    assert [s.query for s in report.gates] == [f"query-g{i}" for i in range(len(outcomes))]


def test_pending_breach_holds_without_breaching() -> None:
    report = _report(one(1), one(500), for_="10s")
    assert report.verdict is GateVerdict.INCONCLUSIVE
    assert report.breach is None
    assert "PendingBreach" in report.message


def test_breach_names_the_first_breaching_gate_in_declaration_order() -> None:
    report = _report(one(1), one(300), one(900))
    assert report.breach is not None and report.breach.name == "g1"
    assert report.message.startswith("gate g1 breached: ")


def test_passing_since_is_the_latest_since_of_the_applicable_gates() -> None:
    first = _report(one(1), one(500), now=0)
    assert first.passing_since is None
    second = _report(one(1), one(2), previous=first.gates, now=7)
    assert second.verdict is GateVerdict.PASS
    assert second.passing_since == at(7)  # g1 only passes since t=7; g0 since t=0
    third = _report(one(1), one(2), previous=second.gates, now=12)
    assert third.passing_since == at(7)


def test_no_applicable_gate_passes_with_no_passing_since() -> None:
    report = evaluate([gate(max=1)], {}, {}, [], T0, mode=GateMode.NONE, active_level=Level.CORE)
    assert report.verdict is GateVerdict.PASS
    assert report.passing_since is None
    assert report.gates[0].result is GateResult.INACTIVE


def test_time_round_trip_keeps_milliseconds() -> None:
    moment = at(1.234)
    assert parse_time(format_time(moment)) == moment
    assert parse_time("") is None and parse_time("yesterday") is None


# ------------------------------------------------------------------------------- defaults


def test_default_gates_follow_the_checklist() -> None:
    gates = {g.name: g for g in default_gates(DefaultGateOverrides(), bus_max_rate=1000)}
    assert tuple(gates) == DEFAULT_GATE_NAMES
    expected = {
        "promotion-cpu": (80, GateWhen.PROMOTION, Level.CORE, "0s"),
        "promotion-memory": (80, GateWhen.PROMOTION, Level.CORE, "0s"),
        "promotion-bus-rate": (1000, GateWhen.PROMOTION, Level.CORE, "0s"),
        "loops-bus-headroom": (700, GateWhen.PROMOTION, Level.LOOPS, "0s"),
        "loops-dropped-messages": (0, GateWhen.PROMOTION, Level.LOOPS, "0s"),
        "loops-latency-p95": (100, GateWhen.PROMOTION, Level.LOOPS, "0s"),
        "rollback-bus-rate": (1000, GateWhen.ALWAYS, Level.CORE, "0s"),
        "rollback-memory-growth": (500, GateWhen.ALWAYS, Level.CORE, "0s"),
        "rollback-cpu": (90, GateWhen.ALWAYS, Level.CORE, "30s"),
        "rollback-modules-in-error": (3, GateWhen.ALWAYS, Level.CORE, "0s"),
        "rollback-latency-p95": (500, GateWhen.ALWAYS, Level.CORE, "0s"),
    }
    assert {n: (g.max, g.when, g.from_level, g.for_) for n, g in gates.items()} == expected
    for g in gates.values():
        assert '{namespace="{{namespace}}"' in g.query, g.name
    assert "@ {{levelStart}}" in gates["rollback-memory-growth"].query


def test_default_thresholds_are_overridable_without_touching_queries() -> None:
    base = {g.name: g for g in default_gates(DefaultGateOverrides(), bus_max_rate=1000)}
    custom = {
        g.name: g
        for g in default_gates(
            DefaultGateOverrides(max_bus_rate=300, rollback_cpu_for="5s", loops_bus_ratio=0.5),
            bus_max_rate=2000,
        )
    }
    assert custom["rollback-bus-rate"].max == 300 and custom["promotion-bus-rate"].max == 300
    assert custom["loops-bus-headroom"].max == 1000  # 50 % of spec.bus.maxRate
    assert custom["rollback-cpu"].for_ == "5s"
    assert all(custom[n].query == base[n].query for n in base)


def test_gates_for_merges_defaults_and_own_gates_by_name() -> None:
    spec = JeffreyIntegrationSpec.model_validate(
        {
            "levels": [{"level": "CORE", "modules": [{"deployment": "memory"}]}],
            "defaultGates": True,
            "gates": [
                {"name": "rollback-bus-rate", "query": "my_bus_rate", "max": 10, "for": "5s"},
                {"name": "custom", "query": "up", "min": 1},
            ],
        }
    )
    gates = gates_for(spec)
    names = [g.name for g in gates]
    assert names == [*DEFAULT_GATE_NAMES, "custom"]
    replaced = gates[names.index("rollback-bus-rate")]
    assert (replaced.query, replaced.max, replaced.for_) == ("my_bus_rate", 10, "5s")
    assert [g.name for g in gates_for(spec.model_copy(update={"default_gates": False}))] == [
        "rollback-bus-rate",
        "custom",
    ]


def test_docs_show_the_default_gates_as_the_code_builds_them() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    for g in default_gates(DefaultGateOverrides(), bus_max_rate=1000):
        assert f"`{g.query}`" in docs, f"docs/metrics.md shows another query for {g.name}"
        assert f"| `{g.name}` |" in docs or f"`{g.name}`, " in docs, g.name
