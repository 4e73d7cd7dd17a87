"""The distributed token bucket against a real redis-server: the permitted rate over several
seconds with several clients, waiting, the published default rate, refusals."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis

from jeffrey_operator.adapters.redis import RedisStateStore
from jeffrey_operator.core.ports import StateStoreUnavailable
from jeffrey_operator.sdk import StateClient, StateKeys, TokenBucket
from state_timeline import status_at

if TYPE_CHECKING:
    from redis_fixtures import RedisServer


#: A redis.asyncio client with decode_responses=True (the stubs cannot tell it answers str).
Raw = Any

NS, NAME = "jeffrey", "bus-test"
KEYS = StateKeys.of("jeffrey", NS, NAME)


async def drain(bucket: TokenBucket) -> None:
    while await bucket.try_acquire():
        pass


async def test_several_clients_stay_within_five_percent_of_the_published_limit(
    store: RedisStateStore, redis_server: RedisServer
) -> None:
    """4 replicas of a module, each with its own connection, hammer try_acquire for 3 s: together
    they are granted the rate the operator published (spec.bus.maxRate), within 5 %."""
    limit = 800
    await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=limit)
    buckets = [TokenBucket(redis_server.url, NS, NAME) for _ in range(4)]
    await drain(buckets[0])  # start from an empty bucket: measure the rate, not the burst
    duration = 3.0
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + duration

    async def hammer(bucket: TokenBucket) -> tuple[int, int]:
        granted = decisions = 0
        while loop.time() < stop_at:
            decisions += 1
            if await bucket.try_acquire():
                granted += 1
        return granted, decisions

    start = loop.time()
    results = await asyncio.gather(*(hammer(b) for b in buckets))
    elapsed = loop.time() - start
    granted = sum(g for g, _ in results)
    decisions = sum(d for _, d in results)
    assert decisions > 2 * granted  # the clients really asked for more than the limit
    assert all(g > 0 for g, _ in results)  # and every replica got its share of the bucket
    print(f"granted {granted / elapsed:.1f}/s of {limit}/s, {decisions / elapsed:.0f} decisions/s")
    assert granted / elapsed == pytest.approx(limit, rel=0.05)
    for b in buckets:
        await b.aclose()


async def test_acquire_waits_for_the_refill(redis_server: RedisServer) -> None:
    bucket = TokenBucket(redis_server.url, NS, NAME, rate=20, burst=1)
    await bucket.acquire()
    assert not await bucket.try_acquire()
    start = time.monotonic()
    for _ in range(4):
        await bucket.acquire()
    assert 0.15 <= time.monotonic() - start < 0.4  # 4 tokens at 20/s
    with pytest.raises(TimeoutError):
        await bucket.acquire(timeout=0.01)
    await bucket.aclose()


async def test_the_published_limit_is_followed_and_an_explicit_rate_wins(
    store: RedisStateStore, redis_server: RedisServer
) -> None:
    default = TokenBucket(redis_server.url, NS, NAME)
    explicit = TokenBucket(redis_server.url, NS, NAME, bucket="own", rate=5, burst=2)
    # nothing published yet: the design documents' 1000 msg/s, burst a tenth of it
    granted = 0
    while await default.try_acquire():
        granted += 1
    assert 100 <= granted < 200  # 100, plus what refilled while draining (~1 per ms)
    await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=10)  # spec.bus.maxRate: 10
    await asyncio.sleep(0.3)  # refills at 10/s now, into a bucket of 1
    assert await default.try_acquire()
    assert not await default.try_acquire()
    assert [await explicit.try_acquire() for _ in range(3)] == [True, True, False]
    for b in (default, explicit):
        await b.aclose()


async def test_a_bucket_shares_the_state_clients_connection(redis_server: RedisServer) -> None:
    async with StateClient(redis_server.url, NS, NAME) as client:
        bucket = TokenBucket(client, NS, NAME, rate=1, burst=3)
        assert await bucket.try_acquire(3)
        assert not await bucket.try_acquire()
        await bucket.aclose()  # not its connection: the client still works
        assert not (await client.current()).known


async def test_impossible_requests_are_refused(redis_server: RedisServer) -> None:
    bucket = TokenBucket(redis_server.url, NS, NAME, rate=10, burst=2)
    with pytest.raises(ValueError, match="never"):
        await bucket.try_acquire(3)
    with pytest.raises(ValueError):
        await bucket.try_acquire(0)
    with pytest.raises(ValueError):
        TokenBucket(redis_server.url, NS, NAME, rate=0)
    await bucket.aclose()


async def test_the_bucket_state_lives_in_redis_and_expires_when_idle(redis_server: RedisServer) -> None:
    bucket = TokenBucket(redis_server.url, NS, NAME, rate=100, burst=10)
    await bucket.try_acquire(4)
    raw: Raw = aioredis.Redis(port=redis_server.port, decode_responses=True)
    state = await raw.hgetall(KEYS.bucket("bus"))
    assert float(state["tokens"]) == pytest.approx(6, abs=0.5)
    assert 0 < await raw.pttl(KEYS.bucket("bus")) <= 1100  # full again after 0.1 s: no need to keep it
    await raw.aclose()
    await bucket.aclose()


async def test_an_unreachable_bucket_raises(redis_server: RedisServer) -> None:
    bucket = TokenBucket(redis_server.url, NS, NAME)
    redis_server.stop()
    with pytest.raises(StateStoreUnavailable):
        await bucket.try_acquire()
    await bucket.aclose()
