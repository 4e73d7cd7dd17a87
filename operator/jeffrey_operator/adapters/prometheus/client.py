"""The Prometheus adapter: ask ``/api/v1/query``, get numbers per series, or a typed error.

It only turns an answer into numbers. Judging them is :mod:`.evaluate`'s job. What it adds around
the HTTP call:

* **Typed errors.** :class:`PrometheusUnavailable` and its subclasses (:class:`Unreachable`,
  :class:`Timeout`, :class:`ServerError`, :class:`CircuitOpen`) are *monitoring trouble*: the
  caller holds, never rolls back. :class:`BadQuery` (HTTP 400 ``bad_data``, 422 ``execution``,
  or a range-vector result) is the query's fault. :class:`NoData` is an empty result.
* **Bounded retries** with exponential backoff and jitter for connection errors and 5xx/429
  answers, all within one deadline: ``timeout`` bounds the whole query, retries included
  (:class:`~jeffrey_operator.adapters.resilience.RetryPolicy`).
* **A circuit breaker per Prometheus URL** (:class:`~jeffrey_operator.adapters.resilience.CircuitBreaker`:
  closed -> open after ``failure_threshold`` consecutive failed attempts -> half-open after
  ``open_seconds``: one trial request; success closes it, failure opens it again). While open,
  queries fail at once with :class:`CircuitOpen`, whose message leads with the last real error.
* **Per-tick cache and coalescing.** Identical queries (same URL, headers, credentials and query
  text) in the same evaluation :class:`Tick` share one HTTP request, including requests still in
  flight: 50 integrations sharing the same gates cost one Prometheus query per query per tick.
  Errors are shared too, so a Prometheus that is down is asked once per tick, not 50 times.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from jeffrey_operator.adapters import resilience
from jeffrey_operator.adapters.egress import guarded_request, guarded_session
from jeffrey_operator.adapters.resilience import BreakerPolicy, BreakerState, CircuitBreaker, RetryPolicy
from jeffrey_operator.core.egress import EgressPolicy
from jeffrey_operator.core.gates.evaluate import Series
from jeffrey_operator.core.ports import NoTelemetry, Telemetry

__all__ = [
    "BadQuery",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "Endpoint",
    "NoData",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusUnavailable",
    "RetryPolicy",
    "ServerError",
    "Tick",
    "Timeout",
    "Unreachable",
    "parse_response",
]


# ---------------------------------------------------------------------------------------- errors


class PrometheusError(Exception):
    """Base of everything the adapter raises."""

    #: The ``reason`` label of ``jeffrey_prometheus_errors_total``.
    reason: ClassVar[str] = "error"
    #: Whether another attempt may succeed.
    retryable: bool = False


class PrometheusUnavailable(PrometheusError):
    """Monitoring trouble: the source could not answer. Never application trouble."""

    reason = "unavailable"


class Unreachable(PrometheusUnavailable):
    """Connection refused, DNS failure, reset: nobody answered."""

    reason = "unreachable"
    retryable = True


class Timeout(PrometheusUnavailable):
    """No answer within the query timeout (retries included), or Prometheus's own query timeout."""

    reason = "timeout"


class ServerError(PrometheusUnavailable):
    """An answer that is not a result: 5xx, 429, an unreadable body, or another HTTP error."""

    reason = "server_error"

    def __init__(self, message: str, *, status: int = 0, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class CircuitOpen(PrometheusUnavailable):
    """The breaker for this URL is open: failing fast without asking. ``last_error`` (also
    ``__cause__``) is the failure that opened it: the message leads with it."""

    reason = "circuit_open"

    def __init__(self, message: str, last_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.last_error = last_error
        self.__cause__ = last_error


class BadQuery(PrometheusError):
    """Prometheus refused the query (400 ``bad_data``, 422 ``execution``) or it is not instant."""

    reason = "bad_query"

    def __init__(self, message: str, *, error_type: str = "bad_data") -> None:
        super().__init__(message)
        self.error_type = error_type


class NoData(PrometheusError):
    """The query is fine but returned no series."""

    reason = "no_data"


# ----------------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask: one Prometheus-compatible API with its credentials."""

    url: str
    #: Seconds for the whole query, retries included.
    timeout: float = 5.0
    headers: tuple[tuple[str, str], ...] = ()
    bearer_token: str | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def query_url(self) -> str:
        return self.url.rstrip("/") + "/api/v1/query"

    def request_headers(self) -> dict[str, str]:
        """Extra headers, then ``Authorization`` (bearer wins over basic when both are given)."""
        out = dict(self.headers)
        if self.basic_auth is not None:
            user, password = self.basic_auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            out["Authorization"] = f"Basic {token}"
        if self.bearer_token is not None:
            out["Authorization"] = f"Bearer {self.bearer_token}"
        return out

    def identity(self) -> tuple[object, ...]:
        """What makes two answers interchangeable (the timeout does not)."""
        return (self.url.rstrip("/"), self.headers, self.bearer_token, self.basic_auth)


@dataclass(frozen=True)
class Tick:
    """One evaluation tick: ``floor(now / interval)``. Identical queries in one tick share an answer.

    >>> moment = datetime.datetime(2024, 1, 1, 0, 0, 10, 500000, tzinfo=datetime.UTC)
    >>> Tick.at(moment, 1.0) == Tick.at(moment + datetime.timedelta(milliseconds=400), 1.0)
    True
    >>> Tick.at(moment, 1.0) == Tick.at(moment + datetime.timedelta(milliseconds=600), 1.0)
    False
    """

    interval: float
    index: int

    @classmethod
    def at(cls, moment: datetime.datetime, interval: float) -> Tick:
        interval = max(interval, 0.001)
        return cls(interval=interval, index=math.floor(moment.timestamp() / interval))


# ---------------------------------------------------------------------------------------- parsing


def _series(item: Any, result_type: str) -> Series:
    if result_type == "scalar":
        labels: dict[str, str] = {}
        sample = item
    else:
        labels = {str(k): str(v) for k, v in dict(item.get("metric") or {}).items() if k != "__name__"}
        sample = item["value"]
    return Series(labels=tuple(sorted(labels.items())), value=float(sample[1]))


def parse_response(status: int, body: bytes) -> tuple[Series, ...]:
    """Turn one HTTP answer of ``/api/v1/query`` into series, or raise a typed error. Pure.

    >>> parse_response(200, b'{"status":"success","data":{"resultType":"vector","result":'
    ...                b'[{"metric":{"__name__":"up","job":"a"},"value":[1,"1"]}]}}')
    (Series(labels=(('job', 'a'),), value=1.0),)
    """
    retryable_status = status >= 500 or status == 429
    try:
        doc = json.loads(body)
    except ValueError:
        # Never the body itself: whatever the URL points at must not be copied into status.
        raise ServerError(
            f"HTTP {status}: not a Prometheus answer ({len(body)} bytes, not JSON)",
            status=status,
            retryable=retryable_status,
        ) from None
    if not isinstance(doc, dict):
        raise ServerError(f"HTTP {status}: unexpected answer", status=status, retryable=retryable_status)

    if doc.get("status") != "success":
        error_type = str(doc.get("errorType", ""))
        error = str(doc.get("error", "")) or f"HTTP {status}"
        if error_type in ("bad_data", "execution") or status in (400, 422):
            raise BadQuery(error, error_type=error_type or str(status))
        if error_type == "timeout":
            raise Timeout(f"Prometheus query timeout: {error}")
        raise ServerError(f"HTTP {status} {error_type}: {error}", status=status, retryable=retryable_status)
    if not 200 <= status < 300:
        raise ServerError(f"HTTP {status}", status=status, retryable=retryable_status)

    data = doc.get("data") or {}
    result_type = str(data.get("resultType", ""))
    result = data.get("result")
    if result_type not in ("vector", "scalar"):
        raise BadQuery(
            f"a gate query must return an instant vector or a scalar, not a {result_type or 'unknown'}",
            error_type="result_type",
        )
    try:
        series = (
            (_series(result, "scalar"),)
            if result_type == "scalar"
            else tuple(_series(item, "vector") for item in (result or []))
        )
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise ServerError(f"malformed result: {err}", status=status) from None
    if not series:
        raise NoData("query returned no series")
    return series


# ----------------------------------------------------------------------------------------- client


@dataclass
class _Entry:
    task: asyncio.Future[tuple[Series, ...]]
    expires: float


class PrometheusClient:
    """One per operator process: an aiohttp session, a breaker per URL, the per-tick cache.

    ``clock``, ``sleep`` and ``jitter`` are injectable for tests; ``telemetry`` counts requests
    and errors (``jeffrey_prometheus_*``).
    """

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        telemetry: Telemetry | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        #: Every request passes it: the URL, the addresses it resolves to, same-origin redirects.
        self.egress = egress or EgressPolicy()
        self.retry = retry or RetryPolicy()
        self.breaker_policy = breaker or BreakerPolicy()
        self.telemetry: Telemetry = telemetry or NoTelemetry()
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._breakers: dict[str, CircuitBreaker] = {}
        self._cache: dict[tuple[object, ...], _Entry] = {}
        self._last_prune = 0.0
        #: HTTP requests sent (retries included): what Prometheus actually sees.
        self.requests_sent = 0
        #: Logical queries started (one per distinct query per tick, after coalescing).
        self.queries_started = 0
        #: Calls answered from the cache or from a request already in flight.
        self.cache_hits = 0

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for entry in self._cache.values():
            if not entry.task.done():
                entry.task.cancel()
        self._cache.clear()
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def breaker(self, url: str) -> CircuitBreaker:
        """The breaker of one Prometheus URL (created closed)."""
        key = url.rstrip("/")
        if key not in self._breakers:
            self._breakers[key] = self.breaker_policy.build(self._clock)
        return self._breakers[key]

    async def query(self, endpoint: Endpoint, promql: str, *, tick: Tick | None = None) -> tuple[Series, ...]:
        """Numbers per series for an instant query, or a :class:`PrometheusError`.

        With ``tick``, the answer (or error) is shared by every identical call of that tick;
        without, only by identical calls in flight at the same time.
        """
        self._prune()
        key = (endpoint.identity(), promql, tick)
        entry = self._cache.get(key)
        if entry is None:
            self.queries_started += 1
            task = asyncio.ensure_future(self._query_uncached(endpoint, promql))
            task.add_done_callback(_retrieve)
            ttl = 2 * tick.interval if tick is not None else 0.0
            entry = _Entry(task=task, expires=self._clock() + ttl)
            self._cache[key] = entry
            if tick is None:
                task.add_done_callback(functools.partial(self._drop, key, entry))
        else:
            self.cache_hits += 1
        return await asyncio.shield(entry.task)

    def _drop(self, key: tuple[object, ...], entry: _Entry, _task: object = None) -> None:
        if self._cache.get(key) is entry:
            del self._cache[key]

    def _prune(self) -> None:
        now = self._clock()
        if now - self._last_prune < 1.0:
            return
        self._last_prune = now
        for key in [k for k, e in self._cache.items() if e.task.done() and e.expires <= now]:
            del self._cache[key]

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = guarded_session(self.egress)
            self._own_session = True
        return self._session

    async def _query_uncached(self, endpoint: Endpoint, promql: str) -> tuple[Series, ...]:
        deadline = self._clock() + endpoint.timeout
        breaker = self.breaker(endpoint.url)
        retry = 0
        while True:
            try:
                breaker.check()
            except resilience.CircuitOpen as err:
                self.telemetry.record_prometheus_error(CircuitOpen.reason)
                raise CircuitOpen(str(err), err.last_error) from err.last_error
            try:
                series = await self._attempt(endpoint, promql, deadline)
            except PrometheusUnavailable as err:
                breaker.record_failure(err)
                self.telemetry.record_prometheus_error(err.reason)
                delay = self.retry.delay(retry, self._jitter)
                retry += 1
                if not err.retryable or retry >= self.retry.attempts or self._clock() + delay >= deadline:
                    raise
                await self._sleep(delay)
                continue
            except (BadQuery, NoData) as err:
                breaker.record_success()  # Prometheus answered: it is up
                if isinstance(err, BadQuery):
                    self.telemetry.record_prometheus_error(err.reason)
                raise
            except BaseException:
                breaker.record_abandoned()
                raise
            breaker.record_success()
            return series

    async def _attempt(self, endpoint: Endpoint, promql: str, deadline: float) -> tuple[Series, ...]:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise Timeout(f"no answer within {endpoint.timeout:g}s")
        params = {"query": promql, "timeout": f"{remaining:.3f}"}  # seconds; Prometheus aborts too
        self.requests_sent += 1
        started = time.perf_counter()
        try:
            async with guarded_request(
                self._get_session(),
                "GET",
                endpoint.query_url,
                self.egress,
                params=params,
                headers=endpoint.request_headers(),
                timeout=aiohttp.ClientTimeout(total=remaining),
            ) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            raise Timeout(f"no answer from {endpoint.url} within {endpoint.timeout:g}s") from None
        except aiohttp.ClientResponseError as err:
            message = f"HTTP {err.status}: {err.message}"
            raise ServerError(message, status=err.status, retryable=True) from None
        except (aiohttp.ClientError, OSError) as err:
            raise Unreachable(f"{endpoint.url} unreachable: {err or type(err).__name__}") from None
        finally:
            self.telemetry.observe_prometheus_query(time.perf_counter() - started)
        return parse_response(status, body)


def _retrieve(task: asyncio.Future[tuple[Series, ...]]) -> None:
    """Mark a shared task's exception as retrieved (all its waiters may have been cancelled)."""
    if not task.cancelled():
        task.exception()
