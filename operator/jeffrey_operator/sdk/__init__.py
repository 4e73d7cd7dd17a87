"""The module SDK: how Jeffrey OS modules read the shared state store (``docs/state-store.md``).

Modules read with :class:`StateClient` and share the bus limit with :class:`TokenBucket`; the
operator writes with :class:`jeffrey_operator.adapters.redis.RedisStateStore`.
"""

from __future__ import annotations

from jeffrey_operator.adapters.redis.connection import redact_url
from jeffrey_operator.adapters.redis.keys import DEFAULT_KEY_PREFIX, StateKeys
from jeffrey_operator.core.state_schema import DEFAULT_BUS_MAX_RATE, HistoryEntry, LevelState, StateSnapshot
from jeffrey_operator.sdk.client import StateClient, TokenBucket

__all__ = [
    "DEFAULT_BUS_MAX_RATE",
    "DEFAULT_KEY_PREFIX",
    "HistoryEntry",
    "LevelState",
    "StateClient",
    "StateKeys",
    "StateSnapshot",
    "TokenBucket",
    "redact_url",
]
