"""Operator benchmarks: prints numbers, asserts nothing (targets are in docs/benchmarks.md).

    python bench/bench_operator.py [--integrations 1000] [--baseline 100] [--repeat 3]
                                   [--unrelated 5000] [--rollback-runs 5] [--for 2s] [--skip-prometheus]

1. Overhead per level: one integration, zero windows, instant readiness, on the emulated API.
2. N integrations (default 1000) climbing to PRODUCTION at once: wall time, operator CPU seconds
   and CPU per transition, peak RSS, API writes per transition. The emulator runs in a separate
   process so that the operator's CPU and memory are measured alone. Each climb gets a fresh
   emulator and operator, its garbage collector set as ``jeffrey-operator run`` sets it
   (``--gc default``: Python's defaults). ``--baseline`` (100) climbs too, before and after each
   big climb (this host drifts: climbs taken far apart measure the drift), and the medians give
   the ratio of CPU per transition (the target: within 1.25 x).
3. The same N integrations Stable: API writes and operator CPU (% of one core) at steady state.
4. U unrelated Deployments (default 5000) in the same watched namespace, each updated in turn
   (by another process): operator RSS growth and CPU per unrelated event.
5. Breach-to-rollback latency with a real Prometheus (1 s scrape, analysis.interval 1 s, a gate
   with ``for`` 2 s): median and worst of R runs against the floor (scrape + evaluation + for).
6. Prometheus queries per evaluation cycle with 50 integrations sharing the same gates.
"""

from __future__ import annotations

import argparse
import gc
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
from jeffrey_operator.core.durations import parse_duration  # noqa: E402
from jeffrey_operator.core.ports import NoGates, NoStateStore  # noqa: E402
from jeffrey_operator.runtime.app import BackgroundOperator, build_context, tune_gc  # noqa: E402
from jeffrey_operator.runtime.settings import OperatorSettings  # noqa: E402

LEVELS = ["CORE", "COGNITIVE", "EMOTIONAL", "CONSCIOUS", "LOOPS", "PRODUCTION"]

EMULATOR_MAIN = """
import sys, time, json
from jeffrey_emulator import BackgroundEmulator, deployment_manifest, load_crds
emu = BackgroundEmulator(crds=load_crds(sys.argv[1]), history_size=200000).start()
print(json.dumps({"url": emu.url, "token": emu.token}), flush=True)
# Commands on stdin, run inside the emulator (no HTTP client in any process but the operator):
# "unrelated NAMESPACE COUNT create|update" changes unrelated Deployments; "create COUNT" is
# followed by COUNT objects, one JSON per line, created in order (their namespaces first).
# "done" is printed after each command.
while line := sys.stdin.readline():
    words = line.split()
    if words[0] == "create":
        for _ in range(int(words[1])):
            obj = json.loads(sys.stdin.readline())
            emu.ensure_namespace(obj["metadata"]["namespace"])
            emu.create(obj)
    else:
        _, ns, count, mode = words
        for i in range(int(count)):
            name = f"unrelated-{i:05d}"
            if mode == "create":
                emu.create(deployment_manifest(name, ns, replicas=0))
            else:
                emu.patch("deployments", ns, name, {"metadata": {"annotations": {"touched": "yes"}}})
    print("done", flush=True)
"""


class RemoteEmulator:
    """The emulator in a child process; the bench talks to it over HTTP only."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", EMULATOR_MAIN, str(ROOT / "crds")],
            stdin=subprocess.PIPE,
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


def send_creates(emu: RemoteEmulator, lines: list[str], *, wait: bool = True) -> None:
    """Have the emulator create these objects (JSON lines) itself: creating them over HTTP from
    this process would count as the operator's CPU and memory."""
    assert emu.proc.stdin is not None and emu.proc.stdout is not None
    emu.proc.stdin.write(f"create {len(lines)}\n" + "".join(line + "\n" for line in lines))
    emu.proc.stdin.flush()
    if wait:
        assert emu.proc.stdout.readline().strip() == "done"


def wait_done(emu: RemoteEmulator) -> None:
    assert emu.proc.stdout is not None
    assert emu.proc.stdout.readline().strip() == "done"


def module_deployments(name: str, namespace: str) -> list[dict[str, Any]]:
    return [
        deployment(module["deployment"], namespace)
        for level in ladder(name, namespace)["spec"]["levels"]
        for module in level["modules"]
    ]


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


POLLER = """
import json, sys, urllib.request
url, token, ns = sys.argv[1], sys.argv[2], sys.argv[3]
def get(path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
    return json.loads(urllib.request.urlopen(req, timeout=120).read())["items"]
items = get(f"/apis/jeffreyos.io/v1alpha1/namespaces/{ns}/jeffreyintegrations")
out = {"stable": sum(1 for i in items if (i.get("status") or {}).get("phase") == "Stable"),
       "transitions": sum((i.get("status") or {}).get("transitionSeq", 0) for i in items)}
if sys.argv[4:] == ["events"]:
    out["events"] = len(get(f"/api/v1/namespaces/{ns}/events"))
print(json.dumps(out))
"""


def poll(emu: RemoteEmulator, namespace: str, *, events: bool = False) -> dict[str, int]:
    """Count Stable integrations (and Events) from another process: parsing a thousand statuses
    a second would otherwise count as the operator's CPU and memory."""
    argv = [sys.executable, "-c", POLLER, emu.url, emu.token, namespace, *(["events"] if events else [])]
    return dict(json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout))


def start_operator(emu: RemoteEmulator) -> BackgroundOperator:
    settings = OperatorSettings(health_port=0, metrics_port=0)
    ctx = build_context(settings, kube=Kube(emu.api_client()), gates=NoGates(), store=NoStateStore())
    op = BackgroundOperator(settings, ctx, login=emu.login)
    op.start()
    return op


class CollectorTime:
    """CPU seconds spent in Python's garbage collector, and how many collections, from now."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._started
            self.collections += 1


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """The bench process's resident set now (the operator runs in it), in MB."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_updater(emu: RemoteEmulator, namespace: str, count: int, mode: str) -> None:
    """Create or update unrelated Deployments inside the emulator's process."""
    assert emu.proc.stdin is not None and emu.proc.stdout is not None
    emu.proc.stdin.write(f"unrelated {namespace} {count} {mode}\n")
    emu.proc.stdin.flush()
    assert emu.proc.stdout.readline().strip() == "done"


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


def bench_many(
    emu: RemoteEmulator, count: int, *, steady: float = 10.0, unrelated: int = 5000
) -> dict[str, float]:
    """One climb of ``count`` integrations (and, when ``steady``/``unrelated``, what follows it);
    returns its numbers."""
    ns = "many"
    send_creates(emu, [json.dumps(d) for i in range(count) for d in module_deployments(f"ji-{i:03d}", ns)])
    ladders = [json.dumps(ladder(f"ji-{i:03d}", ns)) for i in range(count)]
    op = start_operator(emu)
    time.sleep(0.5)
    collector = CollectorTime()
    cpu0, rss0 = cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    send_creates(emu, ladders, wait=False)
    del ladders
    wait_done(emu)
    while True:
        if poll(emu, ns)["stable"] == count:
            break
        if time.perf_counter() - start > 600:
            print("  (gave up after 600 s)")
            break
        time.sleep(1.0)  # listing 200 statuses is not free: poll gently
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    in_gc, collections = collector.seconds, collector.collections
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    time.sleep(2)
    writes = dict(op.ctx.kube.writes)
    counted = poll(emu, ns, events=True)
    events, transitions = counted["events"], counted["transitions"]
    total = sum(writes.values()) + events
    print(
        f"{count} integrations x 6 levels x 2 modules climbing at once: all Stable at PRODUCTION in {wall:.1f} s"
    )
    print(
        f"  operator CPU {cpu:.1f} s = {cpu / max(transitions, 1) * 1000:.2f} ms per transition "
        f"(target <= 5 ms); peak RSS {peak:.0f} MB (whole bench process, was {rss0 / 1024:.0f} MB "
        "before the climb; target <= 200 MB)"
    )
    print(
        f"  garbage collector ({gc.get_threshold()}, {gc.get_freeze_count()} objects frozen): "
        f"{in_gc:.2f} s of that CPU in {collections} collections"
    )
    print(
        f"  API writes: {json.dumps({f'{v} {r}': n for (v, r), n in writes.items()})} + {events} events "
        f"= {total} for {transitions} transitions ({total / max(transitions, 1):.2f} per transition; "
        "target <= 2.1)"
    )
    reconciles = op.ctx.queue.processed if op.ctx.queue is not None else 0
    reads = op.ctx.kube.reads
    print(
        f"  reconciles: {reconciles} = {reconciles / max(transitions, 1):.2f} per transition; "
        f"live reads: {json.dumps({r: n for r, n in reads.items()})}"
    )
    result = {"wall": wall, "cpu_per_transition": cpu / max(transitions, 1), "peak_mb": peak}
    if not steady and not unrelated:
        op.stop()
        return result
    # --- steady state
    idle0, cpu_idle0, t_idle0 = sum(op.ctx.kube.writes.values()), cpu_seconds(), time.perf_counter()
    time.sleep(steady)
    idle_writes = sum(op.ctx.kube.writes.values()) - idle0
    idle_cpu = (cpu_seconds() - cpu_idle0) / (time.perf_counter() - t_idle0)
    print(
        f"  steady state, {count} Stable for {steady:.0f} s: {idle_writes} API writes, operator CPU "
        f"{idle_cpu * 100:.2f} % of one core (targets: 0 writes, <= 2 %)"
    )
    # --- unrelated Deployments in the same watched namespace
    if unrelated:
        run_updater(emu, ns, unrelated, "create")
        time.sleep(2)
        rss_before, cpu_u0 = rss_mb(), cpu_seconds()
        t_u0 = time.perf_counter()
        queue = op.ctx.queue
        processed_before = queue.processed if queue is not None else 0
        run_updater(emu, ns, unrelated, "update")
        time.sleep(2)
        cpu_u = cpu_seconds() - cpu_u0
        idle_share = idle_cpu * (time.perf_counter() - t_u0)
        print(
            f"  {unrelated} unrelated Deployments in the watched namespace, each updated once: operator RSS "
            f"{rss_before:.0f} -> {rss_mb():.0f} MB ({rss_mb() - rss_before:+.1f} MB; target <= +10 MB), "
            f"CPU {max(cpu_u - idle_share, 0.0) / unrelated * 1000:.3f} ms per unrelated event "
            f"({cpu_u:.2f} s of CPU while they were updated, {idle_share:.2f} s of it the steady state's "
            f"share; target <= 0.2 ms); reconciles meanwhile: "
            f"{(queue.processed if queue is not None else 0) - processed_before}"
        )
    op.stop()
    return result


def climb(count: int, *, steady: float = 0, unrelated: int = 0, gc_mode: str = "tuned") -> dict[str, float]:
    """One climb of ``count`` integrations in a process of its own with a fresh emulator (so that
    its peak RSS is its own), with ``steady``/``unrelated`` after it when asked."""
    argv = [sys.executable, __file__, "--climb", str(count), "--gc", gc_mode]
    argv += ["--steady-seconds", str(steady), "--unrelated", str(unrelated)]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True)
    lines = proc.stdout.splitlines()
    print("\n".join(lines[:-1]), flush=True)
    return dict(json.loads(lines[-1]))


def paired_climbs(
    base: int, count: int, runs: int, *, steady: float, unrelated: int, gc_mode: str
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """``runs`` climbs of ``count`` integrations, each between two climbs of ``base`` (this host's
    speed drifts by 30 % within an hour: a ratio of climbs taken far apart measures the drift).
    The last big climb also measures the steady state and the unrelated Deployments."""
    small: list[dict[str, float]] = []
    big: list[dict[str, float]] = []
    for run in range(runs):
        last = run == runs - 1
        if base:
            small.append(climb(base, gc_mode=gc_mode))
        big.append(
            climb(count, steady=steady if last else 0, unrelated=unrelated if last else 0, gc_mode=gc_mode)
        )
        if base:
            small.append(climb(base, gc_mode=gc_mode))
    return small, big


def one_climb(count: int, steady: float, unrelated: int, gc_mode: str) -> None:
    """``--climb N``: one climb in this process; its numbers as the last line (JSON)."""
    if gc_mode == "tuned":
        tune_gc()  # as ``jeffrey-operator run`` does: this process runs one operator
    emu = RemoteEmulator()
    try:
        result = bench_many(emu, count, steady=steady, unrelated=unrelated)
    finally:
        emu.stop()
    print(json.dumps(result), flush=True)


def scaling_summary(
    base: int, small: list[dict[str, float]], count: int, big: list[dict[str, float]]
) -> None:
    """CPU per transition at ``count`` against ``base`` integrations: medians and their ratio,
    and each big climb against the two small ones around it (``small`` holds two per big one)."""
    a = statistics.median(r["cpu_per_transition"] for r in small)
    b = statistics.median(r["cpu_per_transition"] for r in big)
    each = ", ".join(f"{r['cpu_per_transition'] * 1000:.2f}" for r in small)
    each_big = ", ".join(f"{r['cpu_per_transition'] * 1000:.2f}" for r in big)
    print(
        f"CPU per transition: median {a * 1000:.2f} ms at {base} ({each}), {b * 1000:.2f} ms at {count} "
        f"({each_big}) = {b / a:.2f} x (target <= 1.25 x); peak RSS at {count}: median "
        f"{statistics.median(r['peak_mb'] for r in big):.0f} MB (target <= 200 MB)"
    )
    pairs = [
        r["cpu_per_transition"] / statistics.mean(s["cpu_per_transition"] for s in small[2 * i : 2 * i + 2])
        for i, r in enumerate(big)
    ]
    print(
        f"  each climb of {count} against the climbs of {base} just before and after it: "
        f"{', '.join(f'{p:.2f}' for p in pairs)} x, median {statistics.median(pairs):.2f} x"
    )


def bench_rollback(runs: int, for_: str = "2s") -> None:
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
                "for": for_,
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
                time.sleep(3 + parse_duration(for_))  # irate over 5 s forgets the flood
                emu.patch("ji", ns, "ji", {"metadata": {"annotations": {"jeffreyos.io/retry": str(run)}}})
            shared_queries(emu, prom, fleet)
            op.stop()
        finally:
            bg.stop()
            fleet.stop_all()
            prom.stop()
    floor = 1.0 + 1.0 + parse_duration(for_)
    med, worst = statistics.median(latencies), max(latencies)
    print(
        f"breach-to-rollback ({runs} runs, 1 s scrape, interval 1 s, for {for_}): median {med:.2f} s, "
        f"worst {worst:.2f} s; floor {floor:.1f} s -> {med / floor:.2f}x / {worst / floor:.2f}x the floor "
        f"(target: worst <= 1.2x); each run: {', '.join(f'{x:.2f}' for x in latencies)} s"
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
    parser.add_argument("--integrations", type=int, default=1000)
    parser.add_argument("--unrelated", type=int, default=5000, help="unrelated Deployments to update")
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--overhead-runs", type=int, default=5)
    parser.add_argument("--rollback-runs", type=int, default=5)
    parser.add_argument("--for", dest="for_", default="2s", help="the breaching gate's `for`")
    parser.add_argument("--skip-prometheus", action="store_true")
    parser.add_argument(
        "--baseline", type=int, default=100, help="also climb this many, for the ratio (0: not)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="climbs of each size (medians)")
    parser.add_argument(
        "--gc",
        choices=("tuned", "default"),
        default="tuned",
        help="the collector as `jeffrey-operator run` sets it (tune_gc), or Python's defaults",
    )
    parser.add_argument("--climb", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.climb:
        one_climb(args.climb, args.steady_seconds, args.unrelated, args.gc)
        return
    emu = RemoteEmulator()
    try:
        bench_overhead(emu, args.overhead_runs)
    finally:
        emu.stop()
    small, big = paired_climbs(
        args.baseline,
        args.integrations,
        args.repeat,
        steady=args.steady_seconds,
        unrelated=args.unrelated,
        gc_mode=args.gc,
    )
    if small:
        scaling_summary(args.baseline, small, args.integrations, big)
    if not args.skip_prometheus:
        bench_rollback(args.rollback_runs, args.for_)


if __name__ == "__main__":
    main()
