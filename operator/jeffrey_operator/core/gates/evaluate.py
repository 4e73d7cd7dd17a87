"""Judge health gates: numbers in, statuses and a verdict out.

Pure: no network, no clock of its own. The caller (:mod:`.source`) asks Prometheus, turns each
answer into a :class:`QueryOutcome`, and hands it here together with the previous statuses and
``now``. Everything that decides a promotion or a rollback from numbers lives in this module.

How one gate is judged (``judge_gate``)
---------------------------------------
* A gate is *out of bounds* when any series has ``value > max`` or ``value < min`` (both bounds
  may be set). The status names the worst offending series; when every series is in bounds it
  names the one closest to a bound.
* ``for`` gives sustained-breach semantics, tracked with ``since``: the first evaluation that sees
  the gate out of bounds records ``since``; the gate stays ``PendingBreach`` until
  ``now - since >= for``, then it is ``Breach`` (``since`` keeps the start of the breach). Any
  evaluation that sees the gate in bounds, or cannot tell (Prometheus unavailable, no data with
  ``onNoData: hold``), restarts the clock. The gate is out of bounds while at least one of its
  series is, even if the offending series changes. We use a duration, not a count of
  consecutive failures, so that ``for`` means the same whatever ``analysis.interval`` is.

  Worked example, ``max: 1000, for: 30s``, evaluated every 10 s::

      t=0   value  400   -> Pass           since t=0
      t=10  value 1500   -> PendingBreach  since t=10   (0s of 30s)
      t=30  value 1600   -> PendingBreach  since t=10   (20s of 30s)
      t=40  value 1700   -> Breach         since t=10   (30s >= 30s)  -> verdict Breach
      t=50  value  900   -> Pass           since t=50

* No data (an empty result, or only NaN values such as a quantile over no observations) follows
  ``onNoData``: ``hold`` -> Inconclusive, ``pass`` -> Pass, ``fail`` -> out of bounds (and then
  subject to ``for`` like any other breach).
* Monitoring trouble (Prometheus unreachable, timing out, answering errors) -> Inconclusive,
  keeping the last value seen. Never a breach.
* A query Prometheus refuses (syntax, unknown function, ...) -> Invalid. Never a breach.

How the verdict is formed (``summarize``)
-----------------------------------------
* ``Breach`` when at least one applicable gate is ``Breach``; ``breach`` is the first such gate in
  declaration order.
* else ``Inconclusive`` when any applicable gate is Inconclusive, Invalid or PendingBreach:
  promotion holds, nothing rolls back.
* else ``Pass``; ``passing_since`` is the latest ``since`` of the applicable gates, i.e. since when
  all of them have passed without interruption (``None`` when no gate applies).
"""

from __future__ import annotations

import datetime
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from jeffrey_operator.core.durations import format_duration, parse_duration
from jeffrey_operator.core.models import GateResult, GateSpec, GateStatus, GateWhen, Level, OnNoData
from jeffrey_operator.core.ports import GateMode, GateReport, GateVerdict
from jeffrey_operator.core.timestamps import format_time, parse_time

__all__ = [
    "OutcomeKind",
    "QueryOutcome",
    "Series",
    "breached_threshold",
    "evaluate",
    "format_time",
    "inactive_reason",
    "is_active",
    "judge_gate",
    "parse_time",
    "summarize",
]


# ------------------------------------------------------------------------------------ value types


@dataclass(frozen=True)
class Series:
    """One series of an instant query result: its labels (sorted, without ``__name__``) and value."""

    labels: tuple[tuple[str, str], ...]
    value: float

    @classmethod
    def of(cls, value: float, **labels: str) -> Series:
        return cls(labels=tuple(sorted(labels.items())), value=value)

    @property
    def name(self) -> str:
        """PromQL notation of the label set: ``{module="bus",namespace="demo"}``; ``""`` if none."""
        if not self.labels:
            return ""
        return "{" + ",".join(f'{key}="{val}"' for key, val in self.labels) + "}"


class OutcomeKind(enum.Enum):
    VALUES = "values"  # at least one series with a number
    NO_DATA = "no_data"  # empty result, or only NaN
    UNAVAILABLE = "unavailable"  # monitoring trouble: unreachable, timeout, server errors
    INVALID = "invalid"  # the query itself is wrong


@dataclass(frozen=True)
class QueryOutcome:
    """What asking the metrics source for one gate's query gave."""

    kind: OutcomeKind
    series: tuple[Series, ...] = ()
    message: str = ""

    @classmethod
    def values(cls, series: Iterable[Series]) -> QueryOutcome:
        """Numbers per series; NaN values are dropped and an empty result becomes NO_DATA."""
        kept = tuple(s for s in series if not math.isnan(s.value))
        if not kept:
            return cls(OutcomeKind.NO_DATA, message="query returned no data")
        return cls(OutcomeKind.VALUES, series=kept)

    @classmethod
    def no_data(cls, message: str = "query returned no data") -> QueryOutcome:
        return cls(OutcomeKind.NO_DATA, message=message)

    @classmethod
    def unavailable(cls, message: str) -> QueryOutcome:
        return cls(OutcomeKind.UNAVAILABLE, message=message)

    @classmethod
    def invalid(cls, message: str) -> QueryOutcome:
        return cls(OutcomeKind.INVALID, message=message)


# ------------------------------------------------------------------------------------------ time


# -------------------------------------------------------------------------------------- activity


def inactive_reason(gate: GateSpec, mode: GateMode, active_level: Level | None) -> str:
    """Why ``gate`` does not apply now, or ``""`` when it does.

    ``when: promotion`` applies while a level is promoted or validated, ``continuous`` once the
    target level is held, ``always`` in both; ``fromLevel`` once that level is being promoted or up.

    >>> from jeffrey_operator.core.models import GateSpec, GateWhen, Level
    >>> g = GateSpec(name="g", query="up", when=GateWhen.PROMOTION, from_level=Level.LOOPS)
    >>> inactive_reason(g, GateMode.PROMOTION, Level.CONSCIOUS)
    'applies from level LOOPS; active level is CONSCIOUS'
    >>> inactive_reason(g, GateMode.PROMOTION, Level.LOOPS)
    ''
    >>> inactive_reason(g, GateMode.CONTINUOUS, Level.PRODUCTION)
    'when=promotion; gates are in continuous mode'
    """
    if mode is GateMode.NONE:
        return "no gate is evaluated in this phase"
    if gate.when is GateWhen.PROMOTION and mode is not GateMode.PROMOTION:
        return f"when=promotion; gates are in {mode.value} mode"
    if gate.when is GateWhen.CONTINUOUS and mode is not GateMode.CONTINUOUS:
        return f"when=continuous; gates are in {mode.value} mode"
    if active_level is None:
        return "no level is up"
    if active_level.rank < gate.from_level.rank:
        return f"applies from level {gate.from_level.value}; active level is {active_level.value}"
    return ""


def is_active(gate: GateSpec, mode: GateMode, active_level: Level | None) -> bool:
    return not inactive_reason(gate, mode, active_level)


# --------------------------------------------------------------------------------------- judging


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _excess(gate: GateSpec, value: float) -> float:
    """How far ``value`` is outside the bounds (> 0), or minus the margin to the nearest bound."""
    candidates: list[float] = []
    if gate.max is not None:
        candidates.append(value - gate.max)
    if gate.min is not None:
        candidates.append(gate.min - value)
    return max(candidates) if candidates else -math.inf


def _bound_text(gate: GateSpec, value: float | None) -> str:
    """``> max 1000`` / ``< min 5`` / ``within [5, 1000]`` for a value."""
    if value is not None and gate.max is not None and value > gate.max:
        return f"> max {_fmt(gate.max)}"
    if value is not None and gate.min is not None and value < gate.min:
        return f"< min {_fmt(gate.min)}"
    if gate.min is not None and gate.max is not None:
        return f"within [{_fmt(gate.min)}, {_fmt(gate.max)}]"
    if gate.max is not None:
        return f"<= max {_fmt(gate.max)}"
    if gate.min is not None:
        return f">= min {_fmt(gate.min)}"
    return "(no bound)"


def breached_threshold(status: GateStatus) -> float | None:
    """The bound a status's value crossed (for the rollback record), else ``None``.

    >>> breached_threshold(GateStatus(name="g", value=1200, max=1000, min=10))
    1000.0
    >>> breached_threshold(GateStatus(name="g", value=2, max=1000, min=10))
    10.0
    """
    if status.value is None:
        return status.max if status.max is not None else status.min
    if status.max is not None and status.value > status.max:
        return status.max
    if status.min is not None and status.value < status.min:
        return status.min
    return None


def _continuing_since(
    previous: GateStatus | None, results: tuple[GateResult, ...], now: datetime.datetime
) -> datetime.datetime:
    """``previous.since`` when the previous result is one of ``results``, else ``now``."""
    if previous is not None and previous.result in results:
        since = parse_time(previous.since)
        if since is not None and since <= now:
            return since
    return now


_OUT_OF_BOUNDS = (GateResult.PENDING_BREACH, GateResult.BREACH)


def judge_gate(
    gate: GateSpec,
    query: str,
    outcome: QueryOutcome | None,
    previous: GateStatus | None,
    now: datetime.datetime,
    *,
    inactive: str = "",
) -> GateStatus:
    """The new status of one gate. ``inactive`` (a reason) or ``outcome is None`` -> Inactive."""
    base = GateStatus(name=gate.name, query=query, min=gate.min, max=gate.max)

    if inactive or outcome is None:
        since = _continuing_since(previous, (GateResult.INACTIVE,), now)
        message = inactive or "inactive"
        return base.model_copy(
            update={"result": GateResult.INACTIVE, "since": format_time(since), "message": message}
        )

    if outcome.kind is OutcomeKind.INVALID:
        since = _continuing_since(previous, (GateResult.INVALID,), now)
        return base.model_copy(
            update={
                "result": GateResult.INVALID,
                "since": format_time(since),
                "message": f"invalid query: {outcome.message}",
            }
        )

    if outcome.kind is OutcomeKind.UNAVAILABLE:
        since = _continuing_since(previous, (GateResult.INCONCLUSIVE,), now)
        last = ""
        if previous is not None and previous.value is not None:
            last = f"; last value {_fmt(previous.value)}"
            if previous.series:
                last += f" ({previous.series})"
        return base.model_copy(
            update={
                "result": GateResult.INCONCLUSIVE,
                "since": format_time(since),
                "value": previous.value if previous is not None else None,
                "series": previous.series if previous is not None else "",
                "message": f"metrics source unavailable: {outcome.message}{last}",
            }
        )

    if outcome.kind is OutcomeKind.NO_DATA or not outcome.series:
        if gate.on_no_data is OnNoData.HOLD:
            since = _continuing_since(previous, (GateResult.INCONCLUSIVE,), now)
            return base.model_copy(
                update={
                    "result": GateResult.INCONCLUSIVE,
                    "since": format_time(since),
                    "message": "no data (onNoData=hold): promotion waits",
                }
            )
        if gate.on_no_data is OnNoData.PASS:
            since = _continuing_since(previous, (GateResult.PASS,), now)
            message = "no data (onNoData=pass)"
            return base.model_copy(
                update={"result": GateResult.PASS, "since": format_time(since), "message": message}
            )
        return _out_of_bounds(
            gate, base, previous, now, value=None, series="", what="no data (onNoData=fail)"
        )

    ranked = sorted(outcome.series, key=lambda s: _excess(gate, s.value), reverse=True)
    worst = ranked[0]
    offenders = [s for s in ranked if _excess(gate, s.value) > 0]
    total = len(ranked)
    if offenders:
        named = f"{worst.name} = " if worst.name else ""
        what = f"{named}{_fmt(worst.value)} {_bound_text(gate, worst.value)}"
        if total > 1:
            what += f" ({len(offenders)} of {total} series out of bounds)"
        return _out_of_bounds(gate, base, previous, now, value=worst.value, series=worst.name, what=what)

    since = _continuing_since(previous, (GateResult.PASS,), now)
    if total > 1:
        message = f"all {total} series {_bound_text(gate, None)}; closest {worst.name} = {_fmt(worst.value)}"
    else:
        message = f"{_fmt(worst.value)} {_bound_text(gate, worst.value)}"
    return base.model_copy(
        update={
            "result": GateResult.PASS,
            "since": format_time(since),
            "value": worst.value,
            "series": worst.name,
            "message": message,
        }
    )


def _out_of_bounds(
    gate: GateSpec,
    base: GateStatus,
    previous: GateStatus | None,
    now: datetime.datetime,
    *,
    value: float | None,
    series: str,
    what: str,
) -> GateStatus:
    since = _continuing_since(previous, _OUT_OF_BOUNDS, now)
    elapsed = (now - since).total_seconds()
    required = parse_duration(gate.for_)
    if elapsed >= required:
        result = GateResult.BREACH
        message = f"{what} for {format_duration(elapsed)} (for: {gate.for_})" if required else what
    else:
        result = GateResult.PENDING_BREACH
        message = f"{what} for {format_duration(elapsed)} of {gate.for_}"
    return base.model_copy(
        update={
            "result": result,
            "since": format_time(since),
            "value": value,
            "series": series,
            "message": message,
        }
    )


# ------------------------------------------------------------------------------------------ verdict


def summarize(statuses: Sequence[GateStatus], *, source_available: bool = True) -> GateReport:
    """The verdict over the new statuses of all gates (inactive ones are ignored)."""
    applicable = [s for s in statuses if s.result is not GateResult.INACTIVE]
    if not applicable:
        return GateReport(
            verdict=GateVerdict.PASS,
            gates=tuple(statuses),
            passing_since=None,
            source_available=source_available,
            message="no gate applies",
        )
    breaches = [s for s in applicable if s.result is GateResult.BREACH]
    if breaches:
        first = breaches[0]
        return GateReport(
            verdict=GateVerdict.BREACH,
            gates=tuple(statuses),
            breach=first,
            passing_since=None,
            source_available=source_available,
            message=f"gate {first.name} breached: {first.message}",
        )
    holding = [s for s in applicable if s.result is not GateResult.PASS]
    if holding:
        reasons = _grouped(holding)
        return GateReport(
            verdict=GateVerdict.INCONCLUSIVE,
            gates=tuple(statuses),
            passing_since=None,
            source_available=source_available,
            message=reasons,
        )
    sinces = [parse_time(s.since) for s in applicable]
    passing_since = max((t for t in sinces if t is not None), default=None)
    return GateReport(
        verdict=GateVerdict.PASS,
        gates=tuple(statuses),
        passing_since=passing_since,
        source_available=source_available,
        message=f"{len(applicable)} gate(s) pass",
    )


def _grouped(statuses: Sequence[GateStatus]) -> str:
    """One clause per distinct (result, message), the cause first, then every gate that shares
    it: ten gates with the same cause say it once.

    >>> a = GateStatus(name="a", result=GateResult.INCONCLUSIVE, message="no data")
    >>> b = GateStatus(name="b", result=GateResult.INCONCLUSIVE, message="no data")
    >>> _grouped([a, b])
    'no data (gates a, b: Inconclusive)'
    """
    groups: dict[tuple[GateResult, str], list[str]] = {}
    for status in statuses:
        groups.setdefault((status.result, status.message), []).append(status.name)
    return "; ".join(
        f"{message} ({'gates' if len(names) > 1 else 'gate'} {', '.join(names)}: {result.value})"
        for (result, message), names in groups.items()
    )


def evaluate(
    gates: Sequence[GateSpec],
    queries: Mapping[str, str],
    outcomes: Mapping[str, QueryOutcome],
    previous: Sequence[GateStatus],
    now: datetime.datetime,
    *,
    mode: GateMode,
    active_level: Level | None,
    inactive: Mapping[str, str] | None = None,
) -> GateReport:
    """Judge every gate (declaration order) and form the verdict.

    ``queries`` maps a gate name to its resolved query (shown in status), ``outcomes`` a gate name
    to what its query gave; gates that do not apply by ``when``/``fromLevel`` need no outcome.
    ``inactive`` may name extra gates the caller could not evaluate (with a reason).
    """
    prior = {s.name: s for s in previous}
    extra = inactive or {}
    statuses: list[GateStatus] = []
    available = True
    for gate in gates:
        reason = inactive_reason(gate, mode, active_level) or extra.get(gate.name, "")
        outcome: QueryOutcome | None = None
        if not reason:
            outcome = outcomes.get(gate.name) or QueryOutcome.unavailable("the query was not run")
            available = available and outcome.kind is not OutcomeKind.UNAVAILABLE
        query = queries.get(gate.name, gate.query)
        statuses.append(judge_gate(gate, query, outcome, prior.get(gate.name), now, inactive=reason))
    return summarize(statuses, source_available=available)
