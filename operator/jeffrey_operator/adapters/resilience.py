"""Retries with exponential backoff and jitter, and a circuit breaker: the one copy of each.

Used by the Prometheus adapter (:mod:`.prometheus.client`), the Redis adapter (:mod:`.redis.store`,
the module SDK) and the operator loop (its work queue's rate-limited requeue, failed scalings,
state-store retries). Pure bookkeeping with an injectable clock and random source, so they are
tested with tables and a fake clock.

>>> [backoff_delay(n, base=0.1, cap=1.0, jitter=0.0) for n in range(6)]
[0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Backoff",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "RetryPolicy",
    "backoff_delay",
    "describe_error",
]


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.2,
    multiplier: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number ``attempt`` (0-based): ``base * multiplier**attempt`` capped at
    ``cap``, then spread by ``±jitter`` (a fraction) so that many clients do not retry in lockstep.

    >>> backoff_delay(2, base=1.0, cap=10.0, jitter=0.2, rand=lambda: 1.0)
    4.8
    """
    delay = min(cap, base * multiplier ** min(attempt, 32))
    if jitter:
        delay *= 1.0 + jitter * (2.0 * rand() - 1.0)
    return max(0.0, delay)


def describe_error(exc: BaseException | None) -> str:
    """``Type: message`` of an underlying error (what a message should lead with).

    >>> describe_error(ConnectionRefusedError(111, "Connection refused"))
    'ConnectionRefusedError: [Errno 111] Connection refused'
    """
    if exc is None:
        return "unknown error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """How one call retries transient errors before it gives up."""

    #: Attempts per call, the first one included.
    attempts: int = 3
    #: Delay before the first retry, multiplied by ``multiplier`` for each further one.
    base_delay: float = 0.05
    #: Upper bound of one delay.
    max_delay: float = 1.0
    multiplier: float = 2.0
    #: Random spread of each delay (±fraction).
    jitter: float = 0.2
    #: Upper bound of one call, all attempts and delays included (seconds); None: no bound.
    deadline: float | None = None

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Backoff before retry number ``retry`` (0-based).

        >>> RetryPolicy(jitter=0.0).delay(0), RetryPolicy(jitter=0.0).delay(9)
        (0.05, 1.0)
        """
        return backoff_delay(
            retry,
            base=self.base_delay,
            cap=self.max_delay,
            jitter=self.jitter,
            multiplier=self.multiplier,
            rand=rand,
        )


class Backoff:
    """A retry counter for a caller that retries later rather than in place (the loop).

    >>> b = Backoff(base=1.0, cap=4.0, jitter=0.0)
    >>> [b.next() for _ in range(4)], b.failures
    ([1.0, 2.0, 4.0, 4.0], 4)
    >>> b.reset(); b.failures
    0
    """

    def __init__(
        self,
        *,
        base: float,
        cap: float,
        jitter: float = 0.2,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._base = base
        self._cap = cap
        self._jitter = jitter
        self._rand = rand
        self.failures = 0

    def next(self) -> float:
        """Record one more failure and return the delay before the next attempt."""
        delay = backoff_delay(
            self.failures, base=self._base, cap=self._cap, jitter=self._jitter, rand=self._rand
        )
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitOpen(Exception):
    """The breaker is open: failing fast without calling. ``last_error`` (also ``__cause__``) is
    the underlying error that opened it, so that messages can lead with the root cause."""

    def __init__(self, message: str, last_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.last_error = last_error
        self.__cause__ = last_error


@dataclass(frozen=True)
class BreakerPolicy:
    """When a circuit breaker opens and for how long."""

    #: Consecutive failed calls that open the circuit.
    failure_threshold: int = 5
    #: Seconds the circuit stays open before one trial call is let through (half-open).
    open_seconds: float = 5.0
    #: Each failed trial doubles the open period up to this (None: no doubling).
    max_open_seconds: float | None = None

    def build(self, clock: Callable[[], float] = time.monotonic) -> CircuitBreaker:
        return CircuitBreaker(
            failure_threshold=self.failure_threshold,
            reset_timeout=self.open_seconds,
            max_reset_timeout=self.max_open_seconds or self.open_seconds,
            clock=clock,
        )


class CircuitBreaker:
    """Fail fast while a dependency is known to be down.

    ``closed``: calls go through. After ``failure_threshold`` consecutive failed calls it turns
    ``open``: :meth:`allow` says no until ``reset_timeout`` has passed; then ``half-open``: exactly
    one caller is let through as a trial. Success closes the breaker; failure opens it again for
    twice as long (up to ``max_reset_timeout``). It remembers the last underlying error
    (:attr:`last_error`), which :meth:`check` attaches to the :class:`CircuitOpen` it raises.

    >>> now = [0.0]
    >>> b = CircuitBreaker(reset_timeout=1.0, clock=lambda: now[0])
    >>> b.allow(), b.record_failure(OSError("refused")), str(b.state), b.allow()
    (True, None, 'open', False)
    >>> now[0] = 1.0; b.allow(), str(b.state), b.allow()    # one trial, the others wait
    (True, 'half-open', False)
    >>> b.record_failure(); b.retry_in                     # the next open period doubles
    2.0
    >>> now[0] = 3.0; b.allow(), b.record_success(), str(b.state)
    (True, None, 'closed')
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 1,
        reset_timeout: float = 0.5,
        max_reset_timeout: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_timeout <= 0 or max_reset_timeout < reset_timeout:
            raise ValueError("invalid circuit breaker settings")
        self._threshold = failure_threshold
        self._reset_timeout = reset_timeout
        self._max_reset_timeout = max_reset_timeout
        self._clock = clock
        self._open = False
        self._failures = 0
        self._opened = 0  # consecutive open periods, for the doubling
        self._open_until = 0.0
        self._probing = False
        #: The error of the last failed call (kept until a call succeeds).
        self.last_error: BaseException | None = None

    @property
    def state(self) -> BreakerState:
        if not self._open:
            return BreakerState.CLOSED
        if self._probing or self._clock() >= self._open_until:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def retry_in(self) -> float:
        """Seconds until the next trial is allowed (0 when closed)."""
        if not self._open:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def allow(self) -> bool:
        """May a call go through now? In half-open state, True exactly once per period."""
        if not self._open:
            return True
        if not self._probing and self._clock() >= self._open_until:
            self._probing = True
            return True
        return False

    def check(self) -> bool:
        """:meth:`allow` or raise :class:`CircuitOpen` (leading with the last error); True when
        this call is the half-open trial."""
        if not self._open:
            return False
        if self.allow():
            return True
        # The root cause first; no countdown or count, so the message (hence a status that shows
        # it) stays the same for as long as the cause does.
        cause = (str(self.last_error) or type(self.last_error).__name__) if self.last_error else "failing"
        raise CircuitOpen(f"{cause} (circuit open: failing fast until a trial succeeds)", self.last_error)

    def record_success(self) -> None:
        self._open = False
        self._failures = 0
        self._opened = 0
        self._probing = False
        self.last_error = None

    def record_failure(self, error: BaseException | None = None) -> None:
        self._failures += 1
        if error is not None:
            self.last_error = error
        if self._probing or (not self._open and self._failures >= self._threshold):
            timeout = min(self._max_reset_timeout, self._reset_timeout * 2**self._opened)
            self._opened = min(self._opened + 1, 32)
            self._open = True
            self._open_until = self._clock() + timeout
        self._probing = False

    def record_abandoned(self) -> None:
        """A call was cancelled before its outcome was known: let the next caller try."""
        if self._probing:
            self._probing = False
            self._open_until = self._clock()
