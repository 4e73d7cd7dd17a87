"""The gate port (PrometheusGates) against a real Prometheus scraping module simulators.

Each test works in a namespace of its own, so the faults of one never leak into another's
``rate()`` windows. The Prometheus outage test stops the shared Prometheus: it runs last.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from jeffrey_operator.adapters.prometheus.client import BreakerPolicy, PrometheusClient, RetryPolicy
from jeffrey_operator.adapters.prometheus.gates import PrometheusGates
from jeffrey_operator.core.gates.evaluate import parse_time
from jeffrey_operator.core.models import GateResult, GateStatus, JeffreyIntegrationSpec, Level
from jeffrey_operator.core.ports import GateContext, GateMode, GateReport, GateVerdict

if TYPE_CHECKING:
    from prom_fixtures import PrometheusServer, SimulatorFleet


#: Evaluation period of these tests (and the cache tick).
INTERVAL = 0.25


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture
async def gates() -> AsyncIterator[PrometheusGates]:
    client = PrometheusClient(
        retry=RetryPolicy(attempts=2, base_delay=0.02),
        breaker=BreakerPolicy(failure_threshold=3, open_seconds=0.5),
    )
    port = PrometheusGates(client)
    yield port
    await port.close()


def make_spec(prometheus: PrometheusServer, **extra: Any) -> JeffreyIntegrationSpec:
    doc: dict[str, Any] = {
        "levels": [{"level": "CORE", "modules": [{"deployment": "memory"}]}],
        "analysis": {
            "interval": f"{int(INTERVAL * 1000)}ms",
            "prometheus": {"url": prometheus.url, "timeout": "2s"},
        },
    }
    doc.update(extra)
    return JeffreyIntegrationSpec.model_validate(doc)


@dataclass
class Integration:
    """One integration's view of the gates: threads ``previous`` through evaluations."""

    port: PrometheusGates
    namespace: str
    spec: JeffreyIntegrationSpec
    mode: GateMode = GateMode.CONTINUOUS
    level: Level = Level.PRODUCTION
    level_started_at: datetime.datetime | None = None
    previous: tuple[GateStatus, ...] = ()
    history: list[GateReport] = field(default_factory=list)

    async def tick(self) -> GateReport:
        report = await self.port.evaluate(
            GateContext(
                namespace=self.namespace,
                name="jeffrey",
                spec=self.spec,
                mode=self.mode,
                active_level=self.level,
                level_started_at=self.level_started_at,
                previous=self.previous,
                now=now(),
            )
        )
        self.previous = report.gates
        self.history.append(report)
        return report

    async def until(self, done: Callable[[GateReport], bool], within: float) -> GateReport:
        deadline = time.monotonic() + within
        while True:
            report = await self.tick()
            if done(report):
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached within {within}s; last report: {report.message}")
            await asyncio.sleep(INTERVAL)

    def status(self, name: str) -> GateStatus:
        return next(s for s in self.previous if s.name == name)


# ------------------------------------------------------------------------------------ healthy


async def test_healthy_modules_pass_every_default_gate(
    prometheus: PrometheusServer, simulators: SimulatorFleet, gates: PrometheusGates
) -> None:
    simulators.start(["memory", "bus", "learner"], "healthy")
    spec = make_spec(prometheus, defaultGates=True)
    # Every module has been scraped by now, so the memory baseline at the level start sees them all.
    ji = Integration(gates, "healthy", spec, GateMode.PROMOTION, Level.LOOPS, now())

    # The minute averages are sampled every 5 s (Prometheus's grid): a step taken while only some
    # modules had been scraped twice counts a partial sum until it leaves the minute. Hold until
    # the minute average of the bus rate agrees with the minute rate (the same quantity, another
    # query), then check both.
    def settled(r: GateReport) -> bool:
        if r.verdict is GateVerdict.INCONCLUSIVE:
            return False
        v = {s.name: s.value for s in r.gates}
        average, rate = v.get("promotion-bus-rate"), v.get("rollback-bus-rate")
        return average is not None and rate is not None and abs(average - rate) <= 0.05 * rate

    report = await ji.until(settled, within=75)
    assert report.verdict is GateVerdict.PASS, report.message
    assert report.source_available
    assert [s.result for s in report.gates] == [GateResult.PASS] * 11
    values = {s.name: s.value for s in report.gates}
    print(f"healthy values: {values}")
    assert values["promotion-cpu"] == pytest.approx(10, abs=2)  # 10 % of one core each
    assert values["promotion-memory"] == pytest.approx(100 / 1024 * 100, abs=0.5)  # 100 MiB of 1 GiB
    assert values["promotion-bus-rate"] == pytest.approx(150, rel=0.2)  # 3 x 50 msg/s
    assert values["rollback-bus-rate"] == pytest.approx(150, rel=0.2)
    assert values["loops-dropped-messages"] == 0
    assert values["loops-latency-p95"] == pytest.approx(25, abs=5)  # ~20-25 ms
    assert values["rollback-memory-growth"] == pytest.approx(0, abs=1)
    assert values["rollback-modules-in-error"] == 0
    assert 'namespace="healthy"' in report.gates[0].query and "{{" not in report.gates[0].query
    assert report.passing_since is not None

    ji.mode = GateMode.CONTINUOUS
    report = await ji.tick()
    assert report.verdict is GateVerdict.PASS
    active = [s.name for s in report.gates if s.result is not GateResult.INACTIVE]
    assert active == [
        "rollback-bus-rate",
        "rollback-memory-growth",
        "rollback-cpu",
        "rollback-modules-in-error",
        "rollback-latency-p95",
    ]


# -------------------------------------------------------------------------------------- flood


async def test_flood_breaches_the_bus_gate_with_value_and_threshold(
    prometheus: PrometheusServer, simulators: SimulatorFleet, gates: PrometheusGates
) -> None:
    bus, _ = simulators.start(["bus", "memory"], "flood")
    ji = Integration(gates, "flood", make_spec(prometheus, defaultGates=True), level_started_at=now())
    assert (await ji.tick()).verdict is GateVerdict.PASS

    bus.set_fault("flood")
    started = time.monotonic()
    report = await ji.until(lambda r: r.verdict is GateVerdict.BREACH, within=10)
    latency = time.monotonic() - started
    assert report.breach is not None
    assert report.breach.name == "rollback-bus-rate"
    assert report.breach.value is not None and report.breach.value > 1000
    assert report.breach.max == 1000
    assert report.breach.series == '{namespace="flood"}'
    assert "> max 1000" in report.breach.message
    assert report.message.startswith("gate rollback-bus-rate breached")
    # Floor: one scrape (1 s) + one evaluation (0.25 s) + for (0 s).
    assert latency < 1.5 * (1 + INTERVAL) + 0.5, f"breach seen after {latency:.2f}s"
    print(f"flood -> BREACH after {latency:.2f}s")


# ------------------------------------------------------------------------------ for / spikes


async def test_spike_shorter_than_for_does_not_breach_but_a_sustained_one_does(
    prometheus: PrometheusServer, simulators: SimulatorFleet, gates: PrometheusGates
) -> None:
    (bus,) = simulators.start(["bus"], "spike")
    spec = make_spec(
        prometheus,
        gates=[
            {
                "name": "bus",
                "query": 'sum(irate(jeffrey_bus_messages_published_total{namespace="{{namespace}}"}[1m]))',
                "max": 1000,
                "for": "3s",
            }
        ],
    )
    ji = Integration(gates, "spike", spec)
    assert (await ji.tick()).verdict is GateVerdict.PASS

    bus.set_fault("flood")
    await ji.until(lambda r: r.gates[0].result is GateResult.PENDING_BREACH, within=5)
    bus.set_fault("none")
    report = await ji.until(lambda r: r.gates[0].result is GateResult.PASS, within=5)
    assert report.verdict is GateVerdict.PASS
    results = [r.gates[0].result for r in ji.history]
    assert GateResult.PENDING_BREACH in results
    assert GateResult.BREACH not in results

    bus.set_fault("flood")
    report = await ji.until(lambda r: r.verdict is GateVerdict.BREACH, within=8)
    assert report.breach is not None
    since = parse_time(report.breach.since)
    assert since is not None and (now() - since).total_seconds() >= 3
    assert "(for: 3s)" in report.breach.message


# ------------------------------------------------------------------------ each default gate


async def test_each_fault_trips_its_default_rollback_gate(
    prometheus: PrometheusServer, simulators: SimulatorFleet, gates: PrometheusGates
) -> None:
    faults = {
        "f-latency": (["bus"], "latency", None, "rollback-latency-p95"),
        "f-memory": (["memory"], "memory", 300.0, "rollback-memory-growth"),
        "f-errors": (["a", "b", "c", "d"], "errors", None, "rollback-modules-in-error"),
        "f-cpu": (["learner"], "cpu", None, "rollback-cpu"),
    }
    started = {ns: simulators.start(mods, ns, wait_scraped=False) for ns, (mods, *_rest) in faults.items()}
    simulators.wait_scraped([s for sims in started.values() for s in sims])
    spec = make_spec(prometheus, defaultGates=True, defaultGateThresholds={"rollbackCpuFor": "2s"})
    integrations = {ns: Integration(gates, ns, spec, level_started_at=now()) for ns in faults}
    for ji in integrations.values():
        assert (await ji.tick()).verdict is GateVerdict.PASS, ji.previous

    for ns, (_mods, kind, value, _gate) in faults.items():
        for sim in started[ns]:
            sim.set_fault(kind, value)

    async def breach(ji: Integration) -> GateReport:
        return await ji.until(lambda r: r.verdict is GateVerdict.BREACH, within=15)

    reports = dict(
        zip(faults, await asyncio.gather(*(breach(ji) for ji in integrations.values())), strict=True)
    )
    breaches = {ns: r.breach for ns, r in reports.items()}
    assert {ns: b.name if b else None for ns, b in breaches.items()} == {ns: f[3] for ns, f in faults.items()}

    latency, memory, errors, cpu = (breaches[ns] for ns in faults)
    assert latency is not None and latency.value is not None and latency.value > 500
    assert latency.series == '{module="bus",namespace="f-latency"}'
    assert memory is not None and memory.value is not None and memory.value > 500
    assert errors is not None and errors.value == 4 and errors.max == 3
    assert cpu is not None and cpu.value == pytest.approx(95, abs=3)
    cpu_since = parse_time(cpu.since)
    assert cpu_since is not None and (now() - cpu_since).total_seconds() >= 2
    cpu_history = [r.gates for r in integrations["f-cpu"].history]
    assert any(
        s.name == "rollback-cpu" and s.result is GateResult.PENDING_BREACH
        for gates_ in cpu_history
        for s in gates_
    )


# -------------------------------------------------------------------------- no data, invalid


async def test_no_data_follows_each_policy(prometheus: PrometheusServer, gates: PrometheusGates) -> None:
    query = 'sum(jeffrey_no_such_metric{namespace="{{namespace}}"})'
    spec = make_spec(
        prometheus,
        gates=[
            {"name": "hold", "query": query, "max": 1, "onNoData": "hold"},
            {"name": "fail", "query": query, "max": 1, "onNoData": "fail"},
            {"name": "pass", "query": query, "max": 1, "onNoData": "pass"},
        ],
    )
    ji = Integration(gates, "nodata", spec)
    report = await ji.tick()
    assert [s.result for s in report.gates] == [GateResult.INCONCLUSIVE, GateResult.BREACH, GateResult.PASS]
    assert report.verdict is GateVerdict.BREACH and report.breach is not None and report.breach.name == "fail"
    assert report.source_available

    ji.spec = make_spec(prometheus, gates=[g for g in spec.wire()["gates"] if g["name"] != "fail"])
    report = await ji.tick()
    assert report.verdict is GateVerdict.INCONCLUSIVE
    assert "no data (onNoData=hold)" in report.message


async def test_a_bad_query_is_invalid_never_a_breach(
    prometheus: PrometheusServer, gates: PrometheusGates
) -> None:
    spec = make_spec(
        prometheus,
        gates=[
            {"name": "syntax", "query": "sum(rate(up[1m])", "max": 0, "onNoData": "fail"},
            {"name": "variable", "query": 'up{namespace="{{nmespace}}"}', "max": 0},
            {"name": "range", "query": "up[1m]", "max": 0},
            {"name": "fine", "query": "vector(1)", "max": 5},
        ],
    )
    report = await Integration(gates, "invalid", spec).tick()
    assert [s.result for s in report.gates] == [GateResult.INVALID] * 3 + [GateResult.PASS]
    assert report.verdict is GateVerdict.INCONCLUSIVE
    assert report.breach is None
    assert report.source_available
    syntax, variable, range_, _ = report.gates
    assert "parse error" in syntax.message
    assert "unknown variable {{nmespace}}" in variable.message
    assert "instant vector" in range_.message


# --------------------------------------------------------------- Prometheus outage (runs last)


async def test_prometheus_outage_is_inconclusive_then_recovers(
    prometheus: PrometheusServer, simulators: SimulatorFleet, gates: PrometheusGates
) -> None:
    simulators.start(["bus"], "outage")
    ji = Integration(gates, "outage", make_spec(prometheus, defaultGates=True), level_started_at=now())
    assert (await ji.tick()).verdict is GateVerdict.PASS

    prometheus.stop()
    await asyncio.sleep(INTERVAL)  # a new tick: the last one's answers are cached
    try:
        for _ in range(3):  # the breaker opens on the way: still inconclusive, never a breach
            started = time.monotonic()
            report = await ji.tick()
            assert time.monotonic() - started < 1.0
            assert report.verdict is GateVerdict.INCONCLUSIVE
            assert report.breach is None
            assert not report.source_available
            assert f"Prometheus at {prometheus.url} unavailable" in report.message
            assert "promotion holds, no rollback" in report.message
            active = [s for s in report.gates if s.result is not GateResult.INACTIVE]
            assert {s.result for s in active} == {GateResult.INCONCLUSIVE}
            bus = ji.status("rollback-bus-rate")
            assert bus.value is not None and "last value" in bus.message
            await asyncio.sleep(INTERVAL)
    finally:
        prometheus.start()

    report = await ji.until(lambda r: r.verdict is GateVerdict.PASS, within=10)
    assert report.source_available
