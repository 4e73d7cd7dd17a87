"""Text for people: the ladder, the list of integrations, the history and the plan. Pure.

Every function takes values (and ``now``) and returns a string; nothing here reads a clock, the
terminal or the network, so the tests drive it with statuses from the engine.

:func:`render_status` is the one-integration view of ``jeffreyctl status NAME``::

    jeffrey  (namespace jeffrey)
    PHASE     Validating (Validating, 1s ago): LOOPS is ready; validating health for 3s
    LADDER    target PRODUCTION, current CONSCIOUS
    WAITING   validation of LOOPS: 1.7s left of 3s

       LEVEL       STATE       MODULES (ready/desired)
       PRODUCTION  pending     curiosity-loop 0/0, emotional-decay-loop 0/0, ml-clustering-loop 0/0
       LOOPS       validating  awareness-loop 1/1, memory-consolidation-loop 1/1
    >  CONSCIOUS   up          consciousness 1/1 (optional)
       ...
      GATE                       VALUE  THRESHOLD  RESULT  SINCE
      loops-bus-headroom         200    <= 700     Pass    1s ago
      ...
    LAST ROLLBACK  none
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass

from jeffrey_operator.core.models import JeffreyIntegrationSpec, JeffreyIntegrationStatus, Phase, Transition
from jeffrey_operator.core.timestamps import parse_time
from jeffrey_operator.ctl.plan import Plan
from jeffrey_operator.ctl.rows import plain
from jeffrey_operator.ctl.view import (
    CheckView,
    GateView,
    LevelView,
    ModuleView,
    StatusView,
    WaitView,
    build_view,
)

__all__ = [
    "HistoryRow",
    "format_age",
    "format_number",
    "format_threshold",
    "render_history",
    "render_plan",
    "render_status",
    "render_table",
    "render_view",
]


# ---------------------------------------------------------------------------------------- helpers

#: Phases in which the operator evaluates no gate (``engine.gate_mode`` is NONE).
_NO_GATE_PHASES = (Phase.DEMOTING, Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.PAUSED, Phase.INVALID)


def format_number(value: float | None) -> str:
    """A gate value, readable: ``650``, ``12.5``, ``0.031``, ``no data``.

    >>> [format_number(v) for v in (650.0, 12.5, 0.0312, 5650.4, None, 1e7)]
    ['650', '12.5', '0.0312', '5650', 'no data', '10000000']
    """
    if value is None:
        return "no data"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def format_threshold(minimum: float | None, maximum: float | None) -> str:
    """``<= 1000``, ``>= 1``, ``1..10`` or ``-``."""
    if minimum is not None and maximum is not None:
        return f"{format_number(minimum)}..{format_number(maximum)}"
    if maximum is not None:
        return f"<= {format_number(maximum)}"
    if minimum is not None:
        return f">= {format_number(minimum)}"
    return "-"


def format_age(seconds: float) -> str:
    """Like kubectl: ``45s``, ``3m``, ``5h``, ``2d`` (``3m12s`` under ten minutes).

    >>> [format_age(s) for s in (4.2, 75, 612, 7200, 200000)]
    ['4s', '1m15s', '10m', '2h', '2d']
    """
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 600:
        minutes, secs = divmod(int(seconds), 60)
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    if seconds < 172800:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def _ago(stamp: str, now: datetime.datetime) -> str:
    when = parse_time(stamp)
    if when is None:
        return "-"
    return f"{format_age((now - when).total_seconds())} ago"


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 10 else format_age(value)


def _table(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _module(m: ModuleView) -> str:
    text = f"{m.deployment} {m.ready}/{m.desired}"
    notes = []
    if m.optional:
        notes.append("optional")
    if m.state in ("Missing", "Progressing"):
        notes.append(m.state.lower())
    return text + (f" ({', '.join(notes)})" if notes else "")


def _wait(w: WaitView) -> str:
    level = f" of {w.level.value}" if w.level else ""
    what = {
        "readiness": f"readiness{level}",
        "validation": f"validation{level}",
        "cooldown": f"cooldown after {w.level.value}" if w.level else "cooldown",
        "autoRetry": "automatic retry",
        "unready": f"readiness{level} lost",
    }[w.kind]
    if w.note and w.kind == "validation":
        return f"{what}: {w.note} (window {w.total:g}s)"
    text = f"{what}: {_seconds(w.remaining)} left of {w.total:g}s"
    return f"{text} ({w.note})" if w.note else text


def _rollback(record: dict[str, object] | None, now: datetime.datetime) -> str:
    if not record:
        return "none"
    source = f"from {record['fromLevel']}" if record.get("fromLevel") else "to CORE"
    text = f"{_ago(str(record.get('time', '')), now)}, {source}: {record.get('reason', '')}"
    if record.get("gate"):
        value = record.get("value")
        threshold = record.get("threshold")
        text += (
            f" (gate {record['gate']}: value "
            f"{format_number(value if isinstance(value, int | float) else None)}, threshold "
            f"{format_number(threshold if isinstance(threshold, int | float) else None)})"
        )
    if record.get("check"):
        text += f" (check {record['check']})"
    if record.get("message"):
        text += f" - {record['message']}"
    return text


def _check_rows(checks: Sequence[CheckView], now: datetime.datetime) -> list[list[str]]:
    rows = [["CHECK", "LEVEL", "WHEN", "RESULT", "RUN", "SINCE", ""]]
    for c in checks:
        note = c.message if c.result != "Pass" or not c.value else f"value {c.value}"
        rows.append([c.name, c.level, c.when, c.result, str(c.attempt or "-"), _ago(c.since, now), note[:80]])
    return rows


def _gate_rows(gates: Sequence[GateView], now: datetime.datetime) -> list[list[str]]:
    rows = [["GATE", "VALUE", "THRESHOLD", "RESULT", "SINCE", ""]]
    for g in gates:
        note = g.message if g.result not in ("Pass",) else ""
        rows.append(
            [
                g.name,
                format_number(g.value),
                format_threshold(g.min, g.max),
                g.result,
                _ago(g.since, now),
                note[:80],
            ]
        )
    return rows


# ----------------------------------------------------------------------------------------- status


def render_status(
    spec: JeffreyIntegrationSpec | None,
    status: JeffreyIntegrationStatus,
    now: datetime.datetime,
    *,
    name: str = "",
    namespace: str = "",
    generation: int | None = None,
) -> str:
    """The ladder of one integration as text (``jeffreyctl status NAME``)."""
    view = build_view(spec, status, now, name=name, namespace=namespace, generation=generation)
    return render_view(view, now)


def render_view(view: StatusView, now: datetime.datetime, *, all_gates: bool = False) -> str:
    lines: list[str] = []
    title = view.name or "(unnamed)"
    if view.namespace:
        title += f"  (namespace {view.namespace})"
    if view.generation is not None and view.observed_generation != view.generation:
        title += f"  [operator has seen generation {view.observed_generation} of {view.generation}]"
    lines.append(title)
    since = f", {_ago(view.phase_since, now)}" if view.phase_since else ""
    phase = f"{view.phase.value} ({view.reason}{since})" if view.reason else view.phase.value
    lines.append(f"PHASE     {phase}" + (f": {view.message}" if view.message else ""))
    if view.hint:
        lines.append(f"HINT      {view.hint}")
    current = view.current_level.value if view.current_level else "none"
    target = view.target_level.value if view.target_level else "-"
    ladder = f"target {target}, current {current}"
    if view.paused:
        ladder += "  (paused: spec.paused is true)"
    lines.append(f"LADDER    {ladder}")
    if view.waiting is not None:
        lines.append(f"WAITING   {_wait(view.waiting)}")
    lines.append("")
    lines.extend(_ladder(view.levels))
    lines.append("")
    active = [g for g in view.gates if g.active]
    shown = list(view.gates) if all_gates else active
    if shown:
        lines.extend(_table(_gate_rows(shown, now), indent="  "))
        hidden = len(view.gates) - len(shown)
        if hidden:
            lines.append(f"  ({hidden} more gates inactive at this level/phase; -o json lists all)")
    elif view.gates:
        lines.append(f"GATES     none applies now ({len(view.gates)} configured, all inactive)")
    elif view.phase in _NO_GATE_PHASES:
        lines.append(f"GATES     none evaluated in phase {view.phase.value}")
    else:
        lines.append("GATES     none evaluated")
    if view.checks:
        lines.append("")
        lines.extend(_table(_check_rows(view.checks, now), indent="  "))
    lines.append("")
    lines.append(f"LAST ROLLBACK  {_rollback(view.last_rollback, now)}")
    if view.conditions:
        conds = " ".join(f"{c.get('type')}={c.get('status')}" for c in view.conditions)
        lines.append(f"CONDITIONS     {conds}")
    notify = next((c for c in view.conditions if c.get("type") == "NotificationsDelivered"), None)
    if notify is not None and notify.get("status") == "False":  # who is not being told, and why
        lines.append(f"NOTIFICATIONS  {notify.get('reason')}: {notify.get('message')}")
    return "\n".join(lines) + "\n"


def _ladder(levels: Sequence[LevelView]) -> list[str]:
    if not levels:
        return ["  (no levels)"]
    rows = [["", "LEVEL", "STATE", "MODULES (ready/desired)"]]
    for lv in reversed(levels):  # the top of the ladder first, like the README
        rows.append(
            [
                ">" if lv.current else "",
                lv.level.value,
                lv.state,
                ", ".join(_module(m) for m in lv.modules),
            ]
        )
    out = _table(rows)
    out.append("  (> current level: the highest validated level)")
    return out


# ------------------------------------------------------------------------------------------ table


def _modules_total(view: StatusView) -> str:
    wanted = [m for lv in view.levels for m in lv.modules if m.desired > 0]
    ready = sum(min(m.ready, m.desired) for m in wanted)
    return f"{ready}/{sum(m.desired for m in wanted)}"


def _gates_summary(view: StatusView) -> str:
    active = [g for g in view.gates if g.active]
    if not active:
        return "-"
    bad = [g for g in active if g.result != "Pass"]
    if not bad:
        return f"{len(active)}/{len(active)} pass"
    first = bad[0]
    return f"{first.result} {first.name}" + (f" +{len(bad) - 1}" if len(bad) > 1 else "")


def _created_age(view: StatusView, now: datetime.datetime) -> str:
    when = parse_time(view.created)
    return format_age((now - when).total_seconds()) if when else "-"


def render_table(views: Sequence[StatusView], now: datetime.datetime, *, namespaces: bool = False) -> str:
    """``jeffreyctl status`` without NAME: ``kubectl get ji`` with more."""
    if not views:
        return ""
    head = [
        "NAME",
        "TARGET",
        "CURRENT",
        "PHASE",
        "ACTIVE",
        "MODULES",
        "GATES",
        "WAITING",
        "LAST ROLLBACK",
        "AGE",
    ]
    if namespaces:
        head.insert(0, "NAMESPACE")
    rows = [head]
    for v in views:
        waiting = "-"
        if v.waiting is not None:
            waiting = (
                f"{v.waiting.kind} (holding)"
                if v.waiting.note and v.waiting.kind == "validation"
                else f"{v.waiting.kind} {_seconds(v.waiting.remaining)}"
            )
        rollback = "-"
        if v.last_rollback:
            rollback = (
                f"{v.last_rollback.get('reason', '')} {_ago(str(v.last_rollback.get('time', '')), now)}"
            )
        row = [
            v.name,
            v.target_level.value if v.target_level else "-",
            v.current_level.value if v.current_level else "-",
            v.phase.value + (" (paused)" if v.paused and v.phase.value != "Paused" else ""),
            v.active_level.value if v.active_level else "-",
            _modules_total(v),
            _gates_summary(v),
            waiting,
            rollback,
            _created_age(v, now),
        ]
        if namespaces:
            row.insert(0, v.namespace)
        rows.append(row)
    hints = [
        f"{v.namespace}/{v.name}: {v.hint}" if namespaces else f"{v.name}: {v.hint}" for v in views if v.hint
    ]
    return "\n".join([*_table(rows), *hints]) + "\n"


# ---------------------------------------------------------------------------------------- history


@dataclass(frozen=True)
class HistoryRow:
    """One line of ``jeffreyctl history`` (from Redis or from status.transitions)."""

    seq: int
    time: str
    from_level: str | None
    to_level: str | None
    phase: str
    reason: str
    message: str
    #: ``transition``, or ``gap`` for transitions the Redis history lost.
    kind: str = "transition"

    @classmethod
    def of(cls, t: Transition) -> HistoryRow:
        return cls(
            seq=t.seq,
            time=t.time,
            from_level=t.from_level.value if t.from_level else None,
            to_level=t.to_level.value if t.to_level else None,
            phase=t.phase.value,
            reason=t.reason,
            message=t.message,
        )

    def to_dict(self) -> dict[str, object]:
        return plain(self, camel=True)


def render_history(rows: Sequence[HistoryRow], now: datetime.datetime, *, source: str) -> str:
    """Newest first, one line each, with the reason and message."""
    out = [f"# {len(rows)} transitions, newest first; source: {source}"]
    if not rows:
        return out[0] + "\n"
    table = [["SEQ", "TIME", "AGE", "LEVEL", "PHASE", "REASON", "MESSAGE"]]
    for r in rows:
        if r.kind == "gap":
            table.append([str(r.seq), r.time or "-", _ago(r.time, now), "", "(gap)", r.reason, r.message])
            continue
        level = (
            f"{r.from_level or '-'} -> {r.to_level or '-'}"
            if r.from_level != r.to_level
            else (r.to_level or "-")
        )
        table.append([str(r.seq), r.time or "-", _ago(r.time, now), level, r.phase, r.reason, r.message])
    out.extend(_table(table))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------- plan


def render_plan(plan: Plan) -> str:
    """What the operator would do next and why (``jeffreyctl plan NAME``)."""
    b, a = plan.before, plan.after

    def where(st: JeffreyIntegrationStatus) -> str:
        current = st.current_level.value if st.current_level else "none"
        active = f", active {st.active_level.value}" if st.active_level else ""
        return f"{st.phase.value} (current {current}{active})"

    lines = [
        f"plan for {plan.namespace}/{plan.name}: a dry run with the operator's own decision code; "
        "nothing is changed",
        f"NOW       {where(b)}" + (f" - {b.reason}" if b.reason else ""),
        f"NEXT      {where(a)}" + (" (no change)" if where(a) == where(b) else ""),
        f"WHY       {plan.why}",
    ]
    if len(plan.steps) > 1:
        lines.append("STEPS")
        for t in plan.steps:
            lines.append(f"  {t.phase.value:<12} {t.reason}: {t.message}")
    if plan.scalings:
        lines.append("SCALE")
        for s in plan.scalings:
            lines.append(f"  {s.deployment} ({s.level.value}): replicas {s.current} -> {s.replicas}")
    else:
        lines.append("SCALE     nothing")
    if plan.events:
        lines.append("EVENTS")
        for e in plan.events:
            lines.append(f"  {e.type} {e.reason}: {e.message}")
    else:
        lines.append("EVENTS    none")
    if plan.status_changes:
        lines.append(f"STATUS    would write {', '.join(plan.status_changes)}")
    else:
        lines.append("STATUS    no write")
    if plan.requeue_after is not None:
        again = f"in {_seconds(plan.requeue_after)} (a deadline)"
    else:
        again = "when something changes (the object, a Deployment, or the next gate evaluation)"
    lines.append(f"NEXT LOOK {again}")
    gates = plan.gates
    detail = f"verdict {gates.verdict.value}"
    if gates.breach is not None:
        detail += f", breach {gates.breach.name} = {format_number(gates.breach.value)}"
    lines.append(f"GATES     {detail}; {plan.gates_note}")
    if plan.checks:
        lines.append("CHECKS")
        for c in plan.checks:
            starts = (
                f" -> would start run {c.attempt}" + (f" (Job {c.job})" if c.job else "") if c.starts else ""
            )
            lines.append(f"  {c.name} ({c.level} {c.when}): {c.result}{starts}")
        lines.append(f"  ({plan.checks_note})")
    return "\n".join(lines) + "\n"
