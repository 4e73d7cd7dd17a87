"""``jeffreyctl``: the CLI against the emulated API with the operator running, and its pure parts.

One emulator and one operator (watching namespace ``jeffrey`` only) serve the whole module; each
test makes its own integration and Deployments. Namespace ``other`` is not watched: objects there
keep the status a test writes, which makes ``plan`` deterministic. Gates come from a fake gate
port whose value per integration the tests set (the real Prometheus gates have their own tests).
"""

from __future__ import annotations

import datetime
import io
import json
import pathlib
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

import jeffrey_operator.ctl.main as ctl_main_module
from engine_world import T0, World
from jeffrey_emulator import BackgroundEmulator, Emulator, deployment_manifest
from jeffrey_operator.adapters.kube import Kube
from jeffrey_operator.core.crdgen import crd
from jeffrey_operator.core.engine import decide_invalid
from jeffrey_operator.core.gates.defaults import gates_for
from jeffrey_operator.core.gates.evaluate import QueryOutcome, Series, evaluate
from jeffrey_operator.core.models import (
    RETRY_ANNOTATION,
    GateResult,
    GateStatus,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
    Level,
    Phase,
)
from jeffrey_operator.core.ports import GateContext, GateReport, GateVerdict
from jeffrey_operator.core.timestamps import format_time
from jeffrey_operator.core.validation import Problem
from jeffrey_operator.ctl.main import build_parser, cmd_status, main
from jeffrey_operator.ctl.plan import gate_report_from_status, make_plan
from jeffrey_operator.ctl.render import format_age, format_number, render_status
from jeffrey_operator.ctl.steer import argocd_tracking, steer
from jeffrey_operator.ctl.view import build_view
from jeffrey_operator.runtime.app import BackgroundOperator, build_context
from jeffrey_operator.runtime.settings import OperatorSettings

ROOT = pathlib.Path(__file__).resolve().parents[1]
WATCHED = "jeffrey"
OTHER = "other"
JI = "jeffreyos.io/v1alpha1/jeffreyintegrations"
BUS_GATE = {
    "name": "bus-rate",
    "query": 'sum(rate(jeffrey_bus_messages_published_total{namespace="{{namespace}}"}[1m]))',
    "max": 1000,
}


# ------------------------------------------------------------------------------------- the world


class FakeGates:
    """A gate port answering from ``values`` (integration name → bus msg/s; default 650) through
    the real pure gate judge, so statuses, ``since`` and verdicts are what Prometheus would give."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    async def evaluate(self, ctx: GateContext) -> GateReport:
        value = self.values.get(ctx.name, 650.0)
        gates = gates_for(ctx.spec)
        outcomes = {g.name: QueryOutcome.values([Series.of(value, namespace=ctx.namespace)]) for g in gates}
        return evaluate(
            gates, {}, outcomes, ctx.previous, ctx.now, mode=ctx.mode, active_level=ctx.active_level
        )


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cluster:
    emu: Emulator
    kubeconfig: pathlib.Path
    gates: FakeGates
    made: set[str] = field(default_factory=set)

    def ctl(self, *argv: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--kubeconfig", str(self.kubeconfig), *argv], stdout=out, stderr=err)
        return Result(code, out.getvalue(), err.getvalue())

    def create(
        self,
        name: str,
        namespace: str = WATCHED,
        *,
        window: str = "300ms",
        target: str = "COGNITIVE",
        gates: bool = True,
        status: dict[str, Any] | None = None,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        up: tuple[str, ...] = (),
        missing: tuple[str, ...] = (),
        **spec: Any,
    ) -> dict[str, Any]:
        """An integration with CORE (memory, bus), COGNITIVE (learner), EMOTIONAL (emotion,
        optional); its Deployments are ``NAME-<module>``, at 0 replicas (at 1 and ready for the
        levels in ``up``, so that a status written in the unwatched namespace matches the world)."""
        modules = {"CORE": ["memory", "bus"], "COGNITIVE": ["learner"], "EMOTIONAL": ["emotion"]}
        body_spec: dict[str, Any] = {
            "targetLevel": target,
            "levels": [
                {
                    "level": level,
                    "modules": [
                        {"deployment": f"{name}-{m}", **({"optional": True} if level == "EMOTIONAL" else {})}
                        for m in names
                    ],
                }
                for level, names in modules.items()
            ],
            "promotion": {"readinessTimeout": "30s", "validationWindow": window, "cooldown": "0s"},
            "analysis": {"interval": "1s"},
            "gates": [BUS_GATE] if gates else [],
            **spec,
        }
        for level, names in modules.items():
            for m in names:
                dep = f"{name}-{m}"
                if m in missing:
                    continue
                self.emu.create(deployment_manifest(dep, namespace, replicas=1 if level in up else 0))
        if namespace == WATCHED:
            # The operator's Deployment index is fed by its own watch: give it a moment to see them
            # (else the first decision says Invalid/DeploymentNotFound for an instant).
            time.sleep(0.3)
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if annotations:
            meta["annotations"] = annotations
        if labels:
            meta["labels"] = labels
        self.emu.create(
            {
                "apiVersion": "jeffreyos.io/v1alpha1",
                "kind": "JeffreyIntegration",
                "metadata": meta,
                "spec": body_spec,
            }
        )
        if status is not None:
            self.emu.store.set_status("ji", namespace, name, status)
        self.emu.run_coroutine(self.emu.deployments.wait_idle())
        return self.get(name, namespace)

    def get(self, name: str, namespace: str = WATCHED) -> dict[str, Any]:
        return dict(self.emu.get(JI, namespace, name))

    def status(self, name: str, namespace: str = WATCHED) -> JeffreyIntegrationStatus:
        return JeffreyIntegrationStatus.model_validate(self.get(name, namespace).get("status") or {})

    def wait(
        self, name: str, check: Callable[[JeffreyIntegrationStatus], bool], timeout: float = 30.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not check(status := self.status(name)):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{name}: still {status.phase.value} ({status.message}) after {timeout}s"
                )
            time.sleep(0.05)

    def settle(self, name: str, quiet: float = 0.6, timeout: float = 10.0) -> None:
        """Wait until the operator has stopped writing the object (its resourceVersion stays)."""
        deadline = time.monotonic() + timeout
        version, since = None, time.monotonic()
        while time.monotonic() < deadline:
            current = self.get(name)["metadata"]["resourceVersion"]
            if current != version:
                version, since = current, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)
        raise AssertionError(f"{name} is still being written after {timeout}s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    background = BackgroundEmulator(crds=[crd()], namespaces=("default", WATCHED, OTHER))
    emu = background.start()
    kubeconfig = emu.write_kubeconfig(tmp_path_factory.mktemp("ctl") / "kubeconfig", namespace=WATCHED)
    gates = FakeGates()
    settings = OperatorSettings(namespaces=(WATCHED,), all_namespaces=False, health_port=0, metrics_port=0)
    ctx = build_context(settings, kube=Kube(emu.api_client()), gates=gates)

    async def login(**_: Any) -> Any:
        return emu.connection_info(WATCHED)

    operator = BackgroundOperator(settings, ctx, login=login)
    operator.start()
    try:
        yield Cluster(emu, kubeconfig, gates)
    finally:
        operator.stop()
        background.stop()
    emu.assert_no_server_errors()


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.err + result.out
    assert len(result.err.strip().splitlines()) == 1, result.err


# ----------------------------------------------------------------------------------------- status


def test_status_of_a_climb_in_validation_text_and_json(cluster: Cluster) -> None:
    cluster.create("validating", window="1h")
    cluster.wait("validating", lambda st: st.phase == Phase.VALIDATING and bool(st.gates))

    text = cluster.ctl("status", "validating")
    assert text.code == 0, text.err
    out = text.out
    assert out.startswith("validating  (namespace jeffrey)")
    assert "PHASE     Validating (Validating" in out and "CORE is ready; validating health for 1h" in out
    assert "LADDER    target COGNITIVE, current none" in out
    assert re.search(
        r"WAITING   validation of CORE: \d+m\d*s? left of 3600s|WAITING   validation of CORE: 5\dm left", out
    )
    assert re.search(r"CORE\s+validating\s+validating-memory 1/1, validating-bus 1/1", out)
    assert re.search(r"COGNITIVE\s+pending\s+validating-learner 0/0", out)
    assert re.search(r"EMOTIONAL\s+down\s+validating-emotion 0/0 \(optional\)", out)  # above the target
    assert re.search(r"bus-rate\s+650\s+<= 1000\s+Pass\s+\d+s ago", out)
    assert "LAST ROLLBACK  none" in out

    as_json = cluster.ctl("status", "validating", "-o", "json")
    doc = json.loads(as_json.out)
    assert set(doc) >= {
        "name",
        "namespace",
        "targetLevel",
        "currentLevel",
        "activeLevel",
        "phase",
        "reason",
        "message",
        "phaseSince",
        "waiting",
        "levels",
        "gates",
        "lastRollback",
        "conditions",
    }
    assert (doc["name"], doc["namespace"], doc["phase"], doc["targetLevel"]) == (
        "validating",
        "jeffrey",
        "Validating",
        "COGNITIVE",
    )
    assert doc["currentLevel"] is None and doc["activeLevel"] == "CORE"
    assert [(lv["level"], lv["state"]) for lv in doc["levels"]] == [
        ("CORE", "validating"),
        ("COGNITIVE", "pending"),
        ("EMOTIONAL", "down"),
    ]
    assert doc["levels"][0]["modules"][0] == {
        "deployment": "validating-memory",
        "desired": 1,
        "ready": 1,
        "optional": False,
        "state": "Ready",
    }
    assert doc["levels"][2]["modules"][0]["optional"] is True
    waiting = doc["waiting"]
    assert waiting["kind"] == "validation" and waiting["level"] == "CORE" and waiting["total"] == 3600
    assert 3500 < waiting["remaining"] <= 3600
    gate = doc["gates"][0]
    assert (gate["name"], gate["value"], gate["max"], gate["min"], gate["result"]) == (
        "bus-rate",
        650,
        1000,
        None,
        "Pass",
    )
    assert gate["since"]
    assert doc["lastRollback"] is None
    assert {c["type"] for c in doc["conditions"]} >= {"Ready", "Reconciling", "Stalled", "Degraded"}

    as_yaml = yaml.safe_load(cluster.ctl("status", "validating", "-o", "yaml").out)
    assert as_yaml["levels"] == doc["levels"] and as_yaml["phase"] == "Validating"


def test_status_without_name_is_a_table_and_all_namespaces_adds_a_column(cluster: Cluster) -> None:
    cluster.create("listed")
    cluster.create("elsewhere", OTHER, status={"phase": "Paused", "reason": "Paused"})
    cluster.wait("listed", lambda st: st.phase == Phase.STABLE)

    table = cluster.ctl("status")
    assert table.code == 0
    header, *rows = table.out.splitlines()
    assert header.split()[:5] == ["NAME", "TARGET", "CURRENT", "PHASE", "ACTIVE"]
    assert "LAST ROLLBACK" in header
    listed = next(r for r in rows if r.startswith("listed "))
    assert re.search(
        r"listed\s+COGNITIVE\s+COGNITIVE\s+Stable\s+COGNITIVE\s+3/3\s+1/1 pass\s+-\s+-\s+\d+s", listed
    )
    assert not any(r.startswith("elsewhere") for r in rows)  # another namespace

    everywhere = cluster.ctl("status", "-A")
    assert everywhere.out.splitlines()[0].startswith("NAMESPACE")
    assert re.search(r"^other\s+elsewhere\s+COGNITIVE\s+-\s+Paused", everywhere.out, re.M)
    assert json.loads(cluster.ctl("status", "-A", "-o", "json").out)["items"][0]["namespace"] in (
        "jeffrey",
        "other",
    )

    assert (
        cluster.ctl("status", "-n", "empty-namespace").out
        == "No JeffreyIntegrations found in namespace empty-namespace.\n"
    )


def test_status_after_a_gate_breach_shows_the_rollback_and_its_reason(cluster: Cluster) -> None:
    cluster.create("breach")
    cluster.wait("breach", lambda st: st.phase == Phase.STABLE)
    cluster.gates.values["breach"] = 5650.0
    cluster.wait("breach", lambda st: st.phase == Phase.ROLLED_BACK)
    cluster.gates.values.pop("breach")

    out = cluster.ctl("status", "breach").out
    assert "PHASE     RolledBack (RolledBack" in out and "rolled back to CORE: gate bus-rate: 5650" in out
    assert re.search(r"COGNITIVE\s+down\s+breach-learner 0/0", out)
    assert re.search(r">\s+CORE\s+up\s+breach-memory 1/1", out)
    assert re.search(
        r"LAST ROLLBACK  \d+s ago, from COGNITIVE: GateBreach \(gate bus-rate: value 5650, threshold 1000\)",
        out,
    )
    assert "Stalled=True" in out
    doc = json.loads(cluster.ctl("status", "breach", "-o", "json").out)
    assert doc["lastRollback"]["reason"] == "GateBreach" and doc["lastRollback"]["gate"] == "bus-rate"
    assert doc["lastRollback"]["value"] == 5650 and doc["lastRollback"]["threshold"] == 1000

    history = cluster.ctl("history", "breach")
    assert history.code == 0
    lines = history.out.splitlines()
    assert "source: status.transitions" in lines[0]
    assert re.match(r"SEQ\s+TIME\s+AGE\s+LEVEL\s+PHASE\s+REASON\s+MESSAGE", lines[1])
    assert re.match(
        r"\d+\s+\S+Z\s+\d+s ago\s+CORE\s+RolledBack\s+RolledBack\s+rolled back to CORE: gate bus-rate",
        lines[2],
    )
    assert re.match(
        r"\d+\s+\S+Z\s+\d+s ago\s+COGNITIVE -> CORE\s+RollingBack\s+GateBreach\s+rolling back", lines[3]
    )
    assert re.search(r"\s+\d+s ago\s+-\s+Promoting\s+Promoting\s+promoting CORE", history.out)
    assert lines[-1].startswith("1 ")
    seqs = [int(line.split()[0]) for line in lines[2:]]
    assert seqs == sorted(seqs, reverse=True) == list(range(len(seqs), 0, -1))
    doc = json.loads(cluster.ctl("history", "breach", "-o", "json").out)
    assert [t["phase"] for t in doc["transitions"][:2]] == ["RolledBack", "RollingBack"]
    assert doc["transitions"][1]["reason"] == "GateBreach" and doc["source"].startswith("status.transitions")


def test_status_of_an_invalid_spec_names_the_problem(cluster: Cluster) -> None:
    cluster.create("broken", missing=("learner",))
    cluster.wait("broken", lambda st: st.phase == Phase.INVALID)
    out = cluster.ctl("status", "broken").out
    assert "PHASE     Invalid (DeploymentNotFound" in out
    assert "Deployment 'broken-learner' does not exist in this namespace" in out
    assert re.search(r"COGNITIVE\s+pending\s+broken-learner 0/0 \(missing\)", out)


# ------------------------------------------------------------------- status for every phase (pure)

SPEC: dict[str, Any] = {
    "targetLevel": "COGNITIVE",
    "levels": [
        {"level": "CORE", "modules": [{"deployment": "memory"}, {"deployment": "neural-bus"}]},
        {"level": "COGNITIVE", "modules": [{"deployment": "auto-learner", "replicas": 2}]},
    ],
    "promotion": {"readinessTimeout": "2m", "validationWindow": "30s", "cooldown": "10s"},
}
BREACH = GateStatus(name="bus-rate", value=5650, max=1000, result=GateResult.BREACH, since=format_time(T0))


def _world(**kw: Any) -> World:
    return World.of(SPEC, **kw)


def _stable() -> World:
    w = _world()
    w.run()
    assert w.status.phase == Phase.STABLE
    return w


def phase_status(
    phase: Phase,
) -> tuple[JeffreyIntegrationSpec | None, JeffreyIntegrationStatus, datetime.datetime]:
    """A status in ``phase``, made by the engine itself."""
    if phase == Phase.PENDING:
        return _world().spec, JeffreyIntegrationStatus(), T0
    if phase == Phase.PROMOTING:
        w = _world(instant=False)
        w.step()
        w.advance(20)
        return w.spec, w.status, w.now
    if phase == Phase.VALIDATING:
        w = _world()
        w.step()
        w.step()
        w.advance(12)
        return w.spec, w.status, w.now
    if phase == Phase.COOLING_DOWN:
        w = _world()
        w.step()
        w.step()
        w.advance(30)
        w.step()
        w.advance(4)
        return w.spec, w.status, w.now
    if phase == Phase.STABLE:
        w = _stable()
        return w.spec, w.status, w.now
    if phase == Phase.DEMOTING:
        w = _stable()
        w.spec = w.spec.model_copy(update={"target_level": Level.CORE})
        w.generation += 1
        w.instant = False
        w.step()
        return w.spec, w.status, w.now
    if phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
        w = _stable()
        w.gates = GateReport(verdict=GateVerdict.BREACH, gates=(BREACH,), breach=BREACH)
        w.step()
        if phase == Phase.ROLLED_BACK:
            w.gates = GateReport()
            w.step()
        return w.spec, w.status, w.now
    if phase == Phase.PAUSED:
        w = _stable()
        w.spec = w.spec.model_copy(update={"paused": True})
        w.step()
        return w.spec, w.status, w.now
    assert phase == Phase.INVALID
    problem = Problem("spec.levels[0].level", "InvalidSpec", "level FOO is not one of the six", "fix it")
    return None, decide_invalid(JeffreyIntegrationStatus(), [problem], 3, T0).status, T0


EXPECTED: dict[Phase, list[str]] = {
    Phase.PENDING: ["PHASE     Pending", "current none", r"CORE\s+pending", r"COGNITIVE\s+pending"],
    Phase.PROMOTING: [
        r"PHASE     Promoting \(Promoting, 20s ago\): promoting CORE",
        r"WAITING   readiness of CORE: 1m40s left of 120s",
        r"CORE\s+promoting\s+memory 0/1 \(progressing\)",
    ],
    Phase.VALIDATING: [r"WAITING   validation of CORE: 18s left of 30s", r"CORE\s+validating\s+memory 1/1"],
    Phase.COOLING_DOWN: [
        r"PHASE     CoolingDown \(LevelValidated",
        r"WAITING   cooldown after CORE: 6.0s left of 10s",
        r">\s+CORE\s+up",
        r"COGNITIVE\s+pending",
    ],
    Phase.STABLE: [
        r"PHASE     Stable \(TargetReached",
        r">\s+COGNITIVE\s+up\s+auto-learner 2/2",
        "Ready=True",
    ],
    Phase.DEMOTING: [
        r"PHASE     Demoting \(Demoting",
        "targetLevel lowered to CORE",
        r"COGNITIVE\s+down\s+auto-learner",
        r">\s+CORE\s+up",
    ],
    Phase.ROLLING_BACK: [
        r"PHASE     RollingBack \(GateBreach",
        r"COGNITIVE\s+down",
        r"LAST ROLLBACK  0s ago, from COGNITIVE: GateBreach \(gate bus-rate: value 5650, threshold 1000\)",
    ],
    Phase.ROLLED_BACK: [
        r"PHASE     RolledBack \(RolledBack",
        "rolled back to CORE: gate bus-rate: 5650 > max 1000",
        r"LAST ROLLBACK  0s ago, from COGNITIVE: GateBreach",
        "Stalled=True",
    ],
    Phase.PAUSED: [r"PHASE     Paused \(Paused", r"\(paused: spec.paused is true\)", r">\s+COGNITIVE\s+up"],
    Phase.INVALID: [
        r"PHASE     Invalid \(InvalidSpec",
        r"spec.levels\[0\].level: level FOO is not one of the six",
        r"\(no levels\)",
    ],
}


@pytest.mark.parametrize("phase", list(Phase), ids=[p.value for p in Phase])
def test_status_text_for_every_phase(phase: Phase) -> None:
    spec, status, now = phase_status(phase)
    assert status.phase == phase
    text = render_status(
        spec, status, now, name="jeffrey", namespace="jeffrey", generation=status.observed_generation or None
    )
    assert text.startswith("jeffrey  (namespace jeffrey)\n")
    for pattern in EXPECTED[phase]:
        assert re.search(pattern, text), f"{pattern!r} not in:\n{text}"
    view = build_view(spec, status, now).to_dict()
    assert view["phase"] == phase.value
    assert json.loads(json.dumps(view)) == view  # JSON-ready


def test_validation_window_waits_while_gates_hold_and_restarts_after() -> None:
    spec, status, now = phase_status(Phase.VALIDATING)
    holding = status.model_copy(
        update={"gates": [GateStatus(name="g", max=1, value=5, result=GateResult.PENDING_BREACH)]}
    )
    view = build_view(spec, holding, now)
    assert view.waiting is not None and view.waiting.remaining == 30 and "holding" in view.waiting.note
    later = format_time(now - datetime.timedelta(seconds=2))
    passing = status.model_copy(
        update={"gates": [GateStatus(name="g", max=1, value=0, result=GateResult.PASS, since=later)]}
    )
    view = build_view(spec, passing, now)
    assert view.waiting is not None and view.waiting.remaining == pytest.approx(28)


@pytest.mark.parametrize(
    ("value", "text"), [(650.0, "650"), (12.5, "12.5"), (0.031, "0.031"), (None, "no data")]
)
def test_numbers(value: float | None, text: str) -> None:
    assert format_number(value) == text


def test_ages() -> None:
    assert [format_age(s) for s in (3, 75, 3700, 90000, 300000)] == ["3s", "1m15s", "61m", "25h", "3d"]


# ------------------------------------------------------------------------------------------- plan


def _ready_status(
    phase: str,
    *,
    current: str | None,
    active: str | None,
    since_s: float,
    gates: list[dict[str, Any]] | None = None,
    seq: int = 3,
) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    return {
        "observedGeneration": 1,
        "phase": phase,
        "reason": phase,
        "message": "written by the test",
        "currentLevel": current,
        "activeLevel": active,
        "targetLevel": "COGNITIVE",
        "phaseSince": format_time(now - datetime.timedelta(seconds=since_s)),
        "levelStartedAt": format_time(now - datetime.timedelta(seconds=since_s)),
        "gates": gates or [],
        "transitionSeq": seq,
    }


def test_plan_of_a_promotion_scales_the_next_level_and_writes_nothing(cluster: Cluster) -> None:
    cluster.create(
        "promote",
        OTHER,
        up=("CORE",),
        status=_ready_status(
            "CoolingDown",
            current="CORE",
            active="CORE",
            since_s=5,
            gates=[
                {"name": "bus-rate", "value": 650, "max": 1000, "result": "Pass", "since": format_time(T0)}
            ],
        ),
    )
    mark = cluster.emu.requests.mark()
    result = cluster.ctl("plan", "promote", "-n", OTHER)
    assert result.code == 0, result.err
    out = result.out
    assert "a dry run with the operator's own decision code; nothing is changed" in out
    assert "NOW       CoolingDown (current CORE, active CORE)" in out
    assert "NEXT      Promoting (current CORE, active COGNITIVE)" in out
    assert "WHY       Promoting: promoting COGNITIVE: scaling promote-learner=1" in out
    assert "  promote-learner (COGNITIVE): replicas 0 -> 1" in out
    assert "  Normal Promoting: promoting COGNITIVE" in out
    assert re.search(r"NEXT LOOK in (29|30)s \(a deadline\)", out)  # the readiness timeout
    assert (
        "GATES     verdict Pass; from the last gate results in status (Pass); plan does not query Prometheus"
        in out
    )
    doc = json.loads(cluster.ctl("plan", "promote", "-n", OTHER, "-o", "json").out)
    assert doc["dryRun"] is True and doc["next"]["phase"] == "Promoting"
    assert doc["scalings"] == [{"deployment": "promote-learner", "level": "COGNITIVE", "from": 0, "to": 1}]
    assert doc["gates"]["source"] == "status" and "does not query Prometheus" in doc["gates"]["note"]
    assert [s["phase"] for s in doc["steps"]] == ["Promoting"]
    assert "phase" in doc["statusChanges"]
    # A dry run: nothing was written, not even the status.
    assert cluster.emu.requests.writes(since=mark, namespace=OTHER) == []
    assert cluster.status("promote", OTHER).phase == Phase.COOLING_DOWN
    assert cluster.emu.get("apps/v1/deployments", OTHER, "promote-learner")["spec"]["replicas"] == 0


def test_plan_of_a_gate_breach_is_a_rollback(cluster: Cluster) -> None:
    cluster.create(
        "doomed",
        OTHER,
        up=("CORE", "COGNITIVE"),
        status=_ready_status(
            "Stable",
            current="COGNITIVE",
            active="COGNITIVE",
            since_s=60,
            gates=[
                {
                    "name": "bus-rate",
                    "value": 5650,
                    "max": 1000,
                    "result": "Breach",
                    "since": format_time(T0),
                    "series": '{namespace="other"}',
                }
            ],
        ),
    )
    mark = cluster.emu.requests.mark()
    out = cluster.ctl("plan", "doomed", "-n", OTHER).out
    assert "NEXT      RollingBack (current CORE)" in out
    assert (
        "WHY       GateBreach: rolling back to CORE from COGNITIVE: "
        'gate bus-rate: 5650 ({namespace="other"}) > max 1000' in out
    )
    assert "  doomed-learner (COGNITIVE): replicas 1 -> 0" in out
    assert "doomed-memory" not in out.split("SCALE")[1].split("EVENTS")[0]  # CORE is never scaled down
    assert "  Warning GateBreach:" in out
    assert (
        "GATES     verdict Breach, breach bus-rate = 5650; from the last gate results in status (Breach)"
        in out
    )
    assert cluster.emu.requests.writes(since=mark, namespace=OTHER) == []


def test_plan_of_a_held_rollback_changes_nothing(cluster: Cluster) -> None:
    cluster.create("held")
    cluster.wait("held", lambda st: st.phase == Phase.STABLE)
    cluster.gates.values["held"] = 4000.0
    cluster.wait("held", lambda st: st.phase == Phase.ROLLED_BACK)
    cluster.gates.values.pop("held")
    cluster.settle("held")
    mark = cluster.emu.requests.mark()
    out = cluster.ctl("plan", "held").out
    assert "NOW       RolledBack (current CORE)" in out
    assert "NEXT      RolledBack (current CORE) (no change)" in out
    assert "WHY       holding after the rollback until `jeffreyctl retry held`, a spec change;" in out
    assert "SCALE     nothing" in out and "EVENTS    none" in out and "STATUS    no write" in out
    assert "NEXT LOOK when something changes" in out
    assert "GATES     verdict Pass; no gates apply in phase RolledBack" in out
    assert cluster.emu.requests.writes(since=mark, name="held") == []


def test_plan_reads_the_retry_annotation_like_the_operator() -> None:
    status = JeffreyIntegrationStatus.model_validate(
        _ready_status("RolledBack", current="CORE", active=None, since_s=30)
        | {"lastRollback": {"time": format_time(T0), "reason": "GateBreach", "generation": 1}}
    )
    body = {
        "metadata": {
            "name": "x",
            "namespace": "n",
            "generation": 1,
            "annotations": {RETRY_ANNOTATION: "2026-11-21T10:00:00.000Z"},
        },
        "spec": SPEC,
        "status": status.wire(),
    }
    ready = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
    deployments = {
        d: deployment_manifest(d, "n", replicas=1) | {"status": ready} for d in ("memory", "neural-bus")
    }
    deployments["auto-learner"] = deployment_manifest("auto-learner", "n", replicas=0)
    plan = make_plan(body, deployments, datetime.datetime.now(datetime.UTC))
    assert [(t.phase, t.reason) for t in plan.steps] == [
        (Phase.PENDING, "RetryRequested"),
        (Phase.PROMOTING, "Promoting"),
    ]
    assert [(s.deployment, s.current, s.replicas) for s in plan.scalings] == [("auto-learner", 0, 2)]
    assert plan.why == "Promoting: promoting COGNITIVE: scaling auto-learner=2"


def test_gate_report_from_status_uses_the_gate_ports_summary() -> None:
    spec = JeffreyIntegrationSpec.model_validate({**SPEC, "gates": [BUS_GATE]})
    stable = JeffreyIntegrationStatus(phase=Phase.STABLE, current_level=Level.COGNITIVE, gates=[BREACH])
    report, note = gate_report_from_status(spec, stable)
    assert report.verdict is GateVerdict.BREACH and report.breach == BREACH and "does not query" in note
    report, note = gate_report_from_status(spec, stable.model_copy(update={"gates": []}))
    assert report.verdict is GateVerdict.PASS and "no gate results in status yet" in note
    report, note = gate_report_from_status(spec, stable.model_copy(update={"phase": Phase.ROLLED_BACK}))
    assert report == GateReport() and "no gates apply" in note


# ----------------------------------------------------------------------------- retry/pause/resume


def test_retry_pause_resume_steer_the_operator(cluster: Cluster) -> None:
    cluster.create("steered")
    cluster.wait("steered", lambda st: st.phase == Phase.STABLE)
    cluster.gates.values["steered"] = 3000.0
    cluster.wait("steered", lambda st: st.phase == Phase.ROLLED_BACK)
    cluster.gates.values.pop("steered")

    retry = cluster.ctl("retry", "steered")
    assert retry.code == 0 and retry.err == ""
    assert retry.out.startswith("jeffreyintegrations.jeffreyos.io/steered (namespace jeffrey) patched\n")
    token = cluster.get("steered")["metadata"]["annotations"][RETRY_ANNOTATION]
    assert f"  metadata.annotations[{RETRY_ANNOTATION}]: (unset) -> '{token}'" in retry.out
    assert datetime.datetime.fromisoformat(token.replace("Z", "+00:00"))  # RFC 3339
    cluster.wait("steered", lambda st: st.phase == Phase.STABLE and st.last_retry_token == token)
    assert any(t.reason == "RetryRequested" for t in cluster.status("steered").transitions)

    again = cluster.ctl("retry", "steered")
    assert "note: phase is Stable; a retry only acts while RolledBack" in again.out

    pause = cluster.ctl("pause", "steered")
    assert pause.code == 0
    assert "  spec.paused: false -> true" in pause.out
    assert cluster.get("steered")["spec"]["paused"] is True
    cluster.wait("steered", lambda st: st.phase == Phase.PAUSED)
    twice = cluster.ctl("pause", "steered")
    assert twice.out.endswith("unchanged: spec.paused is already true: nothing to change\n")
    assert "PHASE     Paused (Paused" in cluster.ctl("status", "steered").out

    resume = cluster.ctl("resume", "steered")
    assert "  spec.paused: true -> false" in resume.out
    cluster.wait("steered", lambda st: st.phase == Phase.STABLE)
    assert cluster.get("steered")["spec"]["paused"] is False


def test_argocd_managed_objects_get_a_warning(cluster: Cluster) -> None:
    tracking = {"argocd.argoproj.io/tracking-id": "jeffrey-app:jeffreyos.io/JeffreyIntegration:other/gitops"}
    cluster.create("gitops", OTHER, annotations=tracking)
    pause = cluster.ctl("pause", "gitops", "-n", OTHER)
    assert pause.code == 0 and "spec.paused: false -> true" in pause.out
    assert pause.err.startswith(
        "warning: other/gitops is managed by Argo CD (Application 'jeffrey-app', "
        "annotation argocd.argoproj.io/tracking-id)"
    )
    assert (
        "The next sync will revert spec.paused" in pause.err and "make the change in Git instead" in pause.err
    )
    assert "argocd app actions run jeffrey-app pause" in pause.err
    retry = cluster.ctl("retry", "gitops", "-n", OTHER)
    assert "The retry is an annotation" in retry.err and "ignoreDifferences" in retry.err

    cluster.create("helmish", OTHER, labels={"app.kubernetes.io/instance": "jeffrey"})
    resume = cluster.ctl("pause", "helmish", "-n", OTHER)
    assert resume.err.startswith(
        "warning: other/helmish may be managed by Argo CD (label app.kubernetes.io/instance=jeffrey"
    )

    plain = cluster.ctl("pause", "promote-none", "-n", OTHER)  # not found: no warning, one error line
    assert plain.code == 1 and "warning" not in plain.err


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({}, None),
        ({"labels": {"argocd.argoproj.io/instance": "apps"}}, ("apps", True)),
        (
            {
                "labels": {"app.kubernetes.io/instance": "x"},
                "annotations": {"argocd.argoproj.io/tracking-id": "y:g/K:ns/n"},
            },
            ("y", True),
        ),
        ({"labels": {"app.kubernetes.io/instance": "x"}}, ("x", False)),
    ],
)
def test_argocd_tracking_markers(meta: dict[str, Any], expected: tuple[str, bool] | None) -> None:
    found = argocd_tracking({"metadata": meta})
    assert (found.application, found.certain) == expected if found else expected is None


def test_steer_patches_are_minimal_merge_patches() -> None:
    body = {
        "metadata": {"annotations": {RETRY_ANNOTATION: "old"}},
        "spec": {"paused": True},
        "status": {"phase": "RolledBack"},
    }
    plan = steer("retry", body, T0)
    assert plan.patch == {"metadata": {"annotations": {RETRY_ANNOTATION: format_time(T0)}}} and not plan.note
    assert steer("pause", body, T0).patch is None
    resume = steer("resume", body, T0)
    assert (
        resume.patch == {"spec": {"paused": False}}
        and resume.changes[0].render() == "spec.paused: true -> false"
    )


# ---------------------------------------------------------------------------------------- errors


def test_not_found_is_one_line(cluster: Cluster) -> None:
    for argv in (
        ["status", "nope"],
        ["plan", "nope"],
        ["history", "nope"],
        ["retry", "nope"],
        ["pause", "nope"],
    ):
        result = cluster.ctl(*argv)
        assert result.code == 1 and result.out == ""
        assert result.err == 'jeffreyctl: jeffreyintegration "nope" in namespace "jeffrey" not found\n'


def test_forbidden_is_one_line(cluster: Cluster) -> None:
    cluster.create("secret", OTHER)
    message = (
        'jeffreyintegrations.jeffreyos.io "secret" is forbidden: User "alice" cannot get resource '
        '"jeffreyintegrations" in API group "jeffreyos.io" in the namespace "other"'
    )
    (
        cluster.emu.kmock["get", re.compile(r".*/jeffreyintegrations/secret$")]
        << 403
        << {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "Forbidden",
            "code": 403,
            "message": message,
            "details": {"name": "secret", "group": "jeffreyos.io", "kind": "jeffreyintegrations"},
        }
    )
    result = cluster.ctl("status", "secret", "-n", OTHER)
    assert result.code == 1
    assert (
        result.err == f"jeffreyctl: no permission: {message} (while reading/writing jeffreyintegration "
        f'"secret" in namespace "other")\n'
    )
    no_traceback(result)


def _kubeconfig(path: pathlib.Path, server: str, *, contexts: dict[str, str] | None = None) -> pathlib.Path:
    names = contexts or {"main": "default"}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": n, "context": {"cluster": "c", "user": "u", "namespace": ns}} for n, ns in names.items()
        ],
        "current-context": next(iter(names)),
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_no_cluster_is_one_line(tmp_path: pathlib.Path) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = _kubeconfig(tmp_path / "closed", f"http://127.0.0.1:{port}")
    out, err = io.StringIO(), io.StringIO()
    assert main(["--kubeconfig", str(closed), "status"], stdout=out, stderr=err) == 1
    assert err.getvalue() == (
        f"jeffreyctl: no cluster: cannot reach the Kubernetes API at http://127.0.0.1:{port} "
        "(context main): connection refused\n"
    )

    err = io.StringIO()
    assert main(["--kubeconfig", str(tmp_path / "missing"), "status", "x"], stdout=out, stderr=err) == 1
    assert err.getvalue().startswith(f"jeffreyctl: no cluster: no kubeconfig at {tmp_path / 'missing'}")

    err = io.StringIO()
    assert main(["--kubeconfig", str(closed), "--context", "nope", "status"], stdout=out, stderr=err) == 1
    assert err.getvalue() == f"jeffreyctl: no context 'nope' in {closed} (contexts: main)\n"

    garbage = tmp_path / "garbage"
    garbage.write_text("{{{ not yaml")
    err = io.StringIO()
    assert main(["--kubeconfig", str(garbage), "status"], stdout=out, stderr=err) == 1
    assert err.getvalue().startswith(f"jeffreyctl: no cluster: cannot use the kubeconfig {garbage}")
    assert len(err.getvalue().splitlines()) == 1


def test_errors_from_the_real_console_script_have_no_traceback(tmp_path: pathlib.Path) -> None:
    closed = _kubeconfig(tmp_path / "closed", "http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-m", "jeffrey_operator.ctl.main", "--kubeconfig", str(closed), "plan", "jeffrey"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(
        "jeffreyctl: no cluster: cannot reach the Kubernetes API at http://127.0.0.1:9"
    )
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_a_missing_crd_is_explained(tmp_path: pathlib.Path) -> None:
    with BackgroundEmulator() as bare:
        kubeconfig = bare.write_kubeconfig(tmp_path / "kubeconfig")
        out, err = io.StringIO(), io.StringIO()
        assert main(["--kubeconfig", str(kubeconfig), "status"], stdout=out, stderr=err) == 1
    assert "is the CRD installed?" in err.getvalue() and len(err.getvalue().splitlines()) == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan"]) == 2
    assert "the following arguments are required: NAME" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["status", "x", "-A"]) == 1  # exclusive: one line
    assert "exclude each other" in capsys.readouterr().err


# ------------------------------------------------------------------- kubeconfig, namespace, plugin


def test_namespace_comes_from_the_context_like_kubectl(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    cluster.create("ctx-home", OTHER)
    kubeconfig = _kubeconfig(tmp_path / "two", cluster.emu.url, contexts={"a": WATCHED, "b": OTHER})
    out, err = io.StringIO(), io.StringIO()
    assert (
        main(
            ["--kubeconfig", str(kubeconfig), "--context", "b", "status", "ctx-home"], stdout=out, stderr=err
        )
        == 0
    )
    assert out.getvalue().startswith("ctx-home  (namespace other)")
    out = io.StringIO()
    assert (
        main(["status", "ctx-home", "--kubeconfig", str(kubeconfig), "-n", OTHER], stdout=out, stderr=err)
        == 0
    )
    err = io.StringIO()
    assert (
        main(["--kubeconfig", str(kubeconfig), "status", "ctx-home"], stdout=io.StringIO(), stderr=err) == 1
    )
    assert 'in namespace "jeffrey" not found' in err.getvalue()


def test_kubeconfig_env_is_used(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    out = io.StringIO()
    assert main(["status", "-A"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().startswith("NAMESPACE")


def test_kubectl_plugin_entry_point() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-jeffrey"] == scripts["jeffreyctl"] == "jeffrey_operator.ctl.main:main"
    assert ctl_main_module._prog("/usr/local/bin/kubectl-jeffrey") == "kubectl jeffrey"
    assert ctl_main_module._prog("jeffreyctl") == "jeffreyctl"
    assert build_parser("kubectl jeffrey").format_usage().startswith("usage: kubectl jeffrey")


# ------------------------------------------------------------------------------------------ watch


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_refreshes_in_place_on_a_terminal_and_stops_on_ctrl_c(cluster: Cluster) -> None:
    cluster.create("watched")
    cluster.wait("watched", lambda st: st.phase == Phase.STABLE)
    args = build_parser().parse_args(
        ["--kubeconfig", str(cluster.kubeconfig), "status", "watched", "-w", "--interval", "1"]
    )
    args.prog, args.prog_line = "jeffreyctl", "jeffreyctl status watched -w"
    slept: list[float] = []
    tty = _Tty()
    assert cmd_status(ctl_main_module.Session(args, tty, io.StringIO()), sleep=slept.append, rounds=3) == 0
    frames = tty.getvalue().split("\x1b[H\x1b[2J")[1:]
    assert len(frames) == 3 and slept == [1.0, 1.0]
    assert frames[0].startswith("Every 1s: jeffreyctl status watched -w")
    assert "PHASE     Stable" in frames[-1]

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    plain = io.StringIO()
    assert cmd_status(ctl_main_module.Session(args, plain, io.StringIO()), sleep=interrupt) == 0
    assert plain.getvalue().startswith("--- ") and "\x1b[" not in plain.getvalue()


# ------------------------------------------------------------------------------ history from Redis


def test_history_from_redis_newest_first(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    import asyncio

    from jeffrey_operator.adapters.redis import RedisStateStore
    from redis_fixtures import RedisServer, _require_binary

    server = RedisServer(_require_binary(), tmp_path / "redis")
    server.start()
    try:
        _, status, _ = phase_status(Phase.ROLLED_BACK)
        assert status.transition_seq >= 6

        async def publish() -> None:
            store = RedisStateStore.from_settings(server.url)
            await store.publish(OTHER, "remembered", status, generation=1, bus_max_rate=1000)

        asyncio.run(publish())
        result = cluster.ctl("history", "remembered", "-n", OTHER, "--redis-url", server.url)
        assert result.code == 0, result.err
        lines = result.out.splitlines()
        assert (
            lines[0]
            == f"# {status.transition_seq} transitions, newest first; source: Redis history at {server.url}"
        )
        assert [int(line.split()[0]) for line in lines[2:]] == list(range(status.transition_seq, 0, -1))
        assert "GateBreach" in result.out
        doc = json.loads(
            cluster.ctl("history", "remembered", "-n", OTHER, "--redis-url", server.url, "-o", "json").out
        )
        assert doc["transitions"][0]["phase"] == "RolledBack" and doc["source"].startswith("Redis history")
    finally:
        server.stop()

    cluster.create(
        "fallback",
        OTHER,
        status={
            "phase": "Stable",
            "transitionSeq": 1,
            "transitions": [
                {
                    "seq": 1,
                    "time": format_time(T0),
                    "phase": "Stable",
                    "reason": "TargetReached",
                    "toLevel": "CORE",
                }
            ],
        },
    )
    down = cluster.ctl("history", "fallback", "-n", OTHER, "--redis-url", server.url)
    assert down.code == 0
    assert down.err.startswith("warning: the Redis history is unavailable")
    assert "source: status.transitions" in down.out and "TargetReached" in down.out


def test_status_hints_when_no_operator_ever_observed_the_object(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object in a namespace no operator watches stays Pending with observedGeneration 0."""
    cluster.create("unwatched", OTHER)
    cluster.create("seen-by-operator")
    cluster.wait("seen-by-operator", lambda st: st.observed_generation > 0)
    assert "HINT" not in cluster.ctl("status", "unwatched", "-n", OTHER).out  # just created: wait
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    monkeypatch.setattr(ctl_main_module, "_now", lambda: later)

    text = cluster.ctl("status", "unwatched", "-n", OTHER).out
    (hint,) = [line for line in text.splitlines() if line.startswith("HINT")]
    assert "never observed by an operator" in hint and "observedGeneration is 0" in hint
    assert f"watch namespace {OTHER}?" in hint and f"--namespace {OTHER}" in hint
    assert json.loads(cluster.ctl("status", "unwatched", "-n", OTHER, "-o", "json").out)["hint"] == hint[10:]
    table = cluster.ctl("status", "-n", OTHER).out
    assert any(line.startswith("unwatched: never observed") for line in table.splitlines())
    assert "HINT" not in cluster.ctl("status", "seen-by-operator").out
    assert json.loads(cluster.ctl("status", "seen-by-operator", "-o", "json").out)["hint"] == ""
