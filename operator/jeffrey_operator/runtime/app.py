"""Assemble the operator: settings → adapters → kopf.

Used by ``jeffrey-operator run``, the playground, the API-contract tests and the benchmark, so
they all run the same operator.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from jeffrey_operator.adapters.egress import EgressGuard
from jeffrey_operator.adapters.kube import Kube
from jeffrey_operator.adapters.notify import Senders
from jeffrey_operator.adapters.telemetry import record_notification
from jeffrey_operator.core.ports import Clock, GatePort, HttpCheckPort, StateStorePort, SystemClock
from jeffrey_operator.runtime.notifications import Notifier, NotifierPort
from jeffrey_operator.runtime.reconciler import OperatorContext, Telemetry
from jeffrey_operator.runtime.settings import OperatorSettings

log = logging.getLogger(__name__)


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
    """Wire the adapters the settings ask for; tests pass their own where they want."""
    from jeffrey_operator.runtime import handlers

    kube = kube or Kube()
    egress = settings.egress_policy
    if gates is None:
        from jeffrey_operator.adapters.prometheus.client import PrometheusClient
        from jeffrey_operator.adapters.prometheus.gates import PrometheusGates

        gates = PrometheusGates(PrometheusClient(egress=egress), secret_reader=kube.read_secret_key)
    if store is None and settings.redis_url:
        from jeffrey_operator.adapters.redis.store import RedisStateStore

        store = RedisStateStore.from_settings(
            settings.redis_url,
            settings.redis_password.get_secret_value() or None,
            key_prefix=settings.redis_key_prefix,
            history_maxlen=settings.history_length,
        )
    if http is None:
        from jeffrey_operator.adapters.checks import HttpChecks

        http = HttpChecks(secret_reader=kube.read_secret_key, egress=egress)
    if telemetry is None:
        from jeffrey_operator.adapters.telemetry import OperatorTelemetry

        telemetry = OperatorTelemetry()
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
        record=record_notification,
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
    """Run kopf with our handlers until ``stop_flag`` is set (or forever)."""
    from jeffrey_operator.runtime import handlers

    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    # Credentials like kubectl (KUBECONFIG, ~/.kube/config, in-cluster) unless told otherwise:
    # the playground logs in to its emulator explicitly.
    kopf.on.login(registry=registry, id="login")(login or kopf.login_via_client)
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    await kopf.operator(
        registry=registry,
        clusterwide=settings.all_namespaces,
        namespaces=list(settings.namespaces),
        standalone=settings.standalone,
        peering_name=settings.peering,
        liveness_endpoint=liveness,
        memo=kopf.Memo(ctx=ctx, settings=settings),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def serve_metrics(settings: OperatorSettings) -> None:
    if not settings.metrics_port:
        return
    from jeffrey_operator.adapters.telemetry import serve

    serve(settings.metrics_port)


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
