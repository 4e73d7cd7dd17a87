"""A simulated Job controller: no pods, only the status the real one (batch/v1) would report.

When a Job is created the controller marks it started (``startTime``, ``active: 1``); after a
delay it completes it (``succeeded: 1``, conditions ``SuccessCriteriaMet`` and ``Complete``) or
fails it (``failed: backoffLimit + 1``, conditions ``FailureTarget`` and ``Failed`` with reason
``BackoffLimitExceeded``). A Job whose ``activeDeadlineSeconds`` is shorter than the delay fails
with ``DeadlineExceeded`` at the deadline. It writes through the status subresource of the store,
so watches see every step.

What happens is chosen per Job by annotations, on the Job or on its pod template (so that a Job
made from a template, such as a JeffreyIntegration check, can carry them)::

    emulator.jeffreyos.io/outcome: Complete | Failed | Running   # Running: never finishes
    emulator.jeffreyos.io/delay: "0.5"                           # seconds until the outcome

or from tests, for Jobs without annotations: ``emu.jobs.set_default(outcome="Failed", delay=1)``.
Validation on create (``store.py`` calls :func:`prepare_job`): ``spec.template.spec.containers``
is required, ``restartPolicy`` must be ``Never`` or ``OnFailure``; defaults as the real API
(``backoffLimit: 6``, ``completions: 1``, ``parallelism: 1``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .controllers import Controller, object_key
from .errors import ApiError, FieldError
from .resources import JOBS
from .store import Body, ObjectStore, now_rfc3339

__all__ = ["DELAY_ANNOTATION", "OUTCOME_ANNOTATION", "JobBehaviour", "JobController", "prepare_job"]

OUTCOME_ANNOTATION = "emulator.jeffreyos.io/outcome"
DELAY_ANNOTATION = "emulator.jeffreyos.io/delay"

Outcome = Literal["Complete", "Failed", "Running"]


@dataclass(frozen=True)
class JobBehaviour:
    outcome: Outcome = "Complete"
    #: Seconds from creation to the outcome.
    delay: float = 0.0


def prepare_job(obj: dict[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """Defaulting and the validation that matters for check Jobs (as the real API server)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("spec", "Required")]
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    problems: list[FieldError] = []
    template = spec.get("template")
    pod = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(pod, dict) or not pod.get("containers"):
        problems.append(FieldError("spec.template.spec.containers", "Required"))
    elif pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(
            FieldError(
                "spec.template.spec.restartPolicy",
                "NotSupported",
                pod.get("restartPolicy"),
                'supported values: "OnFailure", "Never"',
            )
        )
    if (
        isinstance(old, dict)
        and isinstance(old.get("spec"), dict)
        and old["spec"].get("template") != template
    ):
        problems.append(FieldError("spec.template", "Invalid", None, "field is immutable"))
    return problems


def _annotations(job: Mapping[str, Any]) -> dict[str, str]:
    template = ((job.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return {
        **dict(template.get("annotations") or {}),
        **dict((job.get("metadata") or {}).get("annotations") or {}),
    }


def _condition(type_: str, reason: str, message: str, stamp: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def finished(job: Mapping[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


class JobController(Controller):
    """Runs in the emulator's event loop, like :class:`~.deployments.DeploymentController`."""

    resource = JOBS
    task_name = "emulated job controller"

    def __init__(self, store: ObjectStore) -> None:
        super().__init__(store)
        self._default = JobBehaviour()
        #: Jobs waiting for their outcome, by uid (None: never finishes).
        self._scheduled: dict[str, asyncio.TimerHandle | None] = {}
        #: Jobs created so far, by (namespace, name) (for tests: "no second Job").
        self.seen: dict[tuple[str, str], str] = {}

    def set_default(self, *, outcome: Outcome = "Complete", delay: float = 0.0) -> None:
        """How Jobs without annotations behave."""
        with self._lock:
            self._default = JobBehaviour(outcome, delay)

    def behaviour(self, job: Mapping[str, Any]) -> JobBehaviour:
        notes = _annotations(job)
        with self._lock:
            default = self._default
        outcome = notes.get(OUTCOME_ANNOTATION, default.outcome)
        if outcome not in ("Complete", "Failed", "Running"):
            outcome = default.outcome
        try:
            delay = float(notes.get(DELAY_ANNOTATION, default.delay))
        except ValueError:
            delay = default.delay
        return JobBehaviour(outcome, max(0.0, delay))  # type: ignore[arg-type]

    def cancel_all(self) -> None:
        for handle in self._scheduled.values():
            if handle is not None:
                handle.cancel()
        self._scheduled.clear()

    def reconcile(self, changed: Sequence[Body], deleted: Sequence[Body], *, complete: bool) -> None:
        loop = asyncio.get_running_loop()
        alive = set()
        with self._lock:
            for obj in changed:
                meta = obj.get("metadata") or {}
                uid = str(meta.get("uid", ""))
                alive.add(uid)
                key = object_key(obj)
                self.seen.setdefault(key, uid)
                if uid in self._scheduled or finished(obj) or meta.get("deletionTimestamp"):
                    continue
                behaviour = self.behaviour(obj)
                if not (obj.get("status") or {}).get("startTime"):
                    self._write(key, uid, self._started)
                if behaviour.outcome == "Running":
                    self._scheduled[uid] = None
                    continue
                deadline = (obj.get("spec") or {}).get("activeDeadlineSeconds")
                delay, outcome = behaviour.delay, str(behaviour.outcome)
                if isinstance(deadline, int) and deadline < delay:
                    delay, outcome = float(deadline), "DeadlineExceeded"
                self._scheduled[uid] = loop.call_later(delay, self._finish, key, uid, outcome)
            if complete:
                gone = set(self._scheduled) - alive
            else:
                gone = {str((obj.get("metadata") or {}).get("uid", "")) for obj in deleted}
            for uid in gone:
                handle = self._scheduled.pop(uid, None)
                if handle is not None:
                    handle.cancel()

    def _finish(self, key: tuple[str, str], uid: str, outcome: str) -> None:
        self._write(key, uid, lambda obj: self._finished(obj, outcome))

    @staticmethod
    def _started(obj: dict[str, Any]) -> None:
        status = dict(obj.get("status") or {})
        status.update({"startTime": now_rfc3339(), "active": 1, "ready": 0})
        obj["status"] = status

    @staticmethod
    def _finished(obj: dict[str, Any], outcome: str) -> None:
        stamp = now_rfc3339()
        status = dict(obj.get("status") or {})
        status.setdefault("startTime", stamp)
        status["active"] = 0
        status["ready"] = 0
        status["terminating"] = 0
        if outcome == "Complete":
            status["succeeded"] = int((obj.get("spec") or {}).get("completions") or 1)
            status["completionTime"] = stamp
            message = "Reached expected number of succeeded pods"
            status["conditions"] = [
                _condition("SuccessCriteriaMet", "CompletionsReached", message, stamp),
                _condition("Complete", "CompletionsReached", message, stamp),
            ]
        else:
            if outcome == "DeadlineExceeded":
                reason, message = "DeadlineExceeded", "Job was active longer than specified deadline"
                status["failed"] = 1
            else:
                reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                status["failed"] = int((obj.get("spec") or {}).get("backoffLimit", 6)) + 1
            status["conditions"] = [
                _condition("FailureTarget", reason, message, stamp),
                _condition("Failed", reason, message, stamp),
            ]
        obj["status"] = status

    def _write(self, key: tuple[str, str], uid: str, fn: Any) -> None:
        def guarded(obj: dict[str, Any]) -> None:
            if str((obj.get("metadata") or {}).get("uid", "")) == uid:
                fn(obj)

        try:
            self._store.modify(JOBS, key[0], key[1], guarded, subresource="status", validate=False)
        except ApiError:
            return  # deleted meanwhile
