"""A tiny in-memory world for driving the pure engine: Deployments that become ready on demand,
a fake clock, and a loop that applies the engine's actions like the operator would."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace

from jeffrey_operator.core.engine import Decision, decide
from jeffrey_operator.core.models import JeffreyIntegrationSpec, JeffreyIntegrationStatus
from jeffrey_operator.core.ports import CheckOutcome, DeploymentObservation, GateReport, Observation

T0 = datetime.datetime(2026, 11, 21, 9, 0, 0, tzinfo=datetime.UTC)


@dataclass
class World:
    spec: JeffreyIntegrationSpec
    deployments: dict[str, DeploymentObservation] = field(default_factory=dict)
    status: JeffreyIntegrationStatus = field(default_factory=JeffreyIntegrationStatus)
    now: datetime.datetime = T0
    generation: int = 1
    retry_token: str = ""
    gates: GateReport = field(default_factory=GateReport)
    #: Deployments that never become ready when scaled up.
    stuck: set[str] = field(default_factory=set)
    #: Apply scalings and make Deployments ready at once (the Deployment controller).
    instant: bool = True
    decisions: list[Decision] = field(default_factory=list)
    namespace: str = ""
    scale_log: list[tuple[str, int]] = field(default_factory=list)
    #: What the runs of checks in flight gave (check name -> outcome).
    checks: dict[str, CheckOutcome] = field(default_factory=dict)
    name: str = "jeffrey"

    @classmethod
    def of(cls, spec: dict, **kw: object) -> World:  # type: ignore[type-arg]
        parsed = JeffreyIntegrationSpec.model_validate(spec)
        deps = {
            m.deployment: DeploymentObservation(name=m.deployment) for ls in parsed.levels for m in ls.modules
        }
        return cls(spec=parsed, deployments=deps, **kw)  # type: ignore[arg-type]

    def observation(self) -> Observation:
        return Observation(
            generation=self.generation,
            deployments=dict(self.deployments),
            gates=self.gates,
            retry_token=self.retry_token,
            namespace=self.namespace,
            checks=dict(self.checks),
            name=self.name,
        )

    def step(self) -> Decision:
        d = decide(self.spec, self.status, self.observation(), self.now)
        self.decisions.append(d)
        self.status = d.status
        for a in d.actions:
            self.scale_log.append((a.deployment, a.replicas))
            self.scale(a.deployment, a.replicas)
        return d

    def scale(self, name: str, replicas: int) -> None:
        dep = self.deployments[name]
        gen = dep.generation + 1
        ready = replicas if (self.instant and name not in self.stuck) else 0
        if replicas == 0:
            ready = 0
        self.deployments[name] = replace(
            dep,
            spec_replicas=replicas,
            generation=gen,
            observed_generation=gen,
            ready_replicas=ready,
            updated_replicas=ready,
            available_replicas=ready,
        )

    def make_ready(self, name: str) -> None:
        dep = self.deployments[name]
        self.deployments[name] = replace(
            dep, ready_replicas=dep.spec_replicas, updated_replicas=dep.spec_replicas
        )

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)

    def run(self, max_steps: int = 200, tick: float = 1.0) -> None:
        """Step until nothing changes and no deadline is pending (or max_steps)."""
        for _ in range(max_steps):
            before = self.status
            d = self.step()
            if d.actions:
                continue
            if d.requeue_after is not None:
                self.advance(max(d.requeue_after, 0.001) if d.requeue_after > 0 else 0.0)
                continue
            if d.status == before:
                return
