"""Event handlers: thin, each turning one event into work-queue keys (and nothing more).

* :func:`integration_event` — kopf's watch of JeffreyIntegrations (registered by :func:`register`
  in a fresh kopf registry per operator run, so tests, the playground and the benchmark can start
  the operator many times in one process);
* :func:`deployment_event` and :func:`job_watch_event` — the operator's own label-selected
  watches of Deployments and check Jobs (:class:`jeffrey_operator.adapters.kube.LabelWatch`,
  selector ``jeffreyos.io/integration``: the API server sends nothing else);
* :func:`leadership_started` / :func:`leadership_stopped` — the Lease elector.

kopf keeps what it does well here: the CR watch (with its reconnects and backoff), logging and
the Event posting queue. It watches nothing else: its label filters work on the client side, so
every Deployment or Job of the cluster would go through its per-event machinery. No kopf
daemons or indices: one daemon per integration and an index of every Deployment in the cluster
made every Deployment event cost work proportional to the number of integrations (see
``docs/architecture.md`` and ``docs/benchmarks.md``). No finalizer either: releasing Deployments
is level-based (on the DELETED event, and a sweep when leadership starts), so deleting a
JeffreyIntegration never hangs on a stopped operator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import kopf

from jeffrey_operator.adapters.kube import KubeError, WatchEvent, observe_job
from jeffrey_operator.core.checks import LABEL_INTEGRATION
from jeffrey_operator.core.messages import EVENT_MESSAGE_MAX, shorten
from jeffrey_operator.core.models import GROUP, PLURAL, RETRY_ANNOTATION, VERSION
from jeffrey_operator.core.ports import Event, JobObservation
from jeffrey_operator.runtime.reconciler import OperatorContext, release_deployment, slim_body
from jeffrey_operator.runtime.routing import Key, seen_of

log = logging.getLogger(__name__)

#: Where kopf keeps its own bookkeeping: annotations, never our status (whose schema prunes it).
ANNOTATION_PREFIX = "jeffreyos.io"
FINALIZER = f"{ANNOTATION_PREFIX}/finalizer"
#: The component the operator's Events name as their source.
EVENT_COMPONENT = "jeffrey-operator"

#: kopf's INFO line for each event of the one handler it runs (it only feeds the work queue).
_CHATTY = {"Handler 'integration_event' succeeded."}


class QuietWakeups(logging.Filter):
    """Drop kopf's INFO line for every JeffreyIntegration watch event that only feeds the work
    queue: thousands a minute, and no information."""

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


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: kopf builds one for every event, a deep copy of the whole object (status
    included) to tell ``on.create``/``on.update``/``on.field`` handlers what changed, and the
    operator registers none of those (:func:`register`: ``on.event`` only, whose reconcile reads
    the object itself). In a 1,000-integration climb those copies were 10 % of the operator's CPU.
    Nothing is built, stored in an annotation or read back."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings, each with its reason."""
    # Progress in annotations (status belongs to the CRD schema); no diff-base (NoDiffBase).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = FINALIZER
    # Our own Events carry the story; kopf's per-handler INFO events would double the writes.
    settings.posting.level = logging.WARNING
    # Who posted them, as `kubectl describe` shows it ("From"): the operator and its pod (the
    # pod's name is its HOSTNAME), not kopf's defaults ("kopf", instance "dev").
    settings.posting.reporting_component = EVENT_COMPONENT
    settings.posting.reporting_instance = os.environ.get("HOSTNAME") or socket.gethostname()
    settings.posting.event_name_prefix = f"{EVENT_COMPONENT}-"
    # Watches are re-established well before typical load-balancer idle timeouts.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Event handlers only feed the work queue; a few workers are plenty.
    settings.execution.max_workers = 20


def _startup(*, settings: kopf.OperatorSettings, **_: Any) -> None:
    quiet_kopf_logs()
    configure(settings)


# ------------------------------------------------------------------------ JeffreyIntegrations


def _inputs(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a reconcile reads of the object besides the status it wrote itself."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return (meta.get("uid"), meta.get("generation"), annotations.get(RETRY_ANNOTATION))


def integration_event(ctx: OperatorContext, event_type: str | None, body: Mapping[str, Any]) -> None:
    """A JeffreyIntegration was listed, added, changed or deleted: queue it and the integrations
    sharing a Deployment with it. A change of status only (the operator's own write coming back)
    queues nothing."""
    meta = body.get("metadata") or {}
    key: Key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    if event_type == "DELETED":
        for other in ctx.integrations.remove(key):
            ctx.wake(other)
        ctx.loops.pop(key, None)
        if ctx.queue is not None:
            ctx.queue.discard(key)
        ctx.notifier.forget(key)  # first: its sinks stop before their series are removed
        ctx.telemetry.forget(*key)
        if ctx.leading:
            ctx.spawn(forget_integration(ctx, key))
        return
    before = ctx.integrations.bodies.get(key)
    loop = ctx.loops.get(key)
    wake = ctx.integrations.upsert(key, slim_body(body, keep_status=loop is None or not loop.has_status))
    if before is not None and key in ctx.loops and _inputs(before) == _inputs(body):
        wake.discard(key)
    for k in wake:
        ctx.wake(k)


async def forget_integration(ctx: OperatorContext, key: Key) -> None:
    """A deleted integration: release its Deployments, drop it from the state store."""
    namespace, name = key
    for deployment in ctx.deployments.owned_by(namespace, name):
        await release_deployment(ctx, namespace, deployment)
    try:
        await ctx.store.forget(namespace, name)
    except Exception as exc:
        log.warning("could not remove %s/%s from the state store: %s", namespace, name, exc)


async def _on_integration(
    *, type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:  # kopf passes the event type as ``type``
    ctx: OperatorContext | None = getattr(memo, "ctx", None)
    if ctx is not None:
        ctx.ensure_workers()  # here, in kopf's context (see OperatorContext.ensure_workers)
        integration_event(ctx, type, body)


# ---------------------------------------------------------------------------------- Deployments


def deployment_event(ctx: OperatorContext, scope: str | None, event: WatchEvent) -> None:
    """A managed Deployment changed: update the cache; queue the integrations listing it, and
    only when what the engine sees of it changed."""
    if event.type == "LISTED":
        listed = {}
        for item in event.body.get("items") or []:
            seen = seen_of(item, watched=True)
            listed[(str((item.get("metadata") or {}).get("namespace") or ""), seen.observation.name)] = seen
        for key in ctx.deployments.watched_keys(scope):
            if key not in listed:
                ctx.deployments.drop(*key)
                _route(ctx, *key)
        for (namespace, name), seen in listed.items():
            if not ctx.deployments.same(namespace, name, seen):
                ctx.deployments.put(namespace, name, seen)
                _route(ctx, namespace, name)
        return
    meta = event.body.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    seen = seen_of(event.body, watched=True)
    if event.type == "DELETED" or not seen.owner:  # deleted, or released (no longer selected)
        if ctx.deployments.get(namespace, name) is None:
            return
        ctx.deployments.drop(namespace, name)
    elif ctx.deployments.same(namespace, name, seen) or not ctx.deployments.put(namespace, name, seen):
        return
    _route(ctx, namespace, name)


def _route(ctx: OperatorContext, namespace: str, name: str) -> None:
    for key in ctx.integrations.listing(namespace, name):
        ctx.wake(key)


# ------------------------------------------------------------------------------ check Jobs


def _job_of(body: Mapping[str, Any]) -> tuple[Key, str]:
    """The integration a check Job is for (its namespace and label) and the Job's name."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    key: Key = (str(meta.get("namespace") or ""), str(labels.get(LABEL_INTEGRATION, "")))
    return key, str(meta.get("name") or "")


def job_event(ctx: OperatorContext, event_type: str | None, body: Mapping[str, Any]) -> None:
    """A check Job changed: keep what the check runs need of it, and queue its integration (the
    label ``jeffreyos.io/integration`` names it) only when that changed: a Job's pods starting
    and stopping change its status several times, most of it nothing a check run reads."""
    key, name = _job_of(body)
    jobs = ctx.jobs.get(key)
    if event_type == "DELETED":
        if jobs is None or jobs.pop(name, None) is None:
            return
        if not jobs:
            del ctx.jobs[key]
    else:
        seen = observe_job(body)
        if jobs is not None and jobs.get(name) == seen:
            return
        ctx.jobs.setdefault(key, {})[name] = seen
    ctx.wake(key)


def job_watch_event(ctx: OperatorContext, scope: str | None, event: WatchEvent) -> None:
    """An event of the operator's own label-selected Job watch (one per scope: a namespace, or
    None for all). ``LISTED`` replaces what :attr:`OperatorContext.jobs` holds for the scope and
    queues the integrations whose Jobs changed; the others are :func:`job_event`.

    It only updates the cache and queues keys, never :meth:`OperatorContext.ensure_workers`: the
    workers are started from a kopf handler (they need kopf's context), and a key queued before
    they run waits in the queue."""
    if event.type != "LISTED":
        job_event(ctx, event.type, event.body)
        return
    listed: dict[Key, dict[str, JobObservation]] = {}
    for item in event.body.get("items") or []:
        key, name = _job_of(item)
        listed.setdefault(key, {})[name] = observe_job(item)
    held = [k for k in ctx.jobs if scope is None or k[0] == scope]
    for key in held:
        if key not in listed:
            del ctx.jobs[key]
            ctx.wake(key)
    for key, jobs in listed.items():
        if ctx.jobs.get(key) != jobs:
            ctx.jobs[key] = jobs
            ctx.wake(key)


# ------------------------------------------------------------------------------- leadership


def leadership_started(ctx: OperatorContext) -> None:
    """This replica acts from now on: forget what it held (another leader may have acted), queue
    every integration, and release Deployments whose integration is gone."""
    ctx.leading = True
    ctx.loops.clear()
    if ctx.queue is not None:
        for key in list(ctx.integrations.bodies):
            ctx.queue.add(key)
        ctx.queue.pause(False)
    ctx.spawn(sweep_orphans(ctx))


def leadership_stopped(ctx: OperatorContext) -> None:
    ctx.leading = False
    if ctx.queue is not None:
        ctx.queue.pause(True)


async def sweep_orphans(ctx: OperatorContext, delay: float = 5.0) -> None:
    """Release Deployments labelled for an integration that no longer exists (deleted while no
    replica was leading). Confirmed with a live read: kopf's list may still be arriving."""
    await asyncio.sleep(delay)
    for (namespace, deployment), owner in sorted(ctx.deployments.owners().items()):
        if not ctx.leading:
            return
        if (namespace, owner) in ctx.integrations.bodies:
            continue
        try:
            if await ctx.kube.read_integration(namespace, owner) is None:
                log.info("releasing %s/%s: its integration %s is gone", namespace, deployment, owner)
                await release_deployment(ctx, namespace, deployment)
        except KubeError as exc:
            log.warning("checking the owner of %s/%s failed: %s", namespace, deployment, exc)


# ------------------------------------------------------------------------------------ kopf


async def _cleanup(*, memo: kopf.Memo, **_: Any) -> None:
    """Close the adapters' connections (Prometheus HTTP sessions, Redis pools)."""
    ctx: OperatorContext | None = getattr(memo, "ctx", None)
    if ctx is not None:
        await ctx.close()


def register(registry: kopf.OperatorRegistry) -> None:
    """Register every kopf handler of the operator in ``registry``."""
    kopf.on.startup(registry=registry, id="configure")(_startup)
    kopf.on.cleanup(registry=registry, id="close-adapters")(_cleanup)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="integration_event")(_on_integration)
    # Deployments and check Jobs are not kopf's: its label filters work on the client side, so
    # every Job of the cluster would cost a kopf event. The operator's own label-selected watches
    # (runtime.app.run_operator) deliver them to deployment_event and job_watch_event.
