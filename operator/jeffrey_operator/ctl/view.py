"""The status of one JeffreyIntegration as a person (and a script) wants to read it. Pure.

:func:`build_view` turns (spec, status, now) into a :class:`StatusView`: the ladder level by level
with each module's ready/desired count, which level is current, what is being waited for and how
long is left, every gate against its threshold, the last rollback. :meth:`StatusView.to_dict` is
the documented, stable ``-o json|yaml`` shape (``docs/jeffreyctl.md``); :mod:`.render` turns the
same view into text. Nothing here reads a clock or the network.

Worked example: phase ``Validating``, ``activeLevel: LOOPS``, ``phaseSince`` 1 s before ``now``,
``validationWindow: 3s`` and every applicable gate passing since before the phase began →
LOOPS is ``validating``, every level up to ``currentLevel`` is ``up``, PRODUCTION is ``pending``,
and ``waiting`` is ``{kind: validation, level: LOOPS, total: 3, elapsed: 1, remaining: 2}``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jeffrey_operator.core.durations import DurationError, parse_duration
from jeffrey_operator.core.engine import effective_target
from jeffrey_operator.core.models import (
    GateResult,
    GateStatus,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
    Level,
    ModuleState,
    Phase,
)
from jeffrey_operator.core.timestamps import parse_time
from jeffrey_operator.ctl.rows import plain

__all__ = [
    "GateView",
    "LevelState",
    "LevelView",
    "ModuleView",
    "StatusView",
    "WaitKind",
    "WaitView",
    "build_view",
    "level_state",
    "passing_since",
    "unobserved_hint",
]

#: How a level stands: ``up`` (validated, running), ``validating`` (running, health window in
#: progress), ``promoting`` (scaled up, waiting for Ready), ``pending`` (still to climb to),
#: ``down`` (scaled down: above the target, rolled back, or being drained by a demotion).
LevelState = Literal["up", "validating", "promoting", "pending", "down"]

#: What the integration waits for: Ready within ``readinessTimeout`` (``readiness``), the
#: ``validationWindow`` (``validation``), the ``cooldown``, ``rollback.autoRetryAfter``
#: (``autoRetry``), or an up level to become Ready again before the readiness timeout rolls
#: everything back (``unready``).
WaitKind = Literal["readiness", "validation", "cooldown", "autoRetry", "unready"]


@dataclass(frozen=True)
class ModuleView:
    deployment: str
    desired: int
    ready: int
    optional: bool
    #: ``Ready``, ``Progressing``, ``Missing``, ``ScaledDown`` or ``Pending`` (status.modules).
    state: str

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class LevelView:
    level: Level
    state: LevelState
    #: True for ``status.currentLevel`` (the highest validated level).
    current: bool
    modules: tuple[ModuleView, ...]

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class GateView:
    name: str
    value: float | None
    min: float | None
    max: float | None
    result: str
    since: str
    message: str
    series: str
    query: str

    @property
    def active(self) -> bool:
        return self.result != GateResult.INACTIVE.value

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class CheckView:
    """One level check's current run (``status.checks``)."""

    name: str
    level: str
    when: str
    result: str
    attempt: int
    since: str
    job: str
    value: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class WaitView:
    kind: WaitKind
    level: Level | None
    #: The configured duration, seconds.
    total: float
    elapsed: float
    remaining: float
    #: When the clock does not run (e.g. the validation window waits for the gates to pass).
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Seconds rounded to the millisecond."""
        return {
            **plain(self),
            "total": round(self.total, 3),
            "elapsed": round(self.elapsed, 3),
            "remaining": round(self.remaining, 3),
        }


@dataclass(frozen=True)
class StatusView:
    """The fields stand in the order of the ``-o json|yaml`` keys (:meth:`to_dict`)."""

    name: str
    namespace: str
    generation: int | None
    observed_generation: int
    #: The object's creationTimestamp (the table's AGE; not in ``to_dict``).
    created: str
    paused: bool
    target_level: Level | None
    current_level: Level | None
    active_level: Level | None
    phase: Phase
    reason: str
    message: str
    phase_since: str
    waiting: WaitView | None
    levels: tuple[LevelView, ...]
    gates: tuple[GateView, ...]
    checks: tuple[CheckView, ...] = ()
    last_rollback: dict[str, Any] | None = None
    conditions: tuple[dict[str, Any], ...] = ()
    transitions: int = 0
    #: Why nothing happens, when that is not in status (e.g. no operator watches the namespace).
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``-o json|yaml`` shape (documented in ``docs/jeffreyctl.md``)."""
        return plain(self, camel=True, omit=("created",))


def level_state(level: Level, status: JeffreyIntegrationStatus, target: Level | None) -> LevelState:
    """How ``level`` stands in ``status`` (``target``: the effective target level).

    >>> st = JeffreyIntegrationStatus(phase=Phase.VALIDATING, current_level=Level.COGNITIVE,
    ...                               active_level=Level.EMOTIONAL)
    >>> [level_state(lv, st, Level.PRODUCTION) for lv in (Level.CORE, Level.EMOTIONAL, Level.LOOPS)]
    ['up', 'validating', 'pending']
    """
    phase = status.phase
    if level == status.active_level:
        if phase == Phase.PROMOTING:
            return "promoting"
        if phase == Phase.VALIDATING:
            return "validating"
        if phase == Phase.DEMOTING:
            return "down"
    current = status.current_level
    if current is not None and level.rank <= current.rank:
        return "up"
    if phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
        return "down"
    if target is not None and level.rank > target.rank:
        return "down"
    return "pending"


def passing_since(gates: Sequence[GateStatus]) -> tuple[bool, datetime.datetime | None]:
    """(every applicable gate passes, since when) — as the gate port summarises a report."""
    applicable = [g for g in gates if g.result is not GateResult.INACTIVE]
    if not applicable:
        return True, None
    if any(g.result is not GateResult.PASS for g in applicable):
        return False, None
    sinces = [parse_time(g.since) for g in applicable]
    return True, max((t for t in sinces if t is not None), default=None)


def _seconds(text: str) -> float:
    try:
        return parse_duration(text) if text else 0.0
    except DurationError:
        return 0.0


def _wait(
    kind: WaitKind,
    level: Level | None,
    total: float,
    since: datetime.datetime | None,
    now: datetime.datetime,
    *,
    note: str = "",
) -> WaitView:
    elapsed = max(0.0, (now - since).total_seconds()) if since is not None else 0.0
    return WaitView(kind, level, total, elapsed, max(0.0, total - elapsed), note)


def waiting_for(
    spec: JeffreyIntegrationSpec | None, status: JeffreyIntegrationStatus, now: datetime.datetime
) -> WaitView | None:
    """The deadline the integration runs towards now, if any (mirrors the engine's timers)."""
    if spec is None:
        return None
    phase = status.phase
    since = parse_time(status.phase_since)
    promotion = spec.promotion
    if status.unready_since and phase in (
        Phase.PENDING,
        Phase.PROMOTING,
        Phase.VALIDATING,
        Phase.COOLING_DOWN,
        Phase.STABLE,
    ):
        return _wait(
            "unready",
            status.current_level,
            _seconds(promotion.readiness_timeout),
            parse_time(status.unready_since),
            now,
            note="an up level lost readiness: rollback to CORE when the time runs out",
        )
    if phase == Phase.PROMOTING:
        return _wait("readiness", status.active_level, _seconds(promotion.readiness_timeout), since, now)
    if phase == Phase.VALIDATING:
        total = _seconds(promotion.validation_window)
        passing, passing_from = passing_since(status.gates)
        if not passing:
            return WaitView(
                "validation",
                status.active_level,
                total,
                0.0,
                total,
                "holding: the window starts once every applicable gate passes",
            )
        start = since
        if passing_from is not None and start is not None and passing_from > start:
            start = passing_from
        return _wait("validation", status.active_level, total, start, now)
    if phase == Phase.COOLING_DOWN:
        return _wait("cooldown", status.active_level, _seconds(promotion.cooldown), since, now)
    if phase == Phase.ROLLED_BACK and spec.rollback.auto_retry_after and status.last_rollback:
        return _wait(
            "autoRetry",
            None,
            _seconds(spec.rollback.auto_retry_after),
            parse_time(status.last_rollback.time),
            now,
        )
    return None


#: An object no operator has written status for this long after its creation is likely unwatched.
UNOBSERVED_AFTER = 10.0


def unobserved_hint(observed_generation: int, created: str, namespace: str, now: datetime.datetime) -> str:
    """A hint when no operator has ever observed the object (``observedGeneration`` 0) although it
    exists for more than :data:`UNOBSERVED_AFTER` seconds; ``""`` otherwise.

    >>> t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    >>> unobserved_hint(0, "2026-01-01T00:00:00Z", "ns", t0 + datetime.timedelta(seconds=3))
    ''
    >>> unobserved_hint(0, "2026-01-01T00:00:00Z", "ns", t0 + datetime.timedelta(seconds=42))[:46]
    'never observed by an operator in 42s (status.o'
    """
    born = parse_time(created)
    if observed_generation or born is None:
        return ""
    age = (now - born).total_seconds()
    if age < UNOBSERVED_AFTER:
        return ""
    where = namespace or "its namespace"
    return (
        f"never observed by an operator in {age:.0f}s (status.observedGeneration is 0): is the operator "
        f"running, and does it watch namespace {where}? Check its --namespace flags "
        f"(jeffrey-operator run --namespace {where}, or --all-namespaces; Helm: watchNamespaces)"
    )


def build_view(
    spec: JeffreyIntegrationSpec | None,
    status: JeffreyIntegrationStatus,
    now: datetime.datetime,
    *,
    name: str = "",
    namespace: str = "",
    generation: int | None = None,
    created: str = "",
) -> StatusView:
    """The view of one integration. ``spec`` is None when it does not parse (phase ``Invalid``):
    the ladder then comes from ``status.modules`` alone."""
    target = effective_target(spec) if spec is not None else status.target_level
    seen = {m.deployment: m for m in status.modules}
    levels: list[LevelView] = []
    if spec is not None:
        layout = [
            (ls.level, [(m.deployment, m.optional) for m in ls.modules])
            for ls in sorted(spec.levels, key=lambda ls: ls.level.rank)
        ]
    else:
        by_level: dict[Level, list[tuple[str, bool]]] = {}
        for m in status.modules:
            by_level.setdefault(m.level, []).append((m.deployment, m.optional))
        layout = sorted(by_level.items(), key=lambda item: item[0].rank)
    for level, modules in layout:
        views = []
        for deployment, optional in modules:
            ms = seen.get(deployment)
            views.append(
                ModuleView(
                    deployment=deployment,
                    desired=ms.desired if ms else 0,
                    ready=ms.ready if ms else 0,
                    optional=optional,
                    state=(ms.state if ms else ModuleState.PENDING).value,
                )
            )
        levels.append(
            LevelView(
                level=level,
                state=level_state(level, status, target),
                current=level == status.current_level,
                modules=tuple(views),
            )
        )
    gates = tuple(
        GateView(
            name=g.name,
            value=g.value,
            min=g.min,
            max=g.max,
            result=g.result.value,
            since=g.since,
            message=g.message,
            series=g.series,
            query=g.query,
        )
        for g in status.gates
    )
    return StatusView(
        name=name,
        namespace=namespace,
        generation=generation,
        observed_generation=status.observed_generation,
        created=created,
        paused=bool(spec.paused) if spec is not None else False,
        target_level=spec.target_level if spec is not None else status.target_level,
        current_level=status.current_level,
        active_level=status.active_level,
        phase=status.phase,
        reason=status.reason,
        message=status.message,
        phase_since=status.phase_since,
        levels=tuple(levels),
        gates=gates,
        waiting=waiting_for(spec, status, now),
        last_rollback=status.last_rollback.wire() if status.last_rollback else None,
        conditions=tuple(c.wire() for c in status.conditions),
        transitions=status.transition_seq,
        checks=tuple(
            CheckView(
                name=ck.name,
                level=ck.level.value,
                when=ck.when.value,
                result=ck.result.value,
                attempt=ck.attempt,
                since=ck.since,
                job=ck.job,
                value=ck.value,
                message=ck.message,
            )
            for ck in status.checks
        ),
        hint=unobserved_hint(status.observed_generation, created, namespace, now),
    )
