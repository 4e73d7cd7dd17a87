"""The real operator (kopf + our handlers) against the emulated Kubernetes API, over real HTTP.

``cluster`` gives a :class:`Cluster`: an emulator in a background thread with the generated CRD,
and the operator in another thread, logged in to it. Tests create Deployments and
JeffreyIntegrations through the emulator (as ``kubectl`` would through the API), and read back
what the operator did.
"""

from __future__ import annotations

import copy
import pathlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import yaml

from jeffrey_emulator import (
    BackgroundEmulator,
    DeploymentBehaviour,
    Emulator,
    deployment_manifest,
    load_crds,
)
from jeffrey_operator.adapters.kube import Kube
from jeffrey_operator.core.ports import GatePort, NoGates, NoStateStore, StateStorePort
from jeffrey_operator.runtime.app import BackgroundOperator, build_context
from jeffrey_operator.runtime.reconciler import OperatorContext
from jeffrey_operator.runtime.settings import OperatorSettings

ROOT = pathlib.Path(__file__).resolve().parent.parent
JI = "ji"
T = TypeVar("T")

FAST = {"readinessTimeout": "5s", "validationWindow": "0s", "cooldown": "0s"}


def example(name: str = "jeffrey-full-ladder.yaml") -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "examples" / name).read_text()))


def wait_for(predicate: Callable[[], T], within: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")


@dataclass
class Cluster:
    emu: Emulator
    operator: BackgroundOperator | None = None
    ctx: OperatorContext | None = None
    gates: GatePort = field(default_factory=NoGates)
    store: StateStorePort = field(default_factory=NoStateStore)

    # ----------------------------------------------------------------------------- operator
    def start_operator(self) -> OperatorContext:
        settings = OperatorSettings(health_port=0, metrics_port=0)
        ctx = build_context(settings, kube=Kube(self.emu.api_client()), gates=self.gates, store=self.store)
        emu = self.emu

        def login(**_: Any) -> Any:
            return emu.connection_info()

        self.operator = BackgroundOperator(settings, ctx, login=login)
        self.operator.start()
        self.ctx = ctx
        return ctx

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    # ------------------------------------------------------------------------------ objects
    def deployments_for(self, ji: dict[str, Any], namespace: str, **behaviour: Any) -> None:
        self.emu.ensure_namespace(namespace)
        for level in ji["spec"]["levels"]:
            for module in level["modules"]:
                self.emu.create(deployment_manifest(module["deployment"], namespace, replicas=0))
                if behaviour:
                    self.emu.deployments.set_behaviour(namespace, module["deployment"], **behaviour)

    def apply_example(
        self,
        name: str = "jeffrey-full-ladder.yaml",
        *,
        namespace: str = "jeffrey",
        promotion: dict[str, str] | None = None,
        create_deployments: bool = True,
        **spec: Any,
    ) -> dict[str, Any]:
        ji = example(name)
        ji["metadata"]["namespace"] = namespace
        ji["spec"]["promotion"] = dict(promotion or FAST)
        ji["spec"]["defaultGates"] = False
        ji["spec"].update(spec)
        self.emu.ensure_namespace(namespace)
        if create_deployments:
            self.deployments_for(ji, namespace)
        self.emu.create(copy.deepcopy(ji))
        return ji

    def ji(self, name: str = "jeffrey", namespace: str = "jeffrey") -> dict[str, Any]:
        return dict(self.emu.get(JI, namespace, name))

    def status(self, name: str = "jeffrey", namespace: str = "jeffrey") -> dict[str, Any]:
        return dict(self.ji(name, namespace).get("status") or {})

    def replicas(self, namespace: str = "jeffrey") -> dict[str, int]:
        return {
            d["metadata"]["name"]: int(d["spec"].get("replicas", 0))
            for d in self.emu.list("deployments", namespace)
        }

    def patch_spec(self, patch: dict[str, Any], name: str = "jeffrey", namespace: str = "jeffrey") -> None:
        self.emu.patch(JI, namespace, name, {"spec": patch})

    def annotate(self, key: str, value: str, name: str = "jeffrey", namespace: str = "jeffrey") -> None:
        self.emu.patch(JI, namespace, name, {"metadata": {"annotations": {key: value}}})

    def wait_phase(self, phase: str, within: float = 10.0, **kw: str) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.status(**kw)).get("phase") == phase and s, within, f"phase {phase}"
        )

    def events(self, namespace: str = "jeffrey") -> list[dict[str, Any]]:
        return [dict(e) for e in self.emu.list("events", namespace)]

    def writes(self) -> dict[tuple[str, str], int]:
        assert self.ctx is not None
        return dict(self.ctx.kube.writes)


@pytest.fixture(name="cluster")
def cluster_fixture() -> Iterator[Cluster]:
    bg = BackgroundEmulator(
        crds=load_crds(ROOT / "crds"),
        default_behaviour=DeploymentBehaviour(delay=0.05),
        namespaces=("default", "jeffrey"),  # namespaces are real objects: tests create theirs
    )
    emu = bg.start()
    cluster = Cluster(emu=emu)
    try:
        yield cluster
    finally:
        cluster.stop_operator()
        bg.stop()
    emu.assert_no_server_errors()
    # A field the CRD does not declare is dropped by a real API server (fieldValidation=Warn, the
    # default for the operator's and kopf's writes): what the operator writes must be in the CRD.
    warned = [f"{r.method} {r.path}: {r.warnings}" for r in emu.requests.warned()]
    assert not warned, "writes with fields the API server drops:\n" + "\n".join(warned)
