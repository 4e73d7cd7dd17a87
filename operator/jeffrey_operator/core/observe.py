"""One pure ``observe()``: what the operator (and ``jeffreyctl plan``) knows of one integration.

Both the operator loop (:mod:`jeffrey_operator.runtime.reconciler`) and ``jeffreyctl plan``
(:mod:`jeffrey_operator.ctl.plan`) build their :class:`~jeffrey_operator.core.ports.Observation`
here, from the object (metadata, spec, status), the Deployments it lists as they were seen, the
claims of the other integrations, and the gate report. There is one status parser
(:func:`parse_status`) and one reading of which Deployments an object lists
(:func:`listed_deployments`).

Worked example: ``jeffrey`` (created 10:00) and ``other`` (created 09:00) both list ``memory``;
``memory`` was seen with 1 replica ready. ``observe`` for ``jeffrey`` gives
``deployments["memory"] = DeploymentObservation("memory", ready_replicas=1, ...,
claimed_by=("ns/other",))``: the older claim wins, and the engine marks ``jeffrey`` Invalid.
A listed Deployment that was not seen is ``exists=False``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from jeffrey_operator.core.models import RETRY_ANNOTATION, JeffreyIntegrationSpec, JeffreyIntegrationStatus
from jeffrey_operator.core.ports import MISSING, CheckOutcome, DeploymentObservation, GateReport, Observation
from jeffrey_operator.core.validation import Claim, claim_of, prior_claims

__all__ = ["listed_deployments", "observe", "parse_status"]


def parse_status(raw: Any, on_error: Callable[[str], None] | None = None) -> JeffreyIntegrationStatus:
    """The status as the operator reads it: missing → empty; unreadable → empty (the operator
    starts afresh), reported through ``on_error`` with the reason.

    >>> parse_status(None).phase.value
    'Pending'
    >>> parse_status({"phase": "Nonsense"}, on_error=lambda e: None).phase.value
    'Pending'
    """
    if not raw:
        return JeffreyIntegrationStatus()
    try:
        return JeffreyIntegrationStatus.model_validate(dict(raw))
    except ValidationError as exc:
        if on_error is not None:
            on_error("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]))
        return JeffreyIntegrationStatus()
    except (TypeError, ValueError) as exc:
        if on_error is not None:
            on_error(f"{type(exc).__name__}: {exc}")
        return JeffreyIntegrationStatus()


def listed_deployments(body: Mapping[str, Any]) -> set[str]:
    """The Deployment names an object's raw spec lists (also when the spec does not parse).

    >>> sorted(listed_deployments({"spec": {"levels": [{"modules": [{"deployment": "a"}, {}]}]}}))
    ['a']
    """
    out: set[str] = set()
    spec = body.get("spec")
    levels = spec.get("levels") if isinstance(spec, Mapping) else None
    for level in levels if isinstance(levels, list) else []:
        modules = level.get("modules") if isinstance(level, Mapping) else None
        for module in modules if isinstance(modules, list) else []:
            deployment = module.get("deployment") if isinstance(module, Mapping) else None
            if isinstance(deployment, str):
                out.add(deployment)
    return out


def observe(
    body: Mapping[str, Any],
    spec: JeffreyIntegrationSpec,
    deployments: Mapping[str, DeploymentObservation],
    claims: Mapping[str, Iterable[Claim]],
    gates: GateReport | None = None,
    *,
    checks: Mapping[str, CheckOutcome] | None = None,
) -> Observation:
    """The observation of one reconcile. Pure.

    ``deployments`` maps a Deployment name to what was seen of it (absent: it does not exist);
    ``claims`` maps a Deployment name to the claims of every integration of the namespace that
    lists it (this one's included or not: it is ignored); ``checks`` what the level checks'
    runs in flight gave.
    """
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace", ""))
    mine = claim_of(meta)
    seen: dict[str, DeploymentObservation] = {}
    for ls in spec.levels:
        for m in ls.modules:
            found = deployments.get(m.deployment)
            base = found if found is not None else dataclasses.replace(MISSING, name=m.deployment)
            claimed_by = prior_claims(mine, claims.get(m.deployment, ()), namespace)
            seen[m.deployment] = dataclasses.replace(base, claimed_by=claimed_by)
    annotations = meta.get("annotations") or {}
    return Observation(
        generation=int(meta.get("generation") or 1),
        deployments=seen,
        gates=gates or GateReport(),
        retry_token=str(annotations.get(RETRY_ANNOTATION, "") or ""),
        name=str(meta.get("name", "")),
        namespace=namespace,
        checks=dict(checks or {}),
    )
