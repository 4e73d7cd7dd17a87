"""What to tell the notification sinks: pure decisions from status and each sink's cursor.

The ladder records every change of (currentLevel, phase) as a numbered transition in
``status.transitions``; notifications are *derived* from them, so they are level-based like the
rest: after a restart the operator derives the same notifications again and goes on from the
cursor ``status.notifications[].seq`` says each sink reached.

- :func:`notices` turns transitions into the notifications they stand for: a transition into
  RollingBack is ``RolledBack``, into Invalid is ``Invalid``, into Stable is ``TargetReached``
  (and ``Recovered`` too when a rollback or Invalid happened since the previous Stable). A climb
  held by an outage or a failing check for ``stalledAfter`` adds ``Stalled`` (keyed by the
  transition it is held in).
- Event sinks (webhook, Slack) get :func:`pending` notices one at a time, oldest first, and the
  cursor moves on only when a delivery succeeded: at least once, with the idempotency key
  :func:`idempotency_key` (the uid, the transition's ``seq`` and the event) so that a receiver
  drops duplicates.
- Alertmanager is level-based itself: :func:`alerts` is the set of alerts to post now, firing
  while the integration is not healthy (re-posted so that Alertmanager does not time them out)
  and resolved when it is stable at its target again.

Worked example: a climb to COGNITIVE rolls back on a gate breach, retries and reaches the target.

>>> from jeffrey_operator.core.models import Transition as T
>>> st = JeffreyIntegrationStatus(transition_seq=4, transitions=[
...     T(seq=1, time="2026-01-01T12:00:00Z", phase=Phase.PROMOTING, reason="Promoting"),
...     T(seq=2, time="2026-01-01T12:01:00Z", phase=Phase.ROLLING_BACK, reason="GateBreach",
...       from_level=Level.CORE, to_level=Level.CORE),
...     T(seq=3, time="2026-01-01T12:01:05Z", phase=Phase.ROLLED_BACK, reason="RolledBack"),
...     T(seq=4, time="2026-01-01T12:09:00Z", phase=Phase.STABLE, reason="TargetReached",
...       from_level=Level.CORE, to_level=Level.COGNITIVE)])
>>> now = parse_time("2026-01-01T12:10:00Z")
>>> [(n.seq, n.event.value) for n in notices(st, now)]
[(2, 'RolledBack'), (4, 'TargetReached'), (4, 'Recovered')]
>>> sink = NotificationSpec(name="audit", webhook={"url": "http://h", "secretRef": {"name": "s", "key": "k"}})
>>> [(n.seq, n.event.value) for n in pending(sink, notices(st, now), Cursor(seq=2, event="RolledBack"))]
[]
>>> sink.on.append(NotifyEvent.RECOVERED)
>>> [(n.seq, n.event.value) for n in pending(sink, notices(st, now), Cursor(seq=2, event="RolledBack"))]
[(4, 'Recovered')]
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.durations import format_duration, parse_duration
from jeffrey_operator.core.models import (
    ConditionStatus,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
    Level,
    NotificationSpec,
    NotifyEvent,
    Phase,
    SinkDelivery,
    Transition,
)
from jeffrey_operator.core.timestamps import format_time, parse_time

__all__ = [
    "HOLDING_CONDITIONS",
    "NEW_SINK_LOOKBACK",
    "PROBLEMS",
    "Alert",
    "Cursor",
    "Notice",
    "SinkHealth",
    "alerts",
    "delivery_condition",
    "effective_sinks",
    "idempotency_key",
    "initial_cursor",
    "notices",
    "pending",
    "slack_message",
    "stall",
    "webhook_payload",
]

#: Notifications that stand for a problem: an Alertmanager alert fires for them.
PROBLEMS = (NotifyEvent.ROLLED_BACK, NotifyEvent.INVALID, NotifyEvent.STALLED)
#: Order of notifications that share a transition seq.
_RANK = {
    NotifyEvent.ROLLED_BACK: 0,
    NotifyEvent.INVALID: 0,
    NotifyEvent.TARGET_REACHED: 0,
    NotifyEvent.RECOVERED: 1,
    NotifyEvent.STALLED: 2,
}
#: Phases in which the climb can be held (and so stall).
_CLIMBING = (Phase.PENDING, Phase.PROMOTING, Phase.VALIDATING, Phase.COOLING_DOWN)
#: Conditions that hold a climb while they have this status: their lastTransitionTime says since
#: when. (Prometheus unreachable; gates inconclusive; a level check failed or cannot run, with
#: ``onFailure: hold`` — a failure that rolls back is not a hold.)
HOLDING_CONDITIONS: tuple[tuple[str, ConditionStatus], ...] = (
    (c.METRICS_AVAILABLE, ConditionStatus.FALSE),
    (c.GATES_HEALTHY, ConditionStatus.UNKNOWN),
    (c.CHECKS_HEALTHY, ConditionStatus.FALSE),
)
#: A sink seen for the first time is told what happened this recently, not the whole history.
NEW_SINK_LOOKBACK = datetime.timedelta(minutes=5)


@dataclass(frozen=True, order=True)
class Cursor:
    """How far a sink got: ``(seq, rank of event)`` orders notifications."""

    seq: int = 0
    event: str = ""

    @property
    def key(self) -> tuple[int, int]:
        known = {e.value: _RANK[e] for e in NotifyEvent}
        return (self.seq, known.get(self.event, -1))

    @classmethod
    def of(cls, delivery: SinkDelivery) -> Cursor:
        return cls(seq=delivery.seq, event=delivery.event)


@dataclass(frozen=True)
class Notice:
    """One notification, whatever the sink."""

    event: NotifyEvent
    seq: int
    #: When it happened (RFC 3339): the transition's time; for Stalled, when the hold became a stall.
    time: str
    phase: Phase
    reason: str
    message: str
    from_level: Level | None = None
    to_level: Level | None = None
    #: The level it concerns: rolled back from, held at, reached.
    level: Level | None = None
    #: The gate or the check that caused a rollback; a gate's value and the threshold it crossed.
    gate: str = ""
    check: str = ""
    value: float | None = None
    threshold: float | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.seq, _RANK[self.event])

    @property
    def cursor(self) -> Cursor:
        return Cursor(seq=self.seq, event=self.event.value)


def _from_transition(event: NotifyEvent, t: Transition, status: JeffreyIntegrationStatus) -> Notice:
    gate, check, value, threshold, level = "", "", None, None, t.to_level
    if event is NotifyEvent.ROLLED_BACK:
        level = t.from_level
        record = status.last_rollback
        if record is not None and record.time == t.time:
            gate, value, threshold = record.gate, record.value, record.threshold
            # Level checks name the check that rolled back (``lastRollback.check``).
            check = str(getattr(record, "check", "") or "")
            level = record.from_level or level
    return Notice(
        event=event,
        seq=t.seq,
        time=t.time,
        phase=t.phase,
        reason=t.reason,
        message=t.message,
        from_level=t.from_level,
        to_level=t.to_level,
        level=level,
        gate=gate,
        check=check,
        value=value,
        threshold=threshold,
    )


def stall(
    status: JeffreyIntegrationStatus, now: datetime.datetime, stalled_after: float = 600.0
) -> tuple[Notice | None, float | None]:
    """The ``Stalled`` notice if the climb has been held for ``stalled_after`` seconds, else the
    seconds until it would be (None: not held at all).

    Held = climbing, and a holding condition (Prometheus unavailable, gates inconclusive) has had
    its holding status since a moment at or after the current phase began.

    >>> from jeffrey_operator.core.models import Condition
    >>> held = Condition(type="GatesHealthy", status="Unknown", reason="GatesInconclusive",
    ...                  message="gates inconclusive", last_transition_time="2026-01-01T12:00:00Z")
    >>> st = JeffreyIntegrationStatus(phase=Phase.VALIDATING, active_level=Level.LOOPS, transition_seq=7,
    ...                               phase_since="2026-01-01T11:58:00Z", conditions=[held])
    >>> stall(st, parse_time("2026-01-01T12:04:00Z"))
    (None, 360.0)
    >>> notice, _ = stall(st, parse_time("2026-01-01T12:10:00Z")); notice.seq, notice.time, notice.level
    (7, '2026-01-01T12:10:00.000Z', <Level.LOOPS: 'LOOPS'>)
    """
    if status.phase not in _CLIMBING:
        return None, None
    since: datetime.datetime | None = None
    why = None
    for type_, holding in HOLDING_CONDITIONS:  # on a tie, the first listed names the stall
        for cond in status.conditions:
            started = parse_time(cond.last_transition_time)
            matches = cond.type == type_ and cond.status == holding and started is not None
            if matches and (since is None or (started is not None and started < since)):
                since, why = started, cond
    if since is None or why is None:
        return None, None
    phase_since = parse_time(status.phase_since)
    if phase_since is not None and phase_since > since:
        since = phase_since
    remaining = stalled_after - (now - since).total_seconds()
    if remaining > 0:
        return None, remaining
    level = status.active_level or status.current_level
    at = since + datetime.timedelta(seconds=stalled_after)
    return (
        Notice(
            event=NotifyEvent.STALLED,
            seq=status.transition_seq,
            time=format_time(at),
            phase=status.phase,
            reason=why.reason,
            message=f"{status.phase.value} {level.value if level else ''} held for more than "
            f"{format_duration(stalled_after)}: {why.message}".replace("  ", " "),
            from_level=status.current_level,
            to_level=status.current_level,
            level=level,
        ),
        None,
    )


def notices(
    status: JeffreyIntegrationStatus, now: datetime.datetime, stalled_after: float = 600.0
) -> list[Notice]:
    """Every notification the kept transitions (and a current stall) stand for, oldest first."""
    out: list[Notice] = []
    problem_since_stable = False
    for t in status.transitions:
        if t.phase is Phase.ROLLING_BACK:
            out.append(_from_transition(NotifyEvent.ROLLED_BACK, t, status))
            problem_since_stable = True
        elif t.phase is Phase.INVALID:
            out.append(_from_transition(NotifyEvent.INVALID, t, status))
            problem_since_stable = True
        elif t.phase is Phase.STABLE:
            out.append(_from_transition(NotifyEvent.TARGET_REACHED, t, status))
            if problem_since_stable:
                out.append(_from_transition(NotifyEvent.RECOVERED, t, status))
            problem_since_stable = False
    stalled, _ = stall(status, now, stalled_after)
    if stalled is not None:
        out.append(stalled)
    return sorted(out, key=lambda n: n.key)


def pending(sink: NotificationSpec, all_notices: Iterable[Notice], cursor: Cursor) -> list[Notice]:
    """The notices ``sink`` still has to get: after its cursor, and among the events it asked for."""
    return [n for n in all_notices if n.key > cursor.key and n.event in sink.on]


def initial_cursor(all_notices: Sequence[Notice], now: datetime.datetime) -> Cursor:
    """Where a sink seen for the first time starts: after everything older than
    :data:`NEW_SINK_LOOKBACK` (a new sink is not flooded with history; a new integration's first
    notifications are recent, so they are all delivered)."""
    cutoff = now - NEW_SINK_LOOKBACK
    old = [n for n in all_notices if (parse_time(n.time) or now) < cutoff]
    return old[-1].cursor if old else Cursor()


def idempotency_key(uid: str, notice: Notice) -> str:
    """The same for every delivery of one notification, different for any other.

    >>> idempotency_key("0a1b", Notice(NotifyEvent.ROLLED_BACK, 12, "t", Phase.ROLLING_BACK, "r", "m"))
    '0a1b/12/RolledBack'
    """
    return f"{uid}/{notice.seq}/{notice.event.value}"


def effective_sinks(
    spec: JeffreyIntegrationSpec, defaults: Sequence[NotificationSpec]
) -> list[tuple[NotificationSpec, bool]]:
    """The integration's sinks and the operator-wide defaults, ``(sink, is_default)``; an entry
    of the spec overrides a default of the same name."""
    own = {n.name for n in spec.notifications}
    return [(d, True) for d in defaults if d.name not in own] + [(n, False) for n in spec.notifications]


# ------------------------------------------------------------------------------------ payloads


def _level(level: Level | None) -> str | None:
    return level.value if level is not None else None


def webhook_payload(namespace: str, name: str, uid: str, notice: Notice) -> dict[str, object]:
    """The documented JSON body of a webhook delivery (docs/notifications.md)."""
    return {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegrationNotification",
        "integration": {"namespace": namespace, "name": name, "uid": uid},
        "transition": notice.event.value,
        "seq": notice.seq,
        "idempotencyKey": idempotency_key(uid, notice),
        "time": notice.time,
        "phase": notice.phase.value,
        "fromLevel": _level(notice.from_level),
        "toLevel": _level(notice.to_level),
        "level": _level(notice.level),
        "reason": notice.reason,
        "message": notice.message,
        "gate": notice.gate or None,
        "check": notice.check or None,
        "value": notice.value,
        "threshold": notice.threshold,
    }


_SLACK_ICON = {
    NotifyEvent.ROLLED_BACK: ":rotating_light:",
    NotifyEvent.INVALID: ":no_entry:",
    NotifyEvent.STALLED: ":hourglass:",
    NotifyEvent.TARGET_REACHED: ":white_check_mark:",
    NotifyEvent.RECOVERED: ":white_check_mark:",
}


def slack_message(namespace: str, name: str, notice: Notice) -> dict[str, object]:
    """A short Slack incoming-webhook message: what happened, why, and where to look.

    >>> n = Notice(NotifyEvent.ROLLED_BACK, 3, "t", Phase.ROLLING_BACK, "GateBreach", "gate cpu: 95 > max 90",
    ...            level=Level.LOOPS)
    >>> print(slack_message("jeffrey", "main", n)["text"])
    :rotating_light: JeffreyIntegration jeffrey/main RolledBack from LOOPS (GateBreach): gate cpu: 95 > max 90
    `jeffreyctl status main -n jeffrey`
    """
    where = {
        NotifyEvent.ROLLED_BACK: " from ",
        NotifyEvent.STALLED: " at ",
        NotifyEvent.INVALID: " at ",
    }.get(notice.event, " at ")
    level = f"{where}{notice.level.value}" if notice.level is not None else ""
    text = (
        f"{_SLACK_ICON[notice.event]} JeffreyIntegration {namespace}/{name} {notice.event.value}{level} "
        f"({notice.reason}): {notice.message[:300]}\n`jeffreyctl status {name} -n {namespace}`"
    )
    return {"text": text}


# ------------------------------------------------------------------------------------ alertmanager


@dataclass(frozen=True)
class Alert:
    """One Alertmanager alert (``/api/v2/alerts`` item). ``ends_at`` None: firing."""

    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    starts_at: str
    ends_at: str | None = None

    def wire(self, now: datetime.datetime, ttl: float) -> dict[str, object]:
        """Firing alerts end ``ttl`` seconds from ``now`` unless posted again: an operator that is
        gone cannot leave an alert firing for ever."""
        ends = self.ends_at or format_time(now + datetime.timedelta(seconds=ttl))
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at,
            "endsAt": ends,
        }


_SEVERITY = {
    NotifyEvent.ROLLED_BACK: "critical",
    NotifyEvent.INVALID: "warning",
    NotifyEvent.STALLED: "warning",
}


def _alert(namespace: str, name: str, notice: Notice, ends_at: str | None) -> Alert:
    labels = {
        "alertname": f"JeffreyIntegration{notice.event.value}",
        "namespace": namespace,
        "name": name,
        "level": notice.level.value if notice.level else "none",
        "reason": notice.reason,
        "severity": _SEVERITY[notice.event],
    }
    annotations = {
        "summary": f"JeffreyIntegration {namespace}/{name} {notice.event.value} ({notice.reason})",
        "description": notice.message,
        "hint": f"jeffreyctl status {name} -n {namespace}",
        "seq": str(notice.seq),
    }
    return Alert(tuple(labels.items()), tuple(annotations.items()), notice.time, ends_at)


def alerts(namespace: str, name: str, sink: NotificationSpec, all_notices: Sequence[Notice]) -> list[Alert]:
    """The alerts to post now: firing for the problems since the integration was last stable at
    its target, resolved (at that moment) for those of the episode the last Stable ended. One
    alert per label set; it starts at the first notice that raised it.

    >>> from jeffrey_operator.core.models import Transition as T
    >>> st = JeffreyIntegrationStatus(transitions=[
    ...     T(seq=1, time="2026-01-01T12:00:00Z", phase=Phase.ROLLING_BACK, reason="GateBreach",
    ...       from_level=Level.CORE), T(seq=2, time="2026-01-01T12:05:00Z", phase=Phase.STABLE,
    ...       reason="TargetReached", to_level=Level.CORE)])
    >>> sink = NotificationSpec(name="oncall", alertmanager={"url": "http://am:9093"})
    >>> [(dict(a.labels)["alertname"], a.starts_at, a.ends_at) for a in alerts("ns", "n", sink, notices(
    ...     st, parse_time("2026-01-01T12:06:00Z")))]
    [('JeffreyIntegrationRolledBack', '2026-01-01T12:00:00Z', '2026-01-01T12:05:00Z')]
    """
    episodes: list[list[Notice]] = [[]]
    stable_at: list[str] = []
    for n in all_notices:
        if n.event is NotifyEvent.TARGET_REACHED:
            stable_at.append(n.time)
            episodes.append([])
        elif n.event in PROBLEMS and n.event in sink.on:
            episodes[-1].append(n)
    out: dict[tuple[tuple[str, str], ...], Alert] = {}
    if stable_at:
        for n in episodes[-2]:
            alert = _alert(namespace, name, n, stable_at[-1])
            first = out.get(alert.labels)
            out[alert.labels] = alert if first is None else _keep_start(alert, first)
    for n in episodes[-1]:
        alert = _alert(namespace, name, n, None)
        first = out.get(alert.labels)
        out[alert.labels] = alert if first is None or first.ends_at else _keep_start(alert, first)
    return list(out.values())


def _keep_start(latest: Alert, first: Alert) -> Alert:
    return Alert(latest.labels, latest.annotations, first.starts_at, latest.ends_at)


# ------------------------------------------------------------------------------------ condition


@dataclass(frozen=True)
class SinkHealth:
    """What the delivery worker knows of one sink."""

    kind: str
    #: Consecutive failed deliveries (0: the last one succeeded, or none was needed).
    failures: int = 0
    #: The last failure, in words; never a response body.
    error: str = ""
    refused: bool = False
    backlog: int = 0


@dataclass(frozen=True)
class DeliveryCondition:
    status: bool
    reason: str
    message: str
    failing: tuple[str, ...] = field(default=())


def delivery_condition(health: Mapping[str, SinkHealth]) -> DeliveryCondition | None:
    """``NotificationsDelivered``: True while every sink is up to date or retrying its first
    failure; False naming the failing sinks. None: no sinks.

    >>> health = {"oncall": SinkHealth("alertmanager"), "audit": SinkHealth("webhook", 2, "HTTP 500")}
    >>> verdict = delivery_condition(health); verdict.status, verdict.reason, verdict.message
    (False, 'NotificationFailing', 'audit (webhook): HTTP 500; retrying')
    """
    if not health:
        return None
    failing = sorted(n for n, h in health.items() if h.failures)
    if not failing:
        return DeliveryCondition(True, c.NOTIFICATIONS_UP_TO_DATE, f"{len(health)} sinks up to date")
    refused = any(health[n].refused for n in failing)
    message = "; ".join(f"{n} ({health[n].kind}): {health[n].error}" for n in failing) + "; retrying"
    reason = c.NOTIFICATION_REFUSED if refused else c.NOTIFICATION_FAILING
    return DeliveryCondition(False, reason, message, tuple(failing))


def parse_stalled_after(spec: JeffreyIntegrationSpec) -> float:
    return parse_duration(spec.stalled_after)
