"""The work queue (dedupe, delayed adds, rate-limited requeue, bounded workers) and the routing
index (which integrations an event concerns), as tables; time is the event loop's."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from jeffrey_operator.adapters.resilience import BreakerPolicy, CircuitOpen
from jeffrey_operator.core.gates.evaluate import pending_breach_due
from jeffrey_operator.core.models import GateResult, GateSpec, GateStatus, JeffreyIntegrationSpec
from jeffrey_operator.core.observe import listed_deployments, observe, parse_status
from jeffrey_operator.core.ports import DeploymentObservation
from jeffrey_operator.runtime.routing import Deployments, Integrations, Seen
from jeffrey_operator.runtime.workqueue import WorkQueue

# ----------------------------------------------------------------------------------- queue


async def test_a_key_added_many_times_is_processed_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a", "c", "b"):
        q.add(key)
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0


async def test_a_key_added_while_processing_comes_back_once_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0  # never two workers on one key
    q.done(key)
    assert len(q) == 1 and await q.get() == "a"


async def test_delayed_adds_keep_the_earliest_and_an_add_wins_over_them() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.2)
    q.add_after("a", 0.05)
    q.add_after("a", 5.0)  # later than the one pending: ignored
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(q.get(), 1.0) == "a"
    assert 0.04 <= asyncio.get_running_loop().time() - started < 0.2
    q.done("a")
    q.add_after("b", 5.0)
    q.add("b")  # now beats the timer
    assert await asyncio.wait_for(q.get(), 0.1) == "b"


async def test_rate_limited_requeue_backs_off_per_key_until_forgotten() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=8.0)
    delays = [q.add_rate_limited("a") for _ in range(5)]
    assert [round(d / b, 1) for d, b in zip(delays, (1, 2, 4, 8, 8), strict=True)] == [
        pytest.approx(1.0, abs=0.2)
    ] * 5
    assert q.failures("a") == 5 and q.failures("b") == 0
    q.forget("a")
    assert q.failures("a") == 0
    q.discard("a")


async def test_paused_queue_gives_nothing_and_workers_are_bounded() -> None:
    q: WorkQueue[int] = WorkQueue()
    q.pause(True)
    for key in range(10):
        q.add(key)
    running = 0
    peak = 0
    seen: list[int] = []

    async def handler(key: int) -> float | None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        seen.append(key)
        return None

    task = asyncio.create_task(q.run(handler, workers=3))
    await asyncio.sleep(0.05)
    assert seen == []  # standby: nothing is processed
    q.pause(False)
    for _ in range(100):
        if len(seen) == 10:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sorted(seen) == list(range(10)) and peak == 3


async def test_a_failing_handler_is_requeued_with_backoff() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.02)
    calls: list[str] = []

    async def handler(key: str) -> float | None:
        calls.append(key)
        if len(calls) < 3:
            raise RuntimeError("boom")
        return None

    q.add("a")
    task = asyncio.create_task(q.run(handler, workers=1, expected=(RuntimeError,)))
    for _ in range(100):
        if len(calls) >= 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert calls == ["a", "a", "a"] and q.failures("a") == 0


# --------------------------------------------------------------------------------- routing


def body(name: str, created: str, *deployments: str, generation: int = 1) -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "creationTimestamp": created,
            "uid": name,
            "generation": generation,
        },
        "spec": {"levels": [{"level": "CORE", "modules": [{"deployment": d} for d in deployments]}]},
    }


def test_an_event_concerns_only_the_integrations_listing_the_deployment() -> None:
    index = Integrations()
    assert index.upsert(("ns", "jeffrey"), body("jeffrey", "10", "memory", "neural-bus")) == {
        ("ns", "jeffrey")
    }
    # a second integration sharing memory: both are woken (claims changed)
    assert index.upsert(("ns", "other"), body("other", "09", "memory")) == {
        ("ns", "jeffrey"),
        ("ns", "other"),
    }
    assert set(index.listing("ns", "memory")) == {("ns", "jeffrey"), ("ns", "other")}
    assert set(index.listing("ns", "neural-bus")) == {("ns", "jeffrey")}
    assert set(index.listing("ns", "unrelated")) == set()
    assert set(index.listing("elsewhere", "memory")) == set()
    # other drops memory: jeffrey is woken again (it is no longer claimed by other)
    assert index.upsert(("ns", "other"), body("other", "09", "cpu")) == {("ns", "jeffrey"), ("ns", "other")}
    assert set(index.listing("ns", "memory")) == {("ns", "jeffrey")}
    assert index.remove(("ns", "jeffrey")) == set()
    assert set(index.listing("ns", "memory")) == set() and len(index) == 1


def test_claims_feed_observe_and_the_older_claim_wins() -> None:
    index = Integrations()
    mine = body("jeffrey", "2024-01-01T10:00:00Z", "memory")
    index.upsert(("ns", "jeffrey"), mine)
    index.upsert(("ns", "other"), body("other", "2024-01-01T09:00:00Z", "memory"))
    spec = JeffreyIntegrationSpec.model_validate(mine["spec"])
    seen = {"memory": DeploymentObservation("memory", spec_replicas=1, ready_replicas=1)}
    obs = observe(mine, spec, seen, index.claims("ns", ["memory"]))
    assert obs.deployments["memory"].claimed_by == ("ns/other",)
    assert obs.deployments["memory"].ready_replicas == 1
    missing = observe(mine, spec, {}, {})
    assert not missing.deployments["memory"].exists and missing.generation == 1


def test_the_deployment_cache_keeps_the_newer_and_knows_what_is_news() -> None:
    cache = Deployments()
    old = Seen(
        DeploymentObservation("memory", spec_replicas=1), owner="jeffrey", watched=True, resource_version=5
    )
    new = Seen(
        DeploymentObservation("memory", spec_replicas=0), owner="jeffrey", watched=True, resource_version=7
    )
    assert cache.put("ns", "memory", new)
    assert not cache.put("ns", "memory", old)  # a late write answer does not overwrite the watch
    assert cache.same(
        "ns", "memory", Seen(new.observation, owner="jeffrey", watched=True, resource_version=8)
    )
    assert not cache.same("ns", "memory", old)
    assert cache.owned_by("ns", "jeffrey") == ["memory"] and cache.owners() == {("ns", "memory"): "jeffrey"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, set()),
        ({"spec": None}, set()),
        ({"spec": {"levels": "nonsense"}}, set()),
        ({"spec": {"levels": [None, {"modules": [{"deployment": "a"}, {"deployment": 3}, "x"]}]}}, {"a"}),
    ],
)
def test_listed_deployments_of_any_raw_spec(raw: dict[str, object], expected: set[str]) -> None:
    assert listed_deployments(raw) == expected


def test_one_status_parser_reports_what_it_could_not_read() -> None:
    errors: list[str] = []
    assert parse_status({"phase": "Nope"}, on_error=errors.append).phase.value == "Pending"
    assert errors and "phase" in errors[0]


# ------------------------------------------------------------------------ for-timed evaluation

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def stamp(seconds: float) -> str:
    return (T0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(
    ("for_", "result", "since", "now", "due"),
    [
        ("30s", GateResult.PENDING_BREACH, 10, 30, 10.01),  # the doc's worked example
        ("2s", GateResult.PENDING_BREACH, 0, 0.4, 1.61),
        ("2s", GateResult.PENDING_BREACH, 0, 5, 0.01),  # overdue: at once
        ("2s", GateResult.PASS, 0, 1, None),
        ("2s", GateResult.BREACH, 0, 3, None),
    ],
)
def test_a_pending_breach_is_due_when_its_for_elapses(
    for_: str, result: GateResult, since: float, now: float, due: float | None
) -> None:
    gate = GateSpec.model_validate({"name": "bus", "query": "up", "max": 1, "for": for_})
    status = GateStatus(name="bus", result=result, since=stamp(since))
    got = pending_breach_due([gate], [status], T0 + datetime.timedelta(seconds=now))
    assert got == (None if due is None else pytest.approx(due, abs=1e-6))


# ------------------------------------------------------------------------------- resilience


def test_an_open_circuit_leads_with_the_error_that_opened_it() -> None:
    now = [0.0]
    breaker = BreakerPolicy(failure_threshold=2, open_seconds=5).build(lambda: now[0])
    refused = ConnectionRefusedError(111, "Connection refused")
    breaker.record_failure(refused)
    breaker.record_failure(refused)
    with pytest.raises(CircuitOpen) as caught:
        breaker.check()
    # the root cause first, and no countdown: the message stays the same while the cause does
    assert (
        str(caught.value)
        == "[Errno 111] Connection refused (circuit open: failing fast until a trial succeeds)"
    )
    assert caught.value.last_error is refused and caught.value.__cause__ is refused
    now[0] = 5.0
    assert breaker.check() is True  # the trial
    breaker.record_success()
    assert breaker.last_error is None and breaker.check() is False
