"""jeffrey-module-sim: the simulation (fake clock), its HTTP interface (in process), and the real
program (a subprocess: start flag, crash exit code)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from jeffrey_operator.sim.main import LATENCY_BUCKETS, MIB, Fault, ModuleSim, create_app

CONTRACT = {
    "jeffrey_bus_messages_published_total",
    "jeffrey_bus_messages_dropped_total",
    "jeffrey_bus_queue_size",
    "jeffrey_bus_queue_capacity",
    "jeffrey_bus_publish_latency_seconds_bucket",
    "jeffrey_bus_publish_latency_seconds_count",
    "jeffrey_bus_publish_latency_seconds_sum",
    "jeffrey_module_errors_total",
    "jeffrey_module_up",
    "jeffrey_module_cpu_limit_cores",
    "jeffrey_module_memory_limit_bytes",
    "jeffrey_dead_letter_queue_size",
    "jeffrey_dream_last_run_timestamp_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make_sim(clock: Clock, **kw: Any) -> ModuleSim:
    return ModuleSim("bus", "demo", clock=clock, wall=lambda: 1_700_000_000.0 + clock.t, **kw)


def samples(sim: ModuleSim) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Collect once: {(sample name, sorted labels without namespace/module): value}."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(sim)
    out = {}
    for family in registry.collect():
        for s in family.samples:
            assert s.labels["namespace"] == "demo" and s.labels["module"] == "bus", s
            rest = tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("namespace", "module")))
            out[(s.name, rest)] = s.value
    return out


def value(snapshot: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return snapshot[(name, ())]


def quantile(q: float, before: dict[Any, float], after: dict[Any, float]) -> float:
    """histogram_quantile over the bucket increases between two snapshots (Prometheus' method)."""
    name = "jeffrey_bus_publish_latency_seconds_bucket"
    bounds = [*LATENCY_BUCKETS, math.inf]
    counts = [after[(name, (("le", _le(b)),))] - before[(name, (("le", _le(b)),))] for b in bounds]
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    raise AssertionError("unreachable")


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else f"{bound:g}"


# ------------------------------------------------------------------------------- simulation


def test_healthy_rates_follow_elapsed_time() -> None:
    clock = Clock()
    sim = make_sim(clock)
    first = samples(sim)
    clock.t += 2.0
    second = samples(sim)
    delta = {k: second[k] - first[k] for k in second}
    assert value(delta, "jeffrey_bus_messages_published_total") == pytest.approx(100)  # 50 msg/s
    assert value(delta, "process_cpu_seconds_total") == pytest.approx(0.2)  # 10 % of one core
    assert value(delta, "jeffrey_bus_messages_dropped_total") == 0
    assert value(delta, "jeffrey_module_errors_total") == 0
    assert value(second, "process_resident_memory_bytes") == 100 * MIB
    assert value(second, "jeffrey_module_up") == 1
    assert value(second, "jeffrey_module_memory_limit_bytes") == 1024 * MIB
    assert quantile(0.95, first, second) == pytest.approx(0.0246, abs=0.002)  # ~20-25 ms
    assert {name for name, _ in second} == CONTRACT


def test_flood_fills_the_queue_then_drops() -> None:
    clock = Clock()
    sim = make_sim(clock, queue_capacity=10_000)
    sim.set_fault(Fault.parse("flood"))
    start = samples(sim)
    clock.t += 1.0
    one = samples(sim)
    assert value(one, "jeffrey_bus_messages_published_total") - value(
        start, "jeffrey_bus_messages_published_total"
    ) == pytest.approx(5000)
    assert value(one, "jeffrey_bus_queue_size") == pytest.approx(3000)  # 5000 in, 2000 consumed
    assert value(one, "jeffrey_bus_messages_dropped_total") == 0
    clock.t += 3.0
    four = samples(sim)
    assert value(four, "jeffrey_bus_queue_size") == 10_000
    assert value(four, "jeffrey_bus_messages_dropped_total") == pytest.approx(2000)


@pytest.mark.parametrize(
    ("fault", "name", "per_second"),
    [
        (Fault.parse("flood", 1234), "jeffrey_bus_messages_published_total", 1234),
        (Fault.parse("errors"), "jeffrey_module_errors_total", 5),
        (Fault.parse("errors", 0.5), "jeffrey_module_errors_total", 0.5),
        (Fault.parse("memory"), "process_resident_memory_bytes", 100 * MIB),
        (Fault.parse("memory", 300), "process_resident_memory_bytes", 300 * MIB),
        (Fault.parse("cpu"), "process_cpu_seconds_total", 0.95 * 2),  # of a 2-core limit
        (Fault.parse("cpu", 50), "process_cpu_seconds_total", 0.5 * 2),
    ],
)
def test_faults_change_rates(fault: Fault, name: str, per_second: float) -> None:
    clock = Clock()
    sim = make_sim(clock, cpu_limit_cores=2.0)
    sim.set_fault(fault)
    before = samples(sim)
    clock.t += 4.0
    after = samples(sim)
    assert value(after, name) - value(before, name) == pytest.approx(4 * per_second)


def test_latency_fault_moves_the_p95() -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.set_fault(Fault.parse("latency"))
    before = samples(sim)
    clock.t += 2.0
    p95 = quantile(0.95, before, samples(sim))
    assert 0.7 < p95 < 1.0  # ~800 ms configured; above the 500 ms rollback threshold


def test_errors_mark_the_module_down_and_none_recovers_without_counters_going_back() -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.set_fault(Fault.parse("errors"))
    clock.t += 2.0
    broken = samples(sim)
    assert value(broken, "jeffrey_module_up") == 0
    assert value(broken, "jeffrey_dead_letter_queue_size") == pytest.approx(2)
    sim.set_fault(Fault.parse("memory"))
    clock.t += 1.0
    sim.set_fault(Fault.parse("none"))
    clock.t += 1.0
    healed = samples(sim)
    assert value(healed, "jeffrey_module_up") == 1
    assert value(healed, "jeffrey_dead_letter_queue_size") == 0
    assert value(healed, "process_resident_memory_bytes") == 100 * MIB
    for key, old in broken.items():
        if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
            assert healed[key] >= old, key  # counters are monotonic


@pytest.mark.parametrize(
    ("kind", "value_"), [("bogus", None), ("flood", -1), ("flood", True), ("flood", "fast"), ("", None)]
)
def test_fault_validation(kind: str, value_: Any) -> None:
    with pytest.raises(ValueError):
        Fault.parse(kind, value_)


# ------------------------------------------------------------------------------------- HTTP


@pytest.fixture
async def http() -> AsyncIterator[tuple[TestClient[Any, Any], list[int]]]:
    exits: list[int] = []
    app = create_app(ModuleSim("bus", "demo"), exit_process=exits.append)
    async with TestClient(TestServer(app)) as client:
        yield client, exits


async def test_http_endpoints(http: tuple[TestClient[Any, Any], list[int]]) -> None:
    client, _ = http
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    text = await (await client.get("/metrics")).text()
    families = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert families == CONTRACT
    assert 'jeffrey_module_up{module="bus",namespace="demo"} 1.0' in text
    assert (await (await client.get("/fault")).json())["kind"] == "none"


async def test_post_fault(http: tuple[TestClient[Any, Any], list[int]]) -> None:
    client, _ = http
    response = await client.post("/fault", json={"kind": "latency", "value": 900})
    assert response.status == 200
    assert (await response.json())["value"] == 900
    current = await (await client.get("/fault")).json()
    assert (current["kind"], current["value"], current["module"]) == ("latency", 900, "bus")
    await client.post("/fault", json={"kind": "flood"})
    assert (await (await client.get("/fault")).json())["value"] == 5000  # the default


@pytest.mark.parametrize("body", [b"not json", b"[1]", json.dumps({"kind": "melt"}).encode()])
async def test_post_fault_rejects_bad_requests(
    http: tuple[TestClient[Any, Any], list[int]], body: bytes
) -> None:
    client, _ = http
    response = await client.post("/fault", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "error" in await response.json()
    assert (await (await client.get("/fault")).json())["kind"] == "none"


async def test_crash_exits_with_the_given_code(http: tuple[TestClient[Any, Any], list[int]]) -> None:
    import asyncio

    client, exits = http
    response = await client.post("/fault", json={"kind": "crash", "value": 7})
    assert response.status == 202
    await asyncio.sleep(0.2)
    assert exits == [7]


# ------------------------------------------------------------------------------- the program


def test_program_start_flag_and_crash() -> None:
    from prom_fixtures import spawn_simulator, wait_healthy

    sim = spawn_simulator("learner", "prog", "--fault=flood", "--fault-value=2500")
    try:
        wait_healthy([sim])
        assert sim.fault()["kind"] == "flood" and sim.fault()["value"] == 2500
        assert 'jeffrey_bus_messages_published_total{module="learner",namespace="prog"}' in sim.metrics_text()
        assert sim.set_fault("crash", 3)["kind"] == "crash"
        assert sim.process.wait(timeout=5) == 3
    finally:
        sim.stop()


def test_program_labels_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from jeffrey_operator.sim.main import parse_args

    monkeypatch.setenv("JEFFREY_MODULE", "curiosity")
    monkeypatch.setenv("POD_NAMESPACE", "team-a")
    args = parse_args([])
    assert (args.module, args.namespace, args.port) == ("curiosity", "team-a", 8000)
    assert parse_args(["--module=x", "--namespace=y", "--port=9"]).module == "x"


def test_docs_list_the_contract() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    for name in CONTRACT:
        base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        assert f"| `{base}` |" in docs, f"{base} is not documented in docs/metrics.md"
