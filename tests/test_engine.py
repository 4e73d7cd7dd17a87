"""The pure ladder engine: situations → decisions, driven by a fake clock (milliseconds each)."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pytest

from engine_world import T0, World
from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.engine import ceiling, decide, decide_invalid, desired_replicas, gate_mode
from jeffrey_operator.core.models import (
    GateResult,
    GateStatus,
    JeffreyIntegrationStatus,
    Level,
    ModuleState,
    Phase,
)
from jeffrey_operator.core.ports import GateMode, GateReport, GateVerdict
from jeffrey_operator.core.validation import parse_spec

FULL: dict[str, Any] = {
    "targetLevel": "PRODUCTION",
    "levels": [
        {"level": "CORE", "modules": [{"deployment": "memory"}, {"deployment": "neural-bus"}]},
        {
            "level": "COGNITIVE",
            "modules": [{"deployment": "auto-learner", "replicas": 2}, {"deployment": "theory-of-mind"}],
        },
        {"level": "EMOTIONAL", "modules": [{"deployment": "emotion-engine", "optional": True}]},
        {"level": "CONSCIOUS", "modules": [{"deployment": "consciousness", "optional": True}]},
        {"level": "LOOPS", "modules": [{"deployment": "awareness-loop"}]},
        {"level": "PRODUCTION", "modules": [{"deployment": "curiosity-loop"}]},
    ],
}


def spec_with(**overrides: Any) -> dict[str, Any]:
    spec = {**FULL, **overrides}
    return spec


def cond(status: JeffreyIntegrationStatus, type_: str) -> tuple[str, str]:
    found = c.get_condition(status.conditions, type_)
    assert found is not None, f"no {type_} condition"
    return found.status.value, found.reason


def breach(name: str = "bus-rate", value: float = 5000.0, max_: float = 1000.0) -> GateReport:
    gate = GateStatus(
        name=name,
        query="sum(rate(x[1m]))",
        value=value,
        max=max_,
        result=GateResult.BREACH,
        series='{module="awareness-loop"}',
    )
    return GateReport(verdict=GateVerdict.BREACH, gates=(gate,), breach=gate)


# --------------------------------------------------------------------------------------- the climb


def test_full_climb_promotes_one_level_at_a_time_lowest_first() -> None:
    w = World.of(FULL)
    w.run()
    assert w.status.phase == Phase.STABLE
    assert w.status.current_level == Level.PRODUCTION
    assert [d for d, _ in w.scale_log] == [
        "memory",
        "neural-bus",
        "auto-learner",
        "theory-of-mind",
        "emotion-engine",
        "consciousness",
        "awareness-loop",
        "curiosity-loop",
    ]
    validated = [
        t.to_level for t in w.status.transitions if t.reason in (c.LEVEL_VALIDATED, c.TARGET_REACHED)
    ]
    assert validated == list(Level)
    assert cond(w.status, c.READY) == ("True", c.TARGET_REACHED)
    assert cond(w.status, c.RECONCILING)[0] == "False"
    assert cond(w.status, c.STALLED)[0] == "False"
    # 6 levels x (30 s validation) + 5 x (2 s cooldown)
    assert (w.now - T0).total_seconds() == pytest.approx(6 * 30 + 5 * 2)


def test_steady_state_makes_no_writes() -> None:
    w = World.of(FULL)
    w.run()
    before = w.status
    w.advance(3600)
    d = w.step()
    assert d.actions == ()
    assert d.events == ()
    assert d.status.wire() == before.wire()
    assert d.requeue_after is None


def test_validation_window_and_cooldown_are_waited_for() -> None:
    w = World.of(FULL)
    w.step()  # Promoting CORE, scaled
    d = w.step()  # ready → Validating
    assert w.status.phase == Phase.VALIDATING
    assert d.requeue_after == pytest.approx(30)
    w.advance(29.5)
    d = w.step()
    assert w.status.phase == Phase.VALIDATING
    assert d.requeue_after == pytest.approx(0.5)
    w.advance(0.5)
    d = w.step()
    assert w.status.phase == Phase.COOLING_DOWN
    assert w.status.current_level == Level.CORE
    assert d.actions == ()
    assert d.requeue_after == pytest.approx(2)
    w.advance(2)
    d = w.step()
    assert w.status.phase == Phase.PROMOTING
    assert w.status.active_level == Level.COGNITIVE
    assert [(a.deployment, a.replicas) for a in d.actions] == [("auto-learner", 2), ("theory-of-mind", 1)]


def test_zero_windows_climb_needs_one_step_per_level() -> None:
    w = World.of(spec_with(promotion={"validationWindow": "0s", "cooldown": "0s"}))
    steps = 0
    while w.status.phase != Phase.STABLE:
        w.step()
        steps += 1
        assert steps < 20
    assert steps == 7  # 6 levels scaled one per step, plus the step that sees the last one ready


def test_ready_means_updated_and_ready_at_the_current_generation() -> None:
    w = World.of(FULL, instant=False)
    w.step()
    mem = w.deployments["memory"]
    # scaled, but the Deployment controller has not observed the new generation yet
    w.deployments["memory"] = replace(
        mem, observed_generation=mem.generation - 1, ready_replicas=1, updated_replicas=1
    )
    w.make_ready("neural-bus")
    w.step()
    assert w.status.phase == Phase.PROMOTING
    w.deployments["memory"] = replace(
        w.deployments["memory"], observed_generation=mem.generation, updated_replicas=0
    )
    w.step()
    assert w.status.phase == Phase.PROMOTING
    w.make_ready("memory")
    w.step()
    assert w.status.phase == Phase.VALIDATING


# ------------------------------------------------------------------------------------------ demotion


def test_lowering_the_target_scales_down_one_level_at_a_time_highest_first() -> None:
    w = World.of(FULL, instant=True)
    w.run()
    w.spec = parse_spec(spec_with(targetLevel="COGNITIVE"))  # type: ignore[assignment]
    w.generation = 2
    w.scale_log.clear()
    phases = []
    for _ in range(12):
        d = w.step()
        w.gates = breach()  # demotion ignores gates (the port is not even asked while demoting)
        phases.append(
            (w.status.phase, w.status.current_level, tuple((a.deployment, a.replicas) for a in d.actions))
        )
        if w.status.phase == Phase.STABLE:
            break
    assert [d for d, _ in w.scale_log] == [
        "curiosity-loop",
        "awareness-loop",
        "consciousness",
        "emotion-engine",
    ]
    assert w.status.phase == Phase.STABLE
    assert w.status.current_level == Level.COGNITIVE
    assert all(p in (Phase.DEMOTING, Phase.STABLE) for p, _, _ in phases)
    assert w.status.last_rollback is None


def test_demotion_waits_for_a_level_to_drain_before_the_next() -> None:
    w = World.of(FULL)
    w.run()
    w.spec = parse_spec(spec_with(targetLevel="CONSCIOUS"))  # type: ignore[assignment]
    w.instant = False
    d = decide(w.spec, w.status, w.observation(), w.now)
    assert [(a.deployment, a.replicas) for a in d.actions] == [("curiosity-loop", 0)]
    assert d.status.phase == Phase.DEMOTING
    assert d.status.active_level == Level.PRODUCTION


# ------------------------------------------------------------------------------------------ rollback


def test_readiness_timeout_rolls_back_to_core_and_holds() -> None:
    w = World.of(FULL, stuck={"theory-of-mind"})
    w.run()
    assert w.status.phase == Phase.ROLLED_BACK
    assert w.status.current_level == Level.CORE
    record = w.status.last_rollback
    assert record is not None
    assert record.reason == c.READINESS_TIMEOUT
    assert record.from_level == Level.COGNITIVE
    assert "theory-of-mind" in record.message
    assert w.deployments["auto-learner"].spec_replicas == 0
    assert w.deployments["memory"].spec_replicas == 1  # CORE is never scaled down by a rollback
    assert cond(w.status, c.STALLED) == ("True", c.ROLLED_BACK)
    assert any(e.type == "Warning" and e.reason == c.READINESS_TIMEOUT for d in w.decisions for e in d.events)
    # holding: no re-promotion, however long we wait
    w.advance(86400)
    d = w.step()
    assert d.actions == () and d.status.phase == Phase.ROLLED_BACK


def test_gate_breach_after_reaching_target_rolls_back_highest_first() -> None:
    w = World.of(FULL)
    w.run()
    w.gates = breach()
    d = w.step()
    assert d.status.phase == Phase.ROLLING_BACK
    assert [a.deployment for a in d.actions] == [
        "curiosity-loop",
        "awareness-loop",
        "consciousness",
        "emotion-engine",
        "auto-learner",
        "theory-of-mind",
    ]
    assert all(a.replicas == 0 for a in d.actions)
    record = d.status.last_rollback
    assert record is not None
    assert (record.gate, record.value, record.threshold) == ("bus-rate", 5000.0, 1000.0)
    assert record.from_level == Level.PRODUCTION
    assert "gate bus-rate: 5000" in record.message and "> max 1000" in record.message
    w.gates = GateReport()
    w.step()
    assert w.status.phase == Phase.ROLLED_BACK
    assert w.status.current_level == Level.CORE


def test_gate_breach_during_promotion_rolls_back() -> None:
    w = World.of(FULL)
    for _ in range(8):
        w.step()
    assert w.status.phase in (Phase.PROMOTING, Phase.VALIDATING, Phase.COOLING_DOWN)
    w.gates = breach()
    w.step()
    assert w.status.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK)
    assert w.status.last_rollback is not None and w.status.last_rollback.reason == c.GATE_BREACH


def test_inconclusive_gates_hold_validation_without_rollback() -> None:
    w = World.of(FULL)
    w.gates = GateReport(verdict=GateVerdict.INCONCLUSIVE, source_available=False, message="prometheus down")
    for _ in range(5):
        w.step()
        w.advance(60)
    assert w.status.phase == Phase.VALIDATING
    assert w.status.reason == c.WAITING_FOR_GATES
    assert w.status.current_level is None
    assert w.status.last_rollback is None
    assert cond(w.status, c.METRICS_AVAILABLE) == ("False", c.PROMETHEUS_UNAVAILABLE)
    assert cond(w.status, c.GATES_HEALTHY) == ("Unknown", c.GATES_INCONCLUSIVE)
    ok = GateStatus(name="bus-rate", query="q", value=10.0, max=1000.0, result=GateResult.PASS)
    w.gates = GateReport(gates=(ok,))
    w.run()
    assert w.status.phase == Phase.STABLE
    assert cond(w.status, c.METRICS_AVAILABLE) == ("True", c.PROMETHEUS_AVAILABLE)
    assert cond(w.status, c.GATES_HEALTHY) == ("True", c.GATES_PASSING)


def test_invalid_gates_are_reported_not_breached() -> None:
    bad = GateStatus(name="typo", query="sum(rate(x[1m])", result=GateResult.INVALID, message="parse error")
    w = World.of(FULL)
    w.gates = GateReport(verdict=GateVerdict.INCONCLUSIVE, gates=(bad,))
    for _ in range(4):
        w.step()
        w.advance(60)
    assert w.status.last_rollback is None
    assert w.status.phase == Phase.VALIDATING
    assert cond(w.status, c.GATES_HEALTHY) == ("False", c.GATES_INVALID)
    assert "typo" in c.get_condition(w.status.conditions, c.GATES_HEALTHY).message  # type: ignore[union-attr]


def test_validation_window_counts_from_when_gates_started_passing() -> None:
    w = World.of(FULL)
    w.step()
    w.step()  # Validating CORE at T0
    w.advance(25)
    w.gates = GateReport(passing_since=w.now)  # gates only pass since T0+25
    d = w.step()
    assert w.status.phase == Phase.VALIDATING
    assert d.requeue_after == pytest.approx(30)


@pytest.mark.parametrize(
    ("how", "reason"),
    [("annotation", c.RETRY_REQUESTED), ("generation", c.SPEC_CHANGED), ("auto", c.AUTO_RETRY)],
)
def test_a_rollback_is_retried_only_when_asked(how: str, reason: str) -> None:
    spec = spec_with(rollback={"autoRetryAfter": "10m"}) if how == "auto" else FULL
    w = World.of(spec, stuck={"theory-of-mind"})
    w.retry_token = "old"
    for _ in range(50):
        d = w.step()
        if w.status.phase == Phase.ROLLED_BACK:
            break
        w.advance(d.requeue_after or 0)
    assert w.status.phase == Phase.ROLLED_BACK
    w.stuck.clear()
    d = w.step()
    assert d.status.phase == Phase.ROLLED_BACK
    if how == "annotation":
        w.retry_token = "2026-11-21T10:00"
    elif how == "generation":
        w.generation += 1
    else:
        assert d.requeue_after is not None and d.requeue_after > 0
        w.advance(d.requeue_after)
    d = w.step()
    assert any(e.reason == reason for e in d.events)
    w.run()
    assert w.status.phase == Phase.STABLE
    assert w.status.current_level == Level.PRODUCTION
    if how == "auto":
        return  # autoRetryAfter retries every time, by design
    # the same annotation value (or generation) does not retry again after a new rollback
    w.gates = breach()
    w.step()
    w.gates = GateReport()
    w.run()
    assert w.status.phase == Phase.ROLLED_BACK


def test_an_up_level_that_stays_unready_rolls_back() -> None:
    w = World.of(FULL)
    w.run()
    w.deployments["auto-learner"] = replace(w.deployments["auto-learner"], ready_replicas=1)
    w.step()
    assert w.status.unready_since
    assert cond(w.status, c.DEGRADED)[0] == "True"
    w.advance(119)
    w.step()
    assert w.status.phase == Phase.STABLE
    w.advance(1)
    w.step()
    assert w.status.last_rollback is not None
    assert w.status.last_rollback.reason == c.MODULE_UNREADY


def test_readiness_recovering_before_the_timeout_clears_it() -> None:
    w = World.of(FULL)
    w.run()
    w.deployments["auto-learner"] = replace(w.deployments["auto-learner"], ready_replicas=1)
    w.step()
    w.advance(60)
    w.make_ready("auto-learner")
    w.step()
    assert w.status.unready_since == ""
    w.advance(120)
    w.step()
    assert w.status.phase == Phase.STABLE


# ---------------------------------------------------------------------------------- pause, optional


def test_paused_freezes_everything() -> None:
    w = World.of(spec_with(paused=True))
    d = w.step()
    assert d.actions == ()
    assert d.status.phase == Phase.PAUSED
    w.gates = breach()
    d = w.step()
    assert d.actions == () and d.status.last_rollback is None
    w.spec = parse_spec(FULL)  # type: ignore[assignment]
    w.gates = GateReport()
    w.generation = 2
    w.run()
    assert w.status.phase == Phase.STABLE


def test_optional_modules_degrade_but_never_block() -> None:
    w = World.of(FULL, stuck={"emotion-engine"})
    del w.deployments["consciousness"]
    w.run()
    assert w.status.phase == Phase.STABLE
    assert w.status.current_level == Level.PRODUCTION
    states = {m.deployment: m.state for m in w.status.modules}
    assert states["emotion-engine"] == ModuleState.PROGRESSING
    assert states["consciousness"] == ModuleState.MISSING
    status, reason = cond(w.status, c.DEGRADED)
    assert (status, reason) == ("True", c.OPTIONAL_MODULES_DEGRADED)
    message = c.get_condition(w.status.conditions, c.DEGRADED).message  # type: ignore[union-attr]
    assert "emotion-engine" in message and "consciousness" in message


def test_a_subset_of_levels_climbs_over_the_gaps() -> None:
    w = World.of({"levels": [FULL["levels"][0], FULL["levels"][4]]})
    w.run()
    assert w.status.current_level == Level.LOOPS
    assert [t.to_level for t in w.status.transitions if t.reason == c.LEVEL_VALIDATED] == [Level.CORE]


# --------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda s: s["levels"][5].update(level="CORE"), "spec.levels[5].level", c.DUPLICATE_LEVEL),
        (
            lambda s: s["levels"][1]["modules"].append({"deployment": "memory"}),
            "spec.levels[1].modules[2].deployment",
            c.DUPLICATE_DEPLOYMENT,
        ),
        (
            lambda s: s["levels"][5]["modules"].append({"deployment": "ghost"}),
            "spec.levels[5].modules[1].deployment",
            c.DEPLOYMENT_NOT_FOUND,
        ),
    ],
)
def test_bad_specs_are_invalid_and_touch_nothing(mutate: Any, field: str, reason: str) -> None:
    import copy

    raw = copy.deepcopy(FULL)
    mutate(raw)
    w = World.of(raw)
    w.deployments.pop("ghost", None)
    d = w.step()
    assert d.actions == ()
    assert d.status.phase == Phase.INVALID
    assert d.status.reason == reason
    assert field in d.status.message and "fix:" in d.status.message
    assert cond(d.status, c.STALLED) == ("True", reason)
    assert [e.type for e in d.events] == ["Warning"]


def test_a_deployment_claimed_by_an_older_integration_is_invalid() -> None:
    w = World.of(FULL)
    w.deployments["memory"] = replace(w.deployments["memory"], claimed_by=("jeffrey/other",))
    d = w.step()
    assert d.status.phase == Phase.INVALID and d.actions == ()
    assert "jeffrey/other" in d.status.message


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"levels": [{"level": "SUPREME", "modules": [{"deployment": "a"}]}]}, "spec.levels[0].level"),
        (
            {"levels": [{"level": "CORE", "modules": [{"deployment": "a", "replicas": -1}]}]},
            "spec.levels[0].modules[0].replicas",
        ),
        (
            {
                "levels": [{"level": "CORE", "modules": [{"deployment": "a"}]}],
                "promotion": {"cooldown": "2 min"},
            },
            "spec.promotion.cooldown",
        ),
        ({"levels": []}, "spec.levels"),
    ],
)
def test_unparsable_specs_become_invalid_status(raw: dict[str, Any], where: str) -> None:
    problems = parse_spec(raw)
    assert isinstance(problems, list)
    d = decide_invalid(JeffreyIntegrationStatus(), problems, 3, T0)
    assert d.status.phase == Phase.INVALID
    assert where in d.status.message
    assert d.status.observed_generation == 3
    assert d.actions == ()


@pytest.mark.parametrize(
    ("raw", "echoed"),
    [
        (
            {"targetLevel": "ULTRA", "levels": [{"level": "CORE", "modules": [{"deployment": "a"}]}]},
            "'ULTRA'",
        ),
        ({"levels": [{"level": "CORE", "modules": [{"deployment": "a", "replicas": -3}]}]}, "got -3"),
        ({"levels": [{"level": "CORE", "modules": [{"deployment": "A_B"}]}]}, "'A_B'"),
    ],
)
def test_every_invalid_message_echoes_the_offending_value(raw: dict[str, Any], echoed: str) -> None:
    problems = parse_spec(raw)
    assert isinstance(problems, list)
    d = decide_invalid(JeffreyIntegrationStatus(), problems, 1, T0)
    assert echoed in d.status.message
    assert echoed in d.events[0].message


def test_fixing_an_invalid_spec_resumes_from_the_validated_level() -> None:
    w = World.of(FULL)
    w.run()
    w.deployments["memory"] = replace(w.deployments["memory"], claimed_by=("jeffrey/other",))
    w.step()
    assert w.status.phase == Phase.INVALID
    assert w.status.current_level == Level.PRODUCTION
    w.deployments["memory"] = replace(w.deployments["memory"], claimed_by=())
    w.run()
    assert w.status.phase == Phase.STABLE
    assert w.status.current_level == Level.PRODUCTION


# ---------------------------------------------------------------------------------- restart, purity


def test_restart_mid_climb_resumes_without_repeating_or_skipping() -> None:
    w = World.of(FULL)
    for _ in range(9):
        w.step()
        w.advance(7)
    snapshot = JeffreyIntegrationStatus.model_validate(w.status.wire())  # as read back from the API
    seq = snapshot.transition_seq
    w2 = World(spec=w.spec, deployments=dict(w.deployments), status=snapshot, now=w.now)
    w2.run()
    w.run()
    assert w2.status.wire() == w.status.wire()
    assert [t.seq for t in w2.status.transitions] == list(range(1, w2.status.transition_seq + 1))
    assert w2.status.transitions[seq - 1].seq == seq


def test_decide_is_pure() -> None:
    w = World.of(FULL)
    status = w.status.model_copy(deep=True)
    obs = w.observation()
    d1 = decide(w.spec, status, obs, T0)
    d2 = decide(w.spec, status, obs, T0)
    assert d1 == d2
    assert status == JeffreyIntegrationStatus()


def test_a_gate_report_for_another_step_is_not_used_to_pass_validation() -> None:
    w = World.of(spec_with(promotion={"validationWindow": "0s", "cooldown": "0s"}))
    w.step()
    # CORE is ready; the report was evaluated for "promoting CORE" — it may validate CORE only.
    d = w.step()
    assert d.status.current_level == Level.CORE
    assert d.status.active_level == Level.COGNITIVE


@pytest.mark.parametrize(
    ("phase", "active", "current", "mode", "top"),
    [
        (Phase.PROMOTING, Level.LOOPS, Level.CONSCIOUS, GateMode.PROMOTION, Level.LOOPS),
        (Phase.VALIDATING, Level.LOOPS, Level.CONSCIOUS, GateMode.PROMOTION, Level.LOOPS),
        (Phase.STABLE, Level.LOOPS, Level.LOOPS, GateMode.CONTINUOUS, Level.LOOPS),
        (Phase.DEMOTING, Level.LOOPS, Level.CONSCIOUS, GateMode.NONE, Level.CONSCIOUS),
        (Phase.ROLLED_BACK, None, Level.CORE, GateMode.NONE, Level.CORE),
        (Phase.PAUSED, None, Level.CORE, GateMode.NONE, Level.CORE),
    ],
)
def test_gate_mode_and_ceiling_per_phase(
    phase: Phase, active: Level | None, current: Level | None, mode: GateMode, top: Level
) -> None:
    st = JeffreyIntegrationStatus(phase=phase, active_level=active, current_level=current)
    assert gate_mode(st)[0] == mode
    assert ceiling(st) == top


def test_desired_replicas_follow_the_ceiling() -> None:
    spec = parse_spec(FULL)
    assert not isinstance(spec, list)
    st = JeffreyIntegrationStatus(
        phase=Phase.VALIDATING, active_level=Level.COGNITIVE, current_level=Level.CORE
    )
    desired = desired_replicas(spec, st)
    assert desired["auto-learner"] == 2 and desired["memory"] == 1 and desired["emotion-engine"] == 0


def test_times_are_rfc3339_with_milliseconds() -> None:
    w = World.of(FULL, now=T0 + datetime.timedelta(milliseconds=1234))
    w.step()
    assert w.status.phase_since == "2026-11-21T09:00:01.234Z"


@pytest.mark.parametrize(
    ("mine", "claims", "expected"),
    [
        (("2026-11-21T10:00:00Z", "b", "u2"), [("2026-11-21T09:00:00Z", "a", "u1")], ("ns/a",)),
        (("2026-11-21T09:00:00Z", "a", "u1"), [("2026-11-21T10:00:00Z", "b", "u2")], ()),
        # same second: the name decides, so exactly one of the two keeps the Deployment
        (("2026-11-21T09:00:00Z", "b", "u2"), [("2026-11-21T09:00:00Z", "a", "u1")], ("ns/a",)),
        (("2026-11-21T09:00:00Z", "a", "u1"), [("2026-11-21T09:00:00Z", "b", "u2")], ()),
        # its own claim never counts
        (("2026-11-21T09:00:00Z", "a", "u1"), [("2026-11-21T09:00:00Z", "a", "u1")], ()),
    ],
)
def test_the_older_claim_on_a_deployment_wins(
    mine: tuple[str, str, str], claims: list[tuple[str, str, str]], expected: tuple[str, ...]
) -> None:
    from jeffrey_operator.core.validation import prior_claims

    assert prior_claims(mine, claims, "ns") == expected
