"""A work queue keyed by integration, as client-go's ``util/workqueue`` and controller-runtime use.

* **Dedupe**: a key added many times before a worker takes it is processed once; a key added while
  it is being processed is processed once more afterwards, never by two workers at once.
* **Delayed adds** (:meth:`WorkQueue.add_after`): the earliest wins; the timers of the loop
  (validation windows, ``for`` deadlines, the gate tick) are delayed adds.
* **Rate-limited requeue** (:meth:`WorkQueue.add_rate_limited`): per-key exponential backoff with
  jitter (:func:`jeffrey_operator.adapters.resilience.backoff_delay`) until :meth:`WorkQueue.forget`.
* **Bounded workers**: :meth:`WorkQueue.run` runs N workers calling one handler.

>>> async def demo() -> list[str]:
...     q: WorkQueue[str] = WorkQueue()
...     for key in ("a", "b", "a"):
...         q.add(key)
...     return [await q.get(), await q.get(), str(len(q))]
>>> asyncio.run(demo())
['a', 'b', '0']
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from jeffrey_operator.adapters.resilience import backoff_delay

__all__ = ["WorkQueue"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Keys to process, each at most once at a time (see the module docstring)."""

    def __init__(self, *, base_delay: float = 0.5, max_delay: float = 60.0) -> None:
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}
        self._base = base_delay
        self._cap = max_delay
        self._ready = asyncio.Event()
        self._paused = False
        #: Keys taken by a worker so far (what the benchmark counts).
        self.processed = 0

    def __len__(self) -> int:
        return len(self._queue)

    # ----------------------------------------------------------------------------------- adding
    def add(self, key: K) -> None:
        """Process ``key`` soon (once, however often it is added)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: K, delay: float) -> None:
        """Process ``key`` in ``delay`` seconds, unless an earlier add comes first."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        current = self._timers.get(key)
        if current is not None:
            if current[0] <= when:
                return
            current[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._fire, key))

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> float:
        """Requeue after a failure: 0.5 s doubling to 60 s (with jitter) per key; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = backoff_delay(failures, base=self._base, cap=self._cap)
        self.add_after(key, delay)
        return delay

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the backoff afresh."""
        self._failures.pop(key, None)

    def discard(self, key: K) -> None:
        """The key is gone: drop it, its timer and its backoff."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()
        self._failures.pop(key, None)
        if key in self._dirty and key not in self._processing:
            self._dirty.discard(key)
            self._queue.remove(key)

    # --------------------------------------------------------------------------------- taking
    async def get(self) -> K:
        while not self._queue or self._paused:
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        self.processed += 1
        return key

    def done(self, key: K) -> None:
        """A worker finished ``key``; if it was added meanwhile, it goes back in the queue."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()

    def pause(self, paused: bool) -> None:
        """Paused: workers take nothing (a standby replica); keys keep accumulating."""
        self._paused = paused
        if not paused and self._queue:
            self._ready.set()

    async def run(
        self,
        handler: Callable[[K], Awaitable[float | None]],
        workers: int,
        *,
        expected: tuple[type[Exception], ...] = (),
    ) -> None:
        """Run ``workers`` workers until cancelled. ``handler`` returns when to look again (None:
        only when added); an exception requeues the key with backoff (``expected`` ones are
        logged as one line, others with their traceback)."""

        async def worker() -> None:
            while True:
                key = await self.get()
                try:
                    again = await handler(key)
                except asyncio.CancelledError:
                    raise
                except expected as exc:
                    delay = self.add_rate_limited(key)
                    log.warning("reconcile of %s/%s failed (%s); retrying in %.1fs", *_pair(key), exc, delay)
                except Exception:
                    delay = self.add_rate_limited(key)
                    log.exception("reconcile of %s/%s failed; retrying in %.1fs", *_pair(key), delay)
                else:
                    self.forget(key)
                    if again is not None:
                        self.add_after(key, again)
                finally:
                    self.done(key)

        tasks = [asyncio.create_task(worker(), name=f"jeffrey-worker-{n}") for n in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _pair(key: object) -> tuple[object, object]:
    return (key[0], key[1]) if isinstance(key, tuple) and len(key) == 2 else ("", key)
