"""The playground: the whole system on one machine, no cluster and no Docker (``make demo``).

``jeffrey-operator playground`` runs, in this process and a few children:

* an **emulated** Kubernetes API (:mod:`jeffrey_emulator`: in-memory, on kmock; not a
  cluster) with a simulated Deployment controller (no containers: it only reports readiness);
* the six-level example (``examples/jeffrey-full-ladder.yaml``) with demo timings
  (``validationWindow`` 3 s, ``cooldown`` 1 s, ``analysis.interval`` 1 s; divided by ``--speed``);
* one module simulator (:mod:`jeffrey_operator.sim`, the ``jeffrey-module-sim`` app, served
  in-process) per module Deployment, running while its Deployment has replicas > 0;
* a **real** Prometheus scraping the simulators every second and a **real** Redis (the state store),
  when their binaries are installed; without Prometheus there are no health gates (and the fault
  becomes a crash), without Redis no state store; the playground says so;
* the operator itself, unchanged (:func:`~jeffrey_operator.runtime.app.build_context` +
  :class:`~jeffrey_operator.runtime.app.BackgroundOperator`, logged in to the emulator).

It shows the climb to PRODUCTION live, then makes a PRODUCTION module flood the bus
(``POST /fault {"kind": "flood"}``) and shows the rollback to CORE with its reason, and ends with
a summary. ``--non-interactive``: plain lines, exit code 0 when the climb and the rollback happened
as expected. Every process it started is stopped, by PID, even on Ctrl-C or a failure.

``--keep`` (``make playground``): the same system, kept running until Ctrl-C or SIGTERM, with no
scripted fault; it prints first the lines to paste into another terminal (``KUBECONFIG``,
``kubectl get ji -A -w``, ``jeffreyctl status -w``, the fault endpoint, Prometheus and Redis), and
its operator watches every namespace. See docs/playground.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import io
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import yaml

from jeffrey_emulator import DELAY_ANNOTATION, OUTCOME_ANNOTATION
from jeffrey_operator.adapters.prometheus.gates import PrometheusGates
from jeffrey_operator.core.durations import format_duration
from jeffrey_operator.core.models import JeffreyIntegrationSpec, JeffreyIntegrationStatus, Level, Phase
from jeffrey_operator.core.ports import GateContext, GatePort, GateReport, GateVerdict, NoGates
from jeffrey_operator.core.timestamps import parse_time
from jeffrey_playground.services import (
    ManagedProcess,
    SimulatorFleet,
    binary_version,
    find_binary,
    http_json,
    start_alertmanager,
    start_prometheus,
    start_redis,
)

__all__ = ["Outcome", "PlaygroundOptions", "demo_spec", "main", "render_compact", "run"]

NAMESPACE = "jeffrey"
NAME = "jeffrey"
REPOSITORY = Path(__file__).resolve().parents[3]  # tools/playground/jeffrey_playground/main.py
EXAMPLE = REPOSITORY / "examples" / "jeffrey-full-ladder.yaml"
#: Where the demo's level check comes from (its CORE smoke-test Job).
CHECKS_EXAMPLE = EXAMPLE.with_name("jeffrey-checks.yaml")
#: The example's ladder, for an installed package without the repository's ``examples/``.
FALLBACK_LEVELS: list[dict[str, Any]] = [
    {"level": "CORE", "modules": [{"deployment": "memory"}, {"deployment": "neural-bus"}]},
    {
        "level": "COGNITIVE",
        "modules": [
            {"deployment": "auto-learner"},
            {"deployment": "theory-of-mind"},
            {"deployment": "curiosity-engine"},
        ],
    },
    {"level": "EMOTIONAL", "modules": [{"deployment": "emotion-engine", "optional": True}]},
    {"level": "CONSCIOUS", "modules": [{"deployment": "consciousness", "optional": True}]},
    {
        "level": "LOOPS",
        "modules": [{"deployment": "awareness-loop"}, {"deployment": "memory-consolidation-loop"}],
    },
    {
        "level": "PRODUCTION",
        "modules": [
            {"deployment": "curiosity-loop"},
            {"deployment": "emotional-decay-loop"},
            {"deployment": "ml-clustering-loop"},
        ],
    },
]
APT_PROMETHEUS = "apt-get install --no-install-recommends prometheus"
APT_REDIS = "apt-get install --no-install-recommends redis-server"


class PlaygroundFailed(Exception):
    """The run could not go on (a part did not start, a stage timed out)."""


@dataclass(frozen=True)
class PlaygroundOptions:
    non_interactive: bool = False
    #: Divides the demo windows (validationWindow 3 s, cooldown 1 s, ...).
    speed: float = 1.0
    #: The binaries; None: not installed (that part is left out, and the output says so).
    prometheus: str | None = None
    redis: str | None = None
    alertmanager: str | None = None
    #: The module that floods the bus (a PRODUCTION module).
    fault_module: str = "curiosity-loop"
    #: Seconds the climb to PRODUCTION may take; seconds from the fault to RolledBack.
    climb_timeout: float = 75.0
    rollback_timeout: float = 25.0
    #: Seconds to hold at PRODUCTION before the fault (divided by ``speed``).
    stable_hold: float = 2.0
    #: Keep the working directory (logs, kubeconfig) after a successful run.
    keep_workdir: bool = False
    #: ``--keep``: run the whole system until Ctrl-C/SIGTERM (no scripted fault, no summary); the
    #: operator watches every namespace.
    keep: bool = False
    #: Port of the web dashboard (``jeffreyctl dashboard``, served in-process); any free port
    #: when this one is taken.
    dashboard_port: int = 3100

    @classmethod
    def detect(cls, non_interactive: bool, speed: float, keep: bool = False) -> PlaygroundOptions:
        return cls(
            non_interactive=non_interactive,
            speed=speed,
            keep=keep,
            prometheus=find_binary("prometheus", "JEFFREY_PROMETHEUS_BIN"),
            redis=find_binary("redis-server", "REDIS_SERVER"),
            alertmanager=find_binary("prometheus-alertmanager", "JEFFREY_ALERTMANAGER_BIN"),
        )


@dataclass
class Outcome:
    """What happened, for the summary and the exit code."""

    real: list[str] = field(default_factory=list)
    emulated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    climb_seconds: float | None = None
    fault: str = ""
    fault_at: datetime.datetime | None = None
    rollback_reason: str = ""
    rollback_gate: str = ""
    rollback_value: float | None = None
    rollback_threshold: float | None = None
    rollback_message: str = ""
    rollback_from: str = ""
    #: Seconds from the fault to the rollback decision, and to RolledBack (drained).
    decided_after: float | None = None
    rolled_back_after: float | None = None
    transitions: int = 0
    redis_history: int | None = None
    problems: list[str] = field(default_factory=list)
    expected_reason: str = "GateBreach"
    total_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.climb_seconds is not None
            and self.rollback_reason == self.expected_reason
            and self.rolled_back_after is not None
        )


# ------------------------------------------------------------------------------------------ spec


def _seconds(value: float) -> str:
    return format_duration(max(value, 0.001))


def demo_spec(*, speed: float, prometheus_url: str | None) -> dict[str, Any]:
    """The example's ladder with demo timings; gates only with a Prometheus to ask."""
    levels = copy.deepcopy(FALLBACK_LEVELS)
    if EXAMPLE.exists():
        with contextlib.suppress(OSError, yaml.YAMLError, KeyError, TypeError):
            levels = yaml.safe_load(EXAMPLE.read_text())["spec"]["levels"]
    spec: dict[str, Any] = {
        "targetLevel": "PRODUCTION",
        "levels": levels,
        "promotion": {
            "readinessTimeout": _seconds(max(2.0, 8.0 / speed)),
            "validationWindow": _seconds(3.0 / speed),
            "cooldown": _seconds(1.0 / speed),
        },
        "rollback": {"autoRetryAfter": ""},
        "analysis": {"interval": "1s"},
        "defaultGates": prometheus_url is not None,
        "bus": {"maxRate": 1000},
    }
    if prometheus_url is not None:
        spec["analysis"]["prometheus"] = {"url": prometheus_url, "timeout": "2s"}
    spec["checks"] = demo_checks(speed=speed)
    JeffreyIntegrationSpec.model_validate(spec)  # the demo spec is valid, or fail here
    return spec


def demo_checks(*, speed: float) -> list[dict[str, Any]]:
    """The CORE smoke-test Job of ``examples/jeffrey-checks.yaml``; the emulated Job controller
    completes it after a moment (its pod template's annotations say so)."""
    with contextlib.suppress(OSError, yaml.YAMLError, KeyError, TypeError):
        checks = yaml.safe_load(CHECKS_EXAMPLE.read_text())["spec"]["checks"]
        smoke = copy.deepcopy(next(c for c in checks if c.get("job")))
        template = smoke["job"]["spec"]["template"]
        template.setdefault("metadata", {})["annotations"] = {
            OUTCOME_ANNOTATION: "Complete",
            DELAY_ANNOTATION: f"{1.0 / speed:g}",
        }
        return [smoke]
    return []


def _modules(spec: Mapping[str, Any]) -> list[str]:
    return [m["deployment"] for ls in spec["levels"] for m in ls["modules"]]


# --------------------------------------------------------------------------------------- display


def render_compact(body: Mapping[str, Any], now: datetime.datetime, elapsed: float) -> str:
    """The live ladder, a dozen lines (the interactive display)."""
    from jeffrey_operator.ctl.main import view_of
    from jeffrey_operator.ctl.render import format_number, format_threshold

    view = view_of(dict(body), now)
    lines = [f"t+{elapsed:5.1f}s  phase {view.phase.value}: {view.message}"]
    if view.waiting is not None:
        w = view.waiting
        what = f"{w.kind} of {w.level.value}" if w.level else w.kind
        lines.append(
            f"          {what}: " + (w.note if w.note else f"{w.remaining:.1f}s left of {w.total:g}s")
        )
    lines.append("")
    for lv in reversed(view.levels):
        mark = ">" if lv.current else " "
        mods = "  ".join(f"{m.deployment} {m.ready}/{m.desired}" for m in lv.modules)
        lines.append(f" {mark} {lv.level.value:<10} {lv.state:<10} {mods}")
    active = [g for g in view.gates if g.active]
    if active:
        bad = [g for g in active if g.result != "Pass"]
        bus = next((g for g in active if g.name == "rollback-bus-rate"), None)
        text = f"gates: {len(active) - len(bad)}/{len(active)} pass"
        if bus is not None:
            text += f"; bus {format_number(bus.value)} msg/s ({format_threshold(bus.min, bus.max)})"
        if bad:
            text += "; " + ", ".join(f"{g.name} {g.result} {format_number(g.value)}" for g in bad[:3])
        lines.append("")
        lines.append("  " + text)
    if view.checks:
        shown = [f"{c.name} {c.result}" + (f" ({c.job})" if c.job else "") for c in view.checks]
        lines.append("  checks: " + ", ".join(shown))
    if view.last_rollback:
        lines.append(
            f"  last rollback: {view.last_rollback.get('reason')}: {view.last_rollback.get('message')}"
        )
    return "\n".join(lines) + "\n"


class Display:
    """Live ladder on a terminal (interactive), plain lines otherwise."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self.out = out
        self.live = live
        self.started = time.monotonic()
        self._log: list[str] = []
        self._last_frame = 0.0
        #: When not None, :meth:`say` collects its lines here (printed later by :meth:`release`).
        self.held: list[str] | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, text: str) -> None:
        stamped = f"[{self.elapsed():5.1f}s] {text}"
        if self.live:
            self._log = [*self._log, stamped][-8:]
        else:
            self.out.write(stamped + "\n")
            self.out.flush()

    def say(self, text: str) -> None:
        """Unstamped text, shown in both modes."""
        if self.held is not None:
            self.held.append(text.rstrip("\n"))
            return
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()

    def release(self) -> None:
        """Print what :meth:`say` held back, and stop holding."""
        held, self.held = self.held or [], None
        for text in held:
            self.say(text)

    def frame(self, body: Mapping[str, Any] | None, header: str, *, force: bool = False) -> None:
        if not self.live or body is None:
            return
        now = time.monotonic()
        if now - self._last_frame < 0.25 and not force:
            return
        self._last_frame = now
        text = render_compact(body, datetime.datetime.now(datetime.UTC), self.elapsed())
        log = "\n".join(self._log)
        self.out.write("\x1b[H\x1b[2J" + header + "\n\n" + text + "\n" + log + "\n")
        self.out.flush()


# ------------------------------------------------------------------------------------------- run


@contextlib.contextmanager
def _operator_logs(path: Path) -> Iterator[None]:
    """The operator's (kopf's) logs go to a file, not over the display."""
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        handler.close()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM cleans up like Ctrl-C (only possible from the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _status(body: Mapping[str, Any] | None) -> JeffreyIntegrationStatus:
    from jeffrey_operator.ctl.plan import parse_status

    return parse_status((body or {}).get("status"))


def _ago(start: datetime.datetime | None, end: str) -> float | None:
    stop = parse_time(end)
    if start is None or stop is None:
        return None
    return round((stop - start).total_seconds(), 2)


class _ClosableGates:
    """The operator's Prometheus gate port, closed in the operator's own event loop at the end.

    ``run_operator`` does not close the gate port's HTTP session when kopf stops, so the playground
    does it: the gates answer Inconclusive (hold, never roll back) from then on, and the session is
    closed in the loop that opened it.
    """

    def __init__(self, inner: PrometheusGates) -> None:
        self.inner = inner
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing = False

    async def evaluate(self, ctx: GateContext) -> GateReport:
        self.loop = asyncio.get_running_loop()
        if self.closing:
            return GateReport(verdict=GateVerdict.INCONCLUSIVE, source_available=False, message="stopping")
        return await self.inner.evaluate(ctx)

    def close(self, timeout: float = 5.0) -> None:
        self.closing = True
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.inner.close(), loop).result(timeout)


class Playground:
    def __init__(self, options: PlaygroundOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        live = not options.non_interactive and not options.keep and out.isatty()
        self.display = Display(out, live=live)
        self.outcome = Outcome(expected_reason="GateBreach" if options.prometheus else "ModuleUnready")
        self.processes: list[ManagedProcess] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="jeffrey-playground-"))
        self.fleet: SimulatorFleet | None = None
        self.background: Any = None  # BackgroundEmulator
        self.emulator: Any = None
        self.operator: Any = None  # BackgroundOperator
        self.prometheus_url: str | None = None
        self.redis_url: str | None = None
        self.alertmanager_url: str | None = None
        self.crashed: set[str] = set()
        self.seen_seq = 0
        self.seen: dict[tuple[str, str], int] = {}  # --keep: transitions reported, per integration
        self.kubeconfig: Path | None = None
        self.gates: _ClosableGates | None = None
        self.dashboard: Any = None  # BackgroundDashboard
        self.dashboard_url = ""

    # -------------------------------------------------------------------------------- parts
    def start_parts(self, spec_modules: list[str]) -> None:
        o = self.options
        d = self.display
        self.fleet = SimulatorFleet(NAMESPACE, spec_modules, on_crash=self._crashed)
        if o.prometheus:
            proc, self.prometheus_url = start_prometheus(
                o.prometheus, self.workdir, self.fleet.targets(), scrape_interval="1s"
            )
            self.processes.append(proc)
            version = binary_version(o.prometheus)
            d.say(
                f"  real      Prometheus ({version}) at {self.prometheus_url}, pid {proc.pid}, "
                f"scraping {len(spec_modules)} module simulators every 1s"
            )
            self.outcome.real.append(
                f"Prometheus ({version}), scraping the simulators every 1s; "
                "the operator's default health gates query it"
            )
        else:
            d.say(
                f"  missing   Prometheus: not installed, so NO health gates this run "
                f"(the fault becomes a crash); install: {APT_PROMETHEUS}"
            )
            self.outcome.notes.append(f"no Prometheus: no health gates ({APT_PROMETHEUS})")
        if o.redis:
            proc, self.redis_url = start_redis(o.redis, self.workdir)
            self.processes.append(proc)
            version = binary_version(o.redis)
            d.say(f"  real      Redis ({version}) at {self.redis_url}, pid {proc.pid}: the state store")
            self.outcome.real.append(f"Redis ({version}): the state store and its history")
        else:
            d.say(f"  missing   Redis: not installed, so no state store this run; install: {APT_REDIS}")
            self.outcome.notes.append(f"no Redis: no state store ({APT_REDIS})")

        if o.alertmanager:
            proc, self.alertmanager_url = start_alertmanager(o.alertmanager, self.workdir)
            self.processes.append(proc)
            version = binary_version(o.alertmanager)
            d.say(
                f"  real      Alertmanager ({version}) at {self.alertmanager_url}, pid {proc.pid}: "
                "the integration's notification sink"
            )
            self.outcome.real.append(f"Alertmanager ({version}): told of the rollback")

        from jeffrey_emulator import BackgroundEmulator
        from jeffrey_operator.core.crdgen import crd

        self.background = BackgroundEmulator(crds=[crd()], namespaces=("default", NAMESPACE))
        self.emulator = self.background.start()
        # "Pods" take half a second to become ready.
        self.emulator.deployments.set_default_behaviour(delay=0.5)
        self.kubeconfig = self.emulator.write_kubeconfig(self.workdir / "kubeconfig", namespace=NAMESPACE)
        d.say(
            f"  emulated  Kubernetes API at {self.emulator.url}: jeffrey_emulator, an in-memory "
            "emulator on kmock (NOT a cluster); kubeconfig " + str(self.kubeconfig)
        )
        d.say("  emulated  pods: the emulator's Deployment controller reports readiness; no container runs")
        d.say(
            f"  simulated modules: {len(spec_modules)} jeffrey-module-sim servers (metrics and faults only) "
            "on loopback, each running while its Deployment has replicas > 0"
        )
        self.outcome.emulated.extend(
            [
                "the Kubernetes API (jeffrey_emulator: in-memory, on kmock; not a cluster)",
                "pods (the emulator's simulated Deployment controller: readiness only, no containers)",
                "the modules (jeffrey-module-sim servers exporting the metrics contract; one per Deployment, "
                "running while it has replicas > 0)",
            ]
        )
        self.fleet.start()

    def _crashed(self, module: str) -> None:
        # The pod died and does not come back (think CrashLoopBackOff): unready from now on.
        self.crashed.add(module)
        if self.emulator is not None:
            self.emulator.deployments.set_behaviour(NAMESPACE, module, ready=False)

    def start_operator(self) -> None:
        from jeffrey_operator.adapters.kube import Kube
        from jeffrey_operator.runtime.app import BackgroundOperator, build_context
        from jeffrey_operator.runtime.settings import OperatorSettings

        # --keep: every namespace, so what a user creates anywhere is reconciled as on a cluster.
        settings = OperatorSettings(
            namespaces=() if self.options.keep else (NAMESPACE,),
            all_namespaces=self.options.keep,
            health_port=0,
            metrics_port=0,
            redis_url=self.redis_url or "",
        )
        emu = self.emulator
        kube = Kube(emu.api_client())
        gates: GatePort = NoGates()
        if self.prometheus_url:
            self.gates = gates = _ClosableGates(PrometheusGates(secret_reader=kube.read_secret_key))
        ctx = build_context(settings, kube=kube, gates=gates)

        async def login(**_: Any) -> Any:
            return emu.connection_info(NAMESPACE)

        self.operator = BackgroundOperator(settings, ctx, login=login)
        self.operator.start(timeout=30)
        self.display.say(
            f"  real      the operator: jeffrey_operator (kopf, the engine, its adapters), "
            f"unchanged, in this process; logs in {self.workdir / 'operator.log'}"
        )
        self.outcome.real.insert(
            0, "the operator (kopf, the pure engine, the Kubernetes/Prometheus/Redis adapters), unchanged"
        )

    def start_dashboard(self) -> None:
        """``jeffreyctl dashboard`` in this process, through the emulated API like any client."""
        from jeffrey_operator.ctl.client import connect
        from jeffrey_operator.ctl.dashboard.server import BackgroundDashboard, DashboardOptions

        for port in (self.options.dashboard_port, 0):
            options = DashboardOptions(
                port=port, namespace=NAMESPACE, prometheus_url=self.prometheus_url, redis_url=self.redis_url
            )
            dashboard = BackgroundDashboard(options, connect(str(self.kubeconfig)))
            try:
                self.dashboard_url = dashboard.start()
            except Exception:
                dashboard.stop()
                if port == 0:
                    raise
                continue
            self.dashboard = dashboard
            break
        self.display.say(
            f"  real      the dashboard (jeffreyctl dashboard, in this process): open {self.dashboard_url}"
        )

    def dashboard_saw(self) -> str:
        """What the dashboard's own API shows of the integration now (proof that it serves)."""
        if not self.dashboard_url:
            return ""
        try:
            snapshot = http_json(self.dashboard_url + "api/integrations")
        except OSError as exc:
            return f"the dashboard did not answer: {exc}"
        items = {i["key"]: i for i in snapshot.get("items", [])}
        item = items.get(f"{NAMESPACE}/{NAME}")
        if item is None:
            return f"the dashboard shows no {NAMESPACE}/{NAME}"
        return f"{item['key']} {item['phase']} ({item['health']}), current {item['currentLevel']}"

    # ---------------------------------------------------------------------------------- loop
    def read(self) -> dict[str, Any] | None:
        from jeffrey_operator.core.models import GROUP, PLURAL, VERSION

        try:
            return dict(self.emulator.get(f"{GROUP}/{VERSION}/{PLURAL}", NAMESPACE, NAME))
        except Exception:
            return None

    def sync_pods(self) -> None:
        """Start/stop each module's simulator with its Deployment's spec.replicas."""
        assert self.fleet is not None
        for dep in self.emulator.list("apps/v1/deployments", NAMESPACE):
            name = str(dep["metadata"]["name"])
            if name not in self.fleet.sims:
                continue
            wanted = int((dep.get("spec") or {}).get("replicas") or 0) > 0
            if not wanted and name in self.crashed:
                self.crashed.discard(name)  # scaled to zero: the crashed pod is gone
                self.emulator.deployments.set_behaviour(NAMESPACE, name, ready=True)
            if name in self.crashed:
                wanted = False
            self.fleet.set_running(name, wanted)

    def report_transitions(self, body: Mapping[str, Any] | None) -> None:
        status = _status(body)
        for t in status.transitions:
            if t.seq <= self.seen_seq:
                continue
            self.seen_seq = t.seq
            level = t.to_level.value if t.to_level else "-"
            self.display.line(f"{t.phase.value:<12} current {level:<10} {t.reason}: {t.message}")

    def tick(self, header: str) -> dict[str, Any] | None:
        self.sync_pods()
        body = self.read()
        self.report_transitions(body)
        self.display.frame(body, header)
        return body

    def wait_for(self, what: str, timeout: float, header: str, done: Any, bad: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.tick(header)
            status = _status(body)
            if body is not None and done(status):
                return body
            if body is not None and bad is not None:
                problem = bad(status)
                if problem:
                    raise PlaygroundFailed(problem)
            if time.monotonic() > deadline:
                raise PlaygroundFailed(
                    f"timed out after {timeout:.0f}s waiting for {what} (phase {status.phase.value}: "
                    f"{status.message})"
                )
            time.sleep(0.2)

    # ---------------------------------------------------------------------------------- keep
    def paste_lines(self) -> list[str]:
        """What to paste into another terminal to watch and poke the kept playground."""
        assert self.fleet is not None
        # Without Prometheus no gate would see a flood: a crash (the pod stays unready) instead.
        fault, what = ("flood", "floods the bus") if self.prometheus_url else ("crash", "crashes")
        lines = [f"export KUBECONFIG={self.kubeconfig}"]
        kubectl = REPOSITORY / ".tools" / "bin" / "kubectl"
        if kubectl.exists():  # the real kubectl of `make deps` (a `kubectl` on PATH may be another tool)
            lines.append(f"export PATH={kubectl.parent}:$PATH")
        lines += [
            "kubectl get ji -A -w",
            f"jeffreyctl status {NAME} -w",
            f'curl -XPOST {self.fleet.url(self.options.fault_module)}/fault -d \'{{"kind": "{fault}"}}\''
            f"   # fault: {self.options.fault_module} {what}; " + '\'{"kind": "none"}\' heals it',
            f"# Prometheus UI: {self.prometheus_url}"
            if self.prometheus_url
            else "# Prometheus: not installed",
            f"# Redis: {self.redis_url}" if self.redis_url else "# Redis: not installed",
        ]
        if self.dashboard_url:
            lines.append(f"# Dashboard: {self.dashboard_url}")
        return lines

    def report_all(self) -> None:
        """--keep: the transitions of every JeffreyIntegration, in every namespace."""
        from jeffrey_operator.core.models import GROUP, PLURAL, VERSION

        for body in self.emulator.list(f"{GROUP}/{VERSION}/{PLURAL}"):
            meta = body.get("metadata") or {}
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            status = _status(body)
            for t in status.transitions:
                if t.seq <= self.seen.get(key, 0):
                    continue
                self.seen[key] = t.seq
                level = t.to_level.value if t.to_level else "-"
                self.display.line(
                    f"{key[0]}/{key[1]}: {t.phase.value:<12} current {level:<10} {t.reason}: {t.message}"
                )

    def keep(self) -> int:
        """``--keep``: the whole system until Ctrl-C or SIGTERM; first the lines to paste."""
        o = self.options
        d = self.display
        d.held = []
        spec = demo_spec(speed=o.speed, prometheus_url=None)
        modules = _modules(spec)
        try:
            with _operator_logs(self.workdir / "operator.log"), _sigterm_as_interrupt():
                d.say("What is real and what is emulated:")
                self.start_parts(modules)
                spec = demo_spec(speed=o.speed, prometheus_url=self.prometheus_url)
                from jeffrey_emulator import deployment_manifest

                for module in modules:
                    self.emulator.create(deployment_manifest(module, NAMESPACE, replicas=0))
                self.start_operator()
                self.start_dashboard()
                held, d.held = d.held, None
                d.say("Jeffrey OS playground, kept running until Ctrl-C. Paste into another terminal:")
                for line in self.paste_lines():
                    d.say(f"  {line}")
                d.say("")
                d.held = held
                d.release()
                d.say(
                    f"Created JeffreyIntegration {NAMESPACE}/{NAME} (targetLevel PRODUCTION). The operator "
                    "watches every namespace: kubectl create namespace / deployment / a JeffreyIntegration "
                    "there are reconciled as on a cluster. Ctrl-C or SIGTERM stops everything."
                )
                self.emulator.create(
                    {
                        "apiVersion": "jeffreyos.io/v1alpha1",
                        "kind": "JeffreyIntegration",
                        "metadata": {"name": NAME, "namespace": NAMESPACE},
                        "spec": spec,
                    }
                )
                while True:
                    self.sync_pods()
                    self.report_all()
                    time.sleep(0.2)
        except KeyboardInterrupt:
            d.release()
            d.say("\nstopping everything the playground started")
            self.cleanup(keep_logs=False)
            return 0
        except Exception as exc:
            d.release()
            d.say(f"PROBLEM: {type(exc).__name__}: {exc}")
            self.cleanup(keep_logs=True)
            return 1

    # ---------------------------------------------------------------------------------- story
    def run(self) -> int:
        o = self.options
        d = self.display
        if o.keep:
            return self.keep()
        d.say("Jeffrey OS playground: the operator on one machine, without a cluster.")
        d.say("What is real and what is emulated:")
        started = time.monotonic()
        spec = demo_spec(speed=o.speed, prometheus_url=None)
        modules = _modules(spec)
        try:
            with _operator_logs(self.workdir / "operator.log"), _sigterm_as_interrupt():
                self.start_parts(modules)
                spec = demo_spec(speed=o.speed, prometheus_url=self.prometheus_url)
                if self.alertmanager_url:
                    spec["notifications"] = [
                        {"name": "oncall", "alertmanager": {"url": self.alertmanager_url}}
                    ]
                from jeffrey_emulator import deployment_manifest

                for module in modules:
                    self.emulator.create(deployment_manifest(module, NAMESPACE, replicas=0))
                self.start_operator()
                self.start_dashboard()
                p = spec["promotion"]
                d.say(
                    f"The ladder: {len(spec['levels'])} levels, {len(modules)} module Deployments "
                    "at 0 replicas; "
                    f"validationWindow {p['validationWindow']}, cooldown {p['cooldown']}, readinessTimeout "
                    f"{p['readinessTimeout']}, analysis every 1s"
                    + (
                        ", default health gates on."
                        if spec["defaultGates"]
                        else ", no gates (no Prometheus)."
                    )
                )
                d.say(
                    "Watch it from another terminal: "
                    f"jeffreyctl --kubeconfig {self.kubeconfig} status {NAME} -w"
                )
                d.say("")
                self.story(spec)
        except KeyboardInterrupt:
            d.say("\ninterrupted: stopping everything the playground started")
            self.cleanup(keep_logs=False)
            return 130
        except PlaygroundFailed as exc:
            self.outcome.problems.append(str(exc))
        except Exception as exc:
            self.outcome.problems.append(f"{type(exc).__name__}: {exc}")
        self.outcome.total_seconds = time.monotonic() - started
        self.finish()
        self.cleanup(keep_logs=not self.outcome.ok)
        return 0 if self.outcome.ok else 1

    def story(self, spec: dict[str, Any]) -> None:
        o = self.options
        d = self.display
        header_real = (
            "real: operator"
            + (", Prometheus" if self.prometheus_url else "")
            + (", Redis" if self.redis_url else "")
        )
        header = f"Jeffrey OS playground  [{header_real}; emulated: Kubernetes API, pods; simulated: modules]"
        if self.dashboard_url:
            header += f"\nin your browser: {self.dashboard_url}"
        body = dict(
            apiVersion="jeffreyos.io/v1alpha1",
            kind="JeffreyIntegration",
            metadata={"name": NAME, "namespace": NAMESPACE},
            spec=spec,
        )
        self.emulator.create(body)
        created = datetime.datetime.now(datetime.UTC)
        d.line(f"created JeffreyIntegration {NAMESPACE}/{NAME} (targetLevel PRODUCTION): the climb begins")

        def climb_failed(st: JeffreyIntegrationStatus) -> str:
            if st.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.INVALID):
                return f"the climb failed: {st.phase.value}: {st.message}"
            return ""

        reached = self.wait_for(
            "PRODUCTION",
            o.climb_timeout,
            header,
            lambda st: st.phase == Phase.STABLE and st.current_level == Level.PRODUCTION,
            climb_failed,
        )
        stable = _status(reached)
        stable_at = next(
            (t.time for t in reversed(stable.transitions) if t.phase == Phase.STABLE), stable.phase_since
        )
        self.outcome.climb_seconds = _ago(created, stable_at)
        d.line(f"reached PRODUCTION in {self.outcome.climb_seconds}s; holding there for a moment")
        hold_until = time.monotonic() + o.stable_hold / o.speed
        while time.monotonic() < hold_until:
            self.tick(header)
            time.sleep(0.2)

        assert self.fleet is not None
        url = self.fleet.url(o.fault_module) + "/fault"
        kind = "flood" if self.prometheus_url else "crash"
        self.outcome.fault = f'{kind} on {o.fault_module} (PRODUCTION): POST {url} {{"kind": "{kind}"}}'
        self.outcome.fault_at = datetime.datetime.now(datetime.UTC)
        answer = http_json(url, {"kind": kind})
        if kind == "flood":
            d.line(
                f"FAULT: {o.fault_module} floods the bus at {answer.get('value'):g} msg/s "
                f"(limit {spec['bus']['maxRate']}): POST {url}"
            )
        else:
            d.line(
                f"FAULT: {o.fault_module} crashes (no Prometheus, so no bus gate to breach): its pod stays "
                "unready; the operator rolls back after readinessTimeout"
            )

        def rolled_back(st: JeffreyIntegrationStatus) -> bool:
            return st.phase == Phase.ROLLED_BACK

        final = self.wait_for("the rollback to CORE", o.rollback_timeout + 8.0 / o.speed, header, rolled_back)
        st = _status(final)
        record = st.last_rollback
        if record is not None:
            self.outcome.rollback_reason = record.reason
            self.outcome.rollback_gate = record.gate
            self.outcome.rollback_value = record.value
            self.outcome.rollback_threshold = record.threshold
            self.outcome.rollback_message = record.message
            self.outcome.rollback_from = record.from_level.value if record.from_level else ""
            self.outcome.decided_after = _ago(self.outcome.fault_at, record.time)
        done_at = next(
            (t.time for t in reversed(st.transitions) if t.phase == Phase.ROLLED_BACK), st.phase_since
        )
        self.outcome.rolled_back_after = _ago(self.outcome.fault_at, done_at)
        if st.current_level not in (Level.CORE, None):
            self.outcome.problems.append(f"rolled back, but currentLevel is {st.current_level}")
        up = [m.deployment for m in st.modules if m.level != Level.CORE and m.desired > 0]
        if up:
            self.outcome.problems.append(f"modules above CORE still wanted after the rollback: {up}")
        self.outcome.transitions = st.transition_seq
        d.line(f"ROLLED BACK to CORE: {record.reason if record else '?'}: {record.message if record else ''}")
        d.frame(final, header, force=True)
        self.show_alert()
        self.show_ctl()
        saw = self.dashboard_saw()
        if saw:
            self.display.say(f"dashboard at {self.dashboard_url} shows: {saw}")
        self.outcome.redis_history = self.redis_count()

    def show_alert(self) -> None:
        """The alert the operator posted to the real Alertmanager, read back from its API."""
        if not self.alertmanager_url:
            return
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(self.alertmanager_url + "/api/v2/alerts", timeout=2) as response:
                    alerts = [a for a in json.loads(response.read()) if a["labels"].get("name") == NAME]
                if alerts:
                    labels = alerts[0]["labels"]
                    shown = ", ".join(f"{k}={labels[k]}" for k in ("namespace", "name", "level", "reason"))
                    self.display.line(f"NOTIFIED: Alertmanager holds {labels['alertname']} ({shown})")
                    return
            time.sleep(0.2)
        self.outcome.problems.append("Alertmanager got no JeffreyIntegrationRolledBack alert")

    def show_ctl(self) -> None:
        """``jeffreyctl status`` of the result, through the emulated API like any client."""
        from jeffrey_operator.ctl.main import main as ctl_main

        out = io.StringIO()
        err = io.StringIO()
        code = ctl_main(["--kubeconfig", str(self.kubeconfig), "status", NAME], stdout=out, stderr=err)
        self.display.say("")
        self.display.say(f"$ jeffreyctl status {NAME}")
        self.display.say(out.getvalue() if code == 0 else err.getvalue())

    def redis_count(self) -> int | None:
        if not self.redis_url:
            return None
        from jeffrey_operator.sdk import StateClient

        async def count() -> int:
            async with StateClient(self.redis_url or "", NAMESPACE, NAME) as client:
                return len(await client.history(1000))

        try:
            return asyncio.run(count())
        except Exception as exc:
            self.outcome.problems.append(f"could not read the Redis history: {exc}")
            return None

    # ------------------------------------------------------------------------------- summary
    def finish(self) -> None:
        o = self.outcome
        d = self.display
        d.say("")
        d.say("SUMMARY")
        climb = f"{o.climb_seconds:.1f}s" if o.climb_seconds is not None else "not reached"
        d.say(f"  time to reach PRODUCTION:  {climb} (6 levels, from the creation of the JeffreyIntegration)")
        if o.fault:
            d.say(f"  fault:                     {o.fault}")
        if o.rollback_reason:
            gate = ""
            if o.rollback_gate:
                from jeffrey_operator.ctl.render import format_number

                gate = (
                    f", gate {o.rollback_gate}: value {format_number(o.rollback_value)} > threshold "
                    f"{format_number(o.rollback_threshold)}"
                )
            d.say(f"  rollback:                  {o.rollback_reason} from {o.rollback_from or '?'}{gate}")
            d.say(f"  rollback message:          {o.rollback_message}")
            d.say(
                f"  fault -> rollback:         {o.decided_after}s to the decision (RollingBack), "
                f"{o.rolled_back_after}s to RolledBack at CORE"
            )
        else:
            d.say("  rollback:                  none")
        history = f", {o.redis_history} in the Redis history" if o.redis_history is not None else ""
        d.say(f"  transitions:               {o.transitions} (status.transitionSeq){history}")
        d.say(f"  real:                      {'; '.join(o.real) or 'none'}")
        d.say(f"  emulated/simulated:        {'; '.join(o.emulated) or 'none'}")
        for note in o.notes:
            d.say(f"  note:                      {note}")
        d.say(f"  total run time:            {o.total_seconds:.1f}s")
        for problem in o.problems:
            d.say(f"  PROBLEM:                   {problem}")
        verdict = "OK: climbed to PRODUCTION and rolled back to CORE as expected"
        if not o.ok:
            verdict = f"FAILED (expected a climb to PRODUCTION and a {o.expected_reason} rollback to CORE)"
        d.say(f"  result:                    {verdict}")

    def cleanup(self, *, keep_logs: bool) -> None:
        """Stop everything we started: the operator, the simulators, the emulator, the children."""
        steps: list[tuple[str, Any]] = [
            ("dashboard", lambda: self.dashboard.stop() if self.dashboard else None),
            ("gate port", lambda: self.gates.close() if self.gates else None),
            ("operator", lambda: self.operator.stop(timeout=15) if self.operator else None),
            ("simulators", lambda: self.fleet.stop() if self.fleet else None),
            ("emulator", lambda: self.background.stop() if self.background else None),
        ]
        for proc in reversed(self.processes):
            steps.append((proc.name, proc.stop))
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # keep going: the next part must be stopped too
                self.display.say(f"  (stopping the {name} failed: {exc})")
        stopped = ", ".join(f"{p.name} pid {p.pid}" for p in self.processes)
        if stopped:
            self.display.say(f"stopped: {stopped}")
        if not keep_logs and not self.options.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            self.display.say(f"logs kept in {self.workdir}")


def run(options: PlaygroundOptions, out: TextIO | None = None) -> int:
    if not options.speed > 0:
        (out or sys.stderr).write("jeffrey-operator playground: --speed must be greater than 0\n")
        return 2
    return Playground(options, out or sys.stdout).run()


def main(non_interactive: bool, speed: float, keep: bool = False) -> int:
    """``jeffrey-operator playground``; the exit code (0: climbed and rolled back as expected;
    with ``keep``: 0 when stopped by Ctrl-C or SIGTERM)."""
    return run(PlaygroundOptions.detect(non_interactive, speed, keep))
