"""Redis as the shared state store (``docs/state-store.md``).

The operator writes with :class:`RedisStateStore` (the adapter of
:class:`~jeffrey_operator.ports.StateStorePort`); modules read with :class:`StateClient` and share
the bus limit with :class:`TokenBucket`.
"""

from __future__ import annotations

from .connection import redact_url
from .keys import DEFAULT_KEY_PREFIX, StateKeys
from .resilience import CircuitBreaker, RetryPolicy
from .schema import DEFAULT_BUS_MAX_RATE, HistoryEntry, LevelState, StateSnapshot
from .sdk import StateClient, TokenBucket
from .store import Mutation, RedisStateStore, StaleWrite

__all__ = [
    "DEFAULT_BUS_MAX_RATE",
    "DEFAULT_KEY_PREFIX",
    "CircuitBreaker",
    "HistoryEntry",
    "LevelState",
    "Mutation",
    "RedisStateStore",
    "RetryPolicy",
    "StaleWrite",
    "StateClient",
    "StateKeys",
    "StateSnapshot",
    "TokenBucket",
    "redact_url",
]
