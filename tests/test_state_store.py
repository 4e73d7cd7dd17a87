"""RedisStateStore against a real redis-server: mirroring, exactly-once history, optimistic
locking under contention, stale writers, outages with fail-fast and back-fill, redaction."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.asyncio as aioredis

from jeffrey_operator.adapters.redis import RedisStateStore, StaleWrite
from jeffrey_operator.adapters.redis.connection import open_redis
from jeffrey_operator.adapters.resilience import CircuitBreaker, RetryPolicy, backoff_delay
from jeffrey_operator.core.models import Level, Phase
from jeffrey_operator.core.ports import StateStorePort, StateStoreUnavailable
from jeffrey_operator.sdk import StateKeys, StateSnapshot, redact_url
from state_timeline import status_at

if TYPE_CHECKING:
    from redis_fixtures import RedisServer


#: A redis.asyncio client with decode_responses=True (the stubs cannot tell it answers str).
Raw = Any

NS, NAME = "jeffrey-system", "jeffrey"
KEYS = StateKeys.of("jeffrey", NS, NAME)


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Raw]:
    """A plain client to look behind the store's back."""
    r = aioredis.Redis(port=redis_server.port, decode_responses=True)
    yield r
    await r.aclose()


async def history_seqs(raw: Raw) -> list[tuple[str, int]]:
    entries = await raw.xrange(KEYS.history)
    return [(fields["kind"], int(fields["seq"])) for _, fields in entries]


async def drain(pubsub: Any, seconds: float = 0.3) -> list[str]:
    """The messages arriving on ``pubsub`` within ``seconds``."""
    messages = []
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if m is not None:
            messages.append(m["data"])
    return messages


async def publish_until_available(store: RedisStateStore, seq: int, deadline: float = 20.0) -> int:
    """What the operator does after an outage: retry with backoff until the store takes it."""
    until = time.monotonic() + deadline
    while True:
        try:
            return await store.publish(NS, NAME, status_at(seq), generation=1, bus_max_rate=1000)
        except StateStoreUnavailable:
            if time.monotonic() > until:
                raise
            await asyncio.sleep(0.1)


# ------------------------------------------------------------------------------- pure pieces


@pytest.mark.parametrize(
    ("attempt", "expected"), [(0, 0.05), (1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (30, 0.5), (500, 0.5)]
)
def test_backoff_doubles_up_to_the_cap(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, base=0.05, cap=0.5, jitter=0.0) == pytest.approx(expected)


def test_backoff_jitter_stays_within_its_fraction() -> None:
    assert backoff_delay(2, base=1.0, cap=10.0, jitter=0.2, rand=lambda: 0.0) == pytest.approx(3.2)
    assert backoff_delay(2, base=1.0, cap=10.0, jitter=0.2, rand=lambda: 1.0) == pytest.approx(4.8)


def test_breaker_opens_probes_once_and_doubles_its_wait() -> None:
    now = [100.0]
    b = CircuitBreaker(failure_threshold=2, reset_timeout=1.0, max_reset_timeout=3.0, clock=lambda: now[0])
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert str(b.state) == "open" and not b.allow() and b.retry_in == pytest.approx(1.0)
    now[0] += 1.0
    assert b.allow() and str(b.state) == "half-open"
    assert not b.allow()  # only one probe at a time
    b.record_failure()
    assert b.retry_in == pytest.approx(2.0)
    now[0] += 2.0
    assert b.allow()
    b.record_failure()
    assert b.retry_in == pytest.approx(3.0)  # capped
    now[0] += 3.0
    assert b.allow()
    b.record_abandoned()  # the probe was cancelled: the next caller probes at once
    assert b.allow()
    b.record_success()
    assert str(b.state) == "closed" and b.retry_in == 0.0 and b.allow()


def test_the_store_satisfies_the_port() -> None:
    store: StateStorePort = RedisStateStore.from_settings("redis://127.0.0.1:1/0", None)
    assert store is not None


# ---------------------------------------------------------------------------------- publish


async def test_publish_mirrors_the_status(store: RedisStateStore, raw: Raw) -> None:
    version = await store.publish(NS, NAME, status_at(4), generation=3, bus_max_rate=750)
    state = await raw.hgetall(KEYS.state)
    assert state == {
        "level": "COGNITIVE",
        "levelIndex": "1",
        "targetLevel": "PRODUCTION",
        "phase": "Promoting",
        "version": str(version),
        "generation": "3",
        "updatedAt": state["updatedAt"],
        "reason": "Step4",
        "seq": "4",
        "busMaxRate": "750",
    }
    assert state["updatedAt"].endswith("+00:00")
    assert version > 1_600_000_000_000  # a new hash starts at the server time in ms
    entries = await raw.xrange(KEYS.history)
    assert [e[1]["seq"] for e in entries] == ["1", "2", "3", "4"]
    first = entries[0][1]
    assert first == {
        "kind": "transition",
        "seq": "1",
        "from": "",
        "to": "CORE",
        "phase": "Promoting",
        "reason": "Step1",
        "message": "transition 1",
        "version": str(version),
        "time": "2024-11-21T12:00:01Z",
    }


async def test_an_unchanged_status_is_a_no_op(store: RedisStateStore, raw: Raw) -> None:
    v1 = await store.publish(NS, NAME, status_at(3), generation=1, bus_max_rate=1000)
    before = await raw.hgetall(KEYS.state)
    pubsub = raw.pubsub()
    await pubsub.subscribe(KEYS.events)
    for _ in range(5):
        assert await store.publish(NS, NAME, status_at(3), generation=1, bus_max_rate=1000) == v1
    assert await raw.hgetall(KEYS.state) == before  # not even updatedAt moved
    assert len(await history_seqs(raw)) == 3
    # ... and a real change bumps the version by exactly one and announces it
    v2 = await store.publish(NS, NAME, status_at(3, reason="Other"), generation=1, bus_max_rate=1000)
    assert v2 == v1 + 1
    assert len(await drain(pubsub)) == 1
    await pubsub.aclose()


@pytest.mark.parametrize(
    "change",
    [{"generation": 2}, {"bus_max_rate": 10}, {"reason": "R"}, {"seq": 4}],
)
async def test_each_mirrored_field_bumps_the_version(
    store: RedisStateStore, change: dict[str, int | str]
) -> None:
    v1 = await store.publish(NS, NAME, status_at(3), generation=1, bus_max_rate=1000)
    reason = str(change["reason"]) if "reason" in change else None
    status = status_at(int(change.get("seq", 3)), reason=reason)
    v2 = await store.publish(
        NS,
        NAME,
        status,
        generation=int(change.get("generation", 1)),
        bus_max_rate=int(change.get("bus_max_rate", 1000)),
    )
    assert v2 == v1 + 1


async def test_publish_appends_each_transition_once_in_order(store: RedisStateStore, raw: Raw) -> None:
    versions = []
    for seq in (1, 2, 2, 5, 5, 3, 9, 9, 12):  # retries, skipped publishes, an out-of-order retry
        try:
            versions.append(await store.publish(NS, NAME, status_at(seq), generation=1, bus_max_rate=1000))
        except StaleWrite:
            assert seq == 3
    assert await history_seqs(raw) == [("transition", s) for s in range(1, 13)]
    assert versions == sorted(versions)
    # the versions recorded in the history: one per publish that appended
    entries = await raw.xrange(KEYS.history)
    assert int(entries[-1][1]["version"]) == versions[-1]


async def test_a_second_store_that_caches_nothing_does_not_duplicate(
    redis_server: RedisServer, raw: Raw
) -> None:
    a = RedisStateStore.from_settings(redis_server.url, None)
    b = RedisStateStore.from_settings(redis_server.url, None)
    await a.publish(NS, NAME, status_at(6), generation=1, bus_max_rate=1000)
    await b.publish(NS, NAME, status_at(8), generation=1, bus_max_rate=1000)
    await a.publish(NS, NAME, status_at(10), generation=1, bus_max_rate=1000)
    assert await history_seqs(raw) == [("transition", s) for s in range(1, 11)]
    await a.aclose()
    await b.aclose()


async def test_a_store_far_behind_gets_a_gap_marker(store: RedisStateStore, raw: Raw) -> None:
    await store.publish(NS, NAME, status_at(2), generation=1, bus_max_rate=1000)
    # 70 transitions later, with the status keeping the last 50 (21..70): 3..20 are lost
    await store.publish(NS, NAME, status_at(70, keep=50), generation=1, bus_max_rate=1000)
    seqs = await history_seqs(raw)
    assert seqs[:3] == [("transition", 1), ("transition", 2), ("gap", 20)]
    assert seqs[3:] == [("transition", s) for s in range(21, 71)]
    gap = (await raw.xrange(KEYS.history))[2][1]
    assert (gap["gapFrom"], gap["gapTo"], gap["reason"]) == ("3", "20", "HistoryGap")


async def test_history_is_trimmed(redis_server: RedisServer, raw: Raw) -> None:
    store = RedisStateStore.from_settings(redis_server.url, None, history_maxlen=10)
    for seq in range(1, 401):
        await store.publish(NS, NAME, status_at(seq), generation=1, bus_max_rate=1000)
    length = await raw.xlen(KEYS.history)
    assert 10 <= length <= 110  # MAXLEN ~: trimmed by whole macro nodes (100 entries)
    assert (await history_seqs(raw))[-1] == ("transition", 400)
    await store.aclose()


# ------------------------------------------------------------------------------ stale writers


async def test_a_stale_publisher_is_refused(store: RedisStateStore, raw: Raw) -> None:
    v = await store.publish(NS, NAME, status_at(5), generation=2, bus_max_rate=1000)
    with pytest.raises(StaleWrite) as lower_seq:
        await store.publish(NS, NAME, status_at(4), generation=2, bus_max_rate=1000)
    assert (lower_seq.value.version, lower_seq.value.seq, lower_seq.value.generation) == (v, 5, 2)
    with pytest.raises(StaleWrite):
        await store.publish(NS, NAME, status_at(6), generation=1, bus_max_rate=1000)
    assert (await raw.hgetall(KEYS.state))["version"] == str(v)
    assert len(await history_seqs(raw)) == 5
    # the refused writer re-reads the CR (fresh status) and publishes again
    assert await store.publish(NS, NAME, status_at(6), generation=2, bus_max_rate=1000) == v + 1


async def test_two_replicas_racing_never_lose_or_repeat(redis_server: RedisServer, raw: Raw) -> None:
    """Two replicas publish the same climb at their own pace (one lags behind, as after a
    fail-over). Stale ones are refused; the history holds every transition once, in order,
    and no replica ever sees the version go backwards."""
    replicas = [RedisStateStore.from_settings(redis_server.url, None) for _ in range(2)]
    rng = random.Random(4)

    async def replica(store: RedisStateStore) -> tuple[list[int], int]:
        seen: list[int] = []
        refused = 0
        for seq in range(1, 61):
            await asyncio.sleep(rng.random() * 0.002)
            try:
                seen.append(await store.publish(NS, NAME, status_at(seq), generation=1, bus_max_rate=1000))
            except StaleWrite:
                refused += 1
        return seen, refused

    results = await asyncio.gather(*(replica(r) for r in replicas))
    for seen, _ in results:
        assert seen == sorted(seen)
    assert await history_seqs(raw) == [("transition", s) for s in range(1, 61)]
    for r in replicas:
        await r.aclose()


# ------------------------------------------------------------------- update (WATCH/MULTI/EXEC)


def increment(snapshot: StateSnapshot) -> dict[str, int]:
    return {"counter": int(snapshot.fields.get("counter", "0")) + 1}


async def test_contention_loses_no_update(store: RedisStateStore, raw: Raw) -> None:
    """20 writers x 50 read-modify-writes: every increment lands, versions are strictly
    increasing and each is handed to exactly one writer."""
    writers, updates = 20, 50
    v0 = await store.update(NS, NAME, lambda s: {"counter": 0})

    async def writer() -> list[int]:
        return [await store.update_retrying(NS, NAME, increment, attempts=1000) for _ in range(updates)]

    per_writer = await asyncio.gather(*(writer() for _ in range(writers)))
    state = await raw.hgetall(KEYS.state)
    assert int(state["counter"]) == writers * updates
    assert int(state["version"]) == v0 + writers * updates
    for versions in per_writer:
        assert all(a < b for a, b in itertools.pairwise(versions))
    every = sorted(v for versions in per_writer for v in versions)
    assert every == list(range(v0 + 1, v0 + writers * updates + 1))


async def test_contention_between_separate_connections(redis_server: RedisServer, raw: Raw) -> None:
    stores = [RedisStateStore.from_settings(redis_server.url, None) for _ in range(4)]
    await stores[0].update(NS, NAME, lambda s: {"counter": 0})

    async def writer(store: RedisStateStore) -> None:
        for _ in range(25):
            await store.update_retrying(NS, NAME, increment, attempts=1000)

    await asyncio.gather(*(writer(s) for s in stores))
    assert (await raw.hgetall(KEYS.state))["counter"] == "100"
    for s in stores:
        await s.aclose()


async def test_update_with_an_old_expected_version_is_refused(store: RedisStateStore) -> None:
    v1 = await store.update(NS, NAME, lambda s: {"owner": "cli"})
    v2 = await store.update(NS, NAME, lambda s: {"owner": "operator"}, expected_version=v1)
    assert v2 == v1 + 1
    with pytest.raises(StaleWrite) as refused:
        await store.update(NS, NAME, lambda s: {"owner": "cli"}, expected_version=v1)
    assert refused.value.version == v2
    assert (await store.read(NS, NAME)).fields["owner"] == "operator"


async def test_a_write_between_read_and_exec_is_refused_then_retried_fresh(
    store: RedisStateStore, redis_server: RedisServer
) -> None:
    await store.update(NS, NAME, lambda s: {"counter": 10})
    sync = redis.Redis(port=redis_server.port, decode_responses=True)
    seen: list[int] = []

    def meddling_increment(snapshot: StateSnapshot) -> dict[str, int]:
        seen.append(snapshot.version)
        if len(seen) == 1:  # another writer gets in between our read and our EXEC
            sync.hincrby(KEYS.state, "counter", 5)
            sync.hincrby(KEYS.state, "version", 1)
        return increment(snapshot)

    with pytest.raises(StaleWrite):
        await store.update(NS, NAME, meddling_increment)
    assert (await store.read(NS, NAME)).fields["counter"] == "15"  # the refused write left no trace
    seen.clear()
    await store.update_retrying(NS, NAME, meddling_increment)
    assert len(seen) == 2 and seen[1] == seen[0] + 1  # retried on the fresh state
    assert (await store.read(NS, NAME)).fields["counter"] == "21"
    sync.close()


async def test_update_keeps_version_and_updated_at_to_itself(store: RedisStateStore) -> None:
    with pytest.raises(ValueError, match="version"):
        await store.update(NS, NAME, lambda s: {"version": 1})
    v = await store.update(NS, NAME, lambda s: {"x": 1})
    assert await store.update(NS, NAME, lambda s: None) == v  # None: no change


async def test_publish_and_update_share_one_version_line(store: RedisStateStore) -> None:
    v1 = await store.publish(NS, NAME, status_at(2), generation=1, bus_max_rate=1000)
    v2 = await store.update(NS, NAME, lambda s: {"note": "hello"})
    v3 = await store.publish(NS, NAME, status_at(3), generation=1, bus_max_rate=1000)
    assert (v1, v2, v3) == (v1, v1 + 1, v1 + 2)
    assert (await store.read(NS, NAME)).fields["note"] == "hello"


# ------------------------------------------------------------------------------------ outages


async def test_outage_fails_fast_then_backfills_every_transition_once(
    redis_server: RedisServer,
) -> None:
    store = RedisStateStore.from_settings(redis_server.url, None)
    v_before = await store.publish(NS, NAME, status_at(2), generation=1, bus_max_rate=1000)
    redis_server.stop(kill=True)

    durations = []
    for seq in range(3, 9):  # the operator keeps integrating; every publish fails, fast
        start = time.monotonic()
        with pytest.raises(StateStoreUnavailable) as unavailable:
            await store.publish(NS, NAME, status_at(seq), generation=1, bus_max_rate=1000)
        durations.append(time.monotonic() - start)
    assert max(durations) < 1.0
    assert sorted(durations)[-2] < 0.05  # after the first failure the breaker answers at once
    assert not store.available
    assert "127.0.0.1" in str(unavailable.value)

    redis_server.start()  # back, empty (no persistence)
    v_after = await publish_until_available(store, 8)
    assert store.available
    assert v_after > v_before  # the version never goes backwards, even across a data loss
    raw: Raw = aioredis.Redis(port=redis_server.port, decode_responses=True)
    assert await history_seqs(raw) == [("transition", s) for s in range(1, 9)]
    await raw.aclose()
    await store.aclose()


async def test_breaker_lets_only_one_probe_through_while_down(redis_server: RedisServer) -> None:
    client = open_redis(redis_server.url)
    calls = 0
    real_ping = client.ping

    async def counting_ping() -> Any:
        nonlocal calls
        calls += 1
        return await real_ping()

    client.ping = counting_ping  # type: ignore[method-assign,assignment]
    store = RedisStateStore(
        client, breaker=CircuitBreaker(reset_timeout=0.2), retry=RetryPolicy(attempts=2, base_delay=0.01)
    )
    redis_server.stop()
    start = time.monotonic()
    failures = 0
    while time.monotonic() - start < 1.0:  # a caller in a hot loop ...
        with pytest.raises(StateStoreUnavailable):
            await store.ping()
        failures += 1
        await asyncio.sleep(0)
    assert failures > 1000  # ... is answered at once, and Redis is asked only by the probes:
    # the first call (2 attempts), then one probe after 0.2 s and one after 0.2 + 0.4 s (doubling)
    assert calls == 2 + 2 + 2
    await store.aclose()


async def test_a_restart_between_calls_costs_no_failure(redis_server: RedisServer) -> None:
    store = RedisStateStore.from_settings(redis_server.url, None)
    await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000)
    redis_server.restart()  # the pooled connection is now broken
    await store.publish(NS, NAME, status_at(2), generation=1, bus_max_rate=1000)
    assert store.available
    assert await store.ping() < 1.0
    await store.aclose()


async def test_a_status_older_than_the_store_after_data_loss_is_accepted(redis_server: RedisServer) -> None:
    """Redis restarted empty: whatever the status keeps is back-filled with a gap marker."""
    store = RedisStateStore.from_settings(redis_server.url, None)
    await store.publish(NS, NAME, status_at(60), generation=1, bus_max_rate=1000)
    redis_server.restart()
    await store.publish(NS, NAME, status_at(80, keep=50), generation=1, bus_max_rate=1000)
    raw: Raw = aioredis.Redis(port=redis_server.port, decode_responses=True)
    seqs = await history_seqs(raw)
    assert seqs[0] == ("gap", 30) and seqs[1:] == [("transition", s) for s in range(31, 81)]
    await raw.aclose()
    await store.aclose()


async def test_a_recreated_cr_is_told_apart_by_its_uid(store: RedisStateStore, raw: Raw) -> None:
    v = await store.publish(NS, NAME, status_at(10), generation=3, bus_max_rate=1000, uid="old-uid")
    # deleted and created again while the operator was away: forget() never ran
    with pytest.raises(StaleWrite):  # without a uid it looks like a stale writer
        await store.publish(NS, NAME, status_at(2), generation=1, bus_max_rate=1000)
    reborn = await store.publish(NS, NAME, status_at(2), generation=1, bus_max_rate=1000, uid="new-uid")
    assert reborn == v + 1
    assert await history_seqs(raw) == [("transition", 1), ("transition", 2)]
    state = await raw.hgetall(KEYS.state)
    assert (state["uid"], state["seq"], state["generation"]) == ("new-uid", "2", "1")
    again = await store.publish(NS, NAME, status_at(2), generation=1, bus_max_rate=1000, uid="new-uid")
    assert again == reborn  # an unchanged status is still a no-op


# ------------------------------------------------------------------------------------- forget


async def test_forget_deletes_and_announces(store: RedisStateStore, raw: Raw) -> None:
    v = await store.publish(NS, NAME, status_at(3), generation=1, bus_max_rate=1000)
    pubsub = raw.pubsub()
    await pubsub.subscribe(KEYS.events)
    await store.forget(NS, NAME)
    assert await raw.exists(KEYS.state, KEYS.history) == 0
    [message] = await drain(pubsub)
    assert '"deleted":true' in message
    assert f'"version":{v + 1},' in message
    await pubsub.aclose()
    await store.forget(NS, NAME)  # idempotent
    # the integration comes back: a fresh history, a version above every earlier one
    await asyncio.sleep(0.002)
    assert await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000) > v + 1
    assert await history_seqs(raw) == [("transition", 1)]


# ------------------------------------------------------------------------------ the password


async def test_password_is_used_and_never_shown(
    redis_server_with_password: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server_with_password
    secret = server.password
    assert secret is not None
    caplog.set_level(logging.DEBUG)
    store = RedisStateStore.from_settings(server.url, secret)
    await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000)
    inline = RedisStateStore.from_settings(f"redis://:{secret}@127.0.0.1:{server.port}/0", None)
    await inline.ping()
    assert "***" in repr(inline)

    wrong = RedisStateStore.from_settings(server.url, "not-the-" + secret)
    with pytest.raises(StateStoreUnavailable) as refused:
        await wrong.ping()
    server.stop()
    with pytest.raises(StateStoreUnavailable) as down:
        await inline.ping()
    with pytest.raises(ValueError) as bad_url:
        RedisStateStore.from_settings(f"http://:{secret}@127.0.0.1/0", None)

    shown = [
        repr(store),
        str(store),
        repr(inline),
        str(inline),
        str(refused.value),
        str(down.value),
        str(bad_url.value),
        caplog.text,
        redact_url(f"rediss://u:{secret}@h:1/0?password={secret}"),
    ]
    for text in shown:
        assert secret not in text
    for s in (store, inline, wrong):
        await s.aclose()


@pytest.mark.parametrize("url", ["http://h:1", "redis://", "unix://", "h:6379", "redis://h:port"])
def test_only_redis_urls_are_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="invalid Redis URL"):
        RedisStateStore.from_settings(url, None)


def test_names_are_checked() -> None:
    with pytest.raises(ValueError):
        StateKeys.of("jeffrey", "a:b", "c")
    with pytest.raises(ValueError):
        StateKeys.of("bad prefix", "a", "c")


async def test_the_level_names_match_the_models(store: RedisStateStore, raw: Raw) -> None:
    status = status_at(16)
    assert status.current_level is Level.PRODUCTION and status.phase is Phase.PROMOTING
    await store.publish(NS, NAME, status, generation=1, bus_max_rate=1000)
    state = await raw.hgetall(KEYS.state)
    assert (state["level"], state["levelIndex"]) == ("PRODUCTION", "5")


async def test_a_unix_socket_url_works(redis_server_with_unix_socket: RedisServer) -> None:
    store = RedisStateStore.from_settings(redis_server_with_unix_socket.unix_url, None)
    assert await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000) > 0
    await store.aclose()
