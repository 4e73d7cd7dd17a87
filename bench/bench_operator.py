"""Operator benchmarks: prints numbers, asserts nothing (targets are in docs/benchmarks.md).

    python bench/bench_operator.py [--integrations 200] [--rollback-runs 10] [--skip-prometheus]

1. Overhead per level: one integration, zero windows, instant readiness, on the emulated API.
2. N integrations (default 200) climbing to PRODUCTION at once: wall time, operator CPU seconds,
   peak RSS, API writes per transition. The emulator runs in a separate process so that the
   operator's CPU and memory are measured alone.
3. Breach-to-rollback latency with a real Prometheus (1 s scrape, analysis.interval 1 s, for 0 s):
   median and worst of R runs against the floor (scrape + evaluation + for).
4. Prometheus queries per evaluation cycle with 50 integrations sharing the same gates.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests")]

from jeffrey_operator.adapters.kube import Kube  # noqa: E402
from jeffrey_operator.core.ports import NoGates, NoStateStore  # noqa: E402
from jeffrey_operator.runtime.app import BackgroundOperator, build_context  # noqa: E402
from jeffrey_operator.runtime.settings import OperatorSettings  # noqa: E402

LEVELS = ["CORE", "COGNITIVE", "EMOTIONAL", "CONSCIOUS", "LOOPS", "PRODUCTION"]

EMULATOR_MAIN = """
import sys, time, json
from jeffrey_emulator import BackgroundEmulator, load_crds
emu = BackgroundEmulator(crds=load_crds(sys.argv[1]), history_size=200000).start()
print(json.dumps({"url": emu.url, "token": emu.token}), flush=True)
while True:
    time.sleep(3600)
"""


class RemoteEmulator:
    """The emulator in a child process; the bench talks to it over HTTP only."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", EMULATOR_MAIN, str(ROOT / "crds")],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.url: str = info["url"]
        self.token: str = info["token"]

    def request(self, method: str, path: str, body: Any | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json",
                "Authorization": f"Bearer {self.token}",
            },
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def api_client(self) -> Any:
        import kubernetes

        cfg = kubernetes.client.Configuration(
            host=self.url, api_key={"authorization": self.token}, api_key_prefix={"authorization": "Bearer"}
        )
        cfg.connection_pool_maxsize = 32
        return kubernetes.client.ApiClient(cfg)

    def login(self, **_: Any) -> Any:
        import kopf

        return kopf.ConnectionInfo(server=self.url, insecure=True, scheme="Bearer", token=self.token)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def deployment(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "m", "image": "x"}]},
            },
        },
    }


def ladder(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetLevel": "PRODUCTION",
            "levels": [
                {"level": lv, "modules": [{"deployment": f"{name}-{lv.lower()}-{i}"} for i in range(2)]}
                for lv in LEVELS
            ],
            "promotion": {"readinessTimeout": "60s", "validationWindow": "0s", "cooldown": "0s"},
        },
    }


def seed(emu: RemoteEmulator, name: str, namespace: str) -> None:
    ji = ladder(name, namespace)
    # Namespaces are real objects in the emulator (as on a cluster): create it first.
    try:
        emu.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    except urllib.error.HTTPError as e:
        if e.code != 409:  # 409: it exists already
            raise
    for level in ji["spec"]["levels"]:
        for module in level["modules"]:
            emu.request(
                "POST",
                f"/apis/apps/v1/namespaces/{namespace}/deployments",
                deployment(module["deployment"], namespace),
            )


def list_phases(emu: RemoteEmulator, namespace: str) -> list[dict[str, Any]]:
    items = emu.request("GET", f"/apis/jeffreyos.io/v1alpha1/namespaces/{namespace}/jeffreyintegrations")[
        "items"
    ]
    return [i.get("status") or {} for i in items]


def start_operator(emu: RemoteEmulator) -> BackgroundOperator:
    settings = OperatorSettings(health_port=0, metrics_port=0)
    ctx = build_context(settings, kube=Kube(emu.api_client()), gates=NoGates(), store=NoStateStore())
    op = BackgroundOperator(settings, ctx, login=emu.login)
    op.start()
    return op


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_overhead(emu: RemoteEmulator, runs: int = 5) -> None:
    op = start_operator(emu)
    per_level = []
    for run in range(runs):
        ns = f"overhead-{run}"
        seed(emu, "ji", ns)
        start = time.perf_counter()
        emu.request(
            "POST", f"/apis/jeffreyos.io/v1alpha1/namespaces/{ns}/jeffreyintegrations", ladder("ji", ns)
        )
        while not any(s.get("phase") == "Stable" for s in list_phases(emu, ns)):
            time.sleep(0.002)
        per_level.append((time.perf_counter() - start) / len(LEVELS))
    op.stop()
    print(
        f"overhead per level (6 levels, zero windows, instant readiness, {runs} runs): "
        f"median {statistics.median(per_level) * 1000:.1f} ms, worst {max(per_level) * 1000:.1f} ms "
        "(includes the emulated Deployment controller's round trips; target <= 50 ms)"
    )


def bench_many(emu: RemoteEmulator, count: int) -> None:
    ns = "many"
    for i in range(count):
        seed(emu, f"ji-{i:03d}", ns)
    op = start_operator(emu)
    time.sleep(0.5)
    cpu0, rss0 = cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for i in range(count):
        emu.request(
            "POST",
            f"/apis/jeffreyos.io/v1alpha1/namespaces/{ns}/jeffreyintegrations",
            ladder(f"ji-{i:03d}", ns),
        )
    while True:
        statuses = list_phases(emu, ns)
        if sum(1 for s in statuses if s.get("phase") == "Stable") == count:
            break
        if time.perf_counter() - start > 600:
            print("  (gave up after 600 s)")
            break
        time.sleep(1.0)  # listing 200 statuses is not free: poll gently
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    time.sleep(2)
    writes = dict(op.ctx.kube.writes)
    events = len(emu.request("GET", f"/api/v1/namespaces/{ns}/events")["items"])
    transitions = sum(s.get("transitionSeq", 0) for s in statuses)
    idle0 = dict(op.ctx.kube.writes)
    time.sleep(3)
    idle_writes = sum(op.ctx.kube.writes.values()) - sum(idle0.values())
    op.stop()
    total = sum(writes.values()) + events
    print(
        f"{count} integrations x 6 levels x 2 modules climbing at once: all Stable at PRODUCTION in {wall:.1f} s"
    )
    print(
        f"  operator CPU {cpu:.1f} s; peak RSS {peak:.0f} MB (whole bench process, was {rss0 / 1024:.0f} MB "
        "before the climb; target <= 200 MB)"
    )
    print(
        f"  API writes: {json.dumps({f'{v} {r}': n for (v, r), n in writes.items()})} + {events} events "
        f"= {total} for {transitions} transitions ({total / max(transitions, 1):.2f} per transition)"
    )
    print(f"  writes in 3 s at steady state: {idle_writes}")


def bench_rollback(runs: int) -> None:
    from jeffrey_emulator import BackgroundEmulator, load_crds
    from jeffrey_operator.adapters.prometheus.gates import PrometheusGates
    from prom_fixtures import PrometheusServer, SimulatorFleet, find_prometheus

    binary = find_prometheus()
    if binary is None:
        print("breach-to-rollback: skipped (no prometheus binary)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        prom = PrometheusServer(binary=binary, workdir=pathlib.Path(tmp))
        prom.start()
        fleet = SimulatorFleet(prom)
        bg = BackgroundEmulator(crds=load_crds(ROOT / "crds"))
        emu = bg.start()
        try:
            ns = "latency"
            sims = fleet.start(["memory", "awareness-loop"], ns)
            loop_sim = sims[1]
            emu.ensure_namespace(ns)
            for name in ("memory", "awareness-loop"):
                emu.create(deployment(name, ns))
            settings = OperatorSettings(health_port=0, metrics_port=0)
            ctx = build_context(
                settings, kube=Kube(emu.api_client()), gates=PrometheusGates(), store=NoStateStore()
            )
            op = BackgroundOperator(settings, ctx, login=lambda **_: emu.connection_info())
            op.start()
            gate = {
                "name": "bus-rate",
                "when": "always",
                "max": 1000,
                "for": "0s",
                "query": f'sum(irate(jeffrey_bus_messages_published_total{{namespace="{ns}"}}[5s]))',
            }
            emu.create(
                {
                    "apiVersion": "jeffreyos.io/v1alpha1",
                    "kind": "JeffreyIntegration",
                    "metadata": {"name": "ji", "namespace": ns},
                    "spec": {
                        "targetLevel": "LOOPS",
                        "gates": [gate],
                        "levels": [
                            {"level": "CORE", "modules": [{"deployment": "memory"}]},
                            {"level": "LOOPS", "modules": [{"deployment": "awareness-loop"}]},
                        ],
                        "promotion": {"validationWindow": "1s", "cooldown": "0s"},
                        "analysis": {"interval": "1s", "prometheus": {"url": prom.url}},
                    },
                }
            )
            latencies = []
            for run in range(runs):
                while emu.get("ji", ns, "ji").get("status", {}).get("phase") != "Stable":
                    time.sleep(0.02)
                time.sleep(1.5)
                loop_sim.set_fault("flood")
                t0 = time.perf_counter()
                while emu.get("deployments", ns, "awareness-loop")["spec"]["replicas"] != 0:
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - t0)
                loop_sim.set_fault("none")
                time.sleep(3)  # irate over 5 s forgets the flood
                emu.patch("ji", ns, "ji", {"metadata": {"annotations": {"jeffreyos.io/retry": str(run)}}})
            shared_queries(emu, prom, fleet)
            op.stop()
        finally:
            bg.stop()
            fleet.stop_all()
            prom.stop()
    floor = 1.0 + 1.0 + 0.0
    med, worst = statistics.median(latencies), max(latencies)
    print(
        f"breach-to-rollback ({runs} runs, 1 s scrape, interval 1 s, for 0 s): median {med:.2f} s, "
        f"worst {worst:.2f} s; floor {floor:.1f} s -> {med / floor:.2f}x / {worst / floor:.2f}x the floor "
        "(target <= 1.5x)"
    )


def shared_queries(emu: Any, prom: Any, fleet: Any, count: int = 50, seconds: int = 10) -> None:
    """``count`` integrations in one namespace with the same (default) gates: queries per tick."""
    ns = "shared"
    fleet.start(["memory"], ns)
    emu.ensure_namespace(ns)
    for i in range(count):
        emu.create(deployment(f"m-{i}", ns))
        emu.create(
            {
                "apiVersion": "jeffreyos.io/v1alpha1",
                "kind": "JeffreyIntegration",
                "metadata": {"name": f"ji-{i}", "namespace": ns},
                "spec": {
                    "targetLevel": "CORE",
                    "defaultGates": True,
                    "levels": [{"level": "CORE", "modules": [{"deployment": f"m-{i}"}]}],
                    "promotion": {"validationWindow": "1s", "cooldown": "0s"},
                    "analysis": {"interval": "1s", "prometheus": {"url": prom.url}},
                },
            }
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = emu.list("ji", ns)
        if sum(1 for i in items if (i.get("status") or {}).get("phase") == "Stable") == count:
            break
        time.sleep(0.2)
    else:
        print(f"  ({count} integrations did not all reach Stable)")
    before = prom.query_api_requests()
    time.sleep(seconds)
    queries = prom.query_api_requests() - before
    print(
        f"Prometheus queries with {count} integrations sharing the same default gates (continuous mode, "
        f"interval 1 s): {queries / seconds:.1f} per evaluation cycle ({queries} in {seconds} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--integrations", type=int, default=200)
    parser.add_argument("--rollback-runs", type=int, default=10)
    parser.add_argument("--skip-prometheus", action="store_true")
    args = parser.parse_args()
    emu = RemoteEmulator()
    try:
        bench_overhead(emu)
        bench_many(emu, args.integrations)
    finally:
        emu.stop()
    if not args.skip_prometheus:
        bench_rollback(args.rollback_runs)


if __name__ == "__main__":
    main()
