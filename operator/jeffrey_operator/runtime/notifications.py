"""The notification delivery worker: one task per (integration, sink), beside the ladder.

The reconciler hands the worker each status it wrote (:meth:`Notifier.offer`, which only stores a
snapshot and sets an event: it never waits), and asks it for the ``NotificationsDelivered``
condition (:meth:`Notifier.condition`). Each sink's task derives what to send from the snapshot
(:mod:`jeffrey_operator.core.notify`), sends through :mod:`jeffrey_operator.adapters.notify`,
retries failures with backoff (:func:`~jeffrey_operator.adapters.resilience.backoff_delay`), and
records the sink's cursor in ``status.notifications`` after each delivery. So:

- delivery never blocks or slows the ladder, and a sink that is down holds only itself;
- at least once: the cursor moves only after a delivery succeeded; a restart between the two
  re-sends that one notification, with the same idempotency key;
- the worker is the only writer of ``status.notifications``; conditions stay the reconciler's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from jeffrey_operator.adapters.notify import DeliveryError, Senders, SinkTarget, wire_alerts
from jeffrey_operator.adapters.resilience import backoff_delay
from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.durations import parse_duration
from jeffrey_operator.core.models import JeffreyIntegrationStatus, NotificationSpec, NotifyEvent, SinkDelivery
from jeffrey_operator.core.notify import (
    PROBLEMS,
    Alert,
    Cursor,
    Notice,
    SinkHealth,
    alerts,
    delivery_condition,
    initial_cursor,
    notices,
    pending,
    stall,
)
from jeffrey_operator.core.ports import Clock, NoTelemetry, SystemClock, Telemetry
from jeffrey_operator.core.timestamps import format_time

log = logging.getLogger(__name__)

Key = tuple[str, str]


class StatusWriter(Protocol):
    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Any: ...


class NotifierPort(Protocol):
    """What the reconciler needs of the delivery worker."""

    def offer(
        self, namespace: str, name: str, uid: str, spec: Mapping[str, Any], status: JeffreyIntegrationStatus
    ) -> None: ...

    def condition(
        self, key: Key, status: JeffreyIntegrationStatus, generation: int, now: str
    ) -> JeffreyIntegrationStatus: ...

    def forget(self, key: Key) -> None: ...

    async def close(self) -> None: ...


class NoNotifier:
    """No notifications (tests and tools that do not need them)."""

    def offer(
        self, namespace: str, name: str, uid: str, spec: Mapping[str, Any], status: JeffreyIntegrationStatus
    ) -> None:
        return None

    def condition(
        self, key: Key, status: JeffreyIntegrationStatus, generation: int, now: str
    ) -> JeffreyIntegrationStatus:
        return status

    def forget(self, key: Key) -> None:
        return None

    async def close(self) -> None:
        return None


def parse_sinks(spec: Mapping[str, Any]) -> tuple[list[NotificationSpec], float]:
    """The sinks and ``stalledAfter`` of a raw spec, leniently: a spec that is Invalid for
    another reason still has its sinks told so; a sink that does not parse is skipped (the
    integration is Invalid because of it, and the other sinks say so)."""
    out: list[NotificationSpec] = []
    seen: set[str] = set()
    for raw in spec.get("notifications") or []:
        try:
            sink = NotificationSpec.model_validate(raw)
        except (ValidationError, TypeError):
            continue
        if sink.name not in seen:
            seen.add(sink.name)
            out.append(sink)
    try:
        stalled_after = parse_duration(str(spec.get("stalledAfter") or "10m"))
    except ValueError:
        stalled_after = 600.0
    return out, stalled_after


@dataclass
class _Snapshot:
    uid: str
    status: JeffreyIntegrationStatus
    stalled_after: float


@dataclass
class _Sink:
    target: SinkTarget
    cursor: Cursor
    health: SinkHealth
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: Alertmanager: the alerts the status stood for when last posted, which of them were
    #: firing, and when (monotonic).
    posted: dict[tuple[tuple[str, str], ...], Alert] = field(default_factory=dict)
    firing: set[tuple[tuple[str, str], ...]] = field(default_factory=set)
    posted_at: float = 0.0
    #: When the notification at the cursor was delivered (RFC 3339; "" before the first one).
    delivered_at: str = ""


@dataclass
class _Integration:
    namespace: str
    name: str
    snapshot: _Snapshot
    sinks: dict[str, _Sink] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The cursors as last written to status (so a write happens only when one moved).
    written: dict[str, Cursor] = field(default_factory=dict)
    #: Delivery times read from status when the operator started.
    delivered_at: dict[str, str] = field(default_factory=dict)


class Notifier:
    """The delivery worker of one operator process."""

    def __init__(
        self,
        kube: StatusWriter,
        senders: Senders,
        *,
        clock: Clock | None = None,
        defaults: Sequence[NotificationSpec] = (),
        operator_namespace: str = "",
        telemetry: Telemetry | None = None,
        wake: Callable[[Key], None] | None = None,
        retry_base: float = 1.0,
        retry_cap: float = 300.0,
        resend: float = 60.0,
        alert_ttl: float = 300.0,
    ) -> None:
        self.kube = kube
        self.senders = senders
        self.clock = clock or SystemClock()
        self.defaults = tuple(defaults)
        self.operator_namespace = operator_namespace
        self.telemetry: Telemetry = telemetry or NoTelemetry()
        self.record = self.telemetry.record_notification
        self.wake = wake or (lambda key: None)
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        #: Firing alerts are posted again this often (seconds) …
        self.resend = resend
        #: … and end this long after the last post unless posted again.
        self.alert_ttl = alert_ttl
        self._integrations: dict[Key, _Integration] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------------------- reconciler side
    def offer(
        self, namespace: str, name: str, uid: str, spec: Mapping[str, Any], status: JeffreyIntegrationStatus
    ) -> None:
        """The status the reconciler just wrote (or found unchanged). Never waits."""
        key = (namespace, name)
        own, stalled_after = parse_sinks(spec)
        names = {s.name for s in own}
        sinks = [(d, True) for d in self.defaults if d.name not in names] + [(s, False) for s in own]
        integ = self._integrations.get(key)
        if integ is None and not sinks:
            return
        snapshot = _Snapshot(uid=uid, status=status, stalled_after=stalled_after)
        if integ is None:
            integ = _Integration(namespace, name, snapshot)
            integ.written = {d.name: Cursor.of(d) for d in status.notifications}
            integ.delivered_at = {d.name: d.time for d in status.notifications}
            self._integrations[key] = integ
        integ.snapshot = snapshot
        wanted: dict[str, SinkTarget] = {
            sink.name: SinkTarget(
                namespace=namespace,
                name=name,
                uid=uid,
                sink=sink,
                secret_namespace=self.operator_namespace if default else namespace,
            )
            for sink, default in sinks
        }
        for gone in set(integ.sinks) - set(wanted):
            removed = integ.sinks.pop(gone)
            self._stop(removed)
            self.telemetry.set_notification_failures(namespace, name, gone, removed.target.sink.kind, None)
        for sink_name, target in wanted.items():
            state = integ.sinks.get(sink_name)
            if state is None:
                cursor = integ.written.get(sink_name)
                if cursor is None:
                    now = self.clock.now()
                    cursor = initial_cursor(notices(status, now, stalled_after), now)
                state = _Sink(target=target, cursor=cursor, health=SinkHealth(target.sink.kind))
                self.telemetry.set_notification_failures(namespace, name, sink_name, target.sink.kind, 0)
                state.delivered_at = integ.delivered_at.get(sink_name, "")
                integ.sinks[sink_name] = state
                state.task = asyncio.ensure_future(self._run(key, integ, state))
            elif state.target != target:
                state.target = target
            state.changed.set()
        if set(integ.sinks) != set(integ.written):
            # Record new sinks' starting points at once: a restart before their first delivery
            # must not take them for new again (and skip what they have not been told yet).
            self._background(self._persist(integ))

    def condition(
        self, key: Key, status: JeffreyIntegrationStatus, generation: int, now: str
    ) -> JeffreyIntegrationStatus:
        """``status`` with the ``NotificationsDelivered`` condition (removed when no sinks)."""
        integ = self._integrations.get(key)
        verdict = delivery_condition({n: s.health for n, s in integ.sinks.items()} if integ else {})
        if verdict is None:
            if any(cond.type == c.NOTIFICATIONS_DELIVERED for cond in status.conditions):
                kept = [cond for cond in status.conditions if cond.type != c.NOTIFICATIONS_DELIVERED]
                return status.model_copy(update={"conditions": kept})
            return status
        conds = c.set_condition(
            status.conditions,
            c.NOTIFICATIONS_DELIVERED,
            verdict.status,
            verdict.reason,
            verdict.message,
            now=now,
            generation=generation,
        )
        return status.model_copy(update={"conditions": conds})

    def forget(self, key: Key) -> None:
        """The integration was deleted: stop its sinks, and resolve the alerts they left firing
        (once, best effort: otherwise they would end only when their endsAt passes)."""
        integ = self._integrations.pop(key, None)
        if integ is None:
            return
        stamp = format_time(self.clock.now())
        for state in integ.sinks.values():
            self._stop(state)
            if state.firing and state.target.sink.alertmanager is not None:
                resolved = [
                    Alert(a.labels, a.annotations, a.starts_at, stamp).wire(self.clock.now(), 0)
                    for labels, a in state.posted.items()
                    if labels in state.firing
                ]
                self._background(self._post_quietly(state.target, resolved))

    async def _post_quietly(self, target: SinkTarget, alerts: list[dict[str, Any]]) -> None:
        try:
            await self.senders.post_alerts(target, alerts)
            self.record("alertmanager", "delivered")
        except DeliveryError as exc:
            self.record("alertmanager", "refused" if exc.refused else "failed")
            log.warning(
                "could not resolve the alerts of deleted %s/%s: %s", target.namespace, target.name, exc
            )

    async def close(self) -> None:
        """Operator shutdown: stop every sink (alerts stay firing; the next operator goes on)."""
        tasks = [s.task for i in self._integrations.values() for s in i.sinks.values() if s.task]
        for integ in self._integrations.values():
            for state in integ.sinks.values():
                self._stop(state)
        self._integrations.clear()
        tasks += list(self._tasks)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.senders.close()

    def health(self, key: Key) -> dict[str, SinkHealth]:
        integ = self._integrations.get(key)
        return {n: s.health for n, s in integ.sinks.items()} if integ else {}

    @staticmethod
    def _stop(state: _Sink) -> None:
        if state.task is not None:
            state.task.cancel()

    # -------------------------------------------------------------------------------- sink side
    async def _run(self, key: Key, integ: _Integration, state: _Sink) -> None:
        failures = 0
        while True:
            state.changed.clear()
            try:
                wait = await self._step(integ, state)
            except asyncio.CancelledError:
                raise
            except DeliveryError as exc:
                self.record(state.target.sink.kind, "refused" if exc.refused else "failed")
                failures += 1
                delay = backoff_delay(failures - 1, base=self.retry_base, cap=self.retry_cap)
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "notification sink %s of %s/%s failed (%s); retry %d in %.1fs",
                        state.target.sink.name,
                        integ.namespace,
                        integ.name,
                        exc,
                        failures,
                        delay,
                    )
                self._set_health(key, state, failures=failures, error=str(exc), refused=exc.refused)
                await asyncio.sleep(delay)  # a change does not cut a backoff short
                continue
            except Exception:
                log.exception("notification sink %s of %s/%s crashed", state.target.sink.name, *key)
                failures += 1
                await asyncio.sleep(backoff_delay(failures - 1, base=self.retry_base, cap=self.retry_cap))
                continue
            if failures:
                log.info("notification sink %s of %s/%s delivers again", state.target.sink.name, *key)
            failures = 0
            self._set_health(key, state, failures=0, error="", refused=False)
            if wait == 0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.changed.wait(), timeout=wait)

    async def _step(self, integ: _Integration, state: _Sink) -> float | None:
        """Deliver what is due; return the seconds to wait (0: more now, None: until a change)."""
        snap = integ.snapshot
        now = self.clock.now()
        everything = notices(snap.status, now, snap.stalled_after)
        _, stall_in = stall(snap.status, now, snap.stalled_after)
        if state.target.sink.alertmanager is not None:
            return _min(stall_in, await self._alertmanager(integ, state, everything, now))
        todo = pending(state.target.sink, everything, state.cursor)
        if not todo:
            return stall_in
        notice = todo[0]
        await self.senders.send(state.target, notice)
        self.record(state.target.sink.kind, "delivered")
        state.cursor = notice.cursor
        state.delivered_at = format_time(self.clock.now())
        await self._persist(integ)
        return 0

    async def _alertmanager(
        self, integ: _Integration, state: _Sink, everything: list[Notice], now: Any
    ) -> float | None:
        """Post the alerts the status stands for when they changed, and the firing ones again
        every ``resend`` seconds; return when to look again."""
        derived = {a.labels: a for a in alerts(integ.namespace, integ.name, state.target.sink, everything)}
        stamp = format_time(now)
        payload = dict(derived)
        # Posted as firing and now gone from the status (a stall that ended): resolve them now.
        for labels in state.firing - set(derived):
            old = state.posted[labels]
            payload[labels] = Alert(old.labels, old.annotations, old.starts_at, stamp)
        firing = {labels for labels, a in derived.items() if a.ends_at is None}
        refresh = bool(firing) and time.monotonic() - state.posted_at >= self.resend * 0.9
        if payload and (derived != state.posted or state.firing - firing or refresh):
            await self.senders.post_alerts(
                state.target, wire_alerts(list(payload.values()), now, self.alert_ttl)
            )
            self.record("alertmanager", "delivered")
            state.posted_at = time.monotonic()
            state.posted = derived
            state.firing = firing
            told = [n for n in everything if n.event in PROBLEMS or n.event is NotifyEvent.TARGET_REACHED]
            if told and told[-1].key > state.cursor.key:
                state.cursor = told[-1].cursor
                state.delivered_at = stamp
                await self._persist(integ)
        return self.resend if firing else None

    async def _persist(self, integ: _Integration) -> None:
        """Write every sink's cursor to ``status.notifications`` (only the worker writes it)."""
        async with integ.lock:
            cursors = {n: s.cursor for n, s in integ.sinks.items()}
            if cursors == integ.written:
                return
            entries = [
                SinkDelivery(name=n, seq=s.cursor.seq, event=s.cursor.event, time=s.delivered_at).wire()
                for n, s in sorted(integ.sinks.items())
            ]
            try:
                await self.kube.patch_status(integ.namespace, integ.name, {"notifications": entries})
            except Exception as exc:  # the cursor stays in memory; the next delivery writes it
                log.warning(
                    "could not record notification progress of %s/%s: %s", integ.namespace, integ.name, exc
                )
                return
            integ.written = cursors

    def _set_health(self, key: Key, state: _Sink, *, failures: int, error: str, refused: bool) -> None:
        before = state.health
        state.health = SinkHealth(state.target.sink.kind, failures, error, refused)
        self.telemetry.set_notification_failures(
            *key, state.target.sink.name, state.target.sink.kind, failures
        )
        if (before.failures > 0) != (failures > 0) or before.error != error:
            self.wake(key)  # the reconciler writes the NotificationsDelivered condition


def _min(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else None
