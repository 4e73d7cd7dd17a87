"""The module SDK against a real redis-server: reading, pub/sub delivery, gap re-reads, never
going backwards, reconnecting after a Redis restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis

from jeffrey_operator.adapters.redis import RedisStateStore
from jeffrey_operator.core.models import Level, Phase
from jeffrey_operator.core.ports import StateStoreUnavailable
from jeffrey_operator.sdk import LevelState, StateClient, StateKeys
from state_timeline import status_at

if TYPE_CHECKING:
    from redis_fixtures import RedisServer


#: A redis.asyncio client with decode_responses=True (the stubs cannot tell it answers str).
Raw = Any

NS, NAME = "team-a", "jeffrey"
KEYS = StateKeys.of("jeffrey", NS, NAME)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[StateClient]:
    async with StateClient(redis_server.url, NS, NAME, reconnect_min=0.05, reconnect_max=0.2) as c:
        yield c


class Subscriber:
    """Runs ``client.subscribe()`` in a task and collects what it yields."""

    def __init__(self, client: StateClient) -> None:
        self.client = client
        self.states: list[LevelState] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for state in self.client.subscribe():
            self.states.append(state)
            self._changed.set()

    async def wait_for(self, predicate: Callable[[LevelState], bool]) -> LevelState:
        async with asyncio.timeout(10):
            while True:
                for state in self.states:
                    if predicate(state):
                        return state
                self._changed.clear()
                await self._changed.wait()

    async def ready(self) -> None:
        """Wait until the subscription is established (the first re-read happened)."""
        async with asyncio.timeout(10):
            while self.client.resyncs == 0:  # noqa: ASYNC110 - a counter, not an event, in the SDK
                await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    @property
    def versions(self) -> list[int]:
        return [s.version for s in self.states]


async def test_current_before_and_after_publishing(store: RedisStateStore, client: StateClient) -> None:
    nothing = await client.current()
    assert not nothing.known and nothing.level is None and nothing.level_index == -1
    version = await store.publish(NS, NAME, status_at(7), generation=4, bus_max_rate=900)
    state = await client.current()
    assert state.known
    assert (state.level, state.level_index, state.target_level, state.phase) == (
        Level.EMOTIONAL,
        2,
        Level.PRODUCTION,
        Phase.PROMOTING,
    )
    assert (state.version, state.generation, state.reason, state.seq, state.bus_max_rate) == (
        version,
        4,
        "Step7",
        7,
        900,
    )
    assert state.updated_at is not None and state.updated_at.tzinfo is not None


async def test_history_is_newest_first(store: RedisStateStore, client: StateClient) -> None:
    await store.publish(NS, NAME, status_at(2), generation=1, bus_max_rate=1000)
    await store.publish(NS, NAME, status_at(60, keep=50), generation=1, bus_max_rate=1000)
    entries = await client.history(count=100)
    assert [e.seq for e in entries[:3]] == [60, 59, 58]
    assert entries[0].to_level is Level.PRODUCTION and entries[0].kind == "transition"
    gap = entries[-3]
    assert (gap.kind, gap.gap_from, gap.gap_to) == ("gap", 3, 10)
    assert [e.seq for e in entries[-2:]] == [2, 1]
    assert entries[-1].from_level is None and entries[-1].to_level is Level.CORE
    assert entries[-1].time is not None and entries[-1].version > 0
    assert len(await client.history(count=5)) == 5


async def test_subscriber_sees_every_change_in_order(store: RedisStateStore, client: StateClient) -> None:
    first = await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000)
    sub = Subscriber(client)
    await sub.wait_for(lambda s: s.version == first)  # the current state comes first
    for seq in range(2, 12):
        await store.publish(NS, NAME, status_at(seq), generation=1, bus_max_rate=1000)
    last = await sub.wait_for(lambda s: s.seq == 11)
    assert sub.versions == list(range(first, first + 11))
    assert [s.seq for s in sub.states] == list(range(1, 12))
    assert last.level is Level.CONSCIOUS and last.phase is Phase.VALIDATING
    await sub.stop()


async def test_a_gap_makes_the_subscriber_re_read_the_hash(
    store: RedisStateStore, client: StateClient, redis_server: RedisServer
) -> None:
    v = await store.publish(NS, NAME, status_at(4), generation=1, bus_max_rate=1000)
    sub = Subscriber(client)
    await sub.wait_for(lambda s: s.version == v)
    raw: Raw = aioredis.Redis(port=redis_server.port, decode_responses=True)
    # Messages v+1 and v+2 were lost; the hash moved on to v+3 (PRODUCTION) and the message for
    # v+3 arrives (claiming something else): the subscriber must trust the hash.
    await raw.hset(KEYS.state, mapping={"version": v + 3, "level": "PRODUCTION", "levelIndex": 5})
    await raw.publish(KEYS.events, json.dumps({"version": v + 3, "level": "CORE", "levelIndex": 0}))
    state = await sub.wait_for(lambda s: s.version == v + 3)
    assert state.level is Level.PRODUCTION
    # old and duplicate messages are dropped: versions never go down
    await raw.publish(KEYS.events, json.dumps({"version": v + 1, "level": "CORE"}))
    await raw.publish(KEYS.events, json.dumps({"version": v + 3, "level": "CORE"}))
    await raw.publish(KEYS.events, "not json")
    # the next message in sequence is taken as it is, without a re-read
    await raw.publish(KEYS.events, json.dumps({"version": v + 4, "level": "LOOPS", "levelIndex": 4}))
    assert (await sub.wait_for(lambda s: s.version == v + 4)).level is Level.LOOPS
    assert sub.versions == [v, v + 3, v + 4]
    await raw.aclose()
    await sub.stop()


async def test_subscriber_reconnects_after_a_redis_restart(
    store: RedisStateStore, client: StateClient, redis_server: RedisServer
) -> None:
    v = await store.publish(NS, NAME, status_at(5), generation=1, bus_max_rate=1000)
    sub = Subscriber(client)
    await sub.wait_for(lambda s: s.version == v)
    redis_server.stop(kill=True)
    await asyncio.sleep(0.3)  # the subscriber notices and retries with backoff meanwhile
    redis_server.start()  # empty: the operator re-syncs it
    after = None
    async with asyncio.timeout(10):
        while after is None:
            try:
                after = await store.publish(NS, NAME, status_at(6), generation=1, bus_max_rate=1000)
            except StateStoreUnavailable:
                await asyncio.sleep(0.1)
    state = await sub.wait_for(lambda s: s.seq == 6)
    assert state.version == after > v
    assert client.resyncs >= 2
    # and the new subscription delivers further changes
    await store.publish(NS, NAME, status_at(7), generation=1, bus_max_rate=1000)
    await sub.wait_for(lambda s: s.seq == 7)
    assert sub.versions == sorted(set(sub.versions))
    await sub.stop()


async def test_subscriber_started_while_redis_is_down_catches_up(
    store: RedisStateStore, client: StateClient, redis_server: RedisServer
) -> None:
    redis_server.stop()
    sub = Subscriber(client)
    await asyncio.sleep(0.3)
    assert sub.states == []
    redis_server.start()
    await sub.ready()
    v = await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000)
    await sub.wait_for(lambda s: s.version == v)
    await sub.stop()


async def test_an_idle_subscription_is_kept_alive_with_pings(
    store: RedisStateStore, redis_server: RedisServer
) -> None:
    async with StateClient(redis_server.url, NS, NAME, idle_ping=0.1) as client:
        sub = Subscriber(client)
        await sub.ready()
        await asyncio.sleep(0.5)  # several idle periods: PING/PONG, no reconnect
        assert client.resyncs == 1
        v = await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000)
        await sub.wait_for(lambda s: s.version == v)
        await sub.stop()


async def test_deletion_is_announced(store: RedisStateStore, client: StateClient) -> None:
    v = await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000)
    sub = Subscriber(client)
    await sub.wait_for(lambda s: s.version == v)
    await store.forget(NS, NAME)
    gone = await sub.wait_for(lambda s: s.deleted)
    assert gone.version == v + 1 and not gone.known
    assert not (await client.current()).known
    await sub.stop()


async def test_client_with_password(redis_server_with_password: RedisServer) -> None:
    server = redis_server_with_password
    assert server.password is not None
    store = RedisStateStore.from_settings(server.url, server.password)
    await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000)
    async with StateClient(server.url, NS, NAME, password=server.password) as c:
        assert (await c.current()).level is Level.CORE
        assert server.password not in repr(c)
    async with StateClient(f"redis://:{server.password}@127.0.0.1:{server.port}/0", NS, NAME) as c:
        assert (await c.current()).level is Level.CORE
        assert server.password not in repr(c) and "***" in repr(c)
    await store.aclose()


async def test_current_reports_an_unavailable_store(redis_server: RedisServer) -> None:
    async with StateClient(redis_server.url, NS, NAME) as c:
        await c.current()
        redis_server.stop()
        with pytest.raises(StateStoreUnavailable):
            await c.current()
        redis_server.start()
        assert not (await c.current()).known  # back (and empty)
