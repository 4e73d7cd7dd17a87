"""``jeffreyctl history``: the transitions, newest first.

From the Redis history stream (through the module SDK, :class:`~jeffrey_operator.sdk.StateClient`)
when a Redis URL is configured (``--redis-url`` or ``JEFFREY_REDIS_URL``; password from
``JEFFREY_REDIS_PASSWORD``), otherwise from ``status.transitions`` (the last 50).
"""

from __future__ import annotations

import asyncio
from typing import Any

from jeffrey_operator.core.observe import parse_status
from jeffrey_operator.core.state_schema import HistoryEntry
from jeffrey_operator.core.timestamps import format_time
from jeffrey_operator.ctl.render import HistoryRow

__all__ = ["redis_history", "rows_from_entries", "rows_from_status"]


async def _read(
    url: str, password: str | None, *, key_prefix: str, namespace: str, name: str, count: int
) -> list[HistoryEntry]:
    from jeffrey_operator.sdk import StateClient

    async with StateClient(url, namespace, name, password=password, key_prefix=key_prefix) as client:
        return await client.history(count)


def redis_history(
    url: str, password: str | None, *, key_prefix: str, namespace: str, name: str, count: int = 200
) -> list[HistoryRow]:
    """The Redis history, newest first; raises
    :class:`~jeffrey_operator.core.ports.StateStoreUnavailable` when Redis cannot be reached."""
    return rows_from_entries(
        asyncio.run(_read(url, password, key_prefix=key_prefix, namespace=namespace, name=name, count=count))
    )


def rows_from_status(raw_status: Any) -> list[HistoryRow]:
    """``status.transitions`` (the last 50), newest first."""
    status = parse_status(raw_status)
    return [HistoryRow.of(t) for t in sorted(status.transitions, key=lambda t: -t.seq)]


def rows_from_entries(entries: list[HistoryEntry]) -> list[HistoryRow]:
    """Redis history entries (already newest first) as rows."""
    rows = []
    for e in entries:
        stamp = format_time(e.time) if e.time is not None else ""
        if e.kind == "gap":
            rows.append(
                HistoryRow(
                    seq=e.gap_to or e.seq,
                    time=stamp,
                    from_level=None,
                    to_level=None,
                    phase="gap",
                    reason="HistoryGap",
                    message=e.message
                    or f"transitions {e.gap_from}..{e.gap_to} were lost while the store was behind",
                    kind="gap",
                )
            )
            continue
        rows.append(
            HistoryRow(
                seq=e.seq,
                time=stamp,
                from_level=e.from_level.value if e.from_level else None,
                to_level=e.to_level.value if e.to_level else None,
                phase=e.phase.value if e.phase else "",
                reason=e.reason,
                message=e.message,
            )
        )
    return rows
