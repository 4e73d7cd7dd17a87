"""The runs of one integration's level checks, between the loop and the outside world.

The engine decides when a check runs and what its result does (:mod:`jeffrey_operator.core.checks`);
:class:`CheckRuns` does the I/O around it, once per reconcile:

* :meth:`CheckRuns.observe` (before ``decide``): what the runs in flight gave — a Job's state (found
  by its labels in the watch cache), an HTTP answer (one request per ``analysis.interval``);
* :meth:`CheckRuns.act` (after the status write, so that a Job exists only for a run status already
  records): create the Job of each run (a restart finds it by its labels; the name is the run's, so
  a second create is refused by the API), delete superseded Jobs and those beyond the history.

It keeps only what may be lost at a restart: the last HTTP answers, creation errors, the Jobs
created or deleted a moment ago that the watch does not show yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jeffrey_operator.adapters.kube import Kube, KubeError
from jeffrey_operator.core import checks as ck
from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.durations import parse_duration
from jeffrey_operator.core.models import (
    CheckResult,
    CheckSpec,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
)
from jeffrey_operator.core.ports import CheckOutcome, CheckOutcomeKind, Event, HttpCheckPort, JobObservation

log = logging.getLogger(__name__)


def owned_jobs(found: Iterable[Any], uid: str) -> list[JobObservation]:
    """The check Jobs of an integration with this ``metadata.uid``: those of a deleted namesake
    (another owner uid, being garbage-collected) are not its runs."""
    return [j for j in found if isinstance(j, JobObservation) and (not uid or j.owner in ("", uid))]


@dataclass
class CheckRuns:
    """What one integration's loop keeps between reconciles about its check runs."""

    namespace: str
    name: str
    #: (check, attempt) → why creating its Job failed (observed as the run's outcome), and when.
    job_errors: dict[tuple[str, int], tuple[CheckOutcome, float]] = field(default_factory=dict)
    #: Check Jobs asked to be deleted (the watch shows them until they are gone).
    jobs_deleted: set[str] = field(default_factory=set)
    #: Check Jobs created (the watch may not show them yet: no second create call).
    jobs_created: set[str] = field(default_factory=set)
    #: check → (attempt, monotonic time, outcome) of the last HTTP request.
    http_last: dict[str, tuple[int, float, CheckOutcome]] = field(default_factory=dict)

    async def observe(
        self,
        spec: JeffreyIntegrationSpec,
        status: JeffreyIntegrationStatus,
        jobs: Sequence[JobObservation],
        http_port: HttpCheckPort | None,
    ) -> dict[str, CheckOutcome]:
        """What the runs in flight gave: a Job's state (found by its labels), an HTTP answer."""
        specs = ck.by_name(spec)
        out: dict[str, CheckOutcome] = {}
        http: list[CheckSpec] = []
        interval = max(parse_duration(spec.analysis.interval), 1.0)
        for st in status.checks:
            check = specs.get(st.name)
            if check is None or st.result not in ck.IN_FLIGHT:
                continue
            if check.job is not None:
                found = next((j for j in jobs if j.check == st.name and j.attempt == st.attempt), None)
                error = self.job_errors.get((st.name, st.attempt))
                if found is not None:
                    out[st.name] = ck.job_outcome(found)
                elif error is not None:
                    out[st.name] = error[0]
            elif http_port is not None:
                last = self.http_last.get(st.name)
                if last is not None and last[0] == st.attempt and time.monotonic() - last[1] < interval:
                    out[st.name] = last[2]  # asked less than an interval ago: no new request
                else:
                    http.append(check)
        if http and http_port is not None:
            attempts = {s.name: s.attempt for s in status.checks}
            answers = await asyncio.gather(
                *(http_port.run(self.namespace, check, attempts[check.name]) for check in http)
            )
            for check, answer in zip(http, answers, strict=True):
                self.http_last[check.name] = (answer.attempt, time.monotonic(), answer)
                out[check.name] = answer
        return out

    async def act(
        self,
        spec: JeffreyIntegrationSpec,
        status: JeffreyIntegrationStatus,
        jobs: Sequence[JobObservation],
        *,
        uid: str,
        kube: Kube,
        emit: Callable[[Event], None],
    ) -> bool:
        """Create the Job of every job-check run ``status`` records, delete superseded Jobs and
        those beyond the history. False when the API had trouble (look again soon)."""
        specs = ck.by_name(spec)
        interval = max(parse_duration(spec.analysis.interval), 1.0)
        ok = True
        for st in status.checks:
            check = specs.get(st.name)
            wanted = (CheckResult.RUNNING, CheckResult.INVALID)
            if check is None or check.job is None or st.result not in wanted or st.attempt < 1:
                continue
            if any(j.check == st.name and j.attempt == st.attempt for j in jobs):
                continue
            manifest = ck.job_manifest(self.namespace, self.name, uid, check, st.attempt)
            if manifest["metadata"]["name"] in self.jobs_created:
                continue
            failed = self.job_errors.get((st.name, st.attempt))
            pace = 1.0 if failed is not None and failed[0].kind is CheckOutcomeKind.UNAVAILABLE else interval
            if failed is not None and time.monotonic() - failed[1] < pace:
                continue  # failed a moment ago: API trouble is retried after 1 s, a refusal per interval
            try:
                await kube.create_job(self.namespace, manifest)  # exists already: False
            except KubeError as exc:
                # API trouble: look again soon. A refusal (a bad template, RBAC) is the run's
                # outcome (Invalid): tried again at the engine's pace, not in a tight loop.
                ok = ok and not exc.retriable
                kind = CheckOutcomeKind.UNAVAILABLE if exc.retriable else CheckOutcomeKind.INVALID
                message = f"creating Job {manifest['metadata']['name']} failed: {exc.status} {exc.message}"
                key = (st.name, st.attempt)
                if failed is None or failed[0].message != message:
                    log.warning("%s/%s: check %s: %s", self.namespace, self.name, st.name, message)
                    emit(Event("Warning", c.JOB_CREATE_FAILED, f"check {st.name}: {message}"))
                self.job_errors[key] = (CheckOutcome(st.attempt, kind, message), time.monotonic())
                continue
            self.job_errors.pop((st.name, st.attempt), None)
            self.jobs_created.add(manifest["metadata"]["name"])
        for name in ck.jobs_to_delete(spec, status.checks, jobs):
            if name in self.jobs_deleted:
                continue
            try:
                await kube.delete_job(self.namespace, name)
                self.jobs_deleted.add(name)
            except KubeError as exc:
                ok = False
                log.warning("%s/%s: deleting check Job %s failed: %s", self.namespace, self.name, name, exc)
        self.jobs_deleted &= {j.name for j in jobs}
        self.jobs_created &= {st.job for st in status.checks}  # only runs status still names
        return ok
