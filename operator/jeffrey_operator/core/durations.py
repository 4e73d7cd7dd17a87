"""Kubernetes/Go duration notation: ``500ms``, ``30s``, ``2m``, ``1h30m``, ``1.5s``, ``0``.

>>> parse_duration("1m30s")
90.0
>>> parse_duration("500ms")
0.5
>>> format_duration(90.0)
'1m30s'
"""

from __future__ import annotations

import re

__all__ = ["DURATION_PATTERN", "DurationError", "format_duration", "parse_duration"]

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

#: The regular expression the CRD schema uses; the API server rejects anything else.
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"
#: The same, allowing the empty string (for "disabled" fields such as ``autoRetryAfter``).
OPTIONAL_DURATION_PATTERN = r"^(|0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"

_FULL = re.compile(DURATION_PATTERN)
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")


class DurationError(ValueError):
    """A string that is not a Go duration."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise :class:`DurationError` with a readable message."""
    value = text.strip()
    if not _FULL.match(value):
        raise DurationError(
            f"{text!r} is not a duration: use Go notation such as '500ms', '30s', '2m' or '1h30m'"
        )
    if value == "0":
        return 0.0
    return sum(float(num) * _UNITS[unit] for num, unit in _PART.findall(value))


def format_duration(seconds: float) -> str:
    """Render seconds in the shortest Go notation (``0s``, ``750ms``, ``2m5s``)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    total = round(seconds, 3)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if minutes:
        out += f"{int(minutes)}m"
    if secs or not out:
        out += f"{secs:g}s"
    return out
