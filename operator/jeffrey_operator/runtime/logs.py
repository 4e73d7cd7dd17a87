"""Log lines: one per decision, for people (text) and for pipelines (JSON).

The engine says what it decided (:class:`~jeffrey_operator.core.engine.Note`); this module only
writes it, on the ``jeffrey_operator.decisions`` logger, with the fields ``event`` (transition,
rollback, hold, recovery, drift), ``namespace``, ``name``, ``level`` (the current level), ``phase``,
``reason`` and, where they apply, ``active`` (the level being promoted/validated/demoted), ``gate``,
``value``, ``threshold``, ``modules``, ``check``, ``deployment``, ``found``, ``restored``.

Text (``--log-format text``)::

    [2026-12-01 09:00:00,123] jeffrey_operator.dec [INFO    ] rollback: rolling back to CORE ... \
event=rollback namespace=jeffrey name=jeffrey level=LOOPS phase=RollingBack reason=GateBreach \
gate=bus-rate value=1500 threshold=1000

JSON (``--log-format json``): one object per line, the fields at the top level. In JSON mode every
line the process writes is JSON: kopf's, the libraries', warnings and uncaught exceptions too.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from jeffrey_operator.core.engine import Note
from jeffrey_operator.core.models import Level, Phase

__all__ = [
    "DECISIONS",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "log_drift",
    "log_notes",
    "log_recovery",
]

DECISIONS = logging.getLogger("jeffrey_operator.decisions")

#: The record attribute that carries a decision's fields.
_FIELDS = "jeffrey_fields"


def _level(level: Level | None) -> str:
    return level.value if level is not None else "none"


def _emit(severity: int, summary: str, fields: Mapping[str, Any]) -> None:
    kept = {k: v for k, v in fields.items() if v not in (None, "", ())}
    DECISIONS.log(severity, "%s", summary, extra={_FIELDS: kept})


def log_notes(namespace: str, name: str, notes: Iterable[Note]) -> None:
    """One line per note of a decision."""
    for note in notes:
        severity = logging.WARNING if note.kind == "rollback" or note.phase is Phase.INVALID else logging.INFO
        _emit(
            severity,
            f"{note.kind}: {note.message}",
            {
                "event": note.kind,
                "namespace": namespace,
                "name": name,
                "level": _level(note.level),
                "phase": note.phase.value,
                "reason": note.reason,
                "active": note.active.value if note.active is not None else None,
                "gate": note.gate,
                "value": note.value,
                "threshold": note.threshold,
                "modules": list(note.modules) or None,
                "check": note.check,
            },
        )


def log_drift(
    namespace: str,
    name: str,
    *,
    deployment: str,
    found: int,
    restored: int,
    level: Level | None,
    phase: Phase,
    reason: str,
    message: str,
) -> None:
    """Someone else changed the replicas of a managed Deployment; the operator put them back."""
    _emit(
        logging.WARNING,
        f"drift: {message}",
        {
            "event": "drift",
            "namespace": namespace,
            "name": name,
            "level": _level(level),
            "phase": phase.value,
            "reason": reason,
            "deployment": deployment,
            "found": found,
            "restored": restored,
        },
    )


def log_recovery(
    namespace: str, name: str, *, level: Level | None, phase: Phase, reason: str, message: str
) -> None:
    """An outside system (the Redis state store) answers again."""
    _emit(
        logging.INFO,
        f"recovery: {message}",
        {
            "event": "recovery",
            "namespace": namespace,
            "name": name,
            "level": _level(level),
            "phase": phase.value,
            "reason": reason,
        },
    )


# -------------------------------------------------------------------------------------- formatters


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, _FIELDS, None)
    return dict(fields) if isinstance(fields, Mapping) else {}


def _text_value(value: Any) -> str:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if isinstance(value, float):
        value = f"{value:g}"
    text = str(value)
    return json.dumps(text) if (not text or any(ch in text for ch in ' "=')) else text


class TextFormatter(logging.Formatter):
    """kopf's full format, the object (``[ns/name]``) in front of kopf's per-object lines, and
    the decision fields as ``key=value`` after the message."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s] %(name)-20.20s [%(levelname)-8.8s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ref = getattr(record, "k8s_ref", None)
        fields = _fields(record)
        if isinstance(ref, Mapping) or fields:
            record = logging.makeLogRecord(record.__dict__)
            record.msg, record.args = record.getMessage(), None
            if isinstance(ref, Mapping):
                where = "/".join(str(p) for p in (ref.get("namespace"), ref.get("name")) if p)
                record.msg = f"[{where}] {record.msg}"
            if fields:
                record.msg += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``timestamp``, ``severity``, ``logger``, ``message``, the
    Kubernetes object kopf logs about (``object``), the decision fields, and the traceback as a
    string (``exc_info``), so that a multi-line traceback is still one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "severity": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, Mapping):
            doc["object"] = {k: v for k, v in ref.items() if v is not None}
        doc.update(_fields(record))
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring twice replaces it instead of doubling every line."""


def configure(log_format: str = "text", *, verbose: bool = False) -> None:
    """Route every log line of the process through one handler in ``log_format``.

    Replaces kopf's own set-up (:func:`kopf.configure`): same levels (INFO, DEBUG with
    ``verbose``), asyncio's chatter muted unless verbose; plus warnings and uncaught exceptions
    (main thread and others) become log records, so nothing reaches stderr unformatted.
    """
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [
        h for h in root.handlers if not isinstance(h, _Handler) and type(h).__name__ != "_KopfStreamHandler"
    ]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.propagate = verbose
    if not verbose:
        asyncio_logger.handlers[:] = [logging.NullHandler()]
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
    logging.getLogger("jeffrey_operator").critical("uncaught exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("jeffrey_operator").critical(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )
