"""``PrometheusGates``: the :class:`~jeffrey_operator.core.ports.GatePort` backed by Prometheus.

One instance serves every integration of the operator (it shares one :class:`PrometheusClient`,
hence one cache and one breaker per Prometheus URL). For each :class:`GateContext` it

1. lists the gates (:func:`.defaults.gates_for`) and keeps those that apply now,
2. resolves ``{{namespace}}``, ``{{name}}``, ``{{level}}`` and ``{{levelStart}}`` in their queries,
3. asks Prometheus for all of them concurrently (identical queries of the same tick are asked once),
4. hands the numbers to the pure :func:`.evaluate.evaluate`.

Monitoring trouble (unreachable, timeout, 5xx, open circuit, unreadable Secret) makes the gates
Inconclusive with ``source_available=False``: promotion holds and nothing rolls back; the next
evaluation asks again by itself.

To make the per-tick cache effective, evaluate on the tick grid: sleep
:func:`next_tick_delay` between evaluations, so that every integration with the same interval
asks at the same moment and identical queries are coalesced into one request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import re
from collections.abc import Mapping
from typing import Protocol

from jeffrey_operator.adapters.prometheus.client import (
    BadQuery,
    Endpoint,
    NoData,
    PrometheusClient,
    PrometheusUnavailable,
    Tick,
)
from jeffrey_operator.core.durations import parse_duration
from jeffrey_operator.core.gates.defaults import gates_for
from jeffrey_operator.core.gates.evaluate import OutcomeKind, QueryOutcome, evaluate, is_active
from jeffrey_operator.core.models import GateResult, GateSpec, SecretKeyRef
from jeffrey_operator.core.ports import GateContext, GateMode, GateReport

__all__ = [
    "PrometheusGates",
    "SecretReader",
    "SecretUnavailable",
    "UnknownVariable",
    "endpoint_for",
    "next_tick_delay",
    "render_query",
    "template_variables",
]


class SecretUnavailable(Exception):
    """Raised by a :class:`SecretReader` when the Secret or its key cannot be read."""


class SecretReader(Protocol):
    """Reads one key of a Secret and returns its decoded value (e.g. ``Kube.read_secret_key``).

    Called on every evaluation that needs credentials, so implementations may cache. Whatever it
    raises makes the gates Inconclusive with the error in the message (never a breach).
    """

    async def __call__(self, namespace: str, name: str, key: str) -> str: ...


class UnknownVariable(KeyError):
    """A ``{{variable}}`` in a query that has no value."""


log = logging.getLogger(__name__)

_KNOWN = ("namespace", "name", "level", "levelStart")
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def template_variables(ctx: GateContext) -> dict[str, str]:
    """The values a query may use: namespace, name, level (active level) and levelStart (Unix s)."""
    out = {"namespace": ctx.namespace, "name": ctx.name}
    if ctx.active_level is not None:
        out["level"] = ctx.active_level.value
    if ctx.level_started_at is not None:
        out["levelStart"] = f"{ctx.level_started_at.timestamp():.3f}"
    return out


def render_query(template: str, variables: Mapping[str, str]) -> str:
    """Replace ``{{var}}`` placeholders; raise :class:`UnknownVariable` for one without a value.

    >>> render_query('up{namespace="{{namespace}}"}', {"namespace": "demo"})
    'up{namespace="demo"}'
    """

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in variables:
            raise UnknownVariable(key)
        return variables[key]

    return _VARIABLE.sub(substitute, template)


def next_tick_delay(now: datetime.datetime, interval: float) -> float:
    """Seconds until the next multiple of ``interval`` (wall clock): evaluate on the tick grid.

    >>> next_tick_delay(datetime.datetime(2024, 1, 1, 0, 0, 4, 250000, tzinfo=datetime.UTC), 1.0)
    0.75
    """
    interval = max(interval, 0.001)
    stamp = now.timestamp()
    delay = (math.floor(stamp / interval) + 1) * interval - stamp
    return round(delay, 6)


async def _read(secrets: SecretReader | None, namespace: str, ref: SecretKeyRef) -> str:
    if secrets is None:
        raise SecretUnavailable("credentials are configured but the operator has no Secret reader")
    try:
        return (await secrets(namespace, ref.name, ref.key)).strip()
    except SecretUnavailable:
        raise
    except Exception as err:  # the reader is pluggable: any failure means "cannot ask"
        raise SecretUnavailable(f"Secret {namespace}/{ref.name} key {ref.key!r}: {err}") from err


async def endpoint_for(ctx: GateContext, secrets: SecretReader | None) -> Endpoint:
    """The Prometheus endpoint of an integration, credentials read through ``secrets``."""
    spec = ctx.spec.analysis.prometheus
    bearer: str | None = None
    basic: tuple[str, str] | None = None
    if spec.bearer_token_secret_ref is not None:
        bearer = await _read(secrets, ctx.namespace, spec.bearer_token_secret_ref)
    if spec.basic_auth is not None:
        user = await _read(secrets, ctx.namespace, spec.basic_auth.username_secret_ref)
        password = await _read(secrets, ctx.namespace, spec.basic_auth.password_secret_ref)
        basic = (user, password)
    return Endpoint(
        url=spec.url,
        timeout=parse_duration(spec.timeout),
        headers=tuple(sorted(spec.headers.items())),
        bearer_token=bearer,
        basic_auth=basic,
    )


class PrometheusGates:
    """The gate port: ``await PrometheusGates(secret_reader=kube.read_secret_key).evaluate(ctx)``.

    ``client`` defaults to a :class:`PrometheusClient` with default retry and breaker policies;
    pass one to share it or to tune them. :meth:`close` closes it.
    """

    def __init__(
        self, client: PrometheusClient | None = None, *, secret_reader: SecretReader | None = None
    ) -> None:
        self.client = client or PrometheusClient()
        self.secrets = secret_reader

    async def close(self) -> None:
        await self.client.close()

    async def evaluate(self, ctx: GateContext) -> GateReport:
        gates = gates_for(ctx.spec)
        variables = template_variables(ctx)
        queries: dict[str, str] = {}
        inactive: dict[str, str] = {}
        outcomes: dict[str, QueryOutcome] = {}
        to_ask: list[GateSpec] = []
        for gate in gates:
            try:
                queries[gate.name] = render_query(gate.query, variables)
            except UnknownVariable as err:
                key = err.args[0]
                queries[gate.name] = gate.query
                if key == "levelStart":
                    inactive[gate.name] = "the level start time is not known yet ({{levelStart}})"
                elif key == "level":
                    inactive[gate.name] = "no level is up ({{level}})"
                else:
                    known = ", ".join("{{" + k + "}}" for k in _KNOWN)
                    message = f"unknown variable {{{{{key}}}}} (known: {known})"
                    outcomes[gate.name] = QueryOutcome.invalid(message)
                continue
            if ctx.mode is not GateMode.NONE and is_active(gate, ctx.mode, ctx.active_level):
                to_ask.append(gate)

        source_message = ""
        if to_ask:
            try:
                endpoint = await endpoint_for(ctx, self.secrets)
            except SecretUnavailable as err:
                source_message = f"cannot read Prometheus credentials: {err}"
                for gate in to_ask:
                    outcomes[gate.name] = QueryOutcome.unavailable(source_message)
            else:
                tick = Tick.at(ctx.now, parse_duration(ctx.spec.analysis.interval))
                answers = await asyncio.gather(*(self._ask(endpoint, queries[g.name], tick) for g in to_ask))
                for gate, outcome in zip(to_ask, answers, strict=True):
                    outcomes[gate.name] = outcome
                    if not source_message and outcome.kind is OutcomeKind.UNAVAILABLE:
                        source_message = f"Prometheus at {endpoint.url} unavailable: {outcome.message}"

        report = evaluate(
            gates,
            queries,
            outcomes,
            ctx.previous,
            ctx.now,
            mode=ctx.mode,
            active_level=ctx.active_level,
            inactive=inactive,
        )
        if not report.source_available and source_message:
            # The root cause once, then which gates it holds (each gate's detail is in its status).
            held = sorted(s.name for s in report.gates if s.result is GateResult.INCONCLUSIVE)
            report = dataclasses.replace(
                report,
                message=f"{source_message}; promotion holds, no rollback "
                f"(inconclusive: {', '.join(held) or 'every gate'})",
            )
        return report

    async def _ask(self, endpoint: Endpoint, query: str, tick: Tick) -> QueryOutcome:
        try:
            series = await self.client.query(endpoint, query, tick=tick)
        except NoData:
            return QueryOutcome.no_data()
        except BadQuery as err:
            return QueryOutcome.invalid(str(err))
        except PrometheusUnavailable as err:
            return QueryOutcome.unavailable(str(err))  # each error names its cause and the URL
        except Exception as err:  # a bug or an odd answer must hold the ladder, not crash the loop
            log.exception("unexpected error asking %s for %r", endpoint.url, query)
            return QueryOutcome.unavailable(f"unexpected {type(err).__name__}: {err}")
        return QueryOutcome.values(series)
