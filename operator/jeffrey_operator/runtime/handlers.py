"""kopf handlers: thin, each delegating to :mod:`jeffrey_operator.runtime.reconciler`.

:func:`register` puts them in a registry (a fresh one per operator run, so tests, the playground
and the benchmark can start the operator many times in one process).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from jeffrey_operator.adapters.kube import observe_deployment, observe_job
from jeffrey_operator.core.checks import LABEL_INTEGRATION
from jeffrey_operator.core.messages import EVENT_MESSAGE_MAX, shorten
from jeffrey_operator.core.models import GROUP, PLURAL, VERSION
from jeffrey_operator.core.ports import Event
from jeffrey_operator.core.validation import claim_of
from jeffrey_operator.runtime.reconciler import IntegrationLoop, OperatorContext, run_loop

#: Where kopf keeps its own bookkeeping: annotations, never our status (whose schema prunes it).
ANNOTATION_PREFIX = "jeffreyos.io"
FINALIZER = f"{ANNOTATION_PREFIX}/finalizer"


_CHATTY = {
    f"Handler '{name}' succeeded."
    for name in ("deployments", "claims", "deployment_changed", "integration_changed", "jobs", "job_changed")
}


class QuietWakeups(logging.Filter):
    """Drop kopf's INFO line for every Deployment/JeffreyIntegration watch event that only
    refreshes an index or wakes a loop: thousands a minute, and no information."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage() not in _CHATTY


def quiet_kopf_logs() -> None:
    logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietWakeups) for f in logger.filters):
        logger.addFilter(QuietWakeups())


def post_event(body: Mapping[str, Any], event: Event) -> None:
    """Events go through kopf's posting queue (batched, retried, never blocking the loop); at most
    1 KB each, cut at a word with an ellipsis."""
    message = shorten(event.message, EVENT_MESSAGE_MAX)
    kopf.event(body, type=event.type, reason=event.reason, message=message)  # type: ignore[arg-type]


def configure(settings: kopf.OperatorSettings, *, peering_priority: int = 0) -> None:
    """kopf settings, each with its reason."""
    # Progress and diff-base in annotations: status belongs to the CRD schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # Our own Events carry the story; kopf's per-handler INFO events would double the writes.
    settings.posting.level = logging.WARNING
    # Watches are re-established well before typical load-balancer idle timeouts.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # A stopping daemon finishes its current API call; a deletion waits at most this long.
    settings.execution.max_workers = 20
    # Peers are considered gone after this long without a heartbeat (HA fail-over time).
    settings.peering.lifetime = 30
    # With several replicas the highest priority acts; equal priorities would all pause.
    settings.peering.priority = peering_priority


def _startup(*, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    quiet_kopf_logs()
    operator_settings = getattr(memo, "settings", None)
    configure(settings, peering_priority=getattr(operator_settings, "peering_priority", 0))


async def deployments(*, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    """(namespace, name) → what the engine needs of a Deployment."""
    return {(namespace or "", name): observe_deployment(body)}


async def deployment_changed(*, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Wake the integrations that list this Deployment. Event handlers run after kopf updated
    its indices (deletions included), so the woken loop reads the fresh observation."""
    ctx: OperatorContext | None = getattr(memo, "ctx", None)
    if ctx is not None:
        ctx.wake_deployment(namespace or "", name)


async def integration_changed(
    *, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """Wake this integration's loop, and those sharing a Deployment with it (claims changed)."""
    ctx: OperatorContext | None = getattr(memo, "ctx", None)
    if ctx is None:
        return
    ns = namespace or ""
    ctx.wake((ns, name))
    for _, deployment in _claimed(body, ns, name):
        ctx.wake_deployment(ns, deployment)


def _integration_of(body: kopf.Body) -> str:
    return str(((body.get("metadata") or {}).get("labels") or {}).get(LABEL_INTEGRATION, ""))


async def jobs(*, body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
    """(namespace, integration) → the check Jobs it made (label ``jeffreyos.io/integration``)."""
    return {(namespace or "", _integration_of(body)): observe_job(body)}


async def job_changed(*, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Route a check Job's events to its integration: the label names it."""
    ctx: OperatorContext | None = getattr(memo, "ctx", None)
    if ctx is not None:
        ctx.wake((namespace or "", _integration_of(body)))


async def claims(*, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    """(namespace, Deployment) → (creationTimestamp, name, uid) of each integration listing it."""
    return _claimed(body, namespace or "", name)


def _claimed(body: kopf.Body, ns: str, name: str) -> dict[Any, Any]:
    claim = claim_of(body.get("metadata") or {})
    out: dict[Any, Any] = {}
    for level in (body.get("spec") or {}).get("levels") or []:
        for module in (level or {}).get("modules") or []:
            deployment = (module or {}).get("deployment")
            if isinstance(deployment, str):
                out[(ns, deployment)] = claim
    return out


async def integration(
    *,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """The level-based loop of one JeffreyIntegration (kopf passes the indices as kwargs)."""
    ctx: OperatorContext = memo.ctx
    namespace = namespace or ""
    loop = IntegrationLoop(
        ctx=ctx,
        namespace=namespace,
        name=name,
        deployments_index=kwargs["deployments"],
        claims_index=kwargs["claims"],
        jobs_index=kwargs["jobs"],
    )
    try:
        await run_loop(loop, body, stopped)
    finally:
        if stopped.reason is not None and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            ctx.telemetry.forget(namespace, name)
            ctx.notifier.forget((namespace, name))
            try:
                await ctx.store.forget(namespace, name)
            except Exception:
                logging.getLogger(__name__).warning(
                    "could not remove %s/%s from the state store", namespace, name
                )


async def _cleanup(*, memo: kopf.Memo, **_: Any) -> None:
    """Close the adapters' connections (Prometheus HTTP sessions, Redis pools)."""
    ctx: OperatorContext | None = getattr(memo, "ctx", None)
    if ctx is not None:
        await ctx.close()


def register(registry: kopf.OperatorRegistry) -> None:
    """Register every handler of the operator in ``registry``."""
    kopf.on.startup(registry=registry, id="configure")(_startup)
    kopf.on.cleanup(registry=registry, id="close-adapters")(_cleanup)
    kopf.index("apps", "v1", "deployments", registry=registry)(deployments)
    kopf.index(GROUP, VERSION, PLURAL, registry=registry)(claims)
    kopf.on.event("apps", "v1", "deployments", registry=registry)(deployment_changed)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(integration_changed)
    # Check Jobs (spec.checks): indexed and routed to their integration by label.
    made_by_us = {LABEL_INTEGRATION: kopf.PRESENT}
    kopf.index("batch", "v1", "jobs", labels=made_by_us, registry=registry)(jobs)
    kopf.on.event("batch", "v1", "jobs", labels=made_by_us, registry=registry)(job_changed)
    kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_timeout=10.0)(integration)
