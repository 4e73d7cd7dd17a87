"""What the state hash, the history stream and the events channel hold, and how to read them.

The writer (:mod:`.store`) and the readers (:mod:`.sdk`, ``jeffreyctl``) share these names and
parsers, so the contract of ``docs/state-store.md`` is spelled once. Hash and stream values are
strings; event messages are JSON with the same field names (numbers as numbers, absent levels as
``null``). Both parse with :meth:`LevelState.from_fields`:

>>> s = LevelState.from_fields({"level": "EMOTIONAL", "levelIndex": "2", "targetLevel": "PRODUCTION",
...     "phase": "Validating", "version": "1732190000123", "generation": "3",
...     "updatedAt": "2024-11-21T12:00:00+00:00", "reason": "Promoted", "seq": "7", "busMaxRate": "1000"})
>>> s.level, s.level_index, s.phase, s.version
(<Level.EMOTIONAL: 'EMOTIONAL'>, 2, <Phase.VALIDATING: 'Validating'>, 1732190000123)
>>> LevelState.from_fields({}).known
False
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jeffrey_operator.core.models import Level, Phase

__all__ = [
    "DEFAULT_BUS_MAX_RATE",
    "F_BUS_MAX_RATE",
    "F_GENERATION",
    "F_LEVEL",
    "F_LEVEL_INDEX",
    "F_PHASE",
    "F_REASON",
    "F_SEQ",
    "F_TARGET_LEVEL",
    "F_UPDATED_AT",
    "F_VERSION",
    "MANAGED_FIELDS",
    "HistoryEntry",
    "LevelState",
    "StateSnapshot",
    "event_message",
    "level_index",
]

# ------------------------------------------------------------------------------- the state hash
F_LEVEL = "level"  # current level name; "" before the first level is up
F_LEVEL_INDEX = "levelIndex"  # 0 (CORE) .. 5 (PRODUCTION); -1 when level is ""
F_TARGET_LEVEL = "targetLevel"  # spec.targetLevel
F_PHASE = "phase"  # status.phase
F_VERSION = "version"  # only increases; +1 per change
F_GENERATION = "generation"  # metadata.generation the status was computed for
F_UPDATED_AT = "updatedAt"  # RFC 3339, when version last changed
F_REASON = "reason"  # status.reason
F_SEQ = "seq"  # status.transitionSeq: the last transition recorded in the history stream
F_BUS_MAX_RATE = "busMaxRate"  # spec.bus.maxRate: the token bucket's default rate (msg/s)

#: Fields the store maintains itself; :meth:`RedisStateStore.update` refuses to set them.
MANAGED_FIELDS = frozenset({F_VERSION, F_UPDATED_AT})

#: The design documents' bus limit, used when the operator has not published one yet.
DEFAULT_BUS_MAX_RATE = 1000


def _str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _int(value: object, default: int = 0) -> int:
    text = _str(value)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        return int(float(text))


def _level(value: object) -> Level | None:
    text = _str(value)
    try:
        return Level(text) if text else None
    except ValueError:
        return None


def _phase(value: object) -> Phase | None:
    text = _str(value)
    try:
        return Phase(text) if text else None
    except ValueError:  # written by a newer operator: unknown to this SDK
        return None


_LEVEL_INDEX = {level: i for i, level in enumerate(Level)}


def level_index(level: Level | None) -> int:
    """0 (CORE) .. 5 (PRODUCTION); -1 for no level."""
    return -1 if level is None else _LEVEL_INDEX[level]


def _time(value: object) -> datetime.datetime | None:
    text = _str(value)
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class LevelState:
    """The integration level of ``namespace/name`` as the operator last published it.

    ``version`` 0 means nothing was published yet (or the integration was deleted): ``known`` is
    False and every other field is empty. A phase or level this SDK does not know reads as None.
    """

    level: Level | None = None
    level_index: int = -1
    target_level: Level | None = None
    phase: Phase | None = None
    version: int = 0
    generation: int = 0
    updated_at: datetime.datetime | None = None
    reason: str = ""
    seq: int = 0
    bus_max_rate: int | None = None
    #: True for the last message of a deleted integration (``RedisStateStore.forget``).
    deleted: bool = False

    @property
    def known(self) -> bool:
        return self.version > 0 and not self.deleted

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> LevelState:
        """Parse a state hash (strings) or an event message (JSON values)."""
        level = _level(fields.get(F_LEVEL))
        rate = _int(fields.get(F_BUS_MAX_RATE), 0)
        return cls(
            level=level,
            level_index=level_index(level),
            target_level=_level(fields.get(F_TARGET_LEVEL)),
            phase=_phase(fields.get(F_PHASE)),
            version=_int(fields.get(F_VERSION)),
            generation=_int(fields.get(F_GENERATION)),
            updated_at=_time(fields.get(F_UPDATED_AT)),
            reason=_str(fields.get(F_REASON)),
            seq=_int(fields.get(F_SEQ)),
            bus_max_rate=rate or None,
            deleted=bool(fields.get("deleted")),
        )


@dataclass(frozen=True)
class StateSnapshot:
    """The raw state hash as a writer sees it (what :meth:`RedisStateStore.update` hands to
    ``mutate``). ``exists`` is False when the hash is absent; ``version`` is then 0."""

    exists: bool
    version: int
    fields: Mapping[str, str]

    @classmethod
    def from_hash(cls, fields: Mapping[Any, Any]) -> StateSnapshot:
        """From HGETALL's answer (``decode_responses``: strings)."""
        text = {_str(k): _str(v) for k, v in fields.items()}
        return cls(exists=bool(text), version=_int(text.get(F_VERSION)), fields=text)

    @property
    def seq(self) -> int:
        return _int(self.fields.get(F_SEQ))

    @property
    def generation(self) -> int:
        return _int(self.fields.get(F_GENERATION))

    def level_state(self) -> LevelState:
        return LevelState.from_fields(self.fields)


# ------------------------------------------------------------------------------ the events channel
_INT_FIELDS = frozenset({F_LEVEL_INDEX, F_VERSION, F_GENERATION, F_SEQ, F_BUS_MAX_RATE})
_LEVEL_FIELDS = frozenset({F_LEVEL, F_TARGET_LEVEL})


def event_message(namespace: str, name: str, fields: Mapping[str, str], *, version: int | None) -> str:
    """The JSON message announcing the state ``fields`` (the whole hash after a change).

    ``version`` None leaves it out: the publish script, which alone knows the new version,
    puts it first (``{"version":V,`` + the rest).

    >>> event_message("ns", "ji", {"level": "", "levelIndex": "-1", "phase": "Pending"}, version=None)
    '{"namespace":"ns","name":"ji","level":null,"levelIndex":-1,"phase":"Pending"}'
    """
    body: dict[str, object] = {} if version is None else {F_VERSION: version}
    body["namespace"] = namespace
    body["name"] = name
    for key, value in fields.items():
        if key == F_VERSION:
            continue
        if key in _INT_FIELDS:
            body[key] = _int(value)
        elif key in _LEVEL_FIELDS:
            body[key] = value or None
        else:
            body[key] = value
    return json.dumps(body, separators=(",", ":"))


# ---------------------------------------------------------------------------- the history stream
H_KIND = "kind"  # "transition" or "gap"
H_SEQ = "seq"
H_FROM = "from"
H_TO = "to"
H_PHASE = "phase"
H_REASON = "reason"
H_MESSAGE = "message"
H_VERSION = "version"  # the state version the entry was written with
H_TIME = "time"  # transition time (RFC 3339); for a gap: when the gap was recorded
H_GAP_FROM = "gapFrom"  # first missing seq
H_GAP_TO = "gapTo"  # last missing seq

HistoryKind = Literal["transition", "gap"]


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of the history stream: a transition, or a marker for transitions that were lost
    because the store was behind by more than the CR status keeps (``gap_from``..``gap_to``)."""

    id: str
    kind: HistoryKind
    seq: int
    from_level: Level | None
    to_level: Level | None
    phase: Phase | None
    reason: str
    message: str
    version: int
    time: datetime.datetime | None
    gap_from: int = 0
    gap_to: int = 0

    @classmethod
    def from_stream(cls, entry_id: object, raw: Mapping[Any, Any]) -> HistoryEntry:
        """From one XRANGE/XREVRANGE entry."""
        fields = {_str(k): _str(v) for k, v in raw.items()}
        kind: HistoryKind = "gap" if fields.get(H_KIND) == "gap" else "transition"
        return cls(
            id=_str(entry_id),
            kind=kind,
            seq=_int(fields.get(H_SEQ)),
            from_level=_level(fields.get(H_FROM)),
            to_level=_level(fields.get(H_TO)),
            phase=_phase(fields.get(H_PHASE)),
            reason=fields.get(H_REASON, ""),
            message=fields.get(H_MESSAGE, ""),
            version=_int(fields.get(H_VERSION)),
            time=_time(fields.get(H_TIME)),
            gap_from=_int(fields.get(H_GAP_FROM)),
            gap_to=_int(fields.get(H_GAP_TO)),
        )
