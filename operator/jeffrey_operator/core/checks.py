"""Level checks (``spec.checks``): a Job or an HTTP request whose result counts like a gate's.

Pure: no network, no clock of its own. The engine (:mod:`jeffrey_operator.core.engine`) decides
*when* a check runs and what its result does to the ladder; this module holds the state machine of
one check's run, the judging of what a run gave, and the manifests and names of check Jobs. The
runtime creates the Jobs, sends the HTTP requests and hands what it saw back as
:class:`~jeffrey_operator.core.ports.CheckOutcome` in the observation.

One run (``CheckStatus``)
-------------------------
``Pending`` → (its moment comes) ``Running`` with ``attempt + 1`` → ``Pass`` | ``Fail`` |
``Invalid``; an HTTP check that cannot tell (timeout, DNS, connection refused) is ``Inconclusive``
and asked again every ``analysis.interval`` (``onInconclusive: fail`` makes that a ``Fail``).
``since`` is when the current result began (as for gates); ``startedAt`` when the run began (the
``timeout`` of a Job check counts from there). A run is never started twice: the attempt number is
in status before the Job exists, and the Job's name and labels carry it, so a restarted operator
finds the Job of the run in flight instead of creating another.

Worked example, a Job check ``core-smoke`` (timeout 2m) of CORE with ``when: validation``::

    t=0    CORE promoted, checks of CORE reset          -> Pending      attempt 0
    t=5    CORE ready: Validating, the check starts     -> Running      attempt 1, Job jeffrey-core-smoke-1
    t=6    (operator restarted: status says Running #1; the Job is found by its labels; no new Job)
    t=40   the Job completes                            -> Pass         since t=40  -> CORE may pass
    ---
    t=40   the Job failed (BackoffLimitExceeded)        -> Fail         -> rollback, lastRollback.check
    t=125  the Job is still running                     -> Fail "did not complete within 2m"

An HTTP check ``loops-ready`` (``expectStatus: [200]``, ``jsonPath: $.status``, ``equals: ok``)::

    200 {"status": "ok"}          -> Pass          value "ok"
    200 {"status": "starting"}    -> Fail          value "starting" (the only part of a body kept)
    503                           -> Fail          "HTTP 503, expected 200"
    connection refused            -> Inconclusive  (hold; asked again; never rolls back)

The verdict over the checks that apply (``summarize``) uses the gate vocabulary: ``Breach`` when
one has failed, ``Inconclusive`` while one is pending, running, inconclusive or invalid (the
ladder holds), ``Pass`` when all passed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jeffrey_operator.core.durations import parse_duration
from jeffrey_operator.core.models import (
    API_VERSION,
    GROUP,
    KIND,
    CheckOnInconclusive,
    CheckResult,
    CheckSpec,
    CheckStatus,
    CheckWhen,
    HttpCheck,
    JeffreyIntegrationSpec,
    Level,
)
from jeffrey_operator.core.ports import CheckOutcome, CheckOutcomeKind, GateVerdict, JobObservation
from jeffrey_operator.core.timestamps import format_time, parse_time

#: Labels of a check Job: which integration, check, level and run it belongs to.
LABEL_INTEGRATION = f"{GROUP}/integration"
LABEL_CHECK = f"{GROUP}/check"
LABEL_LEVEL = f"{GROUP}/level"
LABEL_ATTEMPT = f"{GROUP}/attempt"

#: ``timeout`` when a check leaves it empty.
DEFAULT_JOB_TIMEOUT = 600.0
DEFAULT_HTTP_TIMEOUT = 10.0
#: How much of a compared JSON field status shows (the rest of an answer is never copied).
MAX_VALUE_CHARS = 256

#: Results that end a run.
FINAL = (CheckResult.PASS, CheckResult.FAIL)
#: Results of a run in flight: the runtime observes these (Job state, HTTP request). An Invalid
#: run is tried again too (a Secret created later, a Job template fixed by a new generation).
IN_FLIGHT = (CheckResult.RUNNING, CheckResult.INCONCLUSIVE, CheckResult.INVALID)


def timeout_of(check: CheckSpec) -> float:
    """Seconds a Job check may take, or one HTTP request may take.

    >>> from jeffrey_operator.core.models import CheckSpec
    >>> timeout_of(CheckSpec(name="a", level="CORE", http={"url": "http://x"}))
    10.0
    >>> timeout_of(CheckSpec(name="a", level="CORE", timeout="2m", http={"url": "http://x"}))
    120.0
    """
    if check.timeout:
        return parse_duration(check.timeout)
    return DEFAULT_JOB_TIMEOUT if check.job is not None else DEFAULT_HTTP_TIMEOUT


# ------------------------------------------------------------------------------------------- Jobs


def job_name(integration: str, check: str, attempt: int) -> str:
    """``<integration>-<check>-<attempt>``, shortened with a hash to fit a 63-character label.

    >>> job_name("jeffrey", "core-smoke", 3)
    'jeffrey-core-smoke-3'
    >>> len(job_name("x" * 60, "core-smoke", 3))
    63
    """
    name = f"{integration}-{check}-{attempt}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    tail = f"-{digest}-{attempt}"
    return f"{integration}-{check}"[: 63 - len(tail)].rstrip("-") + tail


def job_labels(integration: str, check: CheckSpec, attempt: int) -> dict[str, str]:
    return {
        LABEL_INTEGRATION: integration,
        LABEL_CHECK: check.name,
        LABEL_LEVEL: check.level.value,
        LABEL_ATTEMPT: str(attempt),
    }


def job_manifest(
    namespace: str, integration: str, uid: str, check: CheckSpec, attempt: int
) -> dict[str, Any]:
    """The batch/v1 Job of one run of a Job check: the template of the check, our labels (also on
    its pods), an owner reference to the JeffreyIntegration (garbage-collected with it)."""
    assert check.job is not None
    labels = job_labels(integration, check, attempt)
    spec = check.job.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    template = spec.setdefault("template", {})
    meta = dict(template.get("metadata") or {})
    meta["labels"] = {**dict(meta.get("labels") or {}), **labels}
    template["metadata"] = meta
    pod = template.setdefault("spec", {})
    pod.setdefault("restartPolicy", "Never")
    owner = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": integration,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(integration, check.name, attempt),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner] if uid else [],
        },
        "spec": spec,
    }


def job_outcome(job: JobObservation) -> CheckOutcome:
    """A check Job's state → what the run gave.

    >>> job_outcome(JobObservation(name="j-1", check="c", attempt=1, complete=True)).kind.value
    'succeeded'
    >>> o = job_outcome(JobObservation(name="j-1", check="c", attempt=1, failed=True,
    ...                                reason="BackoffLimitExceeded", message="reached the limit"))
    >>> o.kind.value, o.message
    ('failed', 'Job j-1 failed: BackoffLimitExceeded: reached the limit')
    """
    if job.failed:
        why = ": ".join(part for part in (job.reason or "Failed", job.message) if part)
        return CheckOutcome(job.attempt, CheckOutcomeKind.FAILED, f"Job {job.name} failed: {why}")
    if job.complete:
        return CheckOutcome(job.attempt, CheckOutcomeKind.SUCCEEDED, f"Job {job.name} completed")
    return CheckOutcome(job.attempt, CheckOutcomeKind.RUNNING, f"Job {job.name} is running")


def jobs_to_delete(
    spec: JeffreyIntegrationSpec, statuses: Sequence[CheckStatus], jobs: Iterable[JobObservation]
) -> list[str]:
    """Which check Jobs to delete: every Job of a check no longer in the spec, Jobs of an older
    run still running (superseded, or timed out), and finished Jobs beyond ``historyLimit``
    (oldest first). The Job of the run in flight is always kept."""
    checks = {c.name: c for c in spec.checks if c.job is not None}
    current = {s.name: s for s in statuses}
    by_check: dict[str, list[JobObservation]] = {}
    out: list[str] = []
    for job in jobs:
        if job.check not in checks:
            out.append(job.name)
        else:
            by_check.setdefault(job.check, []).append(job)
    for name, found in by_check.items():
        st = current.get(name)
        live = st.attempt if st is not None and st.result in IN_FLIGHT else None
        finished = []
        for job in sorted(found, key=lambda j: j.attempt, reverse=True):
            if job.attempt == live:
                continue
            if not (job.complete or job.failed):
                out.append(job.name)  # an older run still running: superseded or timed out
            else:
                finished.append(job)
        out.extend(j.name for j in finished[checks[name].job.history_limit :])  # type: ignore[union-attr]
    return out


# ------------------------------------------------------------------------------------------- HTTP


def shown_url(url: str) -> str:
    """A URL as messages show it: without its query and fragment (they may carry a token).

    >>> shown_url("http://approvals:8080/ok?token=s3cret#x")
    'http://approvals:8080/ok'
    """
    return url.split("#", 1)[0].split("?", 1)[0]


def json_path_value(document: Any, path: str) -> tuple[bool, Any]:
    """The value at ``$.a.b[0]`` in a parsed JSON document, and whether it was there.

    >>> json_path_value({"status": "ok"}, "$.status")
    (True, 'ok')
    >>> json_path_value({"items": [{"ready": True}]}, "$.items[0].ready")
    (True, True)
    >>> json_path_value({"items": []}, "$.items[0]")
    (False, None)
    """
    current = document
    i = 1  # after "$"
    while i < len(path):
        if path[i] == ".":
            j = i + 1
            while j < len(path) and path[j] not in ".[":
                j += 1
            key = path[i + 1 : j]
            if not isinstance(current, dict) or key not in current:
                return False, None
            current = current[key]
            i = j
        elif path[i] == "[":
            j = path.index("]", i)
            index = int(path[i + 1 : j])
            if not isinstance(current, list) or index >= len(current):
                return False, None
            current = current[index]
            i = j + 1
        else:
            return False, None
    return True, current


def as_text(value: Any) -> str:
    """How a JSON value compares with ``equals``: strings as they are, the rest as JSON.

    >>> as_text("ok"), as_text(True), as_text(3), as_text(None)
    ('ok', 'true', '3', 'null')
    """
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def judge_http_answer(check: HttpCheck, attempt: int, status: int, document: Any = None) -> CheckOutcome:
    """An HTTP answer → what the run gave. ``document`` is the parsed JSON body when ``jsonPath``
    is set (``None`` when it was not JSON). Only the compared field is kept.

    >>> from jeffrey_operator.core.models import HttpCheck
    >>> h = HttpCheck(url="http://x/readyz", expect_status=[200], json_path="$.status", equals="ok")
    >>> judge_http_answer(h, 1, 200, {"status": "ok"}).kind.value
    'succeeded'
    >>> judge_http_answer(h, 1, 200, {"status": "starting"}).message
    'HTTP 200, $.status is "starting", expected "ok"'
    >>> judge_http_answer(h, 1, 500).message
    'HTTP 500, expected 200'
    """
    expected = check.expect_status
    ok = status in expected if expected else 200 <= status < 300
    if not ok:
        wanted = ", ".join(map(str, expected)) if expected else "2xx"
        return CheckOutcome(attempt, CheckOutcomeKind.FAILED, f"HTTP {status}, expected {wanted}")
    if check.json_path is None:
        return CheckOutcome(attempt, CheckOutcomeKind.SUCCEEDED, f"HTTP {status}")
    if document is None:
        return CheckOutcome(
            attempt, CheckOutcomeKind.FAILED, f"HTTP {status}, the answer is not JSON ({check.json_path})"
        )
    found, value = json_path_value(document, check.json_path)
    if not found:
        return CheckOutcome(attempt, CheckOutcomeKind.FAILED, f"HTTP {status}, {check.json_path} is missing")
    text = as_text(value)[:MAX_VALUE_CHARS]
    if text != check.equals:
        return CheckOutcome(
            attempt,
            CheckOutcomeKind.FAILED,
            f"HTTP {status}, {check.json_path} is {json.dumps(text)}, expected {json.dumps(check.equals)}",
            value=text,
        )
    return CheckOutcome(
        attempt,
        CheckOutcomeKind.SUCCEEDED,
        f"HTTP {status}, {check.json_path} = {json.dumps(text)}",
        value=text,
    )


# ------------------------------------------------------------------------------------- one run


def kind_of(check: CheckSpec) -> str:
    return "job" if check.job is not None else "http"


def sync(spec: JeffreyIntegrationSpec, statuses: Sequence[CheckStatus]) -> list[CheckStatus]:
    """One status per check of the spec, in spec order (new checks Pending, removed ones gone)."""
    prior = {s.name: s for s in statuses}
    out = []
    for check in spec.checks:
        st = prior.get(check.name)
        if st is None:
            st = CheckStatus(name=check.name, level=check.level, when=check.when, message="not run yet")
        elif (st.level, st.when) != (check.level, check.when):
            st = st.model_copy(update={"level": check.level, "when": check.when})
        out.append(st)
    return out


def reset(st: CheckStatus, why: str) -> CheckStatus:
    """Back to Pending (its next run gets a new attempt number); the last Job name stays shown."""
    if st.result is CheckResult.PENDING and st.message == why:
        return st
    return st.model_copy(
        update={"result": CheckResult.PENDING, "since": "", "started_at": "", "message": why}
    )


def start(
    check: CheckSpec, st: CheckStatus, now: datetime.datetime, *, integration: str, generation: int
) -> CheckStatus:
    """Start the next run. A Job check names its Job now, before the Job exists."""
    attempt = st.attempt + 1
    stamp = format_time(now)
    job = job_name(integration, check.name, attempt) if check.job is not None else ""
    what = f"Job {job} started" if job else f"{check.http.method.value} {shown_url(check.http.url)}"  # type: ignore[union-attr]
    return st.model_copy(
        update={
            "result": CheckResult.RUNNING,
            "attempt": attempt,
            "since": stamp,
            "started_at": stamp,
            "job": job,
            "value": "",
            "generation": generation,
            "message": what,
        }
    )


def judge(
    check: CheckSpec, st: CheckStatus, outcome: CheckOutcome | None, now: datetime.datetime
) -> CheckStatus:
    """The new status of a run in flight from what it gave (``outcome`` of another run is ignored).

    A Job check that has not finished ``timeout`` after it started fails.
    """
    if st.result not in IN_FLIGHT:
        return st
    if outcome is not None and outcome.attempt != st.attempt:
        outcome = None
    stamp = format_time(now)

    def becomes(result: CheckResult, message: str, value: str = "") -> CheckStatus:
        since = st.since if result is st.result and st.since else stamp
        return st.model_copy(update={"result": result, "since": since, "message": message, "value": value})

    if outcome is not None and outcome.kind is CheckOutcomeKind.SUCCEEDED:
        return becomes(CheckResult.PASS, outcome.message, outcome.value)
    if outcome is not None and outcome.kind is CheckOutcomeKind.FAILED:
        return becomes(CheckResult.FAIL, outcome.message, outcome.value)
    if outcome is not None and outcome.kind is CheckOutcomeKind.INVALID:
        return becomes(CheckResult.INVALID, outcome.message)
    if (
        outcome is not None
        and outcome.kind is CheckOutcomeKind.RUNNING
        and st.result is not CheckResult.RUNNING
    ):
        return becomes(CheckResult.RUNNING, outcome.message)  # e.g. a Job created after all
    if outcome is not None and outcome.kind is CheckOutcomeKind.UNAVAILABLE:
        if check.on_inconclusive is CheckOnInconclusive.FAIL:
            return becomes(CheckResult.FAIL, f"{outcome.message} (onInconclusive=fail)")
        return becomes(CheckResult.INCONCLUSIVE, f"{outcome.message}; trying again (onInconclusive=hold)")
    if check.job is not None and st.result is CheckResult.RUNNING:
        started = parse_time(st.started_at)
        limit = timeout_of(check)
        if started is not None and (now - started).total_seconds() >= limit:
            return becomes(CheckResult.FAIL, f"Job {st.job} did not complete within {check.timeout or '10m'}")
        if outcome is not None and outcome.message != st.message:
            return st.model_copy(update={"message": outcome.message})
    return st


def remaining(check: CheckSpec, st: CheckStatus, now: datetime.datetime) -> float | None:
    """Seconds until a running Job check times out (None when nothing is timed)."""
    started = parse_time(st.started_at)
    if check.job is None or st.result not in IN_FLIGHT or started is None:
        return None
    return max(timeout_of(check) - (now - started).total_seconds(), 0.0)


# ------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class CheckReport:
    """The verdict over a set of checks, in the gate vocabulary."""

    verdict: GateVerdict = GateVerdict.PASS
    #: The first failed check (declaration order) when the verdict is BREACH.
    failed: CheckStatus | None = None
    message: str = ""


def summarize(statuses: Sequence[CheckStatus]) -> CheckReport:
    """``Breach`` if one failed; ``Inconclusive`` while one is not done (or invalid); else ``Pass``.

    >>> from jeffrey_operator.core.models import CheckStatus
    >>> summarize([CheckStatus(name="a", level="CORE", result="Pass")]).verdict.value
    'Pass'
    >>> summarize([CheckStatus(name="a", level="CORE", result="Running", message="Job a-1 started")]).message
    'check a Running: Job a-1 started'
    """
    failed = [s for s in statuses if s.result is CheckResult.FAIL]
    if failed:
        first = failed[0]
        return CheckReport(GateVerdict.BREACH, first, f"check {first.name} failed: {first.message}")
    waiting = [s for s in statuses if s.result is not CheckResult.PASS]
    if waiting:
        return CheckReport(
            GateVerdict.INCONCLUSIVE,
            None,
            "; ".join(f"check {s.name} {s.result.value}: {s.message}" for s in waiting),
        )
    return CheckReport(GateVerdict.PASS, None, f"{len(statuses)} check(s) passed" if statuses else "")


def applies(st: CheckStatus, level: Level, when: CheckWhen) -> bool:
    return st.level == level and st.when == when


def pre_checks_pending(statuses: Iterable[CheckStatus], level: Level | None) -> bool:
    """Whether ``beforePromotion`` checks of ``level`` have not all passed (its Deployments wait)."""
    return any(
        s.level == level and s.when is CheckWhen.BEFORE_PROMOTION and s.result is not CheckResult.PASS
        for s in statuses
    )


def by_name(spec: JeffreyIntegrationSpec) -> Mapping[str, CheckSpec]:
    return {c.name: c for c in spec.checks}


def check_urls(spec: JeffreyIntegrationSpec) -> list[tuple[str, str]]:
    """``(field, url)`` of every HTTP check, for the egress policy's list of the URLs a spec makes
    the operator call (:mod:`jeffrey_operator.core.egress`).

    >>> from jeffrey_operator.core.models import JeffreyIntegrationSpec
    >>> check_urls(JeffreyIntegrationSpec(levels=[{"level": "CORE", "modules": [{"deployment": "m"}]}],
    ...     checks=[{"name": "r", "level": "CORE", "http": {"url": "http://m:8000/readyz"}}]))
    [('spec.checks[0].http.url', 'http://m:8000/readyz')]
    """
    return [
        (f"spec.checks[{i}].http.url", c.http.url) for i, c in enumerate(spec.checks) if c.http is not None
    ]
