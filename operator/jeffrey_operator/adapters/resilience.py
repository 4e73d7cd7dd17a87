"""Bounded retries with exponential backoff, and a circuit breaker.

Both are pure bookkeeping with an injectable clock and random source, so they are tested with
tables and a fake clock; :mod:`.store` and :mod:`.sdk` wrap their Redis calls with them.

>>> [backoff_delay(n, base=0.1, cap=1.0, jitter=0.0) for n in range(6)]
[0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker", "RetryPolicy", "backoff_delay"]


def backoff_delay(
    attempt: int, *, base: float, cap: float, jitter: float = 0.2, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry number ``attempt`` (0-based): ``base * 2**attempt`` capped at ``cap``,
    then spread by ``±jitter`` (a fraction) so that many clients do not retry in lockstep."""
    delay = min(cap, base * 2.0 ** min(attempt, 32))
    if jitter:
        delay *= 1.0 + jitter * (2.0 * rand() - 1.0)
    return max(0.0, delay)


@dataclass(frozen=True)
class RetryPolicy:
    """How one store call retries transient Redis errors before it gives up."""

    #: Attempts per call (the first one included). 2 is enough to get past a pooled connection
    #: that a Redis restart left broken.
    attempts: int = 3
    #: Delay before the first retry, doubled for each further one.
    base_delay: float = 0.02
    #: Upper bound of one delay.
    max_delay: float = 0.2
    #: Upper bound of one call, all attempts and delays included (seconds).
    deadline: float = 2.0

    def delay(self, attempt: int) -> float:
        return backoff_delay(attempt, base=self.base_delay, cap=self.max_delay)


BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Fail fast while the store is known to be down.

    ``closed``: calls go through. After ``failure_threshold`` consecutive failed calls it turns
    ``open``: :meth:`allow` says no until ``reset_timeout`` has passed; then ``half-open``: exactly
    one caller is let through as a probe. Success closes the breaker; failure opens it again for
    twice as long (up to ``max_reset_timeout``). So while Redis is away the store costs nothing but
    a probe every few seconds, whatever the callers do.

    >>> now = [0.0]
    >>> b = CircuitBreaker(reset_timeout=1.0, clock=lambda: now[0])
    >>> b.allow(), b.record_failure(), b.state, b.allow()
    (True, None, 'open', False)
    >>> now[0] = 1.0; b.allow(), b.state, b.allow()    # one probe, the others wait
    (True, 'half-open', False)
    >>> b.record_failure(); b.retry_in                 # the next open period doubles
    2.0
    >>> now[0] = 3.0; b.allow(), b.record_success(), b.state
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
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened = 0  # consecutive open periods, for the doubling
        self._open_until = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def retry_in(self) -> float:
        """Seconds until the next probe is allowed (0 when closed)."""
        if self._state == "closed":
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def allow(self) -> bool:
        """May a call go to the store now? In half-open state, True exactly once per period."""
        if self._state == "closed":
            return True
        if self._state == "open" and self._clock() >= self._open_until:
            self._state = "half-open"
        if self._state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._state = "closed"
        self._failures = 0
        self._opened = 0
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half-open" or self._failures >= self._threshold:
            timeout = min(self._max_reset_timeout, self._reset_timeout * 2**self._opened)
            self._opened = min(self._opened + 1, 32)
            self._state = "open"
            self._open_until = self._clock() + timeout
        self._probing = False

    def record_abandoned(self) -> None:
        """A call was cancelled before its outcome was known: let the next caller probe."""
        if self._probing:
            self._probing = False
            self._state = "open"
            self._open_until = self._clock()
