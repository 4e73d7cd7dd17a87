"""One integration's control loop: observe → decide → act, run by a kopf daemon.

The loop wakes when the JeffreyIntegration or one of its Deployments changes, when a deadline
the engine asked for comes, and every ``analysis.interval`` while gates apply. It writes status
only when something changed, so at steady state it makes no API writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from jeffrey_operator.adapters.egress import EgressGuard
from jeffrey_operator.adapters.kube import Kube, KubeError, merge_patch
from jeffrey_operator.adapters.prometheus.gates import next_tick_delay
from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.durations import parse_duration
from jeffrey_operator.core.engine import Decision, decide, decide_invalid, gate_mode
from jeffrey_operator.core.messages import drift_message
from jeffrey_operator.core.models import (
    RETRY_ANNOTATION,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
)
from jeffrey_operator.core.ports import (
    MISSING,
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
    Observation,
    StateStorePort,
    StateStoreStale,
    StateStoreUnavailable,
    SystemClock,
)
from jeffrey_operator.core.timestamps import format_time, parse_time
from jeffrey_operator.core.validation import Claim, claim_of, parse_spec, prior_claims
from jeffrey_operator.runtime import logs
from jeffrey_operator.runtime.checks import CheckRuns, owned_jobs
from jeffrey_operator.runtime.notifications import NoNotifier, NotifierPort

log = logging.getLogger(__name__)

Key = tuple[str, str]


class Telemetry(Protocol):
    """The operator's own metrics (see :mod:`jeffrey_operator.adapters.telemetry`)."""

    def observe(
        self, namespace: str, name: str, decision: Decision, old: JeffreyIntegrationStatus, seconds: float
    ) -> None: ...

    def forget(self, namespace: str, name: str) -> None: ...


class NoTelemetry:
    def observe(
        self, namespace: str, name: str, decision: Decision, old: JeffreyIntegrationStatus, seconds: float
    ) -> None:
        return None

    def forget(self, namespace: str, name: str) -> None:
        return None


EventSink = Callable[[Mapping[str, Any], Event], None]


@dataclass
class OperatorContext:
    """Everything the handlers share; lives in kopf's operator memo (one per process)."""

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
    #: Integration → event that wakes its loop.
    wakers: dict[Key, asyncio.Event] = field(default_factory=dict)
    #: (namespace, Deployment) → integrations that list it.
    refs: dict[Key, set[Key]] = field(default_factory=dict)
    #: Judges the URLs a spec makes the operator call, DNS included: a refusal makes it Invalid.
    egress: EgressGuard = field(default_factory=EgressGuard)
    #: The notification delivery worker (:mod:`jeffrey_operator.runtime.notifications`).
    notifier: NotifierPort = field(default_factory=NoNotifier)

    def wake(self, key: Key) -> None:
        event = self.wakers.get(key)
        if event is not None:
            event.set()

    async def close(self) -> None:
        for adapter in (self.gates, self.store, self.http, self.notifier):
            closer = getattr(adapter, "close", None) or getattr(adapter, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception as exc:
                    log.debug("closing %r failed: %s", adapter, exc)

    def track(self, key: Key, old: set[Key], new: set[Key]) -> None:
        """Record which Deployments ``key`` lists now (O(changes), not O(all references))."""
        for ref in old - new:
            users = self.refs.get(ref)
            if users is not None:
                users.discard(key)
                if not users:
                    del self.refs[ref]
        for ref in new - old:
            self.refs.setdefault(ref, set()).add(key)

    def wake_deployment(self, namespace: str, name: str) -> None:
        for key in self.refs.get((namespace, name), ()):
            self.wake(key)


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


@dataclass
class IntegrationLoop:
    """The state of one integration's daemon between iterations (in memory only: everything that
    matters for a restart is in status)."""

    ctx: OperatorContext
    namespace: str
    name: str
    deployments_index: Mapping[Key, Any]
    claims_index: Mapping[Key, Any]
    status: JeffreyIntegrationStatus | None = None
    store_ok: bool | None = None
    store_retry_at: float = 0.0
    store_backoff: float = 1.0
    store_dirty: bool = True
    gates_written_at: float = 0.0
    #: The Deployments this loop is registered for in ``ctx.refs``.
    tracked: set[Key] = field(default_factory=set)
    scale_backoff: float = 0.0
    #: Deployment → its generation right after this loop last scaled it (None: that scaling
    #: failed). An observation older than that lags behind us; a newer one was changed by someone.
    scaled: dict[str, int | None] = field(default_factory=dict)
    #: kopf's index of check Jobs: (namespace, integration) → JobObservation (see handlers.jobs).
    jobs_index: Mapping[Key, Any] = field(default_factory=dict)
    #: ``metadata.uid`` of the object (check Jobs carry it in their owner reference).
    uid: str = ""
    #: The runs of this integration's level checks (:mod:`jeffrey_operator.runtime.checks`).
    checks: CheckRuns = field(init=False)

    def __post_init__(self) -> None:
        self.checks = CheckRuns(self.namespace, self.name)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    def event_sink(self, body: Mapping[str, Any]) -> Callable[[Event], None]:
        return lambda event: self.emit(body, event)

    # ---------------------------------------------------------------------------------- observe
    def observe_deployments(self, spec: JeffreyIntegrationSpec, mine: Claim) -> dict[str, Any]:
        out: dict[str, DeploymentObservation] = {}
        wanted = {(self.namespace, m.deployment) for ls in spec.levels for m in ls.modules}
        if wanted != self.tracked:
            self.ctx.track(self.key, self.tracked, wanted)
            self.tracked = wanted
        for ls in spec.levels:
            for m in ls.modules:
                ref = (self.namespace, m.deployment)
                found = _first(self.deployments_index.get(ref))
                seen = (
                    found
                    if isinstance(found, DeploymentObservation)
                    else dataclasses.replace(MISSING, name=m.deployment)
                )
                claimers = prior_claims(mine, _all(self.claims_index.get(ref)), self.namespace)
                out[m.deployment] = dataclasses.replace(seen, claimed_by=claimers)
        return out

    async def confirm_missing(self, spec: JeffreyIntegrationSpec, seen: dict[str, Any]) -> None:
        """The watch cache may lag behind a Deployment created a moment ago: before a required
        module is reported missing (which makes the spec Invalid), ask the API directly."""
        for ls in spec.levels:
            if ls.level.rank > spec.target_level.rank:
                continue
            for m in ls.modules:
                if m.optional or seen[m.deployment].exists:
                    continue
                live = await self.ctx.kube.read_deployment(self.namespace, m.deployment)
                if live is not None:
                    seen[m.deployment] = dataclasses.replace(live, claimed_by=seen[m.deployment].claimed_by)

    # ----------------------------------------------------------------------------------- iterate
    async def iterate(self, body: Mapping[str, Any]) -> float | None:
        """One observe → decide → act pass. Returns the seconds to sleep at most (None: until woken)."""
        started = time.perf_counter()
        meta = body.get("metadata") or {}
        generation = int(meta.get("generation") or 1)
        self.uid = str(meta.get("uid", ""))
        if self.status is None:
            self.status = _parse_status(body.get("status"))
        old = self.status
        now = self.ctx.clock.now()
        parsed = parse_spec(body.get("spec") or {})
        if not isinstance(parsed, list):
            parsed = await self.ctx.egress.problems(parsed) or parsed
        wait: float | None = None
        seen: Mapping[str, DeploymentObservation] = {}
        if isinstance(parsed, list):
            decision = decide_invalid(old, parsed, generation, now)
            spec = None
        else:
            spec = parsed
            deployments = self.observe_deployments(spec, claim_of(meta))
            await self.confirm_missing(spec, deployments)
            seen = deployments
            mode, level = gate_mode(old)
            report = GateReport()
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
                    # On the wall-clock grid, so that integrations sharing gates share queries.
                    wait = next_tick_delay(now, max(parse_duration(spec.analysis.interval), 1.0))
            annotations = meta.get("annotations") or {}
            observation = Observation(
                generation=generation,
                deployments=deployments,
                gates=report,
                retry_token=str(annotations.get(RETRY_ANNOTATION, "") or ""),
                namespace=self.namespace,
                checks=await self.checks.observe(spec, old, self.check_jobs(), self.ctx.http),
                name=self.name,
            )
            decision = decide(spec, old, observation, now)

        new = decision.status
        scaled_ok = await self.act(decision, body, seen)
        if not scaled_ok:
            wait = _min(wait, self.scale_backoff)
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

    # ------------------------------------------------------------------------------------ checks
    def check_jobs(self) -> list[JobObservation]:
        """This integration's check Jobs (from kopf's index), owned by this very object."""
        return owned_jobs(_all(self.jobs_index.get(self.key)), self.uid)

    async def act(
        self,
        decision: Decision,
        body: Mapping[str, Any],
        seen: Mapping[str, DeploymentObservation] | None = None,
    ) -> bool:
        logs.log_notes(self.namespace, self.name, decision.notes)
        ok = True
        for action in decision.actions:
            observed = (seen or {}).get(action.deployment)
            if action.correction and observed is not None and self._drifted(action.deployment, observed):
                self.report_drift(body, decision, action.deployment, action.found, action.replicas)
            try:
                generation = await self.ctx.kube.scale(self.namespace, action.deployment, action.replicas)
                self.scaled[action.deployment] = generation
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
                if not exc.retriable and exc.status != 404:
                    break
        self.scale_backoff = 0.0 if ok else min(max(self.scale_backoff * 2, 1.0), 60.0)
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
                return  # deleted under our feet; the daemon is being stopped
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
        self.store_backoff = 1.0

    def _store_failed(self) -> None:
        """Back off (1 s doubling to 30 s): no hot loop while the store is away or refusing."""
        self.store_ok = False
        self.store_dirty = True
        self.store_retry_at = time.monotonic() + self.store_backoff
        self.store_backoff = min(self.store_backoff * 2, 30.0)

    def emit(self, body: Mapping[str, Any], event: Event) -> None:
        if self.ctx.emit is not None:
            self.ctx.emit(body, event)


async def run_loop(
    loop: IntegrationLoop,
    body: Mapping[str, Any],
    stopped: Any,
) -> None:
    """Iterate until ``stopped``; sleep until woken or until the next deadline."""
    waker = loop.ctx.wakers.setdefault(loop.key, asyncio.Event())
    failures = 0
    try:
        while not stopped:
            waker.clear()
            try:
                wait = await loop.iterate(body)
                failures = 0
            except KubeError as exc:
                failures += 1
                wait = min(2.0**failures, 60.0)
                log.warning(
                    "reconcile of %s/%s failed (%s); retrying in %.0fs", loop.namespace, loop.name, exc, wait
                )
            except (ValidationError, ValueError) as exc:  # a status we cannot read: start afresh
                log.error(
                    "unreadable status of %s/%s (%s); starting from an empty status",
                    loop.namespace,
                    loop.name,
                    exc,
                )
                loop.status = JeffreyIntegrationStatus()
                wait = 1.0
            if stopped:
                break
            waiter = asyncio.ensure_future(waker.wait())
            stopper = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()
    finally:
        if loop.ctx.wakers.get(loop.key) is waker:
            del loop.ctx.wakers[loop.key]
        loop.ctx.track(loop.key, loop.tracked, set())
        loop.tracked = set()


def _parse_status(raw: Any) -> JeffreyIntegrationStatus:
    if not raw:
        return JeffreyIntegrationStatus()
    try:
        return JeffreyIntegrationStatus.model_validate(dict(raw))
    except ValidationError:
        log.error("ignoring an unreadable status: %s", raw)
        return JeffreyIntegrationStatus()


def _min(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else None


def _first(store: Any) -> Any:
    if store is None:
        return None
    for item in store:
        return item
    return None


def _all(store: Any) -> list[Any]:
    return list(store) if store is not None else []
