"""Pure tables for what the notification sinks are told (jeffrey_operator.core.notify)."""

from __future__ import annotations

import datetime
import doctest
from typing import Any

import pytest
from pydantic import ValidationError

from cel_fixtures import spec_schema, violations
from jeffrey_operator.core import notify
from jeffrey_operator.core.egress import EgressPolicy, url_problems
from jeffrey_operator.core.models import (
    Condition,
    ConditionStatus,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
    Level,
    NotificationSpec,
    NotifyEvent,
    Phase,
    RollbackRecord,
    Transition,
)
from jeffrey_operator.core.notify import (
    Cursor,
    Notice,
    SinkHealth,
    alerts,
    delivery_condition,
    effective_sinks,
    initial_cursor,
    notices,
    pending,
    stall,
    webhook_payload,
)
from jeffrey_operator.core.timestamps import format_time

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
E = NotifyEvent


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def ts(seconds: float) -> str:
    return format_time(at(seconds))


def t(seq: int, seconds: float, phase: Phase, reason: str = "", **kw: Any) -> Transition:
    return Transition(seq=seq, time=ts(seconds), phase=phase, reason=reason or phase.value, **kw)


def status(*transitions: Transition, **kw: Any) -> JeffreyIntegrationStatus:
    seq = transitions[-1].seq if transitions else 0
    return JeffreyIntegrationStatus(transitions=list(transitions), transition_seq=seq, **kw)


def webhook(on: list[NotifyEvent] | None = None) -> NotificationSpec:
    raw: dict[str, Any] = {
        "name": "audit",
        "webhook": {"url": "http://h/", "secretRef": {"name": "s", "key": "k"}},
    }
    if on is not None:
        raw["on"] = on
    return NotificationSpec.model_validate(raw)


def am(on: list[NotifyEvent] | None = None) -> NotificationSpec:
    raw: dict[str, Any] = {"name": "oncall", "alertmanager": {"url": "http://am:9093"}}
    if on is not None:
        raw["on"] = on
    return NotificationSpec.model_validate(raw)


def kinds(items: list[Notice]) -> list[tuple[int, str]]:
    return [(n.seq, n.event.value) for n in items]


def test_doctests() -> None:
    result = doctest.testmod(notify)
    assert result.attempted > 5 and result.failed == 0


# ----------------------------------------------------------------------------------- notices

CLIMB_ROLLBACK_RETRY_STABLE = status(
    t(1, 0, Phase.PROMOTING, to_level=None),
    t(2, 10, Phase.COOLING_DOWN, "LevelValidated", to_level=Level.CORE),
    t(3, 20, Phase.ROLLING_BACK, "GateBreach", from_level=Level.CORE, to_level=Level.CORE),
    t(4, 21, Phase.ROLLED_BACK, "RolledBack", from_level=Level.CORE, to_level=Level.CORE),
    t(5, 60, Phase.PENDING, "RetryRequested", from_level=Level.CORE, to_level=Level.CORE),
    t(6, 90, Phase.STABLE, "TargetReached", from_level=Level.CORE, to_level=Level.LOOPS),
    last_rollback=RollbackRecord(
        time=ts(20),
        from_level=Level.LOOPS,
        reason="GateBreach",
        message="m",
        gate="cpu",
        value=95,
        threshold=90,
    ),
)


@pytest.mark.parametrize(
    ("st", "expected"),
    [
        (status(), []),
        (status(t(1, 0, Phase.PROMOTING), t(2, 5, Phase.STABLE, "TargetReached")), [(2, "TargetReached")]),
        (
            CLIMB_ROLLBACK_RETRY_STABLE,
            [(3, "RolledBack"), (6, "TargetReached"), (6, "Recovered")],
        ),
        # Invalid, fixed, stable: recovered; a second Stable without a problem in between is not.
        (
            status(
                t(1, 0, Phase.INVALID, "DeploymentNotFound"),
                t(2, 5, Phase.PENDING),
                t(3, 6, Phase.STABLE, "TargetReached"),
                t(4, 9, Phase.DEMOTING),
                t(5, 10, Phase.STABLE, "TargetReached"),
            ),
            [(1, "Invalid"), (3, "TargetReached"), (3, "Recovered"), (5, "TargetReached")],
        ),
        # RolledBack is the rollback beginning; RolledBack phase (drained) is not told again.
        (
            status(t(1, 0, Phase.ROLLING_BACK, "ReadinessTimeout"), t(2, 1, Phase.ROLLED_BACK)),
            [(1, "RolledBack")],
        ),
    ],
)
def test_notices_from_transitions(st: JeffreyIntegrationStatus, expected: list[tuple[int, str]]) -> None:
    assert kinds(notices(st, at(1000))) == expected


def test_a_rolled_back_notice_carries_the_gate_value_and_threshold() -> None:
    rolled = notices(CLIMB_ROLLBACK_RETRY_STABLE, at(1000))[0]
    assert (rolled.gate, rolled.value, rolled.threshold) == ("cpu", 95, 90)
    assert rolled.level is Level.LOOPS  # the level it rolled back from
    assert rolled.reason == "GateBreach"
    other = status(t(1, 0, Phase.ROLLING_BACK, "ModuleUnready", from_level=Level.COGNITIVE))
    notice = notices(other, at(10))[0]
    assert (notice.gate, notice.value, notice.level) == ("", None, Level.COGNITIVE)


# ------------------------------------------------------------------------------------- stall


def held(kind: str, cond_status: str, since: float) -> Condition:
    return Condition(
        type=kind,
        status=cond_status,
        reason="R" + kind,
        message="why",
        last_transition_time=ts(since),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("phase", "conds", "phase_since", "now", "expected"),
    [
        # gates inconclusive since 0, phase since -60: stalled at 600
        (Phase.VALIDATING, [held("GatesHealthy", "Unknown", 0)], -60, 599, (None, 1.0)),
        (Phase.VALIDATING, [held("GatesHealthy", "Unknown", 0)], -60, 600, ("stalled", ts(600))),
        # Prometheus down since 0 but the phase began later (the climb moved on): counts from 100
        (Phase.PROMOTING, [held("MetricsAvailable", "False", 0)], 100, 650, (None, 50.0)),
        (Phase.PROMOTING, [held("MetricsAvailable", "False", 0)], 100, 700, ("stalled", ts(700))),
        # the earliest holding condition counts
        (
            Phase.VALIDATING,
            [held("GatesHealthy", "Unknown", 50), held("MetricsAvailable", "False", 10)],
            0,
            610,
            ("stalled", ts(610)),
        ),
        # a level check failed with onFailure: hold (or cannot run); running checks do not stall
        (Phase.VALIDATING, [held("ChecksHealthy", "False", 30)], 0, 630, ("stalled", ts(630))),
        (Phase.VALIDATING, [held("ChecksHealthy", "Unknown", 0)], 0, 9999, (None, None)),
        # not holding: conditions with other statuses, or not climbing
        (
            Phase.VALIDATING,
            [held("GatesHealthy", "True", 0), held("MetricsAvailable", "True", 0)],
            0,
            9999,
            (None, None),
        ),
        (Phase.STABLE, [held("GatesHealthy", "Unknown", 0)], 0, 9999, (None, None)),
        (Phase.ROLLED_BACK, [held("MetricsAvailable", "False", 0)], 0, 9999, (None, None)),
    ],
)
def test_stall(
    phase: Phase, conds: list[Condition], phase_since: float, now: float, expected: tuple[Any, Any]
) -> None:
    st = JeffreyIntegrationStatus(
        phase=phase, conditions=conds, phase_since=ts(phase_since), transition_seq=4, active_level=Level.LOOPS
    )
    notice, remaining = stall(st, at(now), 600)
    if expected[0] is None:
        assert notice is None
        assert remaining == expected[1]
    else:
        assert notice is not None and remaining is None
        assert (notice.event, notice.seq, notice.time, notice.level) == (
            E.STALLED,
            4,
            expected[1],
            Level.LOOPS,
        )
        assert "held for more than 10m" in notice.message and "why" in notice.message


def test_a_stall_comes_after_the_transition_it_is_held_in() -> None:
    st = status(t(1, 0, Phase.PROMOTING), t(2, 1, Phase.VALIDATING))
    st.phase, st.phase_since = Phase.VALIDATING, ts(1)
    st.conditions = [held("GatesHealthy", "Unknown", 1)]
    assert kinds(notices(st, at(700), 600)) == [(2, "Stalled")]
    sink = webhook(on=[E.STALLED])
    assert kinds(pending(sink, notices(st, at(700), 600), Cursor(2, "Stalled"))) == []
    assert kinds(pending(sink, notices(st, at(700), 600), Cursor(2, ""))) == [(2, "Stalled")]


# ----------------------------------------------------------------------------------- cursors


@pytest.mark.parametrize(
    ("on", "cursor", "expected"),
    [
        (None, Cursor(), [(3, "RolledBack")]),  # the default: RolledBack, Invalid, Stalled
        (list(E), Cursor(), [(3, "RolledBack"), (6, "TargetReached"), (6, "Recovered")]),
        (list(E), Cursor(3, "RolledBack"), [(6, "TargetReached"), (6, "Recovered")]),
        (list(E), Cursor(6, "TargetReached"), [(6, "Recovered")]),
        (list(E), Cursor(6, "Recovered"), []),
        ([E.RECOVERED], Cursor(5, ""), [(6, "Recovered")]),
        ([E.TARGET_REACHED], Cursor(99, ""), []),
    ],
)
def test_pending_after_the_cursor(on: list[NotifyEvent] | None, cursor: Cursor, expected: list[Any]) -> None:
    assert kinds(pending(webhook(on), notices(CLIMB_ROLLBACK_RETRY_STABLE, at(1000)), cursor)) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (90, Cursor()),  # everything recent: a new integration's sinks get all of it
        (20 + 301, Cursor(3, "RolledBack")),  # the rollback is older than 5 minutes: history
        (90 + 301, Cursor(6, "Recovered")),
    ],
)
def test_a_new_sink_starts_after_old_history(now: float, expected: Cursor) -> None:
    assert initial_cursor(notices(CLIMB_ROLLBACK_RETRY_STABLE, at(now)), at(now)) == expected


# -------------------------------------------------------------------------------- Alertmanager


def alert_rows(st: JeffreyIntegrationStatus, sink: NotificationSpec, now: float) -> list[tuple[str, ...]]:
    out = []
    for a in alerts("ns", "ji", sink, notices(st, at(now), 600)):
        labels = dict(a.labels)
        out.append(
            (labels["alertname"], labels["level"], labels["reason"], a.starts_at, a.ends_at or "firing")
        )
    return out


def test_alerts_fire_until_stable_then_resolve() -> None:
    firing = status(
        *CLIMB_ROLLBACK_RETRY_STABLE.transitions[:5], last_rollback=CLIMB_ROLLBACK_RETRY_STABLE.last_rollback
    )
    assert alert_rows(firing, am(), 70) == [
        ("JeffreyIntegrationRolledBack", "LOOPS", "GateBreach", ts(20), "firing")
    ]
    assert alert_rows(CLIMB_ROLLBACK_RETRY_STABLE, am(), 100) == [
        ("JeffreyIntegrationRolledBack", "LOOPS", "GateBreach", ts(20), ts(90))
    ]


def test_alerts_one_per_label_set_starting_at_the_first() -> None:
    st = status(
        t(1, 0, Phase.ROLLING_BACK, "ReadinessTimeout", from_level=Level.CORE),
        t(2, 5, Phase.PENDING),
        t(3, 10, Phase.ROLLING_BACK, "ReadinessTimeout", from_level=Level.CORE),
        t(4, 15, Phase.INVALID, "DeploymentNotFound", to_level=Level.CORE),
    )
    assert alert_rows(st, am(), 20) == [
        ("JeffreyIntegrationRolledBack", "CORE", "ReadinessTimeout", ts(0), "firing"),
        ("JeffreyIntegrationInvalid", "CORE", "DeploymentNotFound", ts(15), "firing"),
    ]
    assert alert_rows(st, am(on=[E.INVALID]), 20) == [
        ("JeffreyIntegrationInvalid", "CORE", "DeploymentNotFound", ts(15), "firing")
    ]


def test_an_older_episode_is_not_resolved_again() -> None:
    st = status(
        t(1, 0, Phase.ROLLING_BACK, "GateBreach"),
        t(2, 5, Phase.STABLE, "TargetReached"),
        t(3, 10, Phase.STABLE, "TargetReached", to_level=Level.CORE),
    )
    assert alert_rows(st, am(), 20) == []


def test_an_alert_wire_form_ends_after_the_ttl_unless_posted_again() -> None:
    (alert,) = alerts("ns", "ji", am(), notices(status(t(1, 0, Phase.INVALID, "InvalidSpec")), at(5)))
    wire = alert.wire(at(5), 300)
    assert wire["startsAt"] == ts(0) and wire["endsAt"] == ts(305)
    assert wire["labels"] == {
        "alertname": "JeffreyIntegrationInvalid",
        "namespace": "ns",
        "name": "ji",
        "level": "none",
        "reason": "InvalidSpec",
        "severity": "warning",
    }
    assert "jeffreyctl status ji -n ns" in str(wire["annotations"])


# ----------------------------------------------------------------------------------- payloads


def test_webhook_payload_shape() -> None:
    rolled = notices(CLIMB_ROLLBACK_RETRY_STABLE, at(1000))[0]
    assert webhook_payload("ns", "ji", "u-1", rolled) == {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegrationNotification",
        "integration": {"namespace": "ns", "name": "ji", "uid": "u-1"},
        "transition": "RolledBack",
        "seq": 3,
        "idempotencyKey": "u-1/3/RolledBack",
        "time": ts(20),
        "phase": "RollingBack",
        "fromLevel": "CORE",
        "toLevel": "CORE",
        "level": "LOOPS",
        "reason": "GateBreach",
        "message": "",
        "gate": "cpu",
        "check": None,
        "value": 95,
        "threshold": 90,
    }


# ---------------------------------------------------------------------------------- condition


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({}, None),
        ({"a": SinkHealth("webhook")}, (True, "NotificationsUpToDate", "1 sinks up to date")),
        (
            {"a": SinkHealth("webhook", 3, "HTTP 500"), "b": SinkHealth("slack", 1, "unreachable")},
            (False, "NotificationFailing", "a (webhook): HTTP 500; b (slack): unreachable; retrying"),
        ),
        (
            {"a": SinkHealth("webhook", 1, "egress refused: x", refused=True), "b": SinkHealth("slack")},
            (False, "NotificationRefused", "a (webhook): egress refused: x; retrying"),
        ),
    ],
)
def test_delivery_condition(health: dict[str, SinkHealth], expected: tuple[bool, str, str] | None) -> None:
    verdict = delivery_condition(health)
    assert (None if verdict is None else (verdict.status, verdict.reason, verdict.message)) == expected


# ------------------------------------------------------------------------------------- spec


BASE: dict[str, Any] = {"levels": [{"level": "CORE", "modules": [{"deployment": "memory"}]}]}


@pytest.mark.parametrize(
    ("sinks", "error"),
    [
        ([{"name": "a"}], "set exactly one of alertmanager, webhook, slack"),
        (
            [
                {
                    "name": "a",
                    "alertmanager": {"url": "http://am"},
                    "slack": {"urlSecretRef": {"name": "s", "key": "k"}},
                }
            ],
            "set exactly one",
        ),
        ([{"name": "a", "webhook": {"url": "http://h"}}], "secretRef"),  # a webhook without its secret
        ([{"name": "a", "slack": {}}], "urlSecretRef"),  # a Slack sink without its URL secret
        ([{"name": "a", "alertmanager": {"url": "am:9093"}}], "should match pattern"),
        ([{"name": "a", "on": ["Sometimes"], "alertmanager": {"url": "http://am"}}], "on"),
        ([{"name": "a", "on": [], "alertmanager": {"url": "http://am"}}], "at least 1"),
        (
            [
                {"name": "a", "alertmanager": {"url": "http://am"}},
                {"name": "a", "alertmanager": {"url": "http://b"}},
            ],
            "notification names must be unique: a",
        ),
        ([{"name": "Not_A_Label", "alertmanager": {"url": "http://am"}}], "should match pattern"),
    ],
)
def test_bad_sinks_are_refused(sinks: list[dict[str, Any]], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        JeffreyIntegrationSpec.model_validate({**BASE, "notifications": sinks})


def test_defaults_and_overrides() -> None:
    spec = JeffreyIntegrationSpec.model_validate(
        {**BASE, "notifications": [{"name": "oncall", "alertmanager": {"url": "http://mine"}}]}
    )
    defaults = [
        am(),
        NotificationSpec.model_validate(
            {"name": "team", "slack": {"urlSecretRef": {"name": "s", "key": "u"}}}
        ),
    ]
    got = [(s.name, s.kind, d) for s, d in effective_sinks(spec, defaults)]
    assert got == [("team", "slack", True), ("oncall", "alertmanager", False)]
    assert spec.notifications[0].on == [E.ROLLED_BACK, E.INVALID, E.STALLED]
    assert spec.stalled_after == "10m"


def test_every_url_of_a_spec_passes_the_egress_policy() -> None:
    spec = JeffreyIntegrationSpec.model_validate(
        {
            **BASE,
            "analysis": {"prometheus": {"url": "http://169.254.169.254:9090"}},
            "gates": [{"name": "up", "query": "up", "min": 1}],
            "notifications": [
                {"name": "oncall", "alertmanager": {"url": "http://am.monitoring:9093"}},
                {
                    "name": "audit",
                    "webhook": {"url": "http://[fd00:ec2::254]/", "secretRef": {"name": "s", "key": "k"}},
                },
            ],
        }
    )
    problems = url_problems(spec, EgressPolicy())
    assert [(p.field, p.reason) for p in problems] == [
        ("spec.analysis.prometheus.url", "EgressRefused"),
        ("spec.notifications[1].webhook.url", "EgressRefused"),
    ]
    assert "http://[fd00:ec2::254]/ is refused" in problems[1].message
    names_only = EgressPolicy.parse(["*.monitoring"])
    assert [p.field for p in url_problems(spec, names_only)] == [
        "spec.analysis.prometheus.url",
        "spec.notifications[1].webhook.url",
    ]
    # Without gates the Prometheus URL is never called, so it is not judged.
    assert (
        url_problems(JeffreyIntegrationSpec.model_validate(BASE), EgressPolicy.parse(["hooks.example"])) == []
    )
    assert url_problems(spec.model_copy(update={"gates": []}), EgressPolicy()) == problems[1:]
    # HTTP checks pass the same policy.
    checked = JeffreyIntegrationSpec.model_validate(
        {**BASE, "checks": [{"name": "r", "level": "CORE", "http": {"url": "http://2852039166/readyz"}}]}
    )
    assert [p.field for p in url_problems(checked, EgressPolicy())] == ["spec.checks[0].http.url"]


@pytest.mark.parametrize(
    ("sinks", "refused"),
    [
        ([{"name": "a", "alertmanager": {"url": "http://am"}}], None),
        (
            [{"name": "a", "webhook": {"url": "http://h"}, "slack": {}}],
            "set exactly one of alertmanager, webhook, slack",
        ),
        ([{"name": "a"}], "set exactly one of alertmanager, webhook, slack"),
        (
            [{"name": "a", "slack": {}}, {"name": "a", "alertmanager": {"url": "http://am"}}],
            "notification names must be unique",
        ),
    ],
)
def test_the_crd_cel_rules_say_what_pydantic_says(
    cel: Any, sinks: list[dict[str, Any]], refused: str | None
) -> None:
    """The CEL rules of the generated CRD, evaluated by a CEL implementation (cel-python)."""
    messages = list(violations(cel, spec_schema()["properties"]["notifications"], sinks))
    assert (messages[0] if messages else None) == refused


def test_jeffreyctl_status_names_the_sinks_that_are_not_told() -> None:
    from jeffrey_operator.ctl.render import render_status

    failing = Condition(
        type="NotificationsDelivered",
        status="False",  # type: ignore[arg-type]
        reason="NotificationFailing",
        message="audit (webhook): HTTP 500; retrying",
        last_transition_time=ts(0),
    )
    st = JeffreyIntegrationStatus(phase=Phase.ROLLED_BACK, conditions=[failing])
    out = render_status(None, st, at(10), name="ji", namespace="ns")
    assert "NOTIFICATIONS  NotificationFailing: audit (webhook): HTTP 500; retrying" in out
    healthy = failing.model_copy(update={"status": ConditionStatus.TRUE, "reason": "NotificationsUpToDate"})
    assert "NOTIFICATIONS" not in render_status(None, st.model_copy(update={"conditions": [healthy]}), at(10))
