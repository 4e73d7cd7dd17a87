"""The narrow ports between the pure engine and the outside world.

The engine (:mod:`jeffrey_operator.core.engine`) sees only the value types here: what was observed of
the Deployments, what the health gates reported. Adapters implement the protocols:
Kubernetes (:mod:`jeffrey_operator.adapters.kube`), Prometheus (:mod:`jeffrey_operator.adapters.prometheus`),
Redis (:mod:`jeffrey_operator.adapters.redis`).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from jeffrey_operator.core.models import (
    CheckSpec,
    GateStatus,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
    Level,
)

if TYPE_CHECKING:
    from jeffrey_operator.core.engine import Decision


class Clock(Protocol):
    """Injectable time: the engine never reads a clock of its own."""

    def now(self) -> datetime.datetime: ...


class SystemClock:
    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)


# ------------------------------------------------------------------------------------- Kubernetes


@dataclass(frozen=True)
class DeploymentObservation:
    """What the API server says of one Deployment right now."""

    name: str
    exists: bool = True
    spec_replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    generation: int = 1
    observed_generation: int = 1
    #: Other JeffreyIntegrations (``ns/name``) that list this Deployment.
    claimed_by: tuple[str, ...] = ()

    def is_ready(self, desired: int) -> bool:
        """Ready at the desired size: the Deployment controller has seen the current generation
        and every replica is updated and ready. Desired 0 is ready when nothing is left running."""
        if not self.exists:
            return desired == 0
        if self.spec_replicas != desired or self.observed_generation < self.generation:
            return False
        if desired == 0:
            return self.ready_replicas == 0
        return self.ready_replicas >= desired and self.updated_replicas >= desired


MISSING = DeploymentObservation(name="", exists=False)


# ------------------------------------------------------------------------------------------ gates


class GateMode(enum.StrEnum):
    """Which gates apply now (see :class:`jeffrey_operator.core.models.GateWhen`)."""

    PROMOTION = "promotion"  # a level is being promoted or validated
    CONTINUOUS = "continuous"  # the target level is reached and held
    NONE = "none"  # paused, demoting, rolled back: nothing is evaluated


class GateVerdict(enum.StrEnum):
    PASS = "Pass"  # every applicable gate passes (or none applies)
    BREACH = "Breach"  # at least one gate breached for its full `for`
    INCONCLUSIVE = "Inconclusive"  # monitoring trouble or no data (hold): hold, never roll back


@dataclass(frozen=True)
class GateContext:
    """Everything a gate source needs to evaluate the gates of one integration."""

    namespace: str
    name: str
    spec: JeffreyIntegrationSpec
    mode: GateMode
    #: The highest level that is up or being promoted (gates with ``fromLevel`` above it are inactive).
    active_level: Level | None
    #: When the active level started (for "memory grew since the level started").
    level_started_at: datetime.datetime | None
    #: The gate statuses of the last evaluation (for ``since`` and ``for`` continuity).
    previous: Sequence[GateStatus]
    now: datetime.datetime


@dataclass(frozen=True)
class GateReport:
    verdict: GateVerdict = GateVerdict.PASS
    gates: tuple[GateStatus, ...] = ()
    #: The gate that breached (first by declaration order), when verdict is BREACH.
    breach: GateStatus | None = None
    #: Since when every applicable gate has passed without interruption; None: no gate applies.
    passing_since: datetime.datetime | None = None
    #: False when the metrics source could not be asked (unreachable, timeout, error answers).
    source_available: bool = True
    message: str = ""
    #: Seconds until a pending breach's ``for`` elapses: evaluate again then, not a tick later.
    reevaluate_after: float | None = None


class GatePort(Protocol):
    async def evaluate(self, ctx: GateContext) -> GateReport: ...


class NoGates:
    """The empty gate set: always passes. Used when no gate is configured."""

    async def evaluate(self, ctx: GateContext) -> GateReport:
        return GateReport()


# ----------------------------------------------------------------------------------------- checks


class CheckOutcomeKind(enum.StrEnum):
    """What running a check (a Job, an HTTP request) gave; judged in :mod:`jeffrey_operator.core.checks`."""

    RUNNING = "running"  # a Job still running
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"  # could not tell: timeout, DNS, connection refused, API trouble
    INVALID = "invalid"  # cannot run as written: a Job the API refuses, a missing Secret, a URL refused


@dataclass(frozen=True)
class CheckOutcome:
    """The observed result of one run (``attempt``) of one check."""

    attempt: int
    kind: CheckOutcomeKind
    message: str = ""
    #: The compared JSON field of an HTTP answer (never more of the body).
    value: str = ""


@dataclass(frozen=True)
class JobObservation:
    """What the API server says of one check Job (found by its labels)."""

    name: str
    check: str
    attempt: int
    level: str = ""
    complete: bool = False
    failed: bool = False
    #: The reason and message of the Failed condition (BackoffLimitExceeded, DeadlineExceeded, ...).
    reason: str = ""
    message: str = ""
    active: int = 0
    creation: str = ""
    #: The uid of the JeffreyIntegration owning it (a re-created one of the same name has another).
    owner: str = ""


class HttpCheckPort(Protocol):
    async def run(self, namespace: str, check: CheckSpec, attempt: int) -> CheckOutcome:
        """Send the request of an HTTP check (``timeout_of(check)``) and judge the answer; never raises."""
        ...


# ------------------------------------------------------------------------------------ state store


class StateStoreUnavailable(Exception):
    """The state store could not be reached; the caller keeps reconciling and retries later."""


class StateStoreStale(Exception):
    """The store holds a newer state than the one offered (another writer moved on): re-read the
    source of truth and try again; never overwrite."""


class StateStorePort(Protocol):
    async def publish(
        self,
        namespace: str,
        name: str,
        status: JeffreyIntegrationStatus,
        *,
        generation: int,
        bus_max_rate: int,
        uid: str = "",
    ) -> int:
        """Mirror ``status`` atomically; append every transition whose ``seq`` the store has not
        seen yet (back-fill); return the store's version. Raise :class:`StateStoreUnavailable`.
        ``uid`` (``metadata.uid``) tells a re-created CR of the same name from the old one."""
        ...

    async def forget(self, namespace: str, name: str) -> None: ...


class NoStateStore:
    async def publish(
        self,
        namespace: str,
        name: str,
        status: JeffreyIntegrationStatus,
        *,
        generation: int,
        bus_max_rate: int,
        uid: str = "",
    ) -> int:
        return 0

    async def forget(self, namespace: str, name: str) -> None:
        return None


# ------------------------------------------------------------------------------------------ events

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    """Everything observed for one reconcile of one integration."""

    generation: int
    deployments: Mapping[str, DeploymentObservation]
    gates: GateReport = field(default_factory=GateReport)
    retry_token: str = ""
    #: The integration's name (check Jobs are named after it; messages say what to type with it).
    name: str = ""
    #: Its namespace (for messages that say what to type, e.g. how to retry).
    namespace: str = ""
    #: Check name → what its current run gave (only runs in flight are observed).
    checks: Mapping[str, CheckOutcome] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- telemetry


class Telemetry(Protocol):
    """The operator's own metrics (:class:`jeffrey_operator.adapters.telemetry.OperatorTelemetry`).

    One instance per operator, injected into the loop and into every adapter that counts.
    """

    def observe(
        self, namespace: str, name: str, decision: Decision, old: JeffreyIntegrationStatus, seconds: float
    ) -> None:
        """One reconcile of one integration: its new status, what changed, how long it took."""
        ...

    def forget(self, namespace: str, name: str) -> None: ...

    def record_api_write(self, verb: str, resource: str) -> None: ...

    def set_state_store_up(self, up: bool) -> None: ...

    def observe_prometheus_query(self, seconds: float) -> None: ...

    def record_prometheus_error(self, reason: str) -> None: ...

    def record_notification(self, sink: str, result: str) -> None: ...

    def set_notification_failures(
        self, namespace: str, name: str, sink: str, kind: str, failures: int | None
    ) -> None:
        """Consecutive failed deliveries of one sink (0 while it delivers; None: the sink is gone)."""
        ...


class NoTelemetry:
    """Counts nothing (the default of adapters built without an operator around them)."""

    def observe(
        self, namespace: str, name: str, decision: Decision, old: JeffreyIntegrationStatus, seconds: float
    ) -> None:
        return None

    def forget(self, namespace: str, name: str) -> None:
        return None

    def record_api_write(self, verb: str, resource: str) -> None:
        return None

    def set_state_store_up(self, up: bool) -> None:
        return None

    def observe_prometheus_query(self, seconds: float) -> None:
        return None

    def record_prometheus_error(self, reason: str) -> None:
        return None

    def record_notification(self, sink: str, result: str) -> None:
        return None

    def set_notification_failures(
        self, namespace: str, name: str, sink: str, kind: str, failures: int | None
    ) -> None:
        return None
