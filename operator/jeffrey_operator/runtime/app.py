"""Assemble the operator: settings → adapters → watches, work queue, leader election, kopf.

Used by ``jeffrey-operator run``, the playground, the API-contract tests and the benchmark, so
they all run the same operator.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from jeffrey_operator.adapters.egress import EgressGuard
from jeffrey_operator.adapters.kube import Kube, KubeError, LabelWatch, WatchEvent
from jeffrey_operator.adapters.notify import Senders
from jeffrey_operator.adapters.telemetry import OperatorTelemetry
from jeffrey_operator.core.checks import LABEL_INTEGRATION
from jeffrey_operator.core.models import INTEGRATION_LABEL
from jeffrey_operator.core.ports import (
    Clock,
    GatePort,
    HttpCheckPort,
    NoTelemetry,
    StateStorePort,
    SystemClock,
    Telemetry,
)
from jeffrey_operator.runtime.health import Health, serve_health
from jeffrey_operator.runtime.leader import LeaderElector
from jeffrey_operator.runtime.notifications import Notifier, NotifierPort
from jeffrey_operator.runtime.reconciler import OperatorContext, reconcile
from jeffrey_operator.runtime.settings import OperatorSettings

log = logging.getLogger(__name__)

#: A label-selected watch's handler (``handlers.deployment_event``, ``handlers.job_watch_event``).
Feed = Callable[[OperatorContext, str | None, WatchEvent], None]

#: Python's collector thresholds in an operator process (generations 0, 1, 2); see tune_gc.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Set up the garbage collector of a process that runs one operator (``jeffrey-operator run``,
    and the benchmark that measures it), once, after the imports.

    * ``gc.freeze()`` moves what start-up allocated (modules, classes, kopf, the kubernetes
      client's API classes: 120,000 objects) out of the collector's reach: every full collection
      walked them again, for nothing (they live as long as the process).
    * Generation 0 is collected after 10,000 allocations instead of 700: most of a reconcile's
      objects (watch events, request bodies, parsed statuses) are freed by reference counting
      within milliseconds, and at 700 the collector ran 2,300 times in a 1,000-integration climb
      and promoted short-lived objects into generations it then walked again.

    Measured in a 1,000-integration climb (``bench/bench_operator.py --gc default``, then tuned):
    4.5 s of the operator's 42 s of CPU went to the collector with the defaults (2,500
    collections, 19 of them full), 0.7 s with these (67); peak RSS +2 MB.
    Not for a process that runs several operators or a test suite (frozen objects are never
    collected).
    """
    Kube.warm_up()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def build_context(
    settings: OperatorSettings,
    *,
    kube: Kube | None = None,
    gates: GatePort | None = None,
    store: StateStorePort | None = None,
    telemetry: Telemetry | None = None,
    clock: Clock | None = None,
    notifier: NotifierPort | None = None,
    http: HttpCheckPort | None = None,
) -> OperatorContext:
    """Wire the adapters the settings ask for; tests pass their own where they want.

    One :class:`OperatorTelemetry` (one registry) per operator: handed to the loop and to every
    adapter built here, and to a ``kube`` passed in that does not count yet."""
    from jeffrey_operator.runtime import handlers

    telemetry = telemetry or OperatorTelemetry()
    kube = kube or Kube(telemetry=telemetry)
    if isinstance(kube.telemetry, NoTelemetry):
        kube.telemetry = telemetry
    egress = settings.egress_policy
    if gates is None:
        from jeffrey_operator.adapters.prometheus.client import PrometheusClient
        from jeffrey_operator.adapters.prometheus.gates import PrometheusGates

        gates = PrometheusGates(
            PrometheusClient(telemetry=telemetry, egress=egress), secret_reader=kube.read_secret_key
        )
    if store is None and settings.redis_url:
        from jeffrey_operator.adapters.redis.store import RedisStateStore

        store = RedisStateStore.from_settings(
            settings.redis_url,
            settings.redis_password.get_secret_value() or None,
            key_prefix=settings.redis_key_prefix,
            history_maxlen=settings.history_length,
            telemetry=telemetry,
        )
    if http is None:
        from jeffrey_operator.adapters.checks import HttpChecks

        http = HttpChecks(secret_reader=kube.read_secret_key, egress=egress)
    ctx = OperatorContext(
        kube=kube,
        gates=gates,
        telemetry=telemetry,
        clock=clock or SystemClock(),
        emit=handlers.post_event,
        gate_status_refresh=settings.gate_status_refresh,
        http=http,
    )
    if store is not None:
        ctx.store = store
    ctx.egress = EgressGuard(egress)
    ctx.notifier = notifier or Notifier(
        kube,
        Senders(egress, secret_reader=kube.read_secret_key),
        clock=ctx.clock,
        defaults=settings.default_notifications,
        operator_namespace=settings.operator_namespace,
        telemetry=telemetry,
        wake=ctx.wake,
    )
    return ctx


async def run_operator(
    settings: OperatorSettings,
    ctx: OperatorContext,
    *,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    login: Callable[..., Awaitable[Any]] | None = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or forever): the probes, the Deployment and
    check Job watches, the Lease elector (with ``--peering``), the work queue's workers, and kopf
    (the JeffreyIntegration watch)."""
    from jeffrey_operator.runtime import handlers

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(Kube.warm_up)
    health = Health(settings.liveness_grace)
    probes = await serve_health(health, settings.health_port) if settings.health_port else None
    queue = ctx.start_queue()
    scopes: list[str | None] = [None] if settings.all_namespaces else list(settings.namespaces)
    # One label-selected watch per resource and scope: the API server sends only the Deployments
    # the operator manages and the check Jobs it created; unrelated ones cost nothing here.
    feeds = (
        ("deployments", INTEGRATION_LABEL, handlers.deployment_event),
        ("jobs", LABEL_INTEGRATION, handlers.job_watch_event),
    )
    health.unlisted = {(resource, scope) for resource, _, _ in feeds for scope in scopes}

    def deliver(resource: str, scope: str | None, handler: Feed, event: WatchEvent) -> None:
        handler(ctx, scope, event)
        if event.type == "LISTED":  # the cache of this resource and scope is whole: readiness
            health.unlisted.discard((resource, scope))

    watches = [
        LabelWatch(
            ctx.kube,
            resource,
            scope,
            selector,
            loop=loop,
            deliver=functools.partial(deliver, resource, scope, handler),
            contact=health.contact,
            # Re-watch well within the liveness grace: a finished watch request is a contact.
            timeout=max(1, int(min(30.0, settings.liveness_grace / 2))),
        )
        for resource, selector, handler in feeds
        for scope in scopes
    ]
    tasks: list[asyncio.Task[Any]] = []
    elector: LeaderElector | None = None
    if settings.peering:
        ctx.leading = False
        queue.pause(True)
        elector = LeaderElector(
            ctx.kube,
            settings.lease_namespace,
            settings.peering,
            lease_duration=settings.lease_duration,
            renew_deadline=settings.renew_deadline,
            retry_period=settings.retry_period,
            on_started=functools.partial(handlers.leadership_started, ctx),
            on_stopped=functools.partial(handlers.leadership_stopped, ctx),
            contact=health.contact,
        )
    else:
        ctx.leading = True

    def start_workers() -> None:
        """Called from the first kopf event handler: tasks started there inherit kopf's context
        (its Event poster needs it); without any JeffreyIntegration there is nothing to work on.
        The Deployment and Job watches never call it: what they queue before waits for it."""
        work = queue.run(functools.partial(reconcile, ctx), settings.workers, expected=(KubeError,))
        tasks.append(loop.create_task(work, name="jeffrey-workqueue"))

    def start_background() -> None:
        if elector is not None:
            tasks.append(loop.create_task(elector.run(), name="jeffrey-leader-election"))
        ping = getattr(ctx.store, "ping", None)
        if ping is not None:
            tasks.append(loop.create_task(_probe_store(ping, settings.state_store_probe)))
        for watch in watches:
            watch.start()

    ctx.start_workers = start_workers
    start_background()
    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    # Credentials like kubectl (KUBECONFIG, ~/.kube/config, in-cluster) unless told otherwise:
    # the playground logs in to its emulator explicitly.
    kopf.on.login(registry=registry, id="login")(login or kopf.login_via_client)

    async def stop_background(**_: Any) -> None:
        """kopf's shutdown waits 5 s, then cancels, every task it did not start before it began
        (its "hung" tasks): the work queue and what it spawned stop here, in kopf's cleanup phase,
        so that a stop (SIGTERM, a test) takes well under a second instead of about ten."""
        for watch in watches:
            watch.stop()
        mine = [*tasks, *ctx.background_tasks()]
        for task in mine:
            task.cancel()
        await asyncio.gather(*mine, return_exceptions=True)

    kopf.on.cleanup(registry=registry, id="stop-background")(stop_background)
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=settings.all_namespaces,
            namespaces=list(settings.namespaces),
            # Leadership is the Lease's (runtime.leader); kopf's own peering stays off.
            standalone=True,
            memo=kopf.Memo(ctx=ctx, settings=settings),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        for watch in watches:
            watch.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ctx.close()
        if probes is not None:
            await probes.cleanup()


async def _probe_store(ping: Callable[[], Awaitable[Any]], every: float) -> None:
    """Ask the state store every ``every`` seconds, so ``jeffrey_state_store_up`` follows it even
    when no status changes (the store's adapter sets the gauge on every call's outcome)."""
    while True:
        try:
            await ping()
        except Exception as exc:  # the outcome is in the gauge; the loop logs outages itself
            log.debug("state store probe: %s", exc)
        await asyncio.sleep(every)


def serve_metrics(settings: OperatorSettings, ctx: OperatorContext) -> None:
    """Serve this operator's registry on ``--metrics-port`` (0: not at all)."""
    if settings.metrics_port and isinstance(ctx.telemetry, OperatorTelemetry):
        ctx.telemetry.serve(settings.metrics_port)


class BackgroundOperator:
    """The operator in a thread of its own (tests, benchmark, playground)."""

    def __init__(
        self,
        settings: OperatorSettings,
        ctx: OperatorContext,
        login: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.login = login
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._main, name="jeffrey-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the operator did not become ready")
        if self.error is not None:
            raise RuntimeError("the operator failed to start") from self.error

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        ready = asyncio.Event()

        async def watch_ready() -> None:
            await ready.wait()
            self._ready.set()

        async def main() -> None:
            watcher = asyncio.create_task(watch_ready())
            try:
                await run_operator(
                    self.settings, self.ctx, stop_flag=self._stop, ready_flag=ready, login=self.login
                )
            finally:
                watcher.cancel()

        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            self.error = exc
            self._ready.set()
        finally:
            loop.close()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
