"""The chart's alerts under ``promtool test rules``, fed with series shaped exactly as exported.

No hand-written sample series: every minute of each scenario scrapes the operator's real registry
(driven by the real engine and :class:`OperatorTelemetry`) and real ``jeffrey-module-sim``
collectors, on a fake wall clock that *is* promtool's clock (Unix time 0 = the test's start).
So a renamed metric or label value (``GateBreached`` for the real ``GateBreach``) fails here.
Every alert is tested both ways: it fires in the situation it describes and stays quiet in a
healthy run, including the first rollback after a restart, and a restart without one.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from alert_timeline import FakeWallClock, Timeline, collector_text, humanize_duration, registry_text
from engine_world import World
from jeffrey_operator.adapters.telemetry import OperatorTelemetry
from jeffrey_operator.core.engine import Decision
from jeffrey_operator.core.models import GateResult, GateStatus
from jeffrey_operator.core.ports import GateReport, GateVerdict
from jeffrey_operator.sim.main import Fault, ModuleSim
from prom_fixtures import free_port
from test_chart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    alerts,
    helm,  # noqa: F401 - the fixture
    missing,
    promtool_path,
    render,
    write_rules,
)
from test_engine import FULL, breach

#: Zero windows: a climb takes seconds of the engine's time, well inside one scraped minute.
LADDER = {**FULL, "promotion": {"readinessTimeout": "5s", "validationWindow": "0s", "cooldown": "0s"}}
OPERATOR = {"job": f"{FULLNAME}-metrics", "namespace": NAMESPACE, "instance": "10.0.0.5:9090"}
OPERATOR_ALERTS = (
    "JeffreyOperatorDown",
    "JeffreyIntegrationRolledBack",
    "JeffreyPromotionStuck",
    "JeffreyPrometheusUnreachable",
    "JeffreyStateStoreDown",
    "JeffreyNotificationsFailing",
)
MODULE_ALERTS = (
    "JeffreyNoDreamRuns",
    "JeffreyDeadLetterQueueHigh",
    "JeffreyBusLatencyHigh",
    "JeffreyBusQueueSaturated",
    "JeffreyModuleDown",
)


def module_target(sim: ModuleSim, port: int) -> dict[str, str]:
    return {
        "job": "jeffrey-modules",
        "namespace": sim.namespace,
        "module": sim.module,
        "instance": f"10.0.1.{port}:8000",
    }


@dataclass
class Scenario:
    """One promtool test: a timeline of real scrapes and what must (not) fire when."""

    clock: FakeWallClock
    namespaces: set[str]
    world: World | None = None
    sims: list[ModuleSim] = field(default_factory=list)
    crashed: set[str] = field(default_factory=set)
    operator_up: bool = True
    timeline: Timeline = field(default_factory=Timeline)
    checks: list[dict[str, Any]] = field(default_factory=list)
    interval_minutes: int = 1
    telemetry: OperatorTelemetry = field(default_factory=OperatorTelemetry)

    @property
    def now(self) -> float:
        return float(self.timeline.minute * 60 * self.interval_minutes)

    # --------------------------------------------------------------------------- the operator
    def observe(self, decision: Decision, old: Any) -> None:
        assert self.world is not None
        self.telemetry.observe(self.world.namespace, self.world.name, decision, old, 0.01)

    def step(self, times: int = 1) -> None:
        """Reconcile like the operator: decide, act, record the metrics."""
        assert self.world is not None
        for _ in range(times):
            old = self.world.status
            self.observe(self.world.step(), old)

    def run(self) -> None:
        assert self.world is not None
        start = len(self.world.decisions)
        old = self.world.status
        self.world.run()
        for decision in self.world.decisions[start:]:
            self.observe(decision, old)
            old = decision.status

    def restart(self) -> None:
        """The operator process goes away: its series with it (the next one starts from 0)."""
        assert self.world is not None
        self.telemetry.forget(self.world.namespace, self.world.name)
        self.operator_up = False

    # ------------------------------------------------------------------------------- the clock
    def minute(self, work: Callable[[], None] | None = None) -> None:
        """Half a minute of work, then the scrape at the full minute."""
        self.clock.now = self.now - 30
        if self.world is not None:
            self.world.now = datetime.datetime.fromtimestamp(self.clock.now, datetime.UTC)
        if work is not None:
            work()
        self.clock.now = self.now
        for sim in self.sims:
            sim.advance()
        self.scrape()
        self.timeline.tick()

    def minutes(self, count: int, work: Callable[[], None] | None = None) -> None:
        for _ in range(count):
            self.minute(work)

    def scrape(self) -> None:
        if self.operator_up:

            def mine(labels: dict[str, str] | Any) -> bool:
                return labels.get("namespace", "") in self.namespaces or "namespace" not in labels

            self.timeline.scrape(registry_text(self.telemetry.registry), target=OPERATOR, keep=mine)
        else:
            self.timeline.up(OPERATOR, 0)
        for port, sim in enumerate(self.sims):
            target = module_target(sim, port)
            if sim.module in self.crashed:
                self.timeline.up(target, 0)
            else:
                self.timeline.scrape(collector_text([sim]), target=target)

    # ------------------------------------------------------------------------------ the checks
    def fires(
        self, at: int, alert: str, labels: dict[str, str], *, value: str = "", **annotations: str
    ) -> None:
        """``alert`` fires at minute ``at`` with ``labels``; its annotations are the rule's with
        these labels and ``value`` (as Prometheus formats ``$value``) unless given in full."""
        expected: dict[str, Any] = {"exp_labels": {"severity": SEVERITY[alert], **labels}}
        expected["exp_annotations"] = annotations or {
            key: render_annotation(text, labels, value) for key, text in ANNOTATIONS[alert].items()
        }
        self.checks.append({"eval_time": f"{at}m", "alertname": alert, "exp_alerts": [expected]})

    def quiet(self, at: int, *names: str) -> None:
        for alert in names:
            self.checks.append({"eval_time": f"{at}m", "alertname": alert, "exp_alerts": []})

    def test(self) -> dict[str, Any]:
        return {
            "interval": f"{self.interval_minutes}m",
            "input_series": self.timeline.input_series(),
            "alert_rule_test": self.checks,
        }


SEVERITY: dict[str, str] = {}
ANNOTATIONS: dict[str, dict[str, str]] = {}
_LABEL = re.compile(r"\{\{ \$labels\.([a-z_]+) \}\}")
_VALUE = re.compile(r"\{\{ \$value[^}]*\}\}")


def render_annotation(text: str, labels: dict[str, str], value: str) -> str:
    """Prometheus's template expansion for the two forms the chart uses."""
    assert value or not _VALUE.search(text), f"{text!r} shows $value: give it"
    return _VALUE.sub(value, _LABEL.sub(lambda m: labels[m.group(1)], text))


@pytest.fixture(name="rules")
def rules_fixture(helm: str, tmp_path: Path) -> Path:  # noqa: F811 - the fixture
    found = alerts(render("monitoring"))
    SEVERITY.update({name: rule["labels"]["severity"] for name, rule in found.items()})
    ANNOTATIONS.update({name: rule["annotations"] for name, rule in found.items()})
    assert set(found) == {*OPERATOR_ALERTS, *MODULE_ALERTS}
    return write_rules(tmp_path)


@pytest.fixture(name="clock")
def clock_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWallClock]:
    """The wall clock every exporter reads (``_created``, time in phase, the sims) = promtool's."""
    clock = FakeWallClock()
    monkeypatch.setattr(time, "time", clock)
    yield clock


def promtool_test(rules: Path, tmp_path: Path, *scenarios: Scenario) -> None:
    promtool = promtool_path()
    if promtool is None:
        missing("promtool", "apt-get install prometheus")
    assert promtool is not None
    tests = tmp_path / "alert-tests.yaml"
    document = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [s.test() for s in scenarios],
    }
    tests.write_text(yaml.safe_dump(document, sort_keys=False, width=10_000))
    proc = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def passing() -> GateReport:
    ok = GateStatus(name="rollback-bus-rate", query="q", value=120.0, max=1000.0, result=GateResult.PASS)
    return GateReport(gates=(ok,))


def healthy_sims(namespace: str, clock: FakeWallClock) -> list[ModuleSim]:
    return [ModuleSim(m, namespace, clock=clock, wall=clock) for m in ("memory", "neural-bus")]


# --------------------------------------------------------------------------------------- scenarios


def rollbacks_and_restarts(clock: FakeWallClock) -> Scenario:
    """A healthy integration with three rollbacks: one in a running operator, the first after a
    restart, and one in the very reconcile that re-creates the counter after a restart."""
    ns = "alerts-rollbacks"
    clock.now = 0.0
    s = Scenario(clock=clock, namespaces={ns}, sims=healthy_sims(ns, clock))
    s.world = World.of(LADDER, namespace=ns, name="jeffrey", gates=passing())
    s.telemetry.set_state_store_up(True)

    def breach_now() -> None:
        assert s.world is not None
        s.world.gates = breach()
        s.step()
        s.world.gates = passing()
        s.step()

    def retry(token: str) -> Callable[[], None]:
        def work() -> None:
            assert s.world is not None
            s.world.retry_token = token
            s.run()

        return work

    def back_with_a_breach() -> None:
        s.operator_up = True
        breach_now()

    def back() -> None:
        s.operator_up = True
        s.step()

    s.minute()  # m0: the operator is up, the integration not created yet
    s.minute(s.run)  # m1: climbs to PRODUCTION; counters born at 0
    s.minutes(4, s.step)  # m2-m5
    s.minute(breach_now)  # m6: rollback 0 -> 1
    s.minute(retry("1"))  # m7
    s.minutes(17, s.step)  # m8-m24
    s.minute(s.restart)  # m25: no scrape
    s.minute(back)  # m26: counters born at 0 again
    s.minutes(4, s.step)  # m27-m30
    s.minute(breach_now)  # m31: the first rollback after the restart
    s.minute(retry("2"))  # m32
    s.minutes(17, s.step)  # m33-m49
    s.minute(s.restart)  # m50
    s.minute(back_with_a_breach)  # m51: a rollback in the first reconcile: the counter starts at 1
    s.minutes(24, s.step)  # m52-m75

    who = {"namespace": ns, "name": "jeffrey", "reason": "GateBreach"}
    description = (
        f"Reason: GateBreach. Inspect with `kubectl -n {ns} describe ji jeffrey`; once fixed, retry with "
        f'`kubectl annotate ji jeffrey -n {ns} jeffreyos.io/retry="$(date +%s)" --overwrite` or '
        "`jeffreyctl retry jeffrey`."
    )
    summary = f"JeffreyIntegration {ns}/jeffrey rolled back to CORE"
    s.quiet(5, "JeffreyIntegrationRolledBack")
    s.fires(7, "JeffreyIntegrationRolledBack", who, summary=summary, description=description)
    s.quiet(24, "JeffreyIntegrationRolledBack")
    s.quiet(28, "JeffreyIntegrationRolledBack")  # a restart alone (1 -> 0) is no rollback
    s.fires(32, "JeffreyIntegrationRolledBack", who, summary=summary, description=description)
    s.quiet(48, "JeffreyIntegrationRolledBack")
    s.fires(52, "JeffreyIntegrationRolledBack", who, summary=summary, description=description)
    s.fires(64, "JeffreyIntegrationRolledBack", who, summary=summary, description=description)
    s.quiet(70, "JeffreyIntegrationRolledBack")
    # everything else stays quiet in this healthy run; a one-minute restart is not "down"
    for at in (20, 30, 55, 75):
        s.quiet(at, *(a for a in OPERATOR_ALERTS if a != "JeffreyIntegrationRolledBack"), *MODULE_ALERTS)
    return s


def trouble(clock: FakeWallClock) -> Scenario:
    """Prometheus unreachable (promotion held), Redis lost, modules misbehaving, operator gone."""
    ns, slow = "alerts-trouble", "alerts-slow"
    clock.now = 0.0
    s = Scenario(clock=clock, namespaces={ns, slow})
    memory, bus, emotion = (
        ModuleSim(m, ns, clock=clock, wall=clock) for m in ("memory", "neural-bus", "emotion-engine")
    )
    loop = ModuleSim("awareness-loop", slow, clock=clock, wall=clock)
    s.sims = [memory, bus, emotion, loop]
    smoke = {
        "name": "core-smoke",
        "level": "CORE",
        "when": "validation",
        "http": {"url": "http://memory:8000/"},
    }
    s.world = World.of({**LADDER, "defaultGates": True, "checks": [smoke]}, namespace=ns, name="jeffrey")
    held = GateStatus(name="promotion-cpu", query="q", result=GateResult.INCONCLUSIVE, message="unreachable")
    s.world.gates = GateReport(
        verdict=GateVerdict.INCONCLUSIVE, gates=(held,), source_available=False, message="unreachable"
    )

    def outage() -> None:
        s.step()
        for _ in range(6):  # each evaluation's failed request, as the Prometheus adapter counts it
            s.telemetry.record_prometheus_error("unreachable")

    def faults() -> None:
        memory.set_fault(Fault("errors"))
        bus.set_fault(Fault("flood"))
        loop.set_fault(Fault("latency", 900))
        outage()

    def crash() -> None:
        s.crashed.add("emotion-engine")
        outage()

    def operator_gone() -> None:
        s.operator_up = False

    failed = 0

    def hook_failing() -> None:  # the notifier's retries, as it sets the gauge
        nonlocal failed
        failed += 1
        s.telemetry.set_notification_failures(ns, "jeffrey", "audit", "webhook", failed)

    def hook_delivered() -> None:
        s.telemetry.set_notification_failures(ns, "jeffrey", "audit", "webhook", 0)

    def blip(failures: int) -> None:
        s.telemetry.set_notification_failures(slow, "jeffrey", "team", "slack", failures)

    s.telemetry.set_state_store_up(False)
    s.minute()  # m0
    s.minute(s.run)  # m1: Validating CORE from 0:00:30, held: gates inconclusive
    s.minute(faults)  # m2
    s.minute(lambda: (outage(), blip(1)))  # m3: one Slack attempt failed …
    s.minute(lambda: (outage(), blip(0)))  # m4: … and the retry delivered
    s.minutes(5, outage)  # m5-m9
    s.minute(crash)  # m10
    s.minutes(20, lambda: (outage(), hook_failing()))  # m11-m30: the webhook fails, retried
    s.minute(lambda: (outage(), hook_delivered()))  # m31: delivered at last
    s.minutes(13, outage)  # m32-m44
    s.minutes(16, operator_gone)  # m45-m60

    s.quiet(1, *OPERATOR_ALERTS, *MODULE_ALERTS)
    s.fires(8, "JeffreyStateStoreDown", {})
    # one dead letter per second in error since 0:01:30
    s.fires(9, "JeffreyDeadLetterQueueHigh", {"namespace": ns, "module": "memory"}, value="450")
    s.fires(9, "JeffreyBusQueueSaturated", {"namespace": ns, "module": "neural-bus"}, value="100%")
    s.fires(14, "JeffreyBusLatencyHigh", {"namespace": slow}, value="993.5ms")
    s.fires(
        13,
        "JeffreyModuleDown",
        {"job": "jeffrey-modules", "namespace": ns, "module": "emotion-engine", "instance": "10.0.1.2:8000"},
    )
    s.quiet(10, "JeffreyPrometheusUnreachable")  # for: 10m
    s.fires(15, "JeffreyPrometheusUnreachable", {"reason": "unreachable"})
    s.quiet(30, "JeffreyPromotionStuck")
    # Validating since 0:00:30; past 1800 s from 0:31, pending 5 m: firing from 0:36.
    stuck_for = humanize_duration(40 * 60 - 30)
    s.fires(
        40,
        "JeffreyPromotionStuck",
        {"namespace": ns, "name": "jeffrey"},
        summary=f"JeffreyIntegration {ns}/jeffrey is stuck",
        description=f"It has been in the same transitional phase for {stuck_for}; check its gates and "
        "module readiness in status.",
    )
    s.quiet(48, "JeffreyOperatorDown")  # for: 5m
    s.fires(51, "JeffreyOperatorDown", {})
    s.quiet(40, "JeffreyIntegrationRolledBack")  # holding is not rolling back
    # The webhook failing since m11 (for: 10m) fires at m21 with 11 failures in a row; the Slack
    # blip (one failed scrape) never does; a delivery ends it.
    s.quiet(20, "JeffreyNotificationsFailing")
    hook = {"namespace": ns, "name": "jeffrey", "sink": "audit", "kind": "webhook"}
    s.fires(21, "JeffreyNotificationsFailing", hook, value="11")
    s.fires(30, "JeffreyNotificationsFailing", hook, value="20")
    s.quiet(32, "JeffreyNotificationsFailing")
    return s


def no_dreams(clock: FakeWallClock) -> Scenario:
    """A module whose DreamEngine stopped: its last-run timestamp no longer moves (26 h, 4-minute
    samples)."""
    ns = "alerts-dreams"
    clock.now = 0.0
    s = Scenario(clock=clock, namespaces={ns}, interval_minutes=4)
    stalled = ModuleSim("memory", ns, clock=clock, wall=lambda: 0.0)  # dreamt at 0, never again
    s.sims = [stalled]
    s.telemetry.set_state_store_up(True)
    s.minutes(26 * 15 + 1)
    s.quiet(24 * 60, "JeffreyNoDreamRuns")
    s.fires(
        24 * 60 + 20,
        "JeffreyNoDreamRuns",
        {"namespace": ns},
        summary=f"No dream consolidation run in 86400s in {ns}",
        description=f"The last DreamEngine run in namespace {ns} was 1d 0h 20m 0s ago.",
    )
    return s


def test_every_alert_fires_and_stays_quiet_on_real_series(
    rules: Path, clock: FakeWallClock, tmp_path: Path
) -> None:
    scenarios = [rollbacks_and_restarts(clock), trouble(clock), no_dreams(clock)]
    checked = {c["alertname"] for s in scenarios for c in s.checks}
    assert checked == {*OPERATOR_ALERTS, *MODULE_ALERTS}
    both_ways = {(c["alertname"], bool(c["exp_alerts"])) for s in scenarios for c in s.checks}
    assert all((a, True) in both_ways and (a, False) in both_ways for a in checked), both_ways
    promtool_test(rules, tmp_path, *scenarios)


# ------------------------------------------------------------------------- only what is exported

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_BARE = re.compile(r"\b(jeffrey_[a-zA-Z0-9_]+)\b")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def exported(clock: FakeWallClock) -> Timeline:
    """One timeline with everything the scenarios export."""
    merged = Timeline()
    for scenario in (rollbacks_and_restarts(clock), trouble(clock)):
        for name, labels in scenario.timeline.exported.items():
            merged.exported.setdefault(name, {})
            for key, values in labels.items():
                merged.exported.setdefault(name, {}).setdefault(key, set()).update(values)
    return merged


def test_rules_and_dashboard_use_only_exported_metrics_and_label_values(
    rules: Path, clock: FakeWallClock
) -> None:
    seen = exported(clock).exported
    rule_exprs = [r["expr"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]]
    dashboard = json.loads((CHART / "dashboards" / "jeffrey-operator.json").read_text())
    panel_exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    annotation_exprs = [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    for expr in [*rule_exprs, *panel_exprs, *annotation_exprs]:
        for metric in _BARE.findall(expr):
            assert metric in seen, f"{metric} (in {expr!r}) is not exported"
        for metric, matchers in _SELECTOR.findall(expr):
            if metric == "up":
                continue
            for label, op, value in _MATCHER.findall(matchers):
                if value.startswith("$") or op.startswith("!"):
                    continue  # Grafana variables; negative matchers exclude
                assert label in seen[metric], f"{metric} has no label {label} ({expr!r})"
                for alternative in value.split("|") if op == "=~" else [value]:
                    assert alternative in seen[metric][label], (
                        f"{metric}{{{label}={alternative!r}}} is never exported (in {expr!r}); "
                        f"exported: {sorted(seen[metric][label])}"
                    )


def test_promtool_accepts_the_operators_metrics_output(clock: FakeWallClock, tmp_path: Path) -> None:
    """``promtool check metrics`` on what the operator's /metrics serves, over HTTP."""
    promtool = promtool_path()
    if promtool is None:
        missing("promtool", "apt-get install prometheus")
    assert promtool is not None
    scenario = rollbacks_and_restarts(clock)  # populate every family with integration series
    port = free_port()
    scenario.telemetry.serve(port, addr="127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read()
    text = body.decode()
    for family in ("jeffrey_rollbacks_total", "jeffrey_gate_evaluations_total", "jeffrey_integration_phase"):
        assert family in text
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


def test_counters_that_alerts_count_are_born_at_zero() -> None:
    reasons = ("unreachable", "timeout", "server_error", "circuit_open", "bad_query")
    world = World.of(
        {**FULL, "gates": [{"name": "bus", "query": "q", "max": 1}]}, namespace="born", name="ji"
    )
    telemetry = OperatorTelemetry()  # as in a fresh process: a registry of its own
    old = world.status
    gate = GateStatus(name="bus", result=GateResult.PASS, value=0.5, max=1)
    world.gates = GateReport(gates=(gate,))
    telemetry.observe("born", "ji", world.step(), old, 0.01)
    labels = {"namespace": "born", "name": "ji"}
    for reason in ("GateBreach", "ReadinessTimeout", "ModuleUnready"):
        assert telemetry.sample("jeffrey_rollbacks_total", **labels, reason=reason) == 0
    for result in ("Breach", "PendingBreach", "Inconclusive", "Invalid"):
        value = telemetry.sample("jeffrey_gate_evaluations_total", **labels, gate="bus", result=result)
        assert value == 0, result
    for reason in reasons:
        assert telemetry.sample("jeffrey_prometheus_errors_total", reason=reason) == 0
