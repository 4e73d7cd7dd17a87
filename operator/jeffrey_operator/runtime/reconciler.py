"""One integration's reconcile: observe → decide → act, run by the work queue's workers.

:func:`reconcile` is the queue's handler. For one key it reads the JeffreyIntegration body from
memory (kopf's watch keeps it fresh), observes its Deployments (the label-selected watch's cache,
or a live read for one not labelled yet), asks the gates, calls the pure
:func:`~jeffrey_operator.core.engine.decide`, and acts: scale (labelling the Deployment in the
same write), write status (only when something changed: no API writes at steady state), post
Events, mirror to the state store. It returns when to look again (the engine's deadline, the gate
tick, the end of a gate's ``for``), which the queue turns into a delayed add.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from jeffrey_operator.adapters.egress import EgressGuard
from jeffrey_operator.adapters.kube import Kube, KubeError, merge_patch
from jeffrey_operator.adapters.prometheus.gates import next_tick_delay
from jeffrey_operator.adapters.resilience import Backoff
from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.durations import parse_duration
from jeffrey_operator.core.engine import Decision, decide, decide_invalid, gate_mode
from jeffrey_operator.core.messages import drift_message
from jeffrey_operator.core.models import (
    INTEGRATION_LABEL,
    RETRY_ANNOTATION,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
    Phase,
)
from jeffrey_operator.core.observe import observe, parse_status
from jeffrey_operator.core.ports import (
    Clock,
    DeploymentObservation,
    Event,
    GateContext,
    GateMode,
    GatePort,
    GateReport,
    HttpCheckPort,
    JobObservation,
    NoGates,
    NoStateStore,
    NoTelemetry,
    StateStorePort,
    StateStoreStale,
    StateStoreUnavailable,
    SystemClock,
    Telemetry,
)
from jeffrey_operator.core.timestamps import format_time, parse_time
from jeffrey_operator.core.validation import parse_spec
from jeffrey_operator.runtime import logs
from jeffrey_operator.runtime.checks import CheckRuns, owned_jobs
from jeffrey_operator.runtime.notifications import NoNotifier, NotifierPort
from jeffrey_operator.runtime.routing import Deployments, Integrations, Key, Seen, seen_of
from jeffrey_operator.runtime.workqueue import WorkQueue

log = logging.getLogger(__name__)

EventSink = Callable[[Mapping[str, Any], Event], None]

#: A live read of a listed Deployment that is not labelled (hence not watched) yet is trusted
#: this long; the operator labels it when it first scales it, or when the integration is Stable.
UNWATCHED_TTL = 300.0


@dataclass
class OperatorContext:
    """Everything the reconciles share (one per operator process)."""

    kube: Kube
    gates: GatePort = field(default_factory=NoGates)
    store: StateStorePort = field(default_factory=NoStateStore)
    clock: Clock = field(default_factory=SystemClock)
    telemetry: Telemetry = field(default_factory=NoTelemetry)
    emit: EventSink | None = None
    #: Runs HTTP checks (None: they stay inconclusive).
    http: HttpCheckPort | None = None
    #: Refresh gate values in status at most this often when nothing else changed.
    gate_status_refresh: float = 60.0
    #: The JeffreyIntegrations and who lists which Deployment.
    integrations: Integrations = field(default_factory=Integrations)
    #: The managed Deployments (label-selected watch) and live reads of not-yet-labelled ones.
    deployments: Deployments = field(default_factory=Deployments)
    #: (namespace, integration) → its check Jobs by name (the label-selected Job watch, by label).
    jobs: dict[Key, dict[str, JobObservation]] = field(default_factory=dict)
    #: The per-integration state kept between reconciles (in memory only).
    loops: dict[Key, IntegrationLoop] = field(default_factory=dict)
    #: The work queue; created in the operator's event loop by :meth:`start_queue`.
    queue: WorkQueue[Key] | None = None
    #: False on a standby replica (the Lease is another's): nothing is reconciled.
    leading: bool = True
    #: Starts the work queue's workers; called once, from a kopf handler (see ensure_workers).
    start_workers: Callable[[], None] | None = None
    #: Judges the URLs a spec makes the operator call, DNS included: a refusal makes it Invalid.
    egress: EgressGuard = field(default_factory=EgressGuard)
    #: The notification delivery worker (:mod:`jeffrey_operator.runtime.notifications`).
    notifier: NotifierPort = field(default_factory=NoNotifier)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def start_queue(self) -> WorkQueue[Key]:
        if self.queue is None:
            self.queue = WorkQueue()
        return self.queue

    def ensure_workers(self) -> None:
        """Start the workers on the first call. kopf's Event poster reads context variables that
        only kopf's own tasks carry; tasks created inside a kopf handler inherit them."""
        start, self.start_workers = self.start_workers, None
        if start is not None:
            start()

    def background_tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks :meth:`spawn` started that have not ended yet."""
        return list(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background (kept referenced until it ends)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wake(self, key: Key) -> None:
        if self.queue is not None:
            self.queue.add(key)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for adapter in (self.gates, self.store, self.http, self.notifier):
            closer = getattr(adapter, "close", None) or getattr(adapter, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception as exc:
                    log.debug("closing %r failed: %s", adapter, exc)


#: Marks a body kept without its status (see :func:`slim_body`).
STATUS_OMITTED = "statusOmitted"


def slim_body(body: Mapping[str, Any], *, keep_status: bool) -> dict[str, Any]:
    """What the operator keeps of a JeffreyIntegration: identity, the retry annotation, spec, and
    status only while no loop holds its own (a loop keeps the status it wrote; a thousand copies
    of every status would be the largest thing in memory)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    slim: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            **{
                k: meta[k]
                for k in ("name", "namespace", "uid", "generation", "creationTimestamp")
                if k in meta
            },
            "annotations": {k: v for k, v in annotations.items() if k == RETRY_ANNOTATION},
        },
        "spec": body.get("spec"),
    }
    if keep_status:
        slim["status"] = body.get("status")
    else:
        slim[STATUS_OMITTED] = True
    return slim


def status_patch(
    old: Mapping[str, Any], new: Mapping[str, Any], *, gates_refreshed_ago: float, refresh: float
) -> dict[str, Any]:
    """The merge patch to write, or ``{}`` when nothing worth a write changed.

    Gate values move at every evaluation; when they are the only change, they are written at most
    every ``refresh`` seconds (results and ``since`` changes are always written)."""
    patch = merge_patch(old, new)
    if set(patch) == {"gates"} and gates_refreshed_ago < refresh:

        def masked(gates: Any) -> list[dict[str, Any]]:
            return [{k: v for k, v in g.items() if k not in ("value", "series")} for g in gates or []]

        if masked(old.get("gates")) == masked(new.get("gates")):
            return {}
    return patch


def _gate_port(ctx: OperatorContext, spec: JeffreyIntegrationSpec) -> GatePort:
    return ctx.gates if (spec.gates or spec.default_gates) else NoGates()


def _backoff() -> Backoff:
    return Backoff(base=1.0, cap=30.0)


@dataclass
class IntegrationLoop:
    """The state of one integration between reconciles (in memory only: everything that matters
    for a restart is in status)."""

    ctx: OperatorContext
    namespace: str
    name: str
    #: The status this loop last wrote (or read), as JSON between reconciles: a thousand parsed
    #: statuses were the largest thing in memory (32 KB each as models, 6 KB as JSON).
    _status_json: str | None = field(default=None, repr=False)
    _status: JeffreyIntegrationStatus | None = field(default=None, repr=False)
    store_ok: bool | None = None
    store_retry_at: float = 0.0
    store_backoff: Backoff = field(default_factory=_backoff)
    store_dirty: bool = True
    gates_written_at: float = 0.0
    scale_backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=60.0))
    missing_backoff: Backoff = field(default_factory=_backoff)
    #: The Deployments the spec listed at the last reconcile (to release those it drops); None
    #: before the first one, when those labelled for this integration stand in for it.
    listed: set[str] | None = None
    #: Deployment → its generation right after this loop last scaled it (None: that scaling
    #: failed). An observation older than that lags behind us; a newer one was changed by someone.
    scaled: dict[str, int | None] = field(default_factory=dict)
    #: ``metadata.uid`` of the object (check Jobs carry it in their owner reference).
    uid: str = ""
    #: The runs of this integration's level checks (:mod:`jeffrey_operator.runtime.checks`).
    checks: CheckRuns = field(init=False)

    def __post_init__(self) -> None:
        self.checks = CheckRuns(self.namespace, self.name)

    @property
    def status(self) -> JeffreyIntegrationStatus | None:
        """The status as of the last write (None: read it from the object)."""
        if self._status is None and self._status_json is not None:
            self._status = JeffreyIntegrationStatus.model_validate_json(self._status_json)
        return self._status

    @status.setter
    def status(self, value: JeffreyIntegrationStatus | None) -> None:
        self._status = value
        self._status_json = None if value is None else value.model_dump_json(by_alias=True, exclude_none=True)

    @property
    def has_status(self) -> bool:
        """Whether this loop holds a status (without parsing it)."""
        return self._status is not None or self._status_json is not None

    def park(self) -> None:
        """Between reconciles, keep the status as JSON only (parsed again on the next one)."""
        self._status = None

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    def event_sink(self, body: Mapping[str, Any]) -> Callable[[Event], None]:
        return lambda event: self.emit(body, event)

    def check_jobs(self) -> list[JobObservation]:
        """This integration's check Jobs (from the Job watch), owned by this very object."""
        return owned_jobs(self.ctx.jobs.get(self.key, {}).values(), self.uid)

    # ---------------------------------------------------------------------------------- observe
    async def observe_deployments(
        self, spec: JeffreyIntegrationSpec
    ) -> tuple[dict[str, DeploymentObservation], bool]:
        """What is known of each listed Deployment: the watch's cache, else a live read (the
        Deployment is not labelled yet, or the watch has not delivered it yet). The flag says
        that no event will tell when this changes (a listed Deployment is missing, or was read
        live before its controller settled): the caller looks again by itself."""
        out: dict[str, DeploymentObservation] = {}
        cache = self.ctx.deployments
        now = time.monotonic()
        recheck = False
        for ls in spec.levels:
            for m in ls.modules:
                seen = cache.get(self.namespace, m.deployment)
                if seen is None or (
                    not seen.watched and (now - seen.read_at > UNWATCHED_TTL or not _settled(seen))
                ):
                    seen = await self.read_live(m.deployment)
                if seen is None:
                    recheck = True
                    continue
                out[m.deployment] = seen.observation
                recheck = recheck or (not seen.watched and not _settled(seen))
        return out, recheck

    async def read_live(self, deployment: str) -> Seen | None:
        live = await self.ctx.kube.read_deployment_body(self.namespace, deployment)
        if live is None:
            self.ctx.deployments.drop(self.namespace, deployment)
            return None
        return self.remember(live, watched=False)

    def remember(self, body: Mapping[str, Any], *, watched: bool) -> Seen:
        seen = seen_of(body, watched=watched)
        self.ctx.deployments.put(self.namespace, seen.observation.name, seen)
        return seen

    # ----------------------------------------------------------------------------------- iterate
    async def iterate(self, body: Mapping[str, Any]) -> float | None:
        """One observe → decide → act pass. Returns the seconds to wait at most (None: until an
        event)."""
        started = time.perf_counter()
        meta = body.get("metadata") or {}
        generation = int(meta.get("generation") or 1)
        self.uid = str(meta.get("uid", ""))
        if self.status is None:
            self.status = parse_status(body.get("status"), on_error=self._unreadable_status)
        old = self.status
        now = self.ctx.clock.now()
        parsed = parse_spec(body.get("spec") or {})
        if not isinstance(parsed, list):
            parsed = await self.ctx.egress.problems(parsed) or parsed
        wait: float | None = None
        seen: Mapping[str, DeploymentObservation] = {}
        # ---- observe
        if isinstance(parsed, list):
            spec = None
            decision = decide_invalid(old, parsed, generation, now)
        else:
            spec = parsed
            deployments, recheck = await self.observe_deployments(spec)
            seen = deployments
            report = GateReport()
            mode, level = gate_mode(old)
            if mode is not GateMode.NONE and not spec.paused:
                port = _gate_port(self.ctx, spec)
                report = await port.evaluate(
                    GateContext(
                        namespace=self.namespace,
                        name=self.name,
                        spec=spec,
                        mode=mode,
                        active_level=level,
                        level_started_at=parse_time(old.level_started_at),
                        previous=tuple(old.gates),
                        now=now,
                    )
                )
                if not isinstance(port, NoGates):
                    # On the wall-clock grid, so that integrations sharing gates share queries;
                    # and when a gate's `for` elapses, not a tick later.
                    tick = next_tick_delay(now, max(parse_duration(spec.analysis.interval), 1.0))
                    wait = _min(tick, report.reevaluate_after)
            claims = self.ctx.integrations.claims(self.namespace, deployments)
            checks = await self.checks.observe(spec, old, self.check_jobs(), self.ctx.http)
            observation = observe(body, spec, deployments, claims, report, checks=checks)
            if recheck:
                # A listed Deployment is missing or unsettled and not labelled yet: unwatched.
                wait = _min(wait, self.missing_backoff.next())
            else:
                self.missing_backoff.reset()
            # ---- decide
            decision = decide(spec, old, observation, now)

        # ---- act
        new = decision.status
        logs.log_notes(self.namespace, self.name, decision.notes)
        if spec is not None and not await self.act(decision, body, spec, seen):
            wait = _min(wait, self.scale_backoff.next())
        new = self.store_condition(new, generation, format_time(now))
        new = self.ctx.notifier.condition(self.key, new, generation, format_time(now))
        await self.write_status(body, old, new)
        self.ctx.notifier.offer(
            self.namespace, self.name, str(meta.get("uid", "")), body.get("spec") or {}, new
        )
        for event in decision.events:
            self.emit(body, event)
        # After the status write: a check Job exists only for a run that status already records.
        jobs = self.check_jobs()
        if spec is not None and (spec.checks or jobs):
            sink = self.event_sink(body)
            if not await self.checks.act(
                spec, decision.status, jobs, uid=self.uid, kube=self.ctx.kube, emit=sink
            ):
                wait = _min(wait, 1.0)
        if spec is not None:
            store_was_ok = self.store_ok
            await self.sync_store(spec, generation, str(meta.get("uid", "")))
            if self.store_ok is not store_was_ok:
                wait = 0.0  # one more pass writes the StateStoreAvailable condition
            elif self.store_ok is False:
                wait = _min(wait, max(self.store_retry_at - time.monotonic(), 0.1))
        self.ctx.telemetry.observe(self.namespace, self.name, decision, old, time.perf_counter() - started)
        return _min(wait, decision.requeue_after)

    async def act(
        self,
        decision: Decision,
        body: Mapping[str, Any],
        spec: JeffreyIntegrationSpec,
        seen: Mapping[str, DeploymentObservation],
    ) -> bool:
        """Scale (labelling in the same write; a correction of someone else's change is said),
        label the rest once Stable, release what the spec no longer lists. False when a scaling
        failed (the caller retries with backoff)."""
        ok = True
        scaled: set[str] = set()
        for action in decision.actions:
            observed = seen.get(action.deployment)
            if action.correction and observed is not None and self._drifted(action.deployment, observed):
                self.report_drift(body, decision, action.deployment, action.found, action.replicas)
            try:
                self.scaled[action.deployment] = await self.write_deployment(
                    action.deployment, replicas=action.replicas
                )
                scaled.add(action.deployment)
            except KubeError as exc:
                self.scaled[action.deployment] = None
                ok = False
                log.warning(
                    "scaling %s/%s to %d failed: %s", self.namespace, action.deployment, action.replicas, exc
                )
                self.emit(
                    body,
                    Event(
                        "Warning",
                        c.SCALE_FAILED,
                        f"scaling Deployment {action.deployment} to {action.replicas} failed: "
                        f"{exc.status} {exc.message}",
                    ),
                )
                if exc.status == 404:
                    self.ctx.deployments.drop(self.namespace, action.deployment)
                if not exc.retriable and exc.status != 404:
                    break
        if ok:
            self.scale_backoff.reset()
        listed = {m.deployment for ls in spec.levels for m in ls.modules}
        if ok and decision.status.phase is Phase.STABLE:
            await self.label_unlabelled(listed - scaled)
        before = self.listed
        if before is None:  # a restart or a new leader: what carries this integration's label
            before = set(self.ctx.deployments.owned_by(self.namespace, self.name))
        await self.release(before - listed)
        self.listed = listed
        return ok

    def _drifted(self, deployment: str, observed: DeploymentObservation) -> bool:
        if deployment not in self.scaled:
            return True  # not scaled by this process: the status is all we know
        ours = self.scaled[deployment]
        return ours is not None and observed.generation > ours

    def report_drift(
        self, body: Mapping[str, Any], decision: Decision, deployment: str, found: int, restored: int
    ) -> None:
        """A Warning Event on the JeffreyIntegration and a log line: the correction is not silent."""
        message = drift_message(deployment, found, restored)
        self.emit(body, Event("Warning", c.REPLICAS_RESTORED, message))
        st = decision.status
        logs.log_drift(
            self.namespace,
            self.name,
            deployment=deployment,
            found=found,
            restored=restored,
            level=st.current_level,
            phase=st.phase,
            reason=c.REPLICAS_RESTORED,
            message=message,
        )

    async def write_deployment(self, deployment: str, *, replicas: int | None) -> int:
        """Scale one Deployment, putting this integration's label on it in the same write when
        it does not carry it yet; the answer updates the cache (no stale re-scale meanwhile).
        Returns the Deployment's generation after the write."""
        seen = self.ctx.deployments.get(self.namespace, deployment)
        labels = None if seen is not None and seen.owner == self.name else {INTEGRATION_LABEL: self.name}
        if replicas is None:
            assert labels is not None
            body = await self.ctx.kube.label_deployment(self.namespace, deployment, labels)
        else:
            body = await self.ctx.kube.scale(self.namespace, deployment, replicas, labels=labels)
        return self.remember(body, watched=True).observation.generation

    async def label_unlabelled(self, deployments: set[str]) -> None:
        for deployment in sorted(deployments):
            seen = self.ctx.deployments.get(self.namespace, deployment)
            if seen is None or seen.owner == self.name or seen.observation.claimed_by:
                continue
            if seen.owner and (self.namespace, seen.owner) in self.ctx.integrations.bodies:
                continue  # another integration's; the claims rule decides, not the label
            try:
                await self.write_deployment(deployment, replicas=None)
            except KubeError as exc:
                log.warning("labelling %s/%s failed: %s", self.namespace, deployment, exc)

    async def release(self, deployments: set[str]) -> None:
        """Remove this integration's label from Deployments it no longer manages."""
        for deployment in sorted(deployments):
            seen = self.ctx.deployments.get(self.namespace, deployment)
            if seen is not None and seen.owner == self.name:
                await release_deployment(self.ctx, self.namespace, deployment)

    def store_condition(
        self, status: JeffreyIntegrationStatus, generation: int, now: str
    ) -> JeffreyIntegrationStatus:
        if self.store_ok is None:
            if isinstance(self.ctx.store, NoStateStore):  # none configured (now): nothing to report
                kept = [x for x in status.conditions if x.type != c.STATE_STORE_AVAILABLE]
                if len(kept) != len(status.conditions):
                    return status.model_copy(update={"conditions": kept})
            return status
        if self.store_ok:
            conds = c.set_condition(
                status.conditions,
                c.STATE_STORE_AVAILABLE,
                True,
                c.STATE_STORE_SYNCED,
                "the Redis state store mirrors this status",
                now=now,
                generation=generation,
            )
        else:
            conds = c.set_condition(
                status.conditions,
                c.STATE_STORE_AVAILABLE,
                False,
                c.STATE_STORE_UNAVAILABLE,
                "Redis is unreachable; integrating goes on and the history is back-filled when it returns",
                now=now,
                generation=generation,
            )
        return status.model_copy(update={"conditions": conds})

    async def write_status(
        self, body: Mapping[str, Any], old: JeffreyIntegrationStatus, new: JeffreyIntegrationStatus
    ) -> None:
        refreshed_ago = time.monotonic() - self.gates_written_at
        patch = status_patch(
            old.wire(), new.wire(), gates_refreshed_ago=refreshed_ago, refresh=self.ctx.gate_status_refresh
        )
        if not patch:
            return
        try:
            await self.ctx.kube.patch_status(self.namespace, self.name, patch)
        except KubeError as exc:
            if exc.status == 404:
                return  # deleted under our feet; the DELETED event drops this loop
            raise
        self.status = new
        self.store_dirty = True
        if "gates" in patch:
            self.gates_written_at = time.monotonic()

    async def sync_store(self, spec: JeffreyIntegrationSpec, generation: int, uid: str) -> None:
        if isinstance(self.ctx.store, NoStateStore) or self.status is None:
            return
        if not self.store_dirty and self.store_ok:
            return
        if self.store_ok is False and time.monotonic() < self.store_retry_at:
            return
        try:
            await self.ctx.store.publish(
                self.namespace,
                self.name,
                self.status,
                generation=generation,
                bus_max_rate=spec.bus.max_rate,
                uid=uid,
            )
        except StateStoreStale as exc:
            # Another writer holds a newer state (we may have lost leadership, or read an old
            # status): drop what we hold and re-read the object before deciding again.
            log.warning("state store refused a stale write for %s/%s: %s", self.namespace, self.name, exc)
            self.status = None
            self._store_failed()
            return
        except StateStoreUnavailable as exc:
            if self.store_ok is not False:
                log.warning("state store unavailable for %s/%s: %s", self.namespace, self.name, exc)
            self._store_failed()
            return
        if self.store_ok is False:
            logs.log_recovery(
                self.namespace,
                self.name,
                level=self.status.current_level,
                phase=self.status.phase,
                reason=c.STATE_STORE_SYNCED,
                message="the Redis state store answers again; status and history are mirrored",
            )
        self.store_ok = True
        self.store_dirty = False
        self.store_backoff.reset()

    def _store_failed(self) -> None:
        """Back off (1 s doubling to 30 s): no hot loop while the store is away or refusing."""
        self.store_ok = False
        self.store_dirty = True
        self.store_retry_at = time.monotonic() + self.store_backoff.next()

    def _unreadable_status(self, error: str) -> None:
        log.error(
            "unreadable status of %s/%s (%s); starting from an empty status", self.namespace, self.name, error
        )

    def emit(self, body: Mapping[str, Any], event: Event) -> None:
        if self.ctx.emit is not None:
            self.ctx.emit(body, event)


async def release_deployment(ctx: OperatorContext, namespace: str, deployment: str) -> None:
    """Remove the integration label from one Deployment (it stays as it is otherwise)."""
    try:
        await ctx.kube.label_deployment(namespace, deployment, {INTEGRATION_LABEL: None})
    except KubeError as exc:
        if exc.status != 404:
            log.warning("releasing %s/%s failed: %s", namespace, deployment, exc)
            return
    ctx.deployments.drop(namespace, deployment)


async def reconcile(ctx: OperatorContext, key: Key) -> float | None:
    """The work queue's handler: one reconcile of one integration (see the module docstring)."""
    body = ctx.integrations.bodies.get(key)
    if body is None:
        ctx.loops.pop(key, None)
        return None
    loop = ctx.loops.get(key)
    if loop is None:
        loop = ctx.loops[key] = IntegrationLoop(ctx=ctx, namespace=key[0], name=key[1])
    if not loop.has_status and STATUS_OMITTED in body:
        # The status was left out of memory while a loop held its own; read it afresh.
        live = await ctx.kube.read_integration(*key)
        if live is None:
            return None
        body = slim_body(live, keep_status=True)
        ctx.integrations.bodies[key] = body
    try:
        return await loop.iterate(body)
    except (ValidationError, ValueError) as exc:  # a status we cannot use: start afresh
        log.error("unusable status of %s/%s (%s); starting from an empty status", key[0], key[1], exc)
        loop.status = JeffreyIntegrationStatus()
        return 1.0
    finally:
        loop.park()


def _settled(seen: Seen) -> bool:
    """The Deployment controller has seen the Deployment's current generation."""
    return seen.observation.observed_generation >= seen.observation.generation


def _min(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else None


__all__ = [
    "IntegrationLoop",
    "OperatorContext",
    "reconcile",
    "release_deployment",
    "slim_body",
    "status_patch",
]
