"""``jeffreyctl plan``: what the operator would do next and why. Pure.

The plan runs the operator's own decision (:func:`jeffrey_operator.core.engine.decide`) on what is
observed now: the object's spec, status, generation and ``jeffreyos.io/retry`` annotation, and
its Deployments as read from the API (through :func:`jeffrey_operator.adapters.kube.observe_deployment`,
the operator's own adapter), turned into an observation by the operator's own
:func:`jeffrey_operator.core.observe.observe`. There is one difference, and the output says so:
``plan`` does not query Prometheus. The gate report is rebuilt from the last gate results the
operator wrote to ``status.gates`` (with the gate port's own
:func:`~jeffrey_operator.core.gates.evaluate.summarize`).

Worked example: status ``Validating LOOPS`` since 5 s, ``validationWindow: 3s``, every gate in
status ``Pass``, every Deployment ready → the next phase is ``CoolingDown`` with ``currentLevel:
LOOPS``, then (cooldown 1 s not yet elapsed) the operator looks again in 1 s; no scaling.
Nothing here writes anything: the caller only reads the API.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jeffrey_operator.adapters.kube import merge_patch, observe_deployment, observe_job
from jeffrey_operator.core.checks import IN_FLIGHT, job_outcome
from jeffrey_operator.core.engine import Decision, decide, decide_invalid, gate_mode
from jeffrey_operator.core.gates.evaluate import summarize
from jeffrey_operator.core.models import (
    ConditionStatus,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
    Level,
    Phase,
    Transition,
)
from jeffrey_operator.core.observe import listed_deployments, observe, parse_status
from jeffrey_operator.core.ports import CheckOutcome, Event, GateMode, GateReport
from jeffrey_operator.core.validation import Claim, claim_of, parse_spec
from jeffrey_operator.ctl.rows import plain
from jeffrey_operator.ctl.view import WaitView, waiting_for

__all__ = ["Plan", "Scaling", "claims_of", "gate_report_from_status", "make_plan", "parse_status"]

METRICS_AVAILABLE = "MetricsAvailable"


@dataclass(frozen=True)
class Scaling:
    """One ``spec.replicas`` change the operator would make."""

    deployment: str
    level: Level
    #: The Deployment's ``spec.replicas`` now.
    current: int
    replicas: int

    def to_dict(self) -> dict[str, Any]:
        """``current`` and ``replicas`` as ``from`` and ``to``."""
        return {**plain(self, omit=("current", "replicas")), "from": self.current, "to": self.replicas}


@dataclass(frozen=True)
class PlanCheck:
    """A level check after the decision; ``starts`` when the operator would start a new run."""

    name: str
    level: str
    when: str
    result: str
    attempt: int
    job: str
    starts: bool

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class Plan:
    name: str
    namespace: str
    now: datetime.datetime
    before: JeffreyIntegrationStatus
    after: JeffreyIntegrationStatus
    scalings: tuple[Scaling, ...]
    events: tuple[Event, ...]
    #: Seconds until the operator looks again by itself; None: only when something changes.
    requeue_after: float | None
    #: The transitions the decision would record (oldest first).
    steps: tuple[Transition, ...]
    gates: GateReport
    #: Where the gate report came from (plan never queries Prometheus).
    gates_note: str
    #: The top-level status fields the operator would write.
    status_changes: tuple[str, ...]
    #: The deadline the integration runs towards after the decision.
    waiting: WaitView | None
    #: One sentence: why this is the next step (or why nothing happens).
    why: str
    #: The level checks after the decision (spec order).
    checks: tuple[PlanCheck, ...] = ()
    #: Where the checks' results came from (plan never sends an HTTP check's request).
    checks_note: str = ""

    @property
    def changes_anything(self) -> bool:
        return bool(self.scalings or self.status_changes)

    def to_dict(self) -> dict[str, Any]:
        """The ``plan -o json|yaml`` shape (documented in ``docs/jeffreyctl.md``)."""

        def state(st: JeffreyIntegrationStatus) -> dict[str, Any]:
            return {
                "phase": st.phase.value,
                "currentLevel": st.current_level.value if st.current_level else None,
                "activeLevel": st.active_level.value if st.active_level else None,
                "reason": st.reason,
                "message": st.message,
            }

        return {
            "name": self.name,
            "namespace": self.namespace,
            "dryRun": True,
            "now": state(self.before),
            "next": state(self.after),
            "why": self.why,
            "steps": [t.wire() for t in self.steps],
            "scalings": [s.to_dict() for s in self.scalings],
            "events": [plain(e) for e in self.events],
            "statusChanges": list(self.status_changes),
            "requeueAfter": None if self.requeue_after is None else round(self.requeue_after, 3),
            "waiting": self.waiting.to_dict() if self.waiting else None,
            "gates": {
                "source": "status",
                "verdict": self.gates.verdict.value,
                "breach": self.gates.breach.name if self.gates.breach else None,
                "note": self.gates_note,
            },
            "checks": [c.to_dict() for c in self.checks],
        }


def claims_of(body: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> dict[str, list[Claim]]:
    """Deployment → the claims of the other integrations of the namespace that list it (input to
    :func:`jeffrey_operator.core.observe.observe`, which applies the operator's claims rule)."""
    me = claim_of(body.get("metadata") or {})
    claims: dict[str, list[Claim]] = {}
    for other in others:
        claim = claim_of(other.get("metadata") or {})
        if claim == me:
            continue
        for deployment in listed_deployments(other):
            claims.setdefault(deployment, []).append(claim)
    return claims


def gate_report_from_status(
    spec: JeffreyIntegrationSpec, status: JeffreyIntegrationStatus
) -> tuple[GateReport, str]:
    """The gate report the operator would hand to ``decide`` if Prometheus said again what it
    said last time, and a note saying so."""
    mode, _level = gate_mode(status)
    if mode is GateMode.NONE or spec.paused:
        return GateReport(), f"no gates apply in phase {status.phase.value}"
    if not (spec.gates or spec.default_gates):
        return GateReport(), "no gates configured (defaultGates off, no spec.gates)"
    metrics = next((c for c in status.conditions if c.type == METRICS_AVAILABLE), None)
    available = metrics is None or metrics.status is not ConditionStatus.FALSE
    report = summarize(status.gates, source_available=available)
    if not status.gates:
        return report, (
            "no gate results in status yet: the operator has not evaluated the gates; "
            "this plan assumes they pass (plan does not query Prometheus)"
        )
    return report, (
        f"from the last gate results in status ({report.verdict.value}); plan does not query Prometheus"
    )


def _why(
    spec: JeffreyIntegrationSpec | None,
    before: JeffreyIntegrationStatus,
    decision: Decision,
    waiting: WaitView | None,
    name: str,
) -> str:
    after = decision.status
    moved = (before.phase, before.current_level, before.active_level) != (
        after.phase,
        after.current_level,
        after.active_level,
    )
    if moved or decision.actions:
        return f"{after.reason}: {after.message}"
    phase = after.phase
    if phase == Phase.ROLLED_BACK:
        auto = ""
        if spec is not None and spec.rollback.auto_retry_after and waiting is not None:
            auto = f", or autoRetryAfter ({waiting.remaining:.0f}s left)"
        return (
            f"holding after the rollback until `jeffreyctl retry {name}`, a spec change{auto}; "
            f"{after.message}"
        )
    if phase == Phase.PAUSED:
        return f"paused (spec.paused): nothing moves until `jeffreyctl resume {name}`"
    if phase == Phase.INVALID:
        return f"invalid: {after.message}"
    if phase == Phase.STABLE:
        return "stable at the target: nothing to do; the gates keep being watched"
    if waiting is not None:
        what = {
            "readiness": "waiting for the modules to become Ready",
            "validation": "validating health",
            "cooldown": "cooling down",
            "autoRetry": "waiting to retry",
            "unready": "waiting for an up level to become Ready again",
        }[waiting.kind]
        tail = waiting.note or f"{waiting.remaining:.1f}s left of {waiting.total:g}s"
        return f"{what} ({tail}): {after.message}"
    return f"no change: {after.message}"


def make_plan(
    body: Mapping[str, Any],
    deployments: Mapping[str, Mapping[str, Any]],
    now: datetime.datetime,
    *,
    claims: Mapping[str, Iterable[Claim]] | None = None,
    jobs: Sequence[Mapping[str, Any]] = (),
) -> Plan:
    """The operator's next step for the JeffreyIntegration ``body``.

    ``deployments`` maps a Deployment name to its body as read from the API (absent: it does not
    exist); ``claims`` comes from :func:`claims_of`; ``jobs`` are the integration's check Jobs
    (label ``jeffreyos.io/integration``), judged like the operator does.
    """
    meta = body.get("metadata") or {}
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace", ""))
    generation = int(meta.get("generation") or 1)
    before = parse_status(body.get("status"))
    parsed = parse_spec(body.get("spec") or {})
    spec: JeffreyIntegrationSpec | None
    deployment_bodies: dict[str, Mapping[str, Any]] = dict(deployments)
    if isinstance(parsed, list):
        spec = None
        decision = decide_invalid(before, parsed, generation, now)
        report, note = GateReport(), "the spec does not parse: no gates are evaluated"
        scalings: tuple[Scaling, ...] = ()
    else:
        spec = parsed
        report, note = gate_report_from_status(spec, before)
        seen = {name: observe_deployment(b) for name, b in deployment_bodies.items()}
        observation = observe(body, spec, seen, claims or {}, report, checks=_job_outcomes(before, jobs))
        observed = observation.deployments
        decision = decide(spec, before, observation, now)
        scalings = tuple(
            Scaling(a.deployment, a.level, observed[a.deployment].spec_replicas, a.replicas)
            for a in decision.actions
        )
    after = decision.status
    steps = tuple(t for t in after.transitions if t.seq > before.transition_seq)
    changed = tuple(sorted(merge_patch(before.wire(), after.wire())))
    waiting = waiting_for(spec, after, now)
    return Plan(
        name=name,
        namespace=namespace,
        now=now,
        before=before,
        after=after,
        scalings=scalings,
        events=decision.events,
        requeue_after=decision.requeue_after,
        steps=steps,
        gates=report,
        gates_note=note,
        status_changes=changed,
        waiting=waiting,
        why=_why(spec, before, decision, waiting, name),
        checks=_plan_checks(before, after),
        checks_note="Job checks judged from their Jobs; HTTP checks from status (plan sends no request)",
    )


def _job_outcomes(
    status: JeffreyIntegrationStatus, jobs: Sequence[Mapping[str, Any]]
) -> dict[str, CheckOutcome]:
    seen = [observe_job(j) for j in jobs]
    out: dict[str, CheckOutcome] = {}
    for st in status.checks:
        found = next((j for j in seen if j.check == st.name and j.attempt == st.attempt), None)
        if found is not None and st.result in IN_FLIGHT:
            out[st.name] = job_outcome(found)
    return out


def _plan_checks(before: JeffreyIntegrationStatus, after: JeffreyIntegrationStatus) -> tuple[PlanCheck, ...]:
    old = {c.name: c.attempt for c in before.checks}
    return tuple(
        PlanCheck(
            name=c.name,
            level=c.level.value,
            when=c.when.value,
            result=c.result.value,
            attempt=c.attempt,
            job=c.job,
            starts=c.attempt > old.get(c.name, 0),
        )
        for c in after.checks
    )
