"""Semantic validation the CRD schema cannot express.

Each problem names the field and the fix. The CRD rejects what it can (unknown levels, negative
replicas, malformed durations) before the operator sees it; these checks run on every reconcile
because Deployments come and go without the JeffreyIntegration changing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.durations import parse_duration
from jeffrey_operator.core.models import JeffreyIntegrationSpec, Level
from jeffrey_operator.core.ports import DeploymentObservation

#: An integration's claim on a Deployment: (creationTimestamp, name, uid).
Claim = tuple[str, str, str]


def claim_of(meta: Mapping[str, Any]) -> Claim:
    return (str(meta.get("creationTimestamp", "")), str(meta.get("name", "")), str(meta.get("uid", "")))


def prior_claims(mine: Claim, claims: Iterable[Claim], namespace: str) -> tuple[str, ...]:
    """The other integrations (``ns/name``) whose claim on a Deployment wins over ``mine``: the
    older one, by creationTimestamp and then by name, keeps it; the newer one is Invalid."""
    created, name, uid = mine
    return tuple(
        sorted(
            f"{namespace}/{other}"
            for other_created, other, other_uid in claims
            if not (uid and other_uid == uid) and other != name and (other_created, other) < (created, name)
        )
    )


@dataclass(frozen=True)
class Problem:
    """One reason the spec cannot be acted on."""

    field: str
    reason: str
    message: str
    fix: str

    def render(self) -> str:
        return f"{self.field}: {self.message}; fix: {self.fix}"


def parse_spec(raw: Mapping[str, Any]) -> JeffreyIntegrationSpec | list[Problem]:
    """Parse a spec dict; return problems instead of raising (objects from a cluster whose CRD
    schema is older or was bypassed must not crash the operator)."""
    try:
        return JeffreyIntegrationSpec.model_validate(dict(raw))
    except ValidationError as exc:
        return list(problems_from_validation_error(exc))


#: Longest echo of an offending value in a message (the whole message must stay readable).
_ECHO_MAX = 80


def echo(value: Any) -> str:
    """The offending value as the user wrote it, quoted and bounded.

    >>> echo("ULTRA"), echo(-1), echo("x" * 100)[-5:]
    ("'ULTRA'", '-1', 'xx...')
    """
    text = repr(value)
    return text if len(text) <= _ECHO_MAX else text[: _ECHO_MAX - 3] + "..."


def problems_from_validation_error(exc: ValidationError) -> Iterable[Problem]:
    """One problem per pydantic error; each message echoes the offending value (``got 'ULTRA'``)
    unless the value is missing altogether."""
    for err in exc.errors():
        path = "spec"
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = str(err["msg"])
        if err["type"] != "missing":
            message = f"got {echo(err.get('input'))}: {message}"
        yield Problem(
            field=path,
            reason=c.INVALID_SPEC,
            message=message,
            fix="correct the value (see `kubectl explain jeffreyintegration.spec`)",
        )


def gate_bound_problems(spec: JeffreyIntegrationSpec) -> list[Problem]:
    """Gates that can never breach (no bound) or never pass (``min > max``). The CRD's CEL rules
    refuse both; this catches objects an older CRD let in."""
    problems: list[Problem] = []
    for i, gate in enumerate(spec.gates):
        if gate.min is None and gate.max is None:
            problems.append(
                Problem(
                    field=f"spec.gates[{i}]",
                    reason=c.INVALID_GATE_BOUNDS,
                    message=f"gate {gate.name!r} has neither min nor max, so it can never breach",
                    fix="set min, max or both",
                )
            )
        elif gate.min is not None and gate.max is not None and gate.min > gate.max:
            problems.append(
                Problem(
                    field=f"spec.gates[{i}]",
                    reason=c.INVALID_GATE_BOUNDS,
                    message=f"gate {gate.name!r} has min {gate.min:g} > max {gate.max:g}, "
                    "so it can never pass",
                    fix="swap them or correct one",
                )
            )
    return problems


def validate(
    spec: JeffreyIntegrationSpec,
    deployments: Mapping[str, DeploymentObservation],
) -> list[Problem]:
    """Return the problems that keep the operator from touching any Deployment.

    ``deployments`` maps every Deployment the spec names to what was observed; a missing entry or
    ``exists=False`` means it does not exist; ``claimed_by`` lists other integrations naming it.
    """
    problems: list[Problem] = []
    seen_levels: dict[Level, int] = {}
    seen_deployments: dict[str, str] = {}
    for i, level_spec in enumerate(spec.levels):
        if level_spec.level in seen_levels:
            problems.append(
                Problem(
                    field=f"spec.levels[{i}].level",
                    reason=c.DUPLICATE_LEVEL,
                    message=f"level {level_spec.level.value!r} is listed twice "
                    f"(also at spec.levels[{seen_levels[level_spec.level]}])",
                    fix="merge the two entries into one",
                )
            )
        else:
            seen_levels[level_spec.level] = i
        for j, module in enumerate(level_spec.modules):
            where = f"spec.levels[{i}].modules[{j}].deployment"
            if module.deployment in seen_deployments:
                problems.append(
                    Problem(
                        field=where,
                        reason=c.DUPLICATE_DEPLOYMENT,
                        message=f"Deployment {module.deployment!r} is listed twice "
                        f"(also at {seen_deployments[module.deployment]})",
                        fix="list each Deployment in exactly one level",
                    )
                )
                continue
            seen_deployments[module.deployment] = where
            observed = deployments.get(module.deployment)
            if observed is not None and observed.claimed_by:
                problems.append(
                    Problem(
                        field=where,
                        reason=c.DEPLOYMENT_CLAIMED,
                        message=f"Deployment {module.deployment!r} is already managed by "
                        f"JeffreyIntegration {', '.join(observed.claimed_by)}",
                        fix="remove it from one of the two JeffreyIntegrations",
                    )
                )
            needed = level_spec.level.rank <= spec.target_level.rank
            if needed and not module.optional and (observed is None or not observed.exists):
                problems.append(
                    Problem(
                        field=where,
                        reason=c.DEPLOYMENT_NOT_FOUND,
                        message=f"Deployment {module.deployment!r} does not exist in this namespace",
                        fix="create it (at 0 replicas), fix the name, or mark the module optional",
                    )
                )
    problems.extend(gate_bound_problems(spec))
    if parse_duration(spec.analysis.interval) < 1.0:
        problems.append(
            Problem(
                field="spec.analysis.interval",
                reason=c.INVALID_SPEC,
                message=f"{spec.analysis.interval!r} is shorter than the minimum of 1s",
                fix="set it to 1s or more",
            )
        )
    problems.extend(_check_problems(spec, seen_levels))
    if not any(ls.level.rank <= spec.target_level.rank for ls in spec.levels):
        problems.append(
            Problem(
                field="spec.targetLevel",
                reason=c.NO_LEVEL_AT_TARGET,
                message=f"no level at or below {spec.target_level.value!r} is defined in spec.levels",
                fix="raise targetLevel or define a lower level",
            )
        )
    return problems


def _check_problems(spec: JeffreyIntegrationSpec, levels: Mapping[Level, int]) -> list[Problem]:
    """Checks of levels that are not defined, or sharing a name (Job names and metrics use it)."""
    problems: list[Problem] = []
    names: dict[str, int] = {}
    for i, check in enumerate(spec.checks):
        if check.name in names:
            problems.append(
                Problem(
                    field=f"spec.checks[{i}].name",
                    reason=c.CHECK_INVALID,
                    message=f"check {check.name!r} is listed twice "
                    f"(also at spec.checks[{names[check.name]}])",
                    fix="give every check its own name",
                )
            )
        names.setdefault(check.name, i)
        if check.level not in levels:
            problems.append(
                Problem(
                    field=f"spec.checks[{i}].level",
                    reason=c.CHECK_INVALID,
                    message=f"check {check.name!r} validates level {check.level.value}, "
                    "which spec.levels does not define",
                    fix="define the level or move the check to a defined level",
                )
            )
    return problems
