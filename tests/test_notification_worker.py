"""The delivery worker (jeffrey_operator.runtime.notifications) with fake senders and a fake clock:
ordering, cursors in status, a down sink that holds only itself, Alertmanager re-posts and the
resolution of a stall that ended."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jeffrey_operator.adapters.notify import DeliveryError, SinkTarget
from jeffrey_operator.core.models import (
    Condition,
    JeffreyIntegrationStatus,
    Level,
    Phase,
    SinkDelivery,
    Transition,
)
from jeffrey_operator.core.notify import Notice
from jeffrey_operator.core.timestamps import format_time
from jeffrey_operator.runtime.notifications import Notifier

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime.datetime:
        return self.t


class FakeSenders:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str]] = []
        self.alerts: list[list[dict[str, Any]]] = []
        self.down: set[str] = set()

    async def send(self, target: SinkTarget, notice: Notice) -> None:
        if target.sink.name in self.down:
            raise DeliveryError("HTTP 503 Service Unavailable")
        self.sent.append((target.sink.name, notice.seq, notice.event.value))

    async def post_alerts(self, target: SinkTarget, alerts: Sequence[dict[str, Any]]) -> None:
        if target.sink.name in self.down:
            raise DeliveryError("unreachable: ClientConnectorError")
        self.alerts.append(list(alerts))

    async def close(self) -> None:
        return None


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Any:
        self.patches.append(dict(patch))
        return {}


async def until(check: Callable[[], Any], within: float = 3.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def tr(seq: int, seconds: float, phase: Phase, reason: str = "", **kw: Any) -> Transition:
    return Transition(
        seq=seq,
        time=format_time(T0 + datetime.timedelta(seconds=seconds)),
        phase=phase,
        reason=reason or phase.value,
        **kw,
    )


HOOK = {
    "name": "audit",
    "on": ["RolledBack", "TargetReached", "Recovered"],
    "webhook": {"url": "http://h/", "secretRef": {"name": "s", "key": "k"}},
}
SLACK = {"name": "team", "slack": {"urlSecretRef": {"name": "s", "key": "u"}}}
AM = {"name": "oncall", "on": ["RolledBack", "Stalled"], "alertmanager": {"url": "http://am:9093"}}


def make(senders: FakeSenders, kube: FakeKube, clock: FakeClock, woken: list[Any] | None = None) -> Notifier:
    return Notifier(
        kube,
        senders,  # type: ignore[arg-type]
        clock=clock,
        wake=(woken.append if woken is not None else None),
        retry_base=0.01,
        retry_cap=0.02,
        resend=0.2,
    )


async def test_in_order_with_cursors_in_status_and_a_down_sink_holding_only_itself() -> None:
    senders, kube, clock, woken = FakeSenders(), FakeKube(), FakeClock(), []
    clock.t = T0 + datetime.timedelta(seconds=30)
    notifier = make(senders, kube, clock, woken)
    senders.down.add("team")
    status = JeffreyIntegrationStatus(
        transitions=[
            tr(1, 0, Phase.ROLLING_BACK, "GateBreach", from_level=Level.LOOPS),
            tr(2, 1, Phase.ROLLED_BACK),
            tr(3, 20, Phase.STABLE, "TargetReached", to_level=Level.LOOPS),
        ],
        transition_seq=3,
    )
    try:
        notifier.offer("ns", "ji", "uid", {"notifications": [HOOK, SLACK]}, status)
        await until(lambda: len(senders.sent) == 3)
        assert senders.sent == [
            ("audit", 1, "RolledBack"),
            ("audit", 3, "TargetReached"),
            ("audit", 3, "Recovered"),
        ]
        written = await until(
            lambda: [p for p in kube.patches if any(d["seq"] == 3 for d in p["notifications"])]
        )
        assert {d["name"]: (d["seq"], d["event"]) for d in written[-1]["notifications"]} == {
            "audit": (3, "Recovered"),
            "team": (0, ""),  # recorded at once: a restart will not take it for a new sink
        }
        health = await until(lambda: (h := notifier.health(("ns", "ji"))) and h["team"].failures >= 2 and h)
        assert health["team"].error == "HTTP 503 Service Unavailable" and health["audit"].failures == 0
        assert ("ns", "ji") in woken  # the reconciler is told to write the condition
        cond = notifier.condition(("ns", "ji"), status, 1, format_time(clock.t)).conditions[0]
        assert (cond.type, cond.status.value, cond.reason) == (
            "NotificationsDelivered",
            "False",
            "NotificationFailing",
        )
        senders.down.clear()
        await until(lambda: ("team", 1, "RolledBack") in senders.sent)
        await until(lambda: notifier.health(("ns", "ji"))["team"].failures == 0)
        cond = notifier.condition(("ns", "ji"), status, 1, format_time(clock.t)).conditions[0]
        assert (cond.status.value, cond.reason) == ("True", "NotificationsUpToDate")
    finally:
        await notifier.close()


async def test_a_restart_resumes_from_the_cursor_in_status() -> None:
    senders, kube, clock = FakeSenders(), FakeKube(), FakeClock()
    status = JeffreyIntegrationStatus(
        transitions=[tr(1, 0, Phase.ROLLING_BACK, "GateBreach"), tr(2, 5, Phase.STABLE, "TargetReached")],
        transition_seq=2,
        notifications=[SinkDelivery(name="audit", seq=1, event="RolledBack")],
    )
    clock.t = T0 + datetime.timedelta(hours=1)  # long ago: only the cursor tells what is left
    notifier = make(senders, kube, clock)
    try:
        notifier.offer("ns", "ji", "uid", {"notifications": [HOOK]}, status)
        await until(lambda: len(senders.sent) == 2)
        assert senders.sent == [("audit", 2, "TargetReached"), ("audit", 2, "Recovered")]
        # A sink never seen before starts after old history: nothing to tell it.
        notifier.offer("ns", "ji", "uid", {"notifications": [HOOK, {**HOOK, "name": "late"}]}, status)
        await asyncio.sleep(0.2)
        assert [s for s in senders.sent if s[0] == "late"] == []
    finally:
        await notifier.close()


async def test_alertmanager_reposts_firing_alerts_and_resolves_a_stall_that_ended() -> None:
    senders, kube, clock = FakeSenders(), FakeKube(), FakeClock()
    notifier = make(senders, kube, clock)
    held = Condition(
        type="MetricsAvailable",
        status="False",  # type: ignore[arg-type]
        reason="PrometheusUnavailable",
        message="Prometheus unreachable",
        last_transition_time=format_time(T0),
    )
    stalled = JeffreyIntegrationStatus(
        phase=Phase.VALIDATING,
        active_level=Level.COGNITIVE,
        phase_since=format_time(T0),
        conditions=[held],
        transitions=[tr(1, 0, Phase.VALIDATING)],
        transition_seq=1,
    )
    spec = {"stalledAfter": "1m", "notifications": [AM]}
    try:
        clock.t = T0 + datetime.timedelta(seconds=30)
        notifier.offer("ns", "ji", "uid", spec, stalled)
        await asyncio.sleep(0.1)
        assert senders.alerts == []  # held, but not for a minute yet
        clock.t = T0 + datetime.timedelta(seconds=61)
        notifier.offer("ns", "ji", "uid", spec, stalled)
        (first,) = (await until(lambda: senders.alerts))[0]
        assert first["labels"]["alertname"] == "JeffreyIntegrationStalled"
        assert (
            first["labels"]["level"] == "COGNITIVE" and first["labels"]["reason"] == "PrometheusUnavailable"
        )
        assert first["endsAt"] > format_time(clock.t)  # firing, for the TTL
        await until(lambda: len(senders.alerts) >= 2, within=2)  # posted again (resend 0.2 s)
        # Prometheus is back and the climb moves on: the Stalled alert is resolved now.
        clock.t = T0 + datetime.timedelta(seconds=70)
        moving = stalled.model_copy(
            update={
                "conditions": [],
                "transitions": [*stalled.transitions, tr(2, 70, Phase.COOLING_DOWN)],
                "transition_seq": 2,
            }
        )
        notifier.offer("ns", "ji", "uid", spec, moving)
        resolved = await until(
            lambda: [a for batch in senders.alerts for a in batch if a["endsAt"] == format_time(clock.t)]
        )
        assert resolved[0]["labels"]["alertname"] == "JeffreyIntegrationStalled"
        count = len(senders.alerts)
        await asyncio.sleep(0.5)
        assert len(senders.alerts) == count  # nothing firing: nothing re-posted
        # Stalled again, then the integration is deleted: its firing alert is resolved at once.
        clock.t = T0 + datetime.timedelta(seconds=200)
        again = stalled.model_copy(
            update={"phase_since": format_time(T0 + datetime.timedelta(seconds=100)), "transition_seq": 3}
        )
        notifier.offer("ns", "ji", "uid", spec, again)
        await until(
            lambda: len(senders.alerts) > count and senders.alerts[-1][0]["endsAt"] > format_time(clock.t)
        )
        notifier.forget(("ns", "ji"))
        await until(lambda: senders.alerts[-1][0]["endsAt"] == format_time(clock.t))
        assert senders.alerts[-1][0]["labels"]["alertname"] == "JeffreyIntegrationStalled"
    finally:
        await notifier.close()


async def test_offer_never_waits_for_a_sink() -> None:
    senders, kube, clock = FakeSenders(), FakeKube(), FakeClock()

    async def hang(target: SinkTarget, notice: Notice) -> None:
        await asyncio.sleep(30)

    senders.send = hang  # type: ignore[method-assign]
    notifier = make(senders, kube, clock)
    status = JeffreyIntegrationStatus(
        transitions=[tr(1, 0, Phase.ROLLING_BACK, "GateBreach")], transition_seq=1
    )
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(100):
            notifier.offer("ns", "ji", "uid", {"notifications": [HOOK]}, status)
        print(f"100 offers with a hanging sink: {1000 * (loop.time() - started):.1f} ms")
        await asyncio.sleep(0.05)
        assert len(notifier.health(("ns", "ji"))) == 1  # one task for the sink, not one per offer
    finally:
        await notifier.close()
