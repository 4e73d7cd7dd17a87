"""RFC 3339 timestamps as the operator writes them in status: UTC with milliseconds."""

from __future__ import annotations

import datetime

__all__ = ["format_time", "parse_time"]


def format_time(when: datetime.datetime) -> str:
    """``2026-11-21T09:50:00.123Z``."""
    utc = when.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime.datetime | None:
    """The inverse of :func:`format_time` (any RFC 3339 time); None for empty or unreadable text."""
    if not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
