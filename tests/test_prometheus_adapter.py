"""The Prometheus adapter against a real Prometheus (and, for headers and odd answers, a tiny
recording HTTP server): numbers per series, typed errors, retries, breaker, per-tick cache."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from jeffrey_operator.adapters import telemetry as metrics
from jeffrey_operator.adapters.prometheus.client import (
    BadQuery,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    Endpoint,
    NoData,
    PrometheusClient,
    RetryPolicy,
    ServerError,
    Tick,
    Timeout,
    Unreachable,
    parse_response,
)
from jeffrey_operator.adapters.prometheus.gates import PrometheusGates
from jeffrey_operator.core.models import GateResult, JeffreyIntegrationSpec, Level
from jeffrey_operator.core.ports import GateContext, GateMode, GateVerdict

if TYPE_CHECKING:
    from prom_fixtures import PrometheusServer, Simulator, SimulatorFleet


def free_port() -> int:
    from prom_fixtures import free_port

    return free_port()


NS = "adapter"


@pytest.fixture(scope="module")
def sims(simulators: SimulatorFleet) -> list[Simulator]:
    return simulators.start(["alpha", "beta"], NS)


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read the state afresh (it changes with the clock; mypy would narrow a property)."""
    return breaker.state


class FakeClock:
    """Monotonic seconds that only move when told (``sleep`` advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


# ------------------------------------------------------------------------------- pure parsing


@pytest.mark.parametrize(
    ("status", "body", "error", "retryable"),
    [
        (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}, BadQuery, False),
        (422, {"status": "error", "errorType": "execution", "error": "many-to-many"}, BadQuery, False),
        (503, {"status": "error", "errorType": "timeout", "error": "query timed out"}, Timeout, False),
        (503, {"status": "error", "errorType": "unavailable", "error": "x"}, ServerError, True),
        (500, b"<html>oops</html>", ServerError, True),
        (502, b"Bad Gateway", ServerError, True),
        (429, b"slow down", ServerError, True),
        (401, b"Unauthorized", ServerError, False),
        (200, b"not json", ServerError, False),
        (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}, BadQuery, False),
        (200, {"status": "success", "data": {"resultType": "vector", "result": []}}, NoData, False),
    ],
)
def test_parse_errors(status: int, body: Any, error: type[Exception], retryable: bool) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(error) as info:
        parse_response(status, raw)
    assert getattr(info.value, "retryable", False) is retryable


def test_parse_vector_and_scalar() -> None:
    vector = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"__name__": "x", "module": "a"}, "value": [1, "1.5"]},
                {"metric": {"module": "b"}, "value": [1, "NaN"]},
                {"metric": {"module": "c"}, "value": [1, "+Inf"]},
            ],
        },
    }
    series = parse_response(200, json.dumps(vector).encode())
    assert [s.name for s in series] == ['{module="a"}', '{module="b"}', '{module="c"}']
    assert series[0].value == 1.5 and series[1].value != series[1].value and series[2].value == float("inf")
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1, "42"]}}
    assert [(s.labels, s.value) for s in parse_response(200, json.dumps(scalar).encode())] == [((), 42.0)]


# ------------------------------------------------------------------------------ real Prometheus


async def test_values_per_series(prometheus: PrometheusServer, sims: list[Simulator]) -> None:
    async with PrometheusClient() as client:
        series = await client.query(Endpoint(prometheus.url), f'jeffrey_module_up{{namespace="{NS}"}}')
        by_module = {dict(s.labels)["module"]: s.value for s in series}
        assert by_module == {"alpha": 1.0, "beta": 1.0}
        rate = await client.query(
            Endpoint(prometheus.url),
            f'sum by (module) (irate(jeffrey_bus_messages_published_total{{namespace="{NS}"}}[1m]))',
        )
        assert {dict(s.labels)["module"] for s in rate} == {"alpha", "beta"}
        assert all(40 < s.value < 60 for s in rate), rate  # the simulators' healthy 50 msg/s
        assert [s.value for s in await client.query(Endpoint(prometheus.url), "1 + 1")] == [2.0]


async def test_bad_query_and_no_data(prometheus: PrometheusServer, sims: list[Simulator]) -> None:
    async with PrometheusClient() as client:
        with pytest.raises(BadQuery, match="parse error"):
            await client.query(Endpoint(prometheus.url), "sum(")
        with pytest.raises(BadQuery, match="instant vector"):
            await client.query(Endpoint(prometheus.url), "up[1m]")
        with pytest.raises(NoData):
            await client.query(Endpoint(prometheus.url), 'up{job="no-such-job"}')
        assert client.breaker(prometheus.url).state is BreakerState.CLOSED  # Prometheus answered


async def test_unreachable_fails_fast_after_bounded_retries() -> None:
    before = (
        metrics.REGISTRY.get_sample_value("jeffrey_prometheus_errors_total", {"reason": "unreachable"}) or 0
    )
    async with PrometheusClient(retry=RetryPolicy(attempts=3, base_delay=0.05)) as client:
        started = time.monotonic()
        with pytest.raises(Unreachable):
            await client.query(Endpoint(f"http://127.0.0.1:{free_port()}", timeout=5), "up")
        assert time.monotonic() - started < 1.0
        assert client.requests_sent == 3
    after = metrics.REGISTRY.get_sample_value("jeffrey_prometheus_errors_total", {"reason": "unreachable"})
    assert after == before + 3


async def test_circuit_breaker_opens_then_half_opens(
    prometheus: PrometheusServer, sims: list[Simulator]
) -> None:
    clock = FakeClock()
    client = PrometheusClient(
        retry=RetryPolicy(attempts=1),
        breaker=BreakerPolicy(failure_threshold=3, open_seconds=10),
        clock=clock,
        sleep=clock.sleep,
    )
    endpoint = Endpoint(prometheus.url, timeout=2)
    breaker = client.breaker(prometheus.url)
    try:
        assert await client.query(endpoint, "vector(1)")
        prometheus.stop()
        for _ in range(3):
            with pytest.raises(Unreachable):
                await client.query(endpoint, "vector(1)")
        assert state(breaker) is BreakerState.OPEN
        sent = client.requests_sent
        # An open circuit says why it opened: the root cause first, then the breaker.
        with pytest.raises(CircuitOpen, match=r"^http://\S+ unreachable: .*\(circuit open: failing fast"):
            await client.query(endpoint, "vector(1)")
        assert client.requests_sent == sent  # failing fast: Prometheus was not asked

        clock.now += 10
        assert state(breaker) is BreakerState.HALF_OPEN
        with pytest.raises(Unreachable):  # the trial request fails: open again
            await client.query(endpoint, "vector(1)")
        assert client.requests_sent == sent + 1
        assert state(breaker) is BreakerState.OPEN

        prometheus.start()
        with pytest.raises(CircuitOpen):
            await client.query(endpoint, "vector(1)")
        clock.now += 10
        assert [s.value for s in await client.query(endpoint, "vector(1)")] == [1.0]  # trial succeeds
        assert state(breaker) is BreakerState.CLOSED
        assert breaker.consecutive_failures == 0
    finally:
        prometheus.start()
        await client.close()


async def test_fifty_integrations_cost_one_query_per_query_per_tick(
    prometheus: PrometheusServer, sims: list[Simulator]
) -> None:
    spec = JeffreyIntegrationSpec.model_validate(
        {
            "levels": [{"level": "CORE", "modules": [{"deployment": "alpha"}]}],
            "defaultGates": True,
            "analysis": {"interval": "1s", "prometheus": {"url": prometheus.url}},
        }
    )
    gates = PrometheusGates(PrometheusClient())
    now = datetime.datetime.now(datetime.UTC)

    def contexts(moment: datetime.datetime, mode: GateMode, level: Level) -> list[GateContext]:
        return [
            GateContext(
                namespace=NS,
                name=f"integration-{i}",
                spec=spec,
                mode=mode,
                active_level=level,
                level_started_at=moment - datetime.timedelta(seconds=2),
                previous=(),
                now=moment,
            )
            for i in range(50)
        ]

    try:
        before = prometheus.query_api_requests()
        reports = await asyncio.gather(
            *(gates.evaluate(c) for c in contexts(now, GateMode.CONTINUOUS, Level.CORE))
        )
        after = prometheus.query_api_requests()
        active = [s for s in reports[0].gates if s.result is not GateResult.INACTIVE]
        assert len(active) == 5  # the five rollback gates apply in continuous mode
        assert all(r.verdict is GateVerdict.PASS for r in reports), reports[0].message
        assert gates.client.requests_sent == 5
        assert after - before == 5  # what Prometheus itself counted
        assert gates.client.cache_hits == 50 * 5 - 5

        # Same tick, later: answered from the cache.
        await asyncio.gather(*(gates.evaluate(c) for c in contexts(now, GateMode.CONTINUOUS, Level.CORE)))
        assert gates.client.requests_sent == 5

        # Next tick, promoting LOOPS: all eleven gates apply, two of them share one query.
        later = now + datetime.timedelta(seconds=1)
        reports = await asyncio.gather(
            *(gates.evaluate(c) for c in contexts(later, GateMode.PROMOTION, Level.LOOPS))
        )
        assert len([s for s in reports[0].gates if s.result is not GateResult.INACTIVE]) == 11
        assert gates.client.requests_sent == 5 + 10
    finally:
        await gates.close()


async def test_coalesces_concurrent_identical_queries_without_a_tick(prometheus: PrometheusServer) -> None:
    async with PrometheusClient() as client:
        endpoint = Endpoint(prometheus.url)
        results = await asyncio.gather(*(client.query(endpoint, "vector(7)") for _ in range(20)))
        assert {r[0].value for r in results} == {7.0}
        assert client.requests_sent == 1
        await client.query(endpoint, "vector(7)")  # not in flight any more: asked again
        assert client.requests_sent == 2


async def test_different_credentials_are_not_shared(prometheus: PrometheusServer) -> None:
    tick = Tick.at(datetime.datetime.now(datetime.UTC), 10)
    async with PrometheusClient() as client:
        await client.query(
            Endpoint(prometheus.url, headers=(("X-Scope-OrgID", "a"),)), "vector(1)", tick=tick
        )
        await client.query(
            Endpoint(prometheus.url, headers=(("X-Scope-OrgID", "b"),)), "vector(1)", tick=tick
        )
        await client.query(
            Endpoint(prometheus.url, headers=(("X-Scope-OrgID", "a"),)), "vector(1)", tick=tick
        )
        assert client.requests_sent == 2


# ------------------------------------------------------------------------- recording server


@dataclass
class Recorder:
    """A fake query API: records each request, answers with ``reply`` (status, JSON or bytes)."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: Callable[[int], tuple[int, Any]] = lambda _n: (200, _ok(1))
    delay: float = 0.0


def _ok(value: float) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, str(value)]}]},
    }


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()

    async def handle(request: web.Request) -> web.Response:
        rec.requests.append({"headers": dict(request.headers), "query": dict(request.query)})
        if rec.delay:
            await asyncio.sleep(rec.delay)
        status, body = rec.reply(len(rec.requests))
        if isinstance(body, bytes):
            return web.Response(status=status, body=body)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/prefix/api/v1/query", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}/prefix/"
    try:
        yield rec
    finally:
        await runner.cleanup()


async def test_headers_bearer_and_basic_auth_are_sent(recorder: Recorder) -> None:
    async with PrometheusClient() as client:
        await client.query(
            Endpoint(recorder.url, headers=(("X-Scope-OrgID", "tenant-1"),), bearer_token="s3cret"), "up"
        )
        await client.query(Endpoint(recorder.url, basic_auth=("jeff", "pa:ss")), "up")
    first, second = recorder.requests
    assert first["headers"]["X-Scope-OrgID"] == "tenant-1"
    assert first["headers"]["Authorization"] == "Bearer s3cret"
    assert first["query"]["query"] == "up"
    assert second["headers"]["Authorization"] == "Basic " + base64.b64encode(b"jeff:pa:ss").decode()
    assert "s3cret" not in repr(Endpoint(recorder.url, bearer_token="s3cret"))


async def test_secrets_are_read_through_the_secret_reader(recorder: Recorder) -> None:
    secrets = {("team", "prom-auth", "token"): "tok-123"}
    calls: list[tuple[str, str, str]] = []

    async def reader(namespace: str, name: str, key: str) -> str:
        calls.append((namespace, name, key))
        if (namespace, name, key) not in secrets:
            raise LookupError(f"Secret {namespace}/{name} has no key {key}")
        return secrets[(namespace, name, key)] + "\n"

    def spec(ref: dict[str, str]) -> JeffreyIntegrationSpec:
        return JeffreyIntegrationSpec.model_validate(
            {
                "levels": [{"level": "CORE", "modules": [{"deployment": "m"}]}],
                "gates": [{"name": "g", "query": 'up{namespace="{{namespace}}",ji="{{name}}"}', "max": 5}],
                "analysis": {
                    "prometheus": {
                        "url": recorder.url,
                        "headers": {"X-Scope-OrgID": "t"},
                        "bearerTokenSecretRef": ref,
                    }
                },
            }
        )

    def ctx(s: JeffreyIntegrationSpec) -> GateContext:
        return GateContext(
            namespace="team",
            name="ji-1",
            spec=s,
            mode=GateMode.CONTINUOUS,
            active_level=Level.CORE,
            level_started_at=None,
            previous=(),
            now=datetime.datetime.now(datetime.UTC),
        )

    gates = PrometheusGates(secret_reader=reader)
    try:
        report = await gates.evaluate(ctx(spec({"name": "prom-auth", "key": "token"})))
        assert report.verdict is GateVerdict.PASS
        assert recorder.requests[0]["headers"]["Authorization"] == "Bearer tok-123"
        assert recorder.requests[0]["query"]["query"] == 'up{namespace="team",ji="ji-1"}'
        assert report.gates[0].query == 'up{namespace="team",ji="ji-1"}'

        missing = await gates.evaluate(ctx(spec({"name": "prom-auth", "key": "nope"})))
        assert missing.verdict is GateVerdict.INCONCLUSIVE
        assert not missing.source_available
        assert "has no key nope" in missing.message
        assert len(recorder.requests) == 1  # nothing asked without credentials
        assert calls == [("team", "prom-auth", "token"), ("team", "prom-auth", "nope")]
    finally:
        await gates.close()


async def test_timeout_bounds_the_whole_query(recorder: Recorder) -> None:
    recorder.delay = 1.0
    async with PrometheusClient() as client:
        started = time.monotonic()
        with pytest.raises(Timeout):
            await client.query(Endpoint(recorder.url, timeout=0.3), "up")
        assert time.monotonic() - started < 1.0
    assert 0 < float(recorder.requests[0]["query"]["timeout"]) <= 0.3  # Prometheus aborts too


async def test_server_errors_are_retried_with_backoff(recorder: Recorder) -> None:
    recorder.reply = lambda n: (503, b"overloaded") if n < 3 else (200, _ok(3))
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async with PrometheusClient(
        retry=RetryPolicy(attempts=3, base_delay=0.1), sleep=sleep, jitter=lambda: 1.0
    ) as c:
        assert [s.value for s in await c.query(Endpoint(recorder.url), "up")] == [3.0]
        assert c.requests_sent == 3
        assert delays == [0.1, 0.2]  # exponential
        recorder.reply = lambda _n: (503, b"overloaded")
        with pytest.raises(ServerError, match="503"):
            await c.query(Endpoint(recorder.url), "up")
        assert c.requests_sent == 6  # bounded: 3 attempts, no more


async def test_bad_query_is_not_retried(recorder: Recorder) -> None:
    recorder.reply = lambda _n: (400, {"status": "error", "errorType": "bad_data", "error": "bad"})
    async with PrometheusClient() as client:
        with pytest.raises(BadQuery):
            await client.query(Endpoint(recorder.url), "up")
        assert client.requests_sent == 1
