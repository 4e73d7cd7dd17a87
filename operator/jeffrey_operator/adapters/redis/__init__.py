"""The Redis adapter: the operator's writer of the shared state store (``docs/state-store.md``).

:class:`RedisStateStore` is the adapter of :class:`~jeffrey_operator.core.ports.StateStorePort`.
Modules read the store with :mod:`jeffrey_operator.sdk` (``StateClient``, ``TokenBucket``).
"""

from __future__ import annotations

from jeffrey_operator.adapters.redis.connection import redact_url
from jeffrey_operator.adapters.redis.keys import DEFAULT_KEY_PREFIX, StateKeys
from jeffrey_operator.adapters.redis.store import Mutation, RedisStateStore, StaleWrite

__all__ = ["DEFAULT_KEY_PREFIX", "Mutation", "RedisStateStore", "StaleWrite", "StateKeys", "redact_url"]
