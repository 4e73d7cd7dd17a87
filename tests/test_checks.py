"""Level checks in the pure core: the state machine of a run, judging, Job names, and what the
ladder does with a check (driven through the engine with a fake clock)."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from engine_world import World
from jeffrey_operator.core import checks as ck
from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.engine import desired_replicas
from jeffrey_operator.core.models import CheckSpec, HttpCheck, JeffreyIntegrationSpec, Phase
from jeffrey_operator.core.ports import CheckOutcome, CheckOutcomeKind, JobObservation
from jeffrey_operator.core.validation import parse_spec

JOB = {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}}}


def spec(*checks: dict[str, Any], target: str = "COGNITIVE") -> dict[str, Any]:
    return {
        "targetLevel": target,
        "levels": [
            {"level": "CORE", "modules": [{"deployment": "memory"}]},
            {"level": "COGNITIVE", "modules": [{"deployment": "learner"}]},
        ],
        "promotion": {"readinessTimeout": "60s", "validationWindow": "0s", "cooldown": "0s"},
        "checks": list(checks),
    }


def job_check(**kw: Any) -> dict[str, Any]:
    return {"name": "core-smoke", "level": "CORE", "job": JOB, **kw}


def http_check(**kw: Any) -> dict[str, Any]:
    return {"name": "ready", "level": "COGNITIVE", "http": {"url": "http://learner:8000/readyz"}, **kw}


def settle(world: World, max_steps: int = 50) -> None:
    """Step without moving the clock until nothing changes (a check in flight would otherwise
    run into its timeout while ``World.run`` jumps from deadline to deadline)."""
    for _ in range(max_steps):
        before = world.status
        d = world.step()
        if not d.actions and d.status == before:
            return


def check_status(world: World, name: str) -> Any:
    return next(s for s in world.status.checks if s.name == name)


def outcome(world: World, name: str, kind: CheckOutcomeKind, message: str = "") -> None:
    world.checks[name] = CheckOutcome(check_status(world, name).attempt, kind, message)


# ------------------------------------------------------------------------------------ the ladder


def test_a_validation_job_check_holds_the_level_until_it_passes() -> None:
    w = World.of(spec(job_check()))
    settle(w)
    st = check_status(w, "core-smoke")
    assert (w.status.phase, w.status.reason, w.status.current_level) == (
        Phase.VALIDATING,
        c.WAITING_FOR_CHECKS,
        None,
    )
    assert (st.result.value, st.attempt, st.job) == ("Running", 1, "jeffrey-core-smoke-1")
    assert w.deployments["learner"].spec_replicas == 0  # COGNITIVE waits for CORE's check
    outcome(w, "core-smoke", CheckOutcomeKind.SUCCEEDED, "Job jeffrey-core-smoke-1 completed")
    settle(w)
    assert (w.status.phase, w.status.current_level.value) == (Phase.STABLE, "COGNITIVE")  # type: ignore[union-attr]
    assert check_status(w, "core-smoke").result.value == "Pass"
    healthy = next(cond for cond in w.status.conditions if cond.type == c.CHECKS_HEALTHY)
    assert (healthy.status.value, healthy.reason) == ("True", c.CHECKS_PASSING)
    reasons = [e.reason for d in w.decisions for e in d.events]
    assert c.CHECK_STARTED in reasons and c.CHECK_PASSED in reasons


def test_a_failed_job_rolls_back_and_names_the_check() -> None:
    w = World.of(spec(job_check(level="COGNITIVE")))
    settle(w)
    outcome(w, "core-smoke", CheckOutcomeKind.FAILED, "Job jeffrey-core-smoke-1 failed: BackoffLimitExceeded")
    settle(w)
    assert w.status.phase is Phase.ROLLED_BACK
    rb = w.status.last_rollback
    assert rb is not None and (rb.reason, rb.check) == (c.CHECK_FAILED, "core-smoke")
    assert "BackoffLimitExceeded" in rb.message
    assert w.deployments["learner"].spec_replicas == 0
    assert w.deployments["memory"].spec_replicas == 1  # CORE is never scaled down
    healthy = next(cond for cond in w.status.conditions if cond.type == c.CHECKS_HEALTHY)
    assert (healthy.status.value, healthy.reason) == ("False", c.CHECK_FAILED)


def test_a_rollback_stops_the_runs_in_flight() -> None:
    w = World.of(spec(job_check(when="afterPromotion"), job_check(name="learner-smoke", level="COGNITIVE")))
    settle(w)
    assert [s.result.value for s in w.status.checks] == ["Running", "Running"]
    outcome(w, "learner-smoke", CheckOutcomeKind.FAILED, "failed")
    settle(w)
    assert w.status.phase is Phase.ROLLED_BACK
    core, learner = w.status.checks
    assert (core.result.value, core.message) == ("Pending", "stopped by the rollback")
    assert learner.result.value == "Fail"  # the one that rolled back keeps its verdict


def test_retry_after_a_rollback_runs_the_check_again_with_a_new_attempt() -> None:
    w = World.of(spec(job_check(level="COGNITIVE")))
    settle(w)
    outcome(w, "core-smoke", CheckOutcomeKind.FAILED, "failed")
    settle(w)
    assert w.status.phase is Phase.ROLLED_BACK
    w.retry_token = "1"
    settle(w)
    st = check_status(w, "core-smoke")
    assert (st.result.value, st.attempt, st.job) == ("Running", 2, "jeffrey-core-smoke-2")
    assert w.status.phase is Phase.VALIDATING


def test_before_promotion_checks_run_before_the_level_is_scaled() -> None:
    w = World.of(spec(job_check(level="COGNITIVE", when="beforePromotion")))
    settle(w)
    assert (w.status.phase, w.status.active_level.value, w.status.reason) == (  # type: ignore[union-attr]
        Phase.PROMOTING,
        "COGNITIVE",
        c.WAITING_FOR_CHECKS,
    )
    assert desired_replicas(w.spec, w.status) == {"memory": 1, "learner": 0}
    assert ("learner", 1) not in w.scale_log
    w.advance(120)  # longer than readinessTimeout: the clock only starts once the level is scaled
    outcome(w, "core-smoke", CheckOutcomeKind.SUCCEEDED, "done")
    settle(w)
    assert ("learner", 1) in w.scale_log
    assert w.status.phase is Phase.STABLE


def test_after_promotion_failure_rolls_back_like_a_continuous_gate() -> None:
    w = World.of(spec(job_check(when="afterPromotion")))
    settle(w)
    assert w.status.phase is Phase.STABLE  # afterPromotion does not hold the climb
    assert check_status(w, "core-smoke").result.value == "Running"
    outcome(w, "core-smoke", CheckOutcomeKind.FAILED, "Job failed: DeadlineExceeded")
    settle(w)
    assert w.status.phase is Phase.ROLLED_BACK
    assert w.status.last_rollback is not None and w.status.last_rollback.check == "core-smoke"


def test_a_job_that_outlives_its_timeout_fails() -> None:
    w = World.of(spec(job_check(timeout="2m")))
    settle(w)
    assert check_status(w, "core-smoke").result.value == "Running"
    d = w.step()
    assert d.requeue_after is not None and d.requeue_after <= 10  # analysis.interval
    w.advance(121)
    settle(w)
    assert w.status.phase is Phase.ROLLED_BACK
    assert "did not complete within 2m" in w.status.last_rollback.message  # type: ignore[union-attr]


def test_a_restart_mid_check_keeps_the_run_and_starts_no_second_one() -> None:
    w = World.of(spec(job_check()))
    settle(w)
    before = check_status(w, "core-smoke")
    # A new operator: the same status, nothing observed of the Job yet (watch not synced).
    fresh = World.of(spec(job_check()), status=w.status, now=w.now)
    fresh.deployments = dict(w.deployments)
    settle(fresh)
    after = check_status(fresh, "core-smoke")
    assert (after.attempt, after.job, after.result) == (before.attempt, before.job, before.result)
    assert not [e for d in fresh.decisions for e in d.events if e.reason == c.CHECK_STARTED]


def test_http_inconclusive_holds_and_never_rolls_back() -> None:
    w = World.of(spec(http_check()))
    settle(w)
    outcome(w, "ready", CheckOutcomeKind.UNAVAILABLE, "connection refused")
    for _ in range(5):
        w.advance(10)
        w.step()
    st = check_status(w, "ready")
    assert st.result.value == "Inconclusive" and "trying again" in st.message
    assert (w.status.phase, w.status.reason) == (Phase.VALIDATING, c.WAITING_FOR_CHECKS)
    assert w.status.last_rollback is None
    outcome(w, "ready", CheckOutcomeKind.SUCCEEDED, "HTTP 200")
    settle(w)
    assert w.status.phase is Phase.STABLE


def test_http_inconclusive_with_on_inconclusive_fail_rolls_back() -> None:
    w = World.of(spec(http_check(onInconclusive="fail")))
    settle(w)
    outcome(w, "ready", CheckOutcomeKind.UNAVAILABLE, "timed out after 10s")
    settle(w)
    assert w.status.phase is Phase.ROLLED_BACK
    assert "onInconclusive=fail" in w.status.last_rollback.message  # type: ignore[union-attr]


def test_on_failure_hold_stops_the_climb_until_a_retry() -> None:
    w = World.of(spec(job_check(onFailure="hold")))
    settle(w)
    outcome(w, "core-smoke", CheckOutcomeKind.FAILED, "failed")
    settle(w)
    assert (w.status.phase, w.status.reason) == (Phase.VALIDATING, c.CHECK_FAILED)
    assert w.status.last_rollback is None and w.deployments["learner"].spec_replicas == 0
    stalled = next(cond for cond in w.status.conditions if cond.type == c.STALLED)
    assert (stalled.status.value, stalled.reason) == ("True", c.CHECK_FAILED)  # waits for a human
    w.retry_token = "again"
    settle(w)
    st = check_status(w, "core-smoke")
    assert (st.result.value, st.attempt) == ("Running", 2)
    stalled = next(cond for cond in w.status.conditions if cond.type == c.STALLED)
    assert stalled.status.value == "False"


def test_an_invalid_run_holds_and_is_tried_again() -> None:
    w = World.of(spec(http_check()))
    settle(w)
    outcome(w, "ready", CheckOutcomeKind.INVALID, "Secret s has no key k")
    settle(w)
    assert check_status(w, "ready").result.value == "Invalid"
    assert w.status.phase is Phase.VALIDATING and w.status.last_rollback is None
    assert ck.CheckResult.INVALID in ck.IN_FLIGHT


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("check", "field", "fragment"),
    [
        (
            {"name": "a", "level": "CORE", "job": {"spec": {"template": {"spec": {"containers": []}}}}},
            "containers",
            "at least 1",
        ),
        ({"name": "a", "level": "CORE", "http": {"method": "GET"}}, "url", "Field required"),
        ({"name": "a", "level": "CORE", "when": "sometimes", "http": {"url": "http://x"}}, "when", "Input"),
        ({"name": "a", "level": "CORE"}, "checks", "exactly one of job or http"),
        ({"name": "a", "level": "CORE", "job": JOB, "http": {"url": "http://x"}}, "checks", "exactly one"),
        ({"name": "a", "level": "CORE", "http": {"url": "http://x", "jsonPath": "$.a"}}, "http", "together"),
        ({"name": "a", "level": "CORE", "http": {"url": "ftp://x"}}, "url", "pattern"),
        (
            {"name": "a", "level": "CORE", "http": {"url": "http://x", "headers": [{"name": "X"}]}},
            "headers",
            "exactly one of value or valueFrom",
        ),
    ],
)
def test_bad_checks_are_problems_not_crashes(check: dict[str, Any], field: str, fragment: str) -> None:
    problems = parse_spec(spec(check))
    assert isinstance(problems, list) and problems
    text = "; ".join(p.render() for p in problems)
    assert field in text and fragment in text


def test_a_check_of_an_undefined_level_makes_the_spec_invalid_and_scales_nothing() -> None:
    w = World.of(spec(job_check(level="LOOPS")))
    d = w.step()
    assert w.status.phase is Phase.INVALID and not d.actions
    assert "spec.checks[0].level" in w.status.message


def test_duplicate_check_names_are_invalid() -> None:
    w = World.of(spec(job_check(), job_check(level="COGNITIVE")))
    w.step()
    assert w.status.phase is Phase.INVALID and "listed twice" in w.status.message


# ------------------------------------------------------------------------------------- judging

H = HttpCheck(url="http://x/readyz", expect_status=[200], json_path="$.status", equals="ok")


@pytest.mark.parametrize(
    ("check", "status", "document", "kind", "value"),
    [
        (HttpCheck(url="http://x"), 204, None, "succeeded", ""),
        (HttpCheck(url="http://x"), 302, None, "failed", ""),
        (HttpCheck(url="http://x"), 404, None, "failed", ""),
        (HttpCheck(url="http://x", expect_status=[503]), 503, None, "succeeded", ""),
        (H, 200, {"status": "ok", "secret": "never copied"}, "succeeded", "ok"),
        (H, 200, {"status": "starting"}, "failed", "starting"),
        (H, 200, {"other": 1}, "failed", ""),
        (H, 200, None, "failed", ""),
        (H, 500, {"status": "ok"}, "failed", ""),
        (HttpCheck(url="http://x", json_path="$.n[1]", equals="2"), 200, {"n": [1, 2]}, "succeeded", "2"),
        (HttpCheck(url="http://x", json_path="$.up", equals="true"), 200, {"up": True}, "succeeded", "true"),
    ],
)
def test_judge_http_answer(check: HttpCheck, status: int, document: Any, kind: str, value: str) -> None:
    got = ck.judge_http_answer(check, 1, status, document)
    assert (got.kind.value, got.value) == (kind, value)
    assert "never copied" not in got.message


def test_job_names_fit_a_label_and_stay_distinct() -> None:
    long = "i" * 70
    names = {ck.job_name(long, "check", n) for n in range(1, 12)}
    assert len(names) == 11 and all(len(n) <= 63 for n in names)
    assert {int(n.rsplit("-", 1)[1]) for n in names} == set(range(1, 12))


def test_job_manifest_carries_labels_owner_and_the_template() -> None:
    check = CheckSpec.model_validate(job_check(job={**JOB, "spec": {**JOB["spec"], "backoffLimit": 1}}))
    job = ck.job_manifest("jeffrey", "ji", "uid-1", check, 4)
    labels = job["metadata"]["labels"]
    assert labels == {
        ck.LABEL_INTEGRATION: "ji",
        ck.LABEL_CHECK: "core-smoke",
        ck.LABEL_LEVEL: "CORE",
        ck.LABEL_ATTEMPT: "4",
    }
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert job["spec"]["backoffLimit"] == 1 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("JeffreyIntegration", "uid-1", True)


def _job(attempt: int, *, done: bool = True, check: str = "core-smoke") -> JobObservation:
    return JobObservation(name=f"j-{check}-{attempt}", check=check, attempt=attempt, complete=done)


def test_jobs_to_delete_keeps_a_bounded_history_and_the_live_run() -> None:
    parsed = JeffreyIntegrationSpec.model_validate(spec(job_check(job={**JOB, "historyLimit": 2})))
    statuses = ck.sync(parsed, [])
    running = statuses[0].model_copy(update={"result": ck.CheckResult.RUNNING, "attempt": 6})
    jobs = [
        _job(1),
        _job(2),
        _job(3),
        _job(4, done=False),
        _job(5),
        _job(6, done=False),
        _job(1, check="gone"),
    ]
    assert sorted(ck.jobs_to_delete(parsed, [running], jobs)) == sorted(
        ["j-core-smoke-1", "j-core-smoke-2", "j-core-smoke-4", "j-gone-1"]
    )


def test_job_outcome_names_the_job_and_the_reason() -> None:
    o = ck.job_outcome(
        JobObservation(name="ji-a-2", check="a", attempt=2, failed=True, reason="DeadlineExceeded")
    )
    assert (o.kind, o.message) == (CheckOutcomeKind.FAILED, "Job ji-a-2 failed: DeadlineExceeded")


def test_the_worked_examples_in_the_docstrings_hold() -> None:
    result = doctest.testmod(ck)
    assert result.attempted > 5 and result.failed == 0
