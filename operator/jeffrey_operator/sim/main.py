"""``jeffrey-module-sim``: a Jeffrey OS module that only exports the metrics contract.

It is what the tests scrape, what the kind demo deploys as the modules, and how a user sees a
rollback happen: tell it to misbehave and watch the operator roll back. See ``docs/metrics.md``.

    jeffrey-module-sim --module memory --namespace demo --port 8000
    curl -XPOST localhost:8000/fault -d '{"kind": "flood"}'        # 5000 msg/s on the bus
    curl -XPOST localhost:8000/fault -d '{"kind": "latency", "value": 900}'  # P95 ~900 ms
    curl -XPOST localhost:8000/fault -d '{"kind": "none"}'         # healthy again

Faults (``value`` is optional):

========  =====================================================  ==================
kind      effect                                                 value (default)
========  =====================================================  ==================
none      healthy: 50 msg/s, P95 ~20 ms, CPU 10 %, memory 100 MiB  -
flood     bus publish rate; above 2000 msg/s the queue fills,    msg/s (5000)
          then messages are dropped
latency   publish latency P95                                    milliseconds (800)
errors    module error counter rises, ``jeffrey_module_up`` 0,   errors/s (5)
          dead-letter queue grows
memory    resident memory grows                                  MiB/s (100)
cpu       CPU use in percent of the CPU limit                    percent (95)
crash     the process exits at once                              exit code (1)
========  =====================================================  ==================

Counters advance with the wall time elapsed between two scrapes, at the configured rates, so
``rate()`` in Prometheus shows the configured value one or two scrapes after a change. The
``process_*`` series are simulated (no default process collector), so faults are visible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

__all__ = ["FAULTS", "Fault", "ModuleSim", "Profile", "create_app", "main"]

log = logging.getLogger("jeffrey_operator.sim")

MIB = 1024 * 1024
#: Upper bounds of the publish-latency histogram buckets, in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Messages per second the simulated bus consumers absorb before the queue fills.
BUS_CAPACITY_RATE = 2000.0

FAULTS: dict[str, float | None] = {
    "none": None,
    "flood": 5000.0,  # msg/s
    "latency": 800.0,  # P95 in ms
    "errors": 5.0,  # errors/s
    "memory": 100.0,  # MiB/s
    "cpu": 95.0,  # percent of the CPU limit
    "crash": 1.0,  # exit code
}


@dataclass(frozen=True)
class Fault:
    kind: str = "none"
    value: float | None = None

    @classmethod
    def parse(cls, kind: str, value: float | None = None) -> Fault:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
            raise ValueError(f"value must be a non-negative number, not {value!r}")
        return cls(kind=kind, value=None if value is None else float(value))

    @property
    def effective_value(self) -> float | None:
        return self.value if self.value is not None else FAULTS[self.kind]


@dataclass(frozen=True)
class Profile:
    """The steady behaviour of a module: rates per second and levels."""

    bus_rate: float = 50.0
    p95_seconds: float = 0.020
    cpu_fraction: float = 0.10  # of the CPU limit
    memory_growth_bytes: float = 0.0  # per second
    error_rate: float = 0.0
    up: bool = True

    def with_fault(self, fault: Fault) -> Profile:
        value = fault.effective_value
        assert value is not None or fault.kind == "none"
        match fault.kind:
            case "flood":
                return replace(self, bus_rate=float(value or 0))
            case "latency":
                return replace(self, p95_seconds=float(value or 0) / 1000)
            case "errors":
                return replace(self, error_rate=float(value or 0), up=False)
            case "memory":
                return replace(self, memory_growth_bytes=float(value or 0) * MIB)
            case "cpu":
                return replace(self, cpu_fraction=float(value or 0) / 100)
        return self


def latency_cdf(x: float, p95: float) -> float:
    """Share of publishes faster than ``x`` seconds: 95 % spread evenly below ``p95``, 5 % above,
    up to ``2 * p95`` (so ``histogram_quantile(0.95, ...)`` lands near ``p95``).

    >>> latency_cdf(0.01, 0.02), latency_cdf(0.02, 0.02), latency_cdf(0.05, 0.02)
    (0.475, 0.95, 1.0)
    """
    if p95 <= 0:
        return 1.0
    if x <= p95:
        return 0.95 * x / p95
    return min(1.0, 0.95 + 0.05 * (x - p95) / p95)


class ModuleSim:
    """The simulated module: state advanced with elapsed time, exported as a prometheus Collector."""

    def __init__(
        self,
        module: str,
        namespace: str,
        *,
        healthy: Profile | None = None,
        cpu_limit_cores: float = 1.0,
        memory_limit_bytes: float = 1024 * MIB,
        baseline_memory_bytes: float = 100 * MIB,
        queue_capacity: float = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.module = module
        self.namespace = namespace
        self.healthy = healthy or Profile()
        self.cpu_limit_cores = cpu_limit_cores
        self.memory_limit_bytes = memory_limit_bytes
        self.baseline_memory_bytes = baseline_memory_bytes
        self.queue_capacity = queue_capacity
        self._clock = clock
        self._wall = wall
        self.fault = Fault()
        self.fault_since = wall()
        self.started_at = wall()
        self._last = clock()
        # State: counters only ever grow.
        self.published = 0.0
        self.dropped = 0.0
        self.errors = 0.0
        self.cpu_seconds = 0.0
        self.latency_count = 0.0
        self.latency_sum = 0.0
        self.latency_buckets = [0.0] * len(LATENCY_BUCKETS)
        self.memory_bytes = baseline_memory_bytes
        self.queue_size = 0.0
        self.dead_letters = 0.0

    @property
    def profile(self) -> Profile:
        return self.healthy.with_fault(self.fault)

    def advance(self) -> None:
        """Move the simulation forward by the time elapsed since the last call."""
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        if elapsed == 0.0:
            return
        p = self.profile
        sent = p.bus_rate * elapsed
        self.published += sent
        # Little's law for a healthy queue; past the consumers' capacity it fills, then overflows.
        backlog = max(0.0, p.bus_rate - BUS_CAPACITY_RATE) * elapsed
        if backlog > 0:
            room = self.queue_capacity - self.queue_size
            self.queue_size = min(self.queue_capacity, self.queue_size + backlog)
            self.dropped += max(0.0, backlog - room)
        else:
            self.queue_size = min(self.queue_capacity, p.bus_rate * p.p95_seconds)
        self.latency_count += sent
        self.latency_sum += sent * 0.55 * p.p95_seconds  # the mean of latency_cdf
        for i, bound in enumerate(LATENCY_BUCKETS):
            self.latency_buckets[i] += sent * latency_cdf(bound, p.p95_seconds)
        self.errors += p.error_rate * elapsed
        if not p.up:
            self.dead_letters += elapsed
        self.cpu_seconds += p.cpu_fraction * self.cpu_limit_cores * elapsed
        self.memory_bytes += p.memory_growth_bytes * elapsed

    def set_fault(self, fault: Fault) -> None:
        """Switch behaviour; what elapsed so far is accounted at the old rates."""
        self.advance()
        self.fault = fault
        self.fault_since = self._wall()
        if fault.kind == "none":
            self.memory_bytes = self.baseline_memory_bytes  # "healthy" includes a freed heap
            self.queue_size = 0.0
            self.dead_letters = 0.0

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        self.advance()
        names = ["namespace", "module"]
        labels = [self.namespace, self.module]
        p = self.profile

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(labels, value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(labels, value)
            return family

        yield counter("jeffrey_bus_messages_published", "Messages published on the bus.", self.published)
        yield counter("jeffrey_bus_messages_dropped", "Messages the bus dropped.", self.dropped)
        yield gauge("jeffrey_bus_queue_size", "Messages waiting in the bus queue.", self.queue_size)
        yield gauge("jeffrey_bus_queue_capacity", "Capacity of the bus queue.", self.queue_capacity)
        histogram = HistogramMetricFamily(
            "jeffrey_bus_publish_latency_seconds", "Bus publish latency.", labels=names
        )
        buckets = [
            (f"{bound:g}", count) for bound, count in zip(LATENCY_BUCKETS, self.latency_buckets, strict=True)
        ]
        buckets.append(("+Inf", self.latency_count))
        histogram.add_metric(labels, buckets, sum_value=self.latency_sum)
        yield histogram
        yield counter("jeffrey_module_errors", "Errors raised by the module.", self.errors)
        yield gauge("jeffrey_module_up", "1 when the module works, 0 when it is in error.", 1 if p.up else 0)
        yield gauge(
            "jeffrey_module_cpu_limit_cores", "CPU limit of the module's container.", self.cpu_limit_cores
        )
        yield gauge(
            "jeffrey_module_memory_limit_bytes",
            "Memory limit of the module's container.",
            self.memory_limit_bytes,
        )
        yield gauge("jeffrey_dead_letter_queue_size", "Messages in the dead-letter queue.", self.dead_letters)
        dream_period = 600.0
        last_dream = self.started_at + dream_period * ((self._wall() - self.started_at) // dream_period)
        yield gauge(
            "jeffrey_dream_last_run_timestamp_seconds", "Unix time of the last dream run.", last_dream
        )
        yield counter("process_cpu_seconds", "Simulated CPU time of the module.", self.cpu_seconds)
        yield gauge(
            "process_resident_memory_bytes", "Simulated resident memory of the module.", self.memory_bytes
        )

    def fault_document(self) -> dict[str, object]:
        return {
            "kind": self.fault.kind,
            "value": self.fault.effective_value,
            "since": self.fault_since,
            "module": self.module,
            "namespace": self.namespace,
        }


# ------------------------------------------------------------------------------------------ HTTP

SIM_KEY = web.AppKey("sim", ModuleSim)
ExitFunction = Callable[[int], None]
EXIT_KEY: web.AppKey[ExitFunction] = web.AppKey("exit")


def create_app(sim: ModuleSim, *, exit_process: Callable[[int], None] = os._exit) -> web.Application:
    """The HTTP side: ``/metrics``, ``/healthz``, ``/readyz``, ``GET|POST /fault``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(sim)

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        return web.Response(text="ready\n")

    async def get_fault(_request: web.Request) -> web.Response:
        return web.json_response(sim.fault_document())

    async def post_fault(request: web.Request) -> web.Response:
        try:
            doc = await request.json()
            if not isinstance(doc, dict):
                raise ValueError('expected a JSON object such as {"kind": "flood"}')
            fault = Fault.parse(str(doc.get("kind", "")), doc.get("value"))
        except (ValueError, json.JSONDecodeError) as err:
            return web.json_response({"error": str(err)}, status=400)
        if fault.kind == "crash":
            code = int(fault.effective_value or 1)
            log.warning("crash requested: exiting with code %d", code)
            asyncio.get_running_loop().call_later(0.05, request.app[EXIT_KEY], code)
            return web.json_response({"kind": "crash", "value": code}, status=202)
        sim.set_fault(fault)
        log.info("fault set: %s", sim.fault_document())
        return web.json_response(sim.fault_document())

    app = web.Application()
    app[SIM_KEY] = sim
    app[EXIT_KEY] = exit_process
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/fault", get_fault)
    app.router.add_post("/fault", post_fault)
    return app


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jeffrey-module-sim", description="A simulated Jeffrey OS module exporting the metrics contract."
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "8000")), help="HTTP port (8000)"
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0)")
    parser.add_argument(
        "--module",
        default=os.environ.get("JEFFREY_MODULE", "module"),
        help="module label (env JEFFREY_MODULE)",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace label (env POD_NAMESPACE)",
    )
    parser.add_argument("--fault", choices=sorted(FAULTS), default="none", help="start misbehaving at once")
    parser.add_argument("--fault-value", type=float, default=None, help="the fault's value (see POST /fault)")
    parser.add_argument("--bus-rate", type=float, default=50.0, help="healthy bus rate in msg/s (50)")
    parser.add_argument("--cpu-limit", type=float, default=1.0, help="CPU limit in cores (1)")
    parser.add_argument("--memory-limit-mb", type=float, default=1024.0, help="memory limit in MiB (1024)")
    parser.add_argument("--memory-mb", type=float, default=100.0, help="healthy resident memory in MiB (100)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    sim = ModuleSim(
        args.module,
        args.namespace,
        healthy=Profile(bus_rate=args.bus_rate),
        cpu_limit_cores=args.cpu_limit,
        memory_limit_bytes=args.memory_limit_mb * MIB,
        baseline_memory_bytes=args.memory_mb * MIB,
    )
    if args.fault == "crash":
        log.error("started with --fault crash: exiting")
        return int(args.fault_value or 1)
    sim.set_fault(Fault.parse(args.fault, args.fault_value))
    log.info("module %s/%s listening on %s:%d", args.namespace, args.module, args.host, args.port)
    web.run_app(create_app(sim), host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
