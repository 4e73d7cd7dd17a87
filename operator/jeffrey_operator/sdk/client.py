"""The module SDK: what a Jeffrey module uses to follow the integration level (asyncio).

>>> async def main() -> None:                                     # doctest: +SKIP
...     async with StateClient("redis://redis:6379/0", "jeffrey", "jeffrey",
...                            password=os.environ.get("JEFFREY_REDIS_PASSWORD")) as state:
...         print((await state.current()).level)
...         bus = TokenBucket(state, "jeffrey", "jeffrey")        # rate: spec.bus.maxRate
...         async for s in state.subscribe():                     # reconnects by itself
...             await bus.acquire()
...             print(s.version, s.level, s.phase)

Readers only: the operator alone writes the state (:mod:`.store`). The contract is
``docs/state-store.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from jeffrey_operator.adapters.redis.connection import TRANSIENT_ERRORS, open_redis, redact_url
from jeffrey_operator.adapters.redis.keys import DEFAULT_KEY_PREFIX, StateKeys
from jeffrey_operator.adapters.resilience import backoff_delay
from jeffrey_operator.core.ports import StateStoreUnavailable
from jeffrey_operator.core.state_schema import DEFAULT_BUS_MAX_RATE, HistoryEntry, LevelState

__all__ = ["HistoryEntry", "LevelState", "StateClient", "TokenBucket"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Unresponsive(ConnectionError):
    """The subscription connection did not answer a PING: treat it as broken."""


class StateClient:
    """Read the level of the JeffreyIntegration ``namespace/name`` and follow its changes.

    ``password`` is used when the URL carries none; neither is ever shown by ``repr`` or logs.
    Calls raise :class:`~jeffrey_operator.core.ports.StateStoreUnavailable` when Redis cannot be
    reached (after one retry); :meth:`subscribe` instead reconnects by itself.
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        name: str,
        *,
        password: str | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        socket_timeout: float = 2.0,
        connect_timeout: float = 1.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        idle_ping: float = 5.0,
    ) -> None:
        self.keys = StateKeys.of(key_prefix, namespace, name)
        self._display_url = redact_url(url)
        self._redis = open_redis(
            url, password, socket_timeout=socket_timeout, connect_timeout=connect_timeout
        )
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._idle_ping = idle_ping
        #: How many times :meth:`subscribe` (re)connected and re-read the hash; for tests and metrics.
        self.resyncs = 0

    def __repr__(self) -> str:
        return f"StateClient(url={self._display_url!r}, keys={self.keys.base!r})"

    __str__ = __repr__

    @property
    def display_url(self) -> str:
        """The URL with the password redacted."""
        return self._display_url

    @property
    def redis(self) -> aioredis.Redis:
        """The underlying client (shared with a :class:`TokenBucket` built from this client)."""
        return self._redis

    async def __aenter__(self) -> StateClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def current(self) -> LevelState:
        """The state as stored now; ``known`` is False if the operator has published nothing."""
        return await _retrying(self._display_url, self._read)

    async def history(self, count: int = 100) -> list[HistoryEntry]:
        """The last ``count`` history entries, newest first."""

        async def read() -> list[HistoryEntry]:
            entries = await self._redis.xrevrange(self.keys.history, count=count)
            return [HistoryEntry.from_stream(entry_id, fields or {}) for entry_id, fields in entries or []]

        return await _retrying(self._display_url, read)

    async def subscribe(self) -> AsyncIterator[LevelState]:
        """Yield the current state, then every change, forever.

        Versions only go up: a message whose version is not the previous one + 1 means messages
        were missed, so the hash is re-read and its state yielded instead; the same after every
        (re)connection, which happens by itself with backoff. A version lower than or equal to
        one already yielded is never yielded. The connection is PINGed when idle for
        ``idle_ping`` seconds, so a silently dead one is noticed.
        """
        last = 0
        failures = 0
        while True:
            pubsub: PubSub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.events)
                # Subscribed first, read second: nothing published in between can be missed.
                fresh = await self._read()
                self.resyncs += 1
                failures = 0
                if fresh.version > last:
                    last = fresh.version
                    yield fresh
                while True:
                    data = await self._next_message(pubsub)
                    version = int(data.get("version", 0))
                    if version <= last:
                        continue  # a duplicate or older than what a re-read already gave
                    state = LevelState.from_fields(data)
                    if version != last + 1 and not state.deleted:
                        state = await self._read()  # a gap: messages were missed
                        if state.version <= last:
                            continue
                    last = state.version
                    yield state
            except TRANSIENT_ERRORS as exc:
                delay = backoff_delay(failures, base=self._reconnect_min, cap=self._reconnect_max)
                failures += 1
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "state subscription to %s lost (%s: %s); reconnecting in %.2fs",
                    self._display_url,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            finally:
                await _close_quietly(pubsub)

    async def _read(self) -> LevelState:
        return LevelState.from_fields(await self._redis.hgetall(self.keys.state))

    async def _next_message(self, pubsub: PubSub) -> dict[str, Any]:
        """The next event as a dict. Anything received (a message, a subscribe confirmation, a
        PONG) proves the connection alive; after ``idle_ping`` s of silence a PING goes out, and
        if nothing answers within another ``idle_ping`` s the connection counts as dead."""
        loop = asyncio.get_running_loop()
        ping_sent_at: float | None = None
        while True:
            msg = await pubsub.get_message(timeout=self._idle_ping)
            if msg is None:
                if ping_sent_at is None:
                    await pubsub.ping()
                    ping_sent_at = loop.time()
                elif loop.time() - ping_sent_at >= self._idle_ping:
                    raise _Unresponsive(f"no answer to PING within {self._idle_ping}s")
                continue
            ping_sent_at = None
            if msg.get("type") != "message":
                continue  # subscribe confirmation, pong
            try:
                data = json.loads(msg["data"])
            except (TypeError, ValueError):
                log.warning("ignoring a malformed message on %s", self.keys.events)
                continue
            if isinstance(data, dict):
                return data


_CLOSE_ERRORS: tuple[type[BaseException], ...] = (RedisError, *TRANSIENT_ERRORS)


async def _close_quietly(pubsub: PubSub) -> None:
    with contextlib.suppress(*_CLOSE_ERRORS):  # already broken: nothing to close cleanly
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _retrying(display_url: str, op: Callable[[], Awaitable[T]], attempts: int = 2) -> T:
    """``op``, retried once at once: a Redis restart leaves pooled connections broken."""
    for attempt in range(attempts):
        try:
            return await op()
        except TRANSIENT_ERRORS as exc:
            if attempt + 1 >= attempts:
                raise StateStoreUnavailable(
                    f"Redis at {display_url} is unavailable: {type(exc).__name__}: {exc}"
                ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


# KEYS: 1 bucket hash, 2 state hash. ARGV: 1 n, 2 rate ('' = the published busMaxRate),
# 3 burst ('' = a tenth of a second of the rate, at least 1), 4 the default rate.
# Refills by the Redis server clock (TIME), so client clocks never matter.
# Returns {granted 1/0 (or -1: n can never fit), seconds to wait, rate, burst} (numbers as strings).
_TOKEN_BUCKET_LUA = """
local n = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
if not rate then
  rate = tonumber(redis.call('HGET', KEYS[2], 'busMaxRate')) or tonumber(ARGV[4])
end
local burst = tonumber(ARGV[3]) or math.max(1, rate / 10)
if n > burst then
  return {-1, '0', tostring(rate), tostring(burst)}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if not tokens or not ts then
  tokens, ts = burst, now
end
if now > ts then
  tokens = tokens + (now - ts) * rate
  ts = now
end
if tokens > burst then tokens = burst end
local granted, wait = 0, 0
if tokens >= n then
  tokens = tokens - n
  granted = 1
else
  wait = (n - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {granted, string.format('%.6f', wait), tostring(rate), tostring(burst)}
"""


class TokenBucket:
    """A token bucket shared by every replica of a module: the state lives in Redis and each
    decision is one atomic script that refills by the Redis server clock.

    ``rate`` (tokens per second) defaults to the limit the operator publishes from
    ``spec.bus.maxRate`` (``busMaxRate``; 1000 until it has published one) and follows its changes;
    ``burst`` (the bucket size) defaults to a tenth of a second of the rate, at least 1.
    ``client_or_url`` is a :class:`StateClient` (its connection is shared) or a URL (then
    ``password`` and ``key_prefix`` apply, and :meth:`aclose` closes the connection).
    """

    def __init__(
        self,
        client_or_url: StateClient | str,
        namespace: str,
        name: str,
        *,
        bucket: str = "bus",
        rate: float | None = None,
        burst: float | None = None,
        password: str | None = None,
        key_prefix: str | None = None,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        if burst is not None and burst <= 0:
            raise ValueError("burst must be positive")
        if isinstance(client_or_url, StateClient):
            prefix = key_prefix or client_or_url.keys.prefix
            self._redis = client_or_url.redis
            self._display_url = client_or_url.display_url
            self._owned = False
        else:
            prefix = key_prefix or DEFAULT_KEY_PREFIX
            self._redis = open_redis(client_or_url, password)
            self._display_url = redact_url(client_or_url)
            self._owned = True
        keys = StateKeys.of(prefix, namespace, name)
        self._keys = [keys.bucket(bucket), keys.state]
        self._rate = "" if rate is None else repr(float(rate))
        self._burst = "" if burst is None else repr(float(burst))
        self._script = self._redis.register_script(_TOKEN_BUCKET_LUA)

    def __repr__(self) -> str:
        return f"TokenBucket(url={self._display_url!r}, key={self._keys[0]!r})"

    async def aclose(self) -> None:
        if self._owned:
            await self._redis.aclose()

    async def _take(self, n: float) -> tuple[bool, float]:
        if n <= 0:
            raise ValueError("n must be positive")

        async def run() -> list[Any]:
            reply: list[Any] = await self._script(
                keys=self._keys, args=[repr(float(n)), self._rate, self._burst, DEFAULT_BUS_MAX_RATE]
            )
            return reply

        granted, wait, _rate, burst = await _retrying(self._display_url, run)
        if int(granted) < 0:
            raise ValueError(f"{n} tokens can never be granted: the bucket holds at most {burst}")
        return int(granted) == 1, float(wait)

    async def try_acquire(self, n: float = 1) -> bool:
        """Take ``n`` tokens if the bucket holds them now; never waits."""
        granted, _ = await self._take(n)
        return granted

    async def acquire(self, n: float = 1, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Take ``n`` tokens, waiting as long as the bucket says it takes to refill them.
        Raises :class:`TimeoutError` if that would exceed ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            granted, wait = await self._take(n)
            if granted:
                return
            wait = max(wait, 0.001)
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining < wait:
                    raise TimeoutError(f"{n} tokens not available within {timeout}s")
            await asyncio.sleep(wait)
