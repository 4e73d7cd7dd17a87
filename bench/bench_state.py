"""Benchmark of the Redis state store: ``python bench/bench_state.py [--quick]``.

Starts its own ``redis-server`` on a loopback port (no persistence) and prints:

* state write latency of ``RedisStateStore.publish`` (median, p99): a status with a new
  transition (hash + history + event), and an unchanged status (the no-op every reconcile pays);
* transition to module: from the start of ``publish`` to a subscribed ``StateClient`` in another
  process yielding the new state (median, p99);
* token-bucket decisions per second from one client (one call at a time, and 16 in flight).

Times are CLOCK_MONOTONIC (``time.monotonic_ns``), which is system-wide on Linux, so the
publisher and the subscriber process measure against the same clock.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests")]

from jeffrey_operator.adapters.redis import RedisStateStore  # noqa: E402
from jeffrey_operator.sdk import StateClient, TokenBucket  # noqa: E402
from redis_fixtures import running_redis  # noqa: E402
from state_timeline import status_at  # noqa: E402

NS, NAME = "bench", "jeffrey"


def quantiles(samples_ns: list[int]) -> tuple[float, float]:
    """(median, p99) in milliseconds."""
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) / 1e6, p99 / 1e6


def report(label: str, samples_ns: list[int]) -> None:
    median, p99 = quantiles(samples_ns)
    print(f"{label:<52} median {median:7.3f} ms   p99 {p99:7.3f} ms   (n={len(samples_ns)})")


async def bench_publish(url: str, n: int) -> None:
    store = RedisStateStore.from_settings(url, None, history_maxlen=1000)
    await store.publish(NS, "warmup", status_at(1), generation=1, bus_max_rate=1000)
    changed, unchanged = [], []
    for seq in range(1, n + 1):
        status = status_at(seq)
        t0 = time.monotonic_ns()
        await store.publish(NS, "writes", status, generation=1, bus_max_rate=1000)
        changed.append(time.monotonic_ns() - t0)
    status = status_at(n)
    for _ in range(n):
        t0 = time.monotonic_ns()
        await store.publish(NS, "writes", status, generation=1, bus_max_rate=1000)
        unchanged.append(time.monotonic_ns() - t0)
    report("publish, new transition (hash+stream+event)", changed)
    report("publish, unchanged status (no-op)", unchanged)
    await store.aclose()


def _subscriber(url: str, seen: Any) -> None:
    """A module in its own process: report (seq, when) of every state the SDK yields."""

    async def run() -> None:
        async with StateClient(url, NS, NAME) as client:
            async for state in client.subscribe():
                seen.put((state.seq, time.monotonic_ns()))

    asyncio.run(run())


async def bench_propagation(url: str, n: int) -> None:
    ctx = mp.get_context("spawn")
    seen = ctx.Queue()
    store = RedisStateStore.from_settings(url, None)
    await store.publish(NS, NAME, status_at(1), generation=1, bus_max_rate=1000)
    proc = ctx.Process(target=_subscriber, args=(url, seen), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, seen.get, True, 30)  # the initial state: subscribed
    samples = []
    for seq in range(2, n + 2):
        t0 = time.monotonic_ns()
        await store.publish(NS, NAME, status_at(seq), generation=1, bus_max_rate=1000)
        while True:
            got_seq, at = await loop.run_in_executor(None, seen.get, True, 10)
            if got_seq == seq:
                samples.append(at - t0)
                break
    report("operator transition -> subscribed module sees it", samples)
    proc.terminate()
    proc.join(5)
    await store.aclose()


async def bench_bucket(url: str, seconds: float) -> None:
    bucket = TokenBucket(url, NS, NAME, rate=1e9, burst=1e9)  # never the limit: measure decisions
    await bucket.try_acquire()
    loop = asyncio.get_running_loop()
    decisions = 0
    end = loop.time() + seconds
    while loop.time() < end:
        await bucket.try_acquire()
        decisions += 1
    print(f"{'token bucket, one client, one call at a time':<52} {decisions / seconds:9.0f} decisions/s")

    async def worker() -> int:
        count = 0
        while loop.time() < end:
            await bucket.try_acquire()
            count += 1
        return count

    end = loop.time() + seconds
    total = sum(await asyncio.gather(*(worker() for _ in range(16))))
    print(f"{'token bucket, one client, 16 calls in flight':<52} {total / seconds:9.0f} decisions/s")
    await bucket.aclose()


async def main(quick: bool) -> None:
    with running_redis() as server:
        print(f"redis-server on {server.url} (pid {server.pid}); python {sys.version.split()[0]}")
        await bench_publish(server.url, 500 if quick else 5000)
        await bench_propagation(server.url, 100 if quick else 1000)
        await bench_bucket(server.url, 0.5 if quick else 3.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    asyncio.run(main(parser.parse_args().quick))
