"""The operator's own Prometheus metrics (documented in ``docs/metrics.md``).

Everything lives in a dedicated :data:`REGISTRY`, not prometheus-client's global one, so tests and
several operators in one process do not collide. The operator calls the small typed functions
below; :func:`serve` exposes the registry on ``--metrics-port``.

Label sets that name an integration (``namespace``, ``name``) are tracked so that :func:`forget`
removes all of them when the JeffreyIntegration is deleted.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from jeffrey_operator.core.conditions import ROLLBACK_REASONS
from jeffrey_operator.core.models import (
    CheckResult,
    CheckStatus,
    GateResult,
    GateStatus,
    JeffreyIntegrationStatus,
    Level,
    Phase,
)
from jeffrey_operator.core.timestamps import parse_time

if TYPE_CHECKING:
    from jeffrey_operator.core.engine import Decision

__all__ = [
    "REGISTRY",
    "OperatorTelemetry",
    "born_at_zero",
    "born_at_zero_process",
    "forget",
    "level_index",
    "observe_prometheus_query",
    "observe_reconcile",
    "observe_status",
    "record_api_write",
    "record_checks",
    "record_gates",
    "record_notification",
    "record_prometheus_error",
    "record_rollback",
    "record_transition",
    "serve",
    "set_state_store_up",
    "time_reconcile",
]

REGISTRY = CollectorRegistry(auto_describe=True)

_INTEGRATION = ("namespace", "name")

INTEGRATION_LEVEL = Gauge(
    "jeffrey_integration_level",
    "Current integration level index (0 CORE .. 5 PRODUCTION; -1 none).",
    _INTEGRATION,
    registry=REGISTRY,
)
INTEGRATION_TARGET_LEVEL = Gauge(
    "jeffrey_integration_target_level",
    "Target integration level index (0 CORE .. 5 PRODUCTION; -1 none).",
    _INTEGRATION,
    registry=REGISTRY,
)
INTEGRATION_PHASE = Gauge(
    "jeffrey_integration_phase",
    "1 for the integration's current phase, 0 for the others.",
    (*_INTEGRATION, "phase"),
    registry=REGISTRY,
)
PHASE_SINCE = Gauge(
    "jeffrey_phase_since_seconds",
    "Seconds the integration has spent in its current phase (computed at scrape time).",
    _INTEGRATION,
    registry=REGISTRY,
)
TRANSITIONS = Counter(
    "jeffrey_transitions",
    "Level/phase transitions by origin, destination and reason.",
    (*_INTEGRATION, "from_level", "to_level", "reason"),
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "jeffrey_rollbacks",
    "Rollbacks to CORE by reason.",
    (*_INTEGRATION, "reason"),
    registry=REGISTRY,
)
GATE_EVALUATIONS = Counter(
    "jeffrey_gate_evaluations",
    "Gate evaluations by result (Pass, Breach, PendingBreach, Inconclusive, Invalid).",
    (*_INTEGRATION, "gate", "result"),
    registry=REGISTRY,
)
CHECK_RUNS = Counter(
    "jeffrey_check_runs",
    "Runs of level checks (spec.checks) by result: Pass, Fail, Inconclusive, Invalid.",
    (*_INTEGRATION, "check", "result"),
    registry=REGISTRY,
)
#: The results a check run is counted under (each created at 0 for every check).
CHECK_RUN_RESULTS = (CheckResult.PASS, CheckResult.FAIL, CheckResult.INCONCLUSIVE, CheckResult.INVALID)
GATE_VALUE = Gauge(
    "jeffrey_gate_value",
    "Last value a gate's query returned (the series the status names; NaN when none).",
    (*_INTEGRATION, "gate"),
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "jeffrey_reconcile_duration_seconds",
    "Duration of one reconcile of one integration.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
PROMETHEUS_QUERY_DURATION = Histogram(
    "jeffrey_prometheus_query_duration_seconds",
    "Duration of one HTTP request to the Prometheus query API (retries count separately).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
PROMETHEUS_ERRORS = Counter(
    "jeffrey_prometheus_errors",
    "Failed Prometheus requests by reason: unreachable, timeout, server_error, circuit_open, bad_query.",
    ("reason",),
    registry=REGISTRY,
)
STATE_STORE_UP = Gauge(
    "jeffrey_state_store_up",
    "1 when the last write to the state store (Redis) succeeded, else 0.",
    registry=REGISTRY,
)
API_WRITES = Counter(
    "jeffrey_api_writes",
    "Writes to the Kubernetes API by verb and resource.",
    ("verb", "resource"),
    registry=REGISTRY,
)

NOTIFICATIONS = Counter(
    "jeffrey_notifications",
    "Notification deliveries by sink kind (alertmanager, webhook, slack) and result "
    "(delivered, failed, refused by the egress policy).",
    ("sink", "result"),
    registry=REGISTRY,
)
#: Born at 0 so that an alert on failures has a series before the first one.
for _sink in ("alertmanager", "webhook", "slack"):
    for _result in ("delivered", "failed", "refused"):
        NOTIFICATIONS.labels(_sink, _result)

_lock = threading.Lock()
#: (namespace, name) -> every (metric, label values) written for that integration.
_owned: dict[tuple[str, str], set[tuple[MetricWrapperBase, tuple[str, ...]]]] = {}


def _child(metric: MetricWrapperBase, namespace: str, name: str, *rest: str) -> Any:
    labels = (namespace, name, *rest)
    with _lock:
        _owned.setdefault((namespace, name), set()).add((metric, labels))
    return metric.labels(*labels)


def level_index(level: Level | None) -> int:
    """0 for CORE .. 5 for PRODUCTION, -1 for none."""
    return -1 if level is None else level.rank


def _level_label(level: Level | None) -> str:
    return "none" if level is None else level.value


def _parse_since(text: str) -> float | None:
    parsed = parse_time(text)
    return None if parsed is None else parsed.timestamp()


def observe_status(
    namespace: str, name: str, status: JeffreyIntegrationStatus, now: datetime.datetime | None = None
) -> None:
    """Set level, target level, phase and time in phase of one integration from its status.

    ``jeffrey_phase_since_seconds`` is computed when scraped (wall clock), from
    ``status.phaseSince`` (``now`` when that is empty).
    """
    _child(INTEGRATION_LEVEL, namespace, name).set(level_index(status.current_level))
    _child(INTEGRATION_TARGET_LEVEL, namespace, name).set(level_index(status.target_level))
    for phase in Phase:
        _child(INTEGRATION_PHASE, namespace, name, phase.value).set(1 if phase is status.phase else 0)
    since = _parse_since(status.phase_since)
    if since is None:
        since = (now or datetime.datetime.now(datetime.UTC)).timestamp()
    started = since
    _child(PHASE_SINCE, namespace, name).set_function(lambda: max(0.0, time.time() - started))


def record_transition(
    namespace: str, name: str, from_level: Level | None, to_level: Level | None, reason: str
) -> None:
    _child(TRANSITIONS, namespace, name, _level_label(from_level), _level_label(to_level), reason).inc()


def record_rollback(namespace: str, name: str, reason: str) -> None:
    _child(ROLLBACKS, namespace, name, reason).inc()


def record_gates(namespace: str, name: str, gates: Iterable[GateStatus]) -> None:
    """Count one evaluation per applicable gate and publish its value; inactive gates are skipped."""
    for gate in gates:
        if gate.result is GateResult.INACTIVE:
            continue
        _child(GATE_EVALUATIONS, namespace, name, gate.name, gate.result.value).inc()
        _child(GATE_VALUE, namespace, name, gate.name).set(float("nan") if gate.value is None else gate.value)


#: The gate results counted by ``jeffrey_gate_evaluations_total`` (inactive gates are not).
COUNTED_RESULTS = tuple(r for r in GateResult if r is not GateResult.INACTIVE)
#: The ``reason`` label values of ``jeffrey_prometheus_errors_total``.
PROMETHEUS_ERROR_REASONS = ("unreachable", "timeout", "server_error", "circuit_open", "bad_query")


def born_at_zero(namespace: str, name: str, gates: Iterable[str] = ()) -> None:
    """Create, at 0, the label children that alerts and dashboards count with ``increase()``:
    a counter first exported at 1 is invisible to ``increase()``, so the first rollback of an
    integration (and the first after a restart) would go unnoticed. Called whenever an
    integration is observed (idempotent: existing children keep their values)."""
    for reason in ROLLBACK_REASONS:
        _child(ROLLBACKS, namespace, name, reason)
    for gate in gates:
        for result in COUNTED_RESULTS:
            _child(GATE_EVALUATIONS, namespace, name, gate, result.value)


def born_at_zero_process() -> None:
    """The process-wide children (no integration label), at 0 from start-up."""
    for reason in PROMETHEUS_ERROR_REASONS:
        PROMETHEUS_ERRORS.labels(reason)


def record_checks(namespace: str, name: str, old: Iterable[CheckStatus], new: Iterable[CheckStatus]) -> None:
    """Count every check run that reached a result since ``old`` (a run that is inconclusive and
    then passes counts once under each); every check's counters exist from the start, at 0."""
    before = {s.name: (s.attempt, s.result) for s in old}
    for check in new:
        for result in CHECK_RUN_RESULTS:
            _child(CHECK_RUNS, namespace, name, check.name, result.value)  # born at 0
        if check.result in CHECK_RUN_RESULTS and before.get(check.name) != (check.attempt, check.result):
            _child(CHECK_RUNS, namespace, name, check.name, check.result.value).inc()


def forget(namespace: str, name: str) -> None:
    """Remove every label set of a deleted integration."""
    with _lock:
        owned = _owned.pop((namespace, name), set())
    for metric, labels in owned:
        with suppress(KeyError):
            metric.remove(*labels)


def observe_reconcile(seconds: float) -> None:
    RECONCILE_DURATION.observe(seconds)


@contextmanager
def time_reconcile() -> Iterator[None]:
    """``with time_reconcile(): ...`` observes the block's duration."""
    started = time.perf_counter()
    try:
        yield
    finally:
        RECONCILE_DURATION.observe(time.perf_counter() - started)


def observe_prometheus_query(seconds: float) -> None:
    PROMETHEUS_QUERY_DURATION.observe(seconds)


def record_prometheus_error(reason: str) -> None:
    PROMETHEUS_ERRORS.labels(reason).inc()


def set_state_store_up(up: bool) -> None:
    STATE_STORE_UP.set(1 if up else 0)


def record_api_write(verb: str, resource: str) -> None:
    """``verb``: create, patch, update, delete; ``resource``: e.g. deployments, jeffreyintegrations."""
    API_WRITES.labels(verb, resource).inc()


def record_notification(sink: str, result: str) -> None:
    """``sink``: alertmanager, webhook, slack; ``result``: delivered, failed, refused."""
    NOTIFICATIONS.labels(sink, result).inc()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose :data:`REGISTRY` on ``http://addr:port/metrics`` from a daemon thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)


class OperatorTelemetry:
    """The reconciler's :class:`~jeffrey_operator.runtime.reconciler.Telemetry`, backed by this module.

    ``observe`` is called once per reconcile with the decision and the status it started from.
    """

    def __init__(self) -> None:
        born_at_zero_process()

    def observe(
        self, namespace: str, name: str, decision: Decision, old: JeffreyIntegrationStatus, seconds: float
    ) -> None:
        new = decision.status
        born_at_zero(namespace, name, (g.name for g in (*old.gates, *new.gates)))
        observe_status(namespace, name, new)
        for transition in new.transitions:
            if transition.seq > old.transition_seq:
                record_transition(
                    namespace, name, transition.from_level, transition.to_level, transition.reason
                )
        rollback = new.last_rollback
        if rollback is not None and (old.last_rollback is None or old.last_rollback.time != rollback.time):
            record_rollback(namespace, name, rollback.reason)
        if new.phase is not Phase.PAUSED:  # paused: the gates shown are the old ones, not evaluated
            record_gates(namespace, name, new.gates)
        record_checks(namespace, name, old.checks, new.checks)
        observe_reconcile(seconds)

    def forget(self, namespace: str, name: str) -> None:
        forget(namespace, name)
