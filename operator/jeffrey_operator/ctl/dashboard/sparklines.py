"""Recent values of each gate, for the sparklines: Prometheus ``query_range`` per integration.

For one integration, :meth:`Sparklines.of` asks its Prometheus (``--prometheus-url``, else
``spec.analysis.prometheus.url``, with the spec's headers and the credentials of its Secrets read
with the user's RBAC) for the last :data:`SPARK_WINDOW` seconds of each gate's query: the
resolved query in ``status.gates``, or, for a gate not in status now (no gate is evaluated after
a rollback), the spec's query when it needs no more than ``{{namespace}}`` and ``{{name}}``.
Several series fold into the worst (:func:`.model.worst_points`). Answers are kept for
:data:`SPARK_CACHE_SECONDS`, so tabs share them. The answer says in a sentence why there is
nothing to draw, and never carries a credential.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp

from jeffrey_operator.adapters.prometheus.client import Endpoint, PrometheusError, PrometheusUnavailable
from jeffrey_operator.adapters.prometheus.gates import UnknownVariable, render_query
from jeffrey_operator.adapters.prometheus.range import query_range
from jeffrey_operator.adapters.redis.connection import redact_url
from jeffrey_operator.core.durations import parse_duration
from jeffrey_operator.core.gates.defaults import gates_for
from jeffrey_operator.core.models import JeffreyIntegrationSpec, SecretKeyRef
from jeffrey_operator.core.validation import parse_spec
from jeffrey_operator.ctl.client import CtlError
from jeffrey_operator.ctl.dashboard.model import redact_text, worst_points

__all__ = ["SPARK_STEP", "SPARK_WINDOW", "SecretSource", "Sparklines"]

#: Sparklines: the last five minutes, one point every five seconds; answers kept for 5 s.
SPARK_WINDOW = 300.0
SPARK_STEP = 5.0
SPARK_CACHE_SECONDS = 5.0
SPARK_TIMEOUT = 3.0
#: At most this many gates get a sparkline per integration.
SPARK_MAX_GATES = 20


class SecretSource(Protocol):
    """Reads one key of a Secret (:meth:`~jeffrey_operator.ctl.client.Cluster.secret_value`)."""

    def secret_value(self, namespace: str, name: str, key: str) -> str: ...


class Sparklines:
    """Recent values of each gate's query, per integration, from its Prometheus."""

    def __init__(
        self,
        backend: SecretSource,
        *,
        override_url: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.override_url = override_url
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._session: aiohttp.ClientSession | None = None
        #: Range queries sent to Prometheus.
        self.queries = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _secret(self, namespace: str, ref: SecretKeyRef) -> str:
        return await asyncio.to_thread(self.backend.secret_value, namespace, ref.name, ref.key)

    async def endpoint(self, spec: JeffreyIntegrationSpec, namespace: str) -> Endpoint:
        prom = spec.analysis.prometheus
        bearer = None
        basic = None
        if prom.bearer_token_secret_ref is not None:
            bearer = await self._secret(namespace, prom.bearer_token_secret_ref)
        if prom.basic_auth is not None:
            basic = (
                await self._secret(namespace, prom.basic_auth.username_secret_ref),
                await self._secret(namespace, prom.basic_auth.password_secret_ref),
            )
        return Endpoint(
            url=self.override_url or prom.url,
            timeout=min(SPARK_TIMEOUT, parse_duration(prom.timeout) or SPARK_TIMEOUT),
            headers=tuple(sorted(prom.headers.items())),
            bearer_token=bearer,
            basic_auth=basic,
        )

    async def of(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < SPARK_CACHE_SECONDS:
            return cached[1]
        result = await self._compute(body, now)
        self._cache[key] = (now, result)
        return result

    async def _compute(self, body: Mapping[str, Any], now: float) -> dict[str, Any]:
        namespace = str((body.get("metadata") or {}).get("namespace", ""))
        out: dict[str, Any] = {
            "available": False,
            "source": "",
            "message": "",
            "window": SPARK_WINDOW,
            "step": SPARK_STEP,
            "gates": {},
        }
        parsed = parse_spec(body.get("spec") or {})
        if isinstance(parsed, list):
            out["message"] = "the spec does not parse, so the dashboard does not know where Prometheus is"
            return out
        url = self.override_url or parsed.analysis.prometheus.url
        out["source"] = redact_url(url)
        gates: list[Mapping[str, Any]] = [
            g
            for g in ((body.get("status") or {}).get("gates") or [])
            if isinstance(g, Mapping) and g.get("query") and "{{" not in str(g.get("query"))
        ]
        # Gates not in status now (a phase that evaluates none, e.g. after a rollback): their
        # queries as the operator resolves them, when they need no more than namespace and name.
        known = {g.get("name") for g in gates}
        variables = {"namespace": namespace, "name": str((body.get("metadata") or {}).get("name", ""))}
        for spec_gate in gates_for(parsed):
            if spec_gate.name in known:
                continue
            try:
                query = render_query(spec_gate.query, variables)
            except UnknownVariable:
                continue
            gates.append({"name": spec_gate.name, "query": query, "min": spec_gate.min, "max": spec_gate.max})
        gates = gates[:SPARK_MAX_GATES]
        try:
            endpoint = await self.endpoint(parsed, namespace)
        except CtlError as exc:
            out["message"] = (
                f"no sparklines: cannot read the Prometheus credentials ({redact_text(str(exc))})"
            )
            return out
        if not gates:
            out["available"] = True
            out["message"] = "no gate has been evaluated yet"
            return out
        if self._session is None:
            self._session = aiohttp.ClientSession()
        session = self._session

        async def one(gate: Mapping[str, Any]) -> tuple[str, Any]:
            self.queries += 1
            try:
                series = await query_range(
                    session, endpoint, str(gate["query"]), start=now - SPARK_WINDOW, end=now, step=SPARK_STEP
                )
            except PrometheusError as exc:
                return str(gate.get("name")), exc
            points = worst_points([s.points for s in series], higher_is_worse=gate.get("max") is not None)
            return str(gate.get("name")), points

        answers = await asyncio.gather(*(one(g) for g in gates))
        problems = [a for _, a in answers if isinstance(a, PrometheusError)]
        unreachable = [p for p in problems if isinstance(p, PrometheusUnavailable)]
        if unreachable and len(unreachable) == len(answers):
            out["message"] = (
                f"Prometheus at {out['source']} is not reachable from the dashboard "
                f"({redact_text(str(unreachable[0]))}): no sparklines. "
                "Use --prometheus-url with a port-forward to see them."
            )
            return out
        out["available"] = True
        for name, answer in answers:
            if isinstance(answer, PrometheusError):
                out["gates"][name] = {"points": [], "error": redact_text(str(answer))}
                continue
            values = [v for _, v in answer]
            out["gates"][name] = {
                "points": [[round(t, 3), v] for t, v in answer],
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                "last": values[-1] if values else None,
            }
        return out
