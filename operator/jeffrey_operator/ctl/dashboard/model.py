"""What the dashboard page shows, as JSON-ready dicts. Pure: bodies and ``now`` in, dicts out.

The page renders these dicts and nothing else: it never sees a raw JeffreyIntegration, so nothing
the spec may hold (Prometheus headers, Secret names, notification URLs) reaches a browser unless a
function here puts it there. Status comes through the one status parser and view model of
``jeffreyctl status`` (:func:`jeffrey_operator.ctl.main.view_of`); numbers are formatted by
:mod:`jeffrey_operator.ctl.render`, so the page and the terminal agree.

* :func:`health` — the phase as an Argo CD health status (Healthy, Progressing, Degraded,
  Suspended, Unknown): the rules of ``examples/argocd/health.lua`` (a test runs both on the same
  objects);
* :func:`integration` — one integration: overview fields, the six rungs, gates, checks,
  notifications, the timeline, the last rollback;
* :func:`rungs` — all six levels, those not defined in the spec marked ``defined: false``;
* :func:`generic_rows` — ``status.checks`` / ``status.notifications`` of any shape, as rows of
  name, level, result, message, time (fields whose name suggests a secret or a URL are left out);
* :func:`worst_points` — several series of a gate's query folded into one line for a sparkline.

Worked example: a body in phase ``Validating`` with ``activeLevel: EMOTIONAL`` and
``currentLevel: COGNITIVE`` has health ``Progressing``; its rungs are CORE and COGNITIVE ``up``
(COGNITIVE ``current``), EMOTIONAL ``validating`` (``active``), the rest ``pending`` up to the
target (``target`` on PRODUCTION), and a level the spec does not list ``defined: false``.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from jeffrey_operator.adapters.redis.connection import redact_url
from jeffrey_operator.core.gates.defaults import gates_for
from jeffrey_operator.core.models import Level, Phase
from jeffrey_operator.core.timestamps import format_time
from jeffrey_operator.core.validation import parse_spec
from jeffrey_operator.ctl.history import rows_from_status
from jeffrey_operator.ctl.main import view_of
from jeffrey_operator.ctl.render import HistoryRow, format_number, format_threshold
from jeffrey_operator.ctl.steer import Action, argocd_tracking, argocd_warning
from jeffrey_operator.ctl.view import StatusView

__all__ = [
    "HEALTH_OF_PHASE",
    "Health",
    "generic_rows",
    "health",
    "history_row",
    "integration",
    "key_of",
    "redact_text",
    "rungs",
    "spec_gates",
    "timeline",
    "worst_points",
]

Health = Literal["Healthy", "Progressing", "Degraded", "Suspended", "Unknown"]

#: Phase → health when the operator has seen the latest generation and ``spec.paused`` is false
#: (``Stable`` below the target is ``Progressing``). The same table as ``health.lua``.
HEALTH_OF_PHASE: dict[Phase, Health] = {
    Phase.PENDING: "Progressing",
    Phase.PROMOTING: "Progressing",
    Phase.VALIDATING: "Progressing",
    Phase.COOLING_DOWN: "Progressing",
    Phase.DEMOTING: "Progressing",
    Phase.ROLLING_BACK: "Progressing",
    Phase.STABLE: "Healthy",
    Phase.ROLLED_BACK: "Degraded",
    Phase.INVALID: "Degraded",
    Phase.PAUSED: "Suspended",
}

#: Field names of checks/notifications entries that are never shown (they may carry credentials).
_HIDDEN_FIELD = re.compile(r"url|secret|token|password|webhook|header|auth", re.IGNORECASE)
#: ``scheme://user:password@`` in free text.
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s:@]+):([^/\s@]+)@")


def key_of(body: Mapping[str, Any]) -> str:
    """``namespace/name``."""
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def redact_text(text: str) -> str:
    """Free text with any ``user:password@`` in a URL masked.

    >>> redact_text("Prometheus at http://admin:hunter2@prom:9090 unreachable")
    'Prometheus at http://admin:***@prom:9090 unreachable'
    """
    return _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", text)


def health(body: Mapping[str, Any]) -> Health:
    """The Argo CD health status of a JeffreyIntegration (rules of ``health.lua``).

    >>> health({"spec": {"targetLevel": "LOOPS"}, "status": {"phase": "Stable", "currentLevel": "LOOPS"}})
    'Healthy'
    >>> health({"spec": {"paused": True}, "status": {"phase": "Validating"}})
    'Suspended'
    >>> health({"metadata": {"generation": 3}, "status": {"phase": "RolledBack", "observedGeneration": 2}})
    'Progressing'
    """
    spec = body.get("spec") or {}
    status = body.get("status")
    if not isinstance(status, Mapping) or status.get("phase") is None:
        return "Progressing"
    generation = (body.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration") != generation:
        return "Progressing"
    raw_phase = status.get("phase")
    if raw_phase == Phase.PAUSED.value or spec.get("paused") is True:
        return "Suspended"
    try:
        phase = Phase(str(raw_phase))
    except ValueError:
        return "Unknown"
    if phase == Phase.STABLE:
        target = spec.get("targetLevel") or Level.PRODUCTION.value
        current = status.get("currentLevel") or "none"
        return "Healthy" if current == target else "Progressing"
    return HEALTH_OF_PHASE[phase]


def rungs(view: StatusView) -> list[dict[str, Any]]:
    """The six levels, lowest first: each with its state, marks and modules (ready/desired)."""
    defined = {lv.level: lv for lv in view.levels}
    out = []
    for level in Level.ordered():
        lv = defined.get(level)
        out.append(
            {
                "level": level.value,
                "defined": lv is not None,
                "state": lv.state if lv is not None else "undefined",
                "current": level == view.current_level,
                "active": level == view.active_level,
                "target": level == view.target_level,
                "modules": [m.to_dict() for m in lv.modules] if lv is not None else [],
            }
        )
    return out


def _gate(g: Any) -> dict[str, Any]:
    d = dict(g.to_dict())
    d["valueText"] = format_number(g.value)
    d["thresholdText"] = format_threshold(g.min, g.max)
    d["active"] = g.active
    d["message"] = redact_text(d.get("message") or "")
    return d


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format_number(float(value))
    if isinstance(value, str):
        return redact_text(value)
    return ""


def generic_rows(raw: Any) -> list[dict[str, str]]:
    """Entries of ``status.checks`` / ``status.notifications`` (a list of objects, or an object
    keyed by name) as rows of ``name, level, result, message, time`` — whatever their exact schema.

    >>> generic_rows([{"name": "smoke", "level": "CORE", "phase": "Succeeded", "url": "http://x"}])
    [{'name': 'smoke', 'level': 'CORE', 'result': 'Succeeded', 'message': '', 'time': ''}]
    >>> generic_rows({"slack": {"result": "Sent", "lastSent": "2026-12-01T08:00:00Z"}})[0]["time"]
    '2026-12-01T08:00:00Z'
    """
    entries: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(raw, Mapping):
        entries = [(str(k), v) for k, v in raw.items() if isinstance(v, Mapping)]
    elif isinstance(raw, Sequence) and not isinstance(raw, str):
        entries = [("", v) for v in raw if isinstance(v, Mapping)]

    def first(entry: Mapping[str, Any], *names: str) -> str:
        for name in names:
            if name in entry and not _HIDDEN_FIELD.search(name):
                text = _scalar(entry[name])
                if text:
                    return text
        return ""

    rows = []
    for fallback, entry in entries:
        rows.append(
            {
                "name": first(entry, "name", "check", "notification", "receiver", "kind", "type") or fallback,
                "level": first(entry, "level", "activeLevel", "forLevel"),
                "result": first(entry, "result", "phase", "state", "status", "outcome", "verdict"),
                "message": first(entry, "message", "reason", "error", "detail"),
                "time": first(
                    entry, "time", "lastTransitionTime", "lastSent", "lastRun", "since", "completedAt"
                ),
            }
        )
    return rows


def timeline(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``status.transitions`` newest first (the Redis history, when configured, is fetched apart)."""
    return [history_row(r) for r in rows_from_status(body.get("status"))]


def history_row(r: HistoryRow) -> dict[str, Any]:
    """One timeline entry (a transition from status or from the Redis history)."""
    d = dict(r.to_dict())
    d["message"] = redact_text(str(d.get("message") or ""))
    return d


def _rollback(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if not record:
        return None
    out = dict(record)
    out.pop("retryToken", None)
    out["message"] = redact_text(str(out.get("message") or ""))
    value, threshold = out.get("value"), out.get("threshold")
    out["valueText"] = format_number(float(value)) if isinstance(value, int | float) else ""
    out["thresholdText"] = format_number(float(threshold)) if isinstance(threshold, int | float) else ""
    return out


def integration(
    body: Mapping[str, Any], now: datetime.datetime, *, prometheus_url: str | None = None
) -> dict[str, Any]:
    """Everything the page shows of one integration (overview row and detail view).

    ``prometheus_url``: where the dashboard asks for sparklines (``--prometheus-url``), else the
    integration's ``spec.analysis.prometheus.url``; shown with any password masked.
    """
    view = view_of(dict(body), now)
    meta = body.get("metadata") or {}
    status = body.get("status") if isinstance(body.get("status"), Mapping) else {}
    spec = body.get("spec") if isinstance(body.get("spec"), Mapping) else {}
    analysis = (spec or {}).get("analysis") or {}
    source = prometheus_url or ((analysis.get("prometheus") or {}).get("url")) or ""
    tracking = argocd_tracking(body)
    warnings = {}
    if tracking is not None:
        actions: tuple[Action, ...] = ("pause", "resume", "retry")
        for action in actions:
            warnings[action] = argocd_warning(tracking, action, view.namespace, view.name)
    data = view.to_dict()
    data.update(
        {
            "key": key_of(body),
            "health": health(body),
            "message": redact_text(view.message),
            "created": view.created,
            "resourceVersion": str(meta.get("resourceVersion", "")),
            "rungs": rungs(view),
            "gates": [_gate(g) for g in view.gates],
            "lastRollback": _rollback(view.last_rollback),
            "checks": generic_rows((status or {}).get("checks")),
            "notifications": generic_rows((status or {}).get("notifications")),
            "timeline": timeline(body),
            "argocd": warnings,
            "prometheus": redact_url(str(source)) if source else "",
            #: When this dict was computed (``waiting`` is as of then; the page runs the clock on).
            "computedAt": format_time(now),
        }
    )
    data["gateSpecs"] = spec_gates(body)
    data.pop("levels", None)
    data["conditions"] = [
        {**c, "message": redact_text(str(c.get("message") or ""))} for c in data.get("conditions") or []
    ]
    return data


def spec_gates(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The gates the spec asks for (the default checklist included), with their thresholds: what a
    sparkline is drawn for while the operator evaluates none (e.g. after a rollback)."""
    parsed = parse_spec(body.get("spec") or {})
    if isinstance(parsed, list):
        return []
    return [
        {"name": g.name, "min": g.min, "max": g.max, "thresholdText": format_threshold(g.min, g.max)}
        for g in gates_for(parsed)
    ]


def worst_points(
    series: Sequence[Sequence[tuple[float, float]]], *, higher_is_worse: bool
) -> list[tuple[float, float]]:
    """Fold several series into one: per timestamp the worst value (NaN and ±Inf dropped).

    >>> worst_points([[(1, 5.0), (2, 7.0)], [(1, 9.0)]], higher_is_worse=True)
    [(1, 9.0), (2, 7.0)]
    >>> worst_points([[(1, 5.0), (2, 7.0)], [(1, 9.0)]], higher_is_worse=False)
    [(1, 5.0), (2, 7.0)]
    """
    best: dict[float, float] = {}
    pick = max if higher_is_worse else min
    for points in series:
        for t, v in points:
            if math.isnan(v) or math.isinf(v):
                continue
            best[t] = pick(best[t], v) if t in best else v
    return sorted(best.items())
