"""The operator's own Prometheus metrics (documented in ``docs/metrics.md``).

:class:`OperatorTelemetry` implements the :class:`~jeffrey_operator.core.ports.Telemetry` port.
Each instance owns its own :class:`~prometheus_client.CollectorRegistry` (never the global one),
so one operator process has one registry, and tests, the benchmark and the playground can run
several operators side by side without sharing a counter. It is built once in
:func:`jeffrey_operator.runtime.app.build_context` and handed to every adapter that counts
something (Kubernetes writes, Prometheus requests, the state store) and to the loop.

Label sets that name an integration (``namespace``, ``name``) are tracked so that :meth:`forget`
removes all of them when the JeffreyIntegration is deleted.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

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

__all__ = ["CHECK_RUN_RESULTS", "OperatorTelemetry", "level_index"]

_INTEGRATION = ("namespace", "name")

#: The results a check run is counted under (each created at 0 for every check).
CHECK_RUN_RESULTS = (CheckResult.PASS, CheckResult.FAIL, CheckResult.INCONCLUSIVE, CheckResult.INVALID)
#: The gate results counted by ``jeffrey_gate_evaluations_total`` (inactive gates are not).
COUNTED_RESULTS = tuple(r for r in GateResult if r is not GateResult.INACTIVE)
#: The label values of ``jeffrey_notifications_total`` (every pair is born at 0).
NOTIFICATION_SINKS = ("alertmanager", "webhook", "slack")
NOTIFICATION_RESULTS = ("delivered", "failed", "refused")
#: The ``reason`` label values of ``jeffrey_prometheus_errors_total``.
PROMETHEUS_ERROR_REASONS = ("unreachable", "timeout", "server_error", "circuit_open", "bad_query")


def level_index(level: Level | None) -> int:
    """0 for CORE .. 5 for PRODUCTION, -1 for none."""
    return -1 if level is None else level.rank


def _level_label(level: Level | None) -> str:
    return "none" if level is None else level.value


def _parse_since(text: str) -> float | None:
    parsed = parse_time(text)
    return None if parsed is None else parsed.timestamp()


class _State(NamedTuple):
    level: int
    target: int
    phase: Phase
    since: float


class IntegrationStates(Collector):
    """``jeffrey_integration_level``, ``_target_level``, ``_phase`` (one series per phase, 1 for
    the current one, as kube-state-metrics does for pods) and ``jeffrey_phase_since_seconds``,
    built at scrape time from one small tuple per integration: as 13 gauge children each they
    were 10 KB per integration, the largest part of the operator's memory after the statuses."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], _State] = {}
        self._lock = threading.Lock()

    def put(self, key: tuple[str, str], state: _State) -> None:
        with self._lock:
            self._states[key] = state

    def drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._states.pop(key, None)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            states = list(self._states.items())
        return self._families(states, time.time())

    @staticmethod
    def _families(states: Iterable[tuple[tuple[str, str], _State]] = (), now: float = 0.0) -> list[Metric]:
        level = GaugeMetricFamily(
            "jeffrey_integration_level",
            "Current integration level index (0 CORE .. 5 PRODUCTION; -1 none).",
            labels=_INTEGRATION,
        )
        target = GaugeMetricFamily(
            "jeffrey_integration_target_level",
            "Target integration level index (0 CORE .. 5 PRODUCTION; -1 none).",
            labels=_INTEGRATION,
        )
        phase = GaugeMetricFamily(
            "jeffrey_integration_phase",
            "1 for the integration's current phase, 0 for the others.",
            labels=(*_INTEGRATION, "phase"),
        )
        since = GaugeMetricFamily(
            "jeffrey_phase_since_seconds",
            "Seconds the integration has spent in its current phase (computed at scrape time).",
            labels=_INTEGRATION,
        )
        for (namespace, name), state in states:
            level.add_metric((namespace, name), state.level)
            target.add_metric((namespace, name), state.target)
            for each in Phase:
                phase.add_metric((namespace, name, each.value), 1 if each is state.phase else 0)
            since.add_metric((namespace, name), max(0.0, now - state.since))
        return [level, target, phase, since]


class OperatorTelemetry:
    """Every operator metric, on a registry of its own (``self.registry``).

    ``observe`` is called once per reconcile with the decision and the status it started from;
    the adapters call the ``record_*``/``set_*`` methods.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        #: Level, target, phase and time in phase of every integration, computed when scraped.
        self.states = IntegrationStates()
        r.register(self.states)
        self.transitions = Counter(
            "jeffrey_transitions",
            "Level/phase transitions by origin, destination and reason.",
            (*_INTEGRATION, "from_level", "to_level", "reason"),
            registry=r,
        )
        self.rollbacks = Counter(
            "jeffrey_rollbacks",
            "Rollbacks to CORE by reason.",
            (*_INTEGRATION, "reason"),
            registry=r,
        )
        self.gate_evaluations = Counter(
            "jeffrey_gate_evaluations",
            "Gate evaluations by result (Pass, Breach, PendingBreach, Inconclusive, Invalid).",
            (*_INTEGRATION, "gate", "result"),
            registry=r,
        )
        self.check_runs = Counter(
            "jeffrey_check_runs",
            "Runs of level checks (spec.checks) by result: Pass, Fail, Inconclusive, Invalid.",
            (*_INTEGRATION, "check", "result"),
            registry=r,
        )
        self.gate_value = Gauge(
            "jeffrey_gate_value",
            "Last value a gate's query returned (the series the status names; NaN when none).",
            (*_INTEGRATION, "gate"),
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "jeffrey_reconcile_duration_seconds",
            "Duration of one reconcile of one integration.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.prometheus_query_duration = Histogram(
            "jeffrey_prometheus_query_duration_seconds",
            "Duration of one HTTP request to the Prometheus query API (retries count separately).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.prometheus_errors = Counter(
            "jeffrey_prometheus_errors",
            "Failed Prometheus requests by reason: unreachable, timeout, server_error, circuit_open, "
            "bad_query.",
            ("reason",),
            registry=r,
        )
        self.state_store_up = Gauge(
            "jeffrey_state_store_up",
            "1 when the last call to the state store (Redis) succeeded, 0 when it failed.",
            registry=r,
        )
        self.api_writes = Counter(
            "jeffrey_api_writes",
            "Writes to the Kubernetes API by verb and resource.",
            ("verb", "resource"),
            registry=r,
        )
        self.notifications = Counter(
            "jeffrey_notifications",
            "Notification deliveries by sink kind (alertmanager, webhook, slack) and result "
            "(delivered, failed, refused by the egress policy).",
            ("sink", "result"),
            registry=r,
        )
        self.notification_failures = Gauge(
            "jeffrey_notification_sink_failures",
            "Consecutive failed deliveries of one notification sink (0 while it delivers).",
            (*_INTEGRATION, "sink", "kind"),
            registry=r,
        )
        self._lock = threading.Lock()
        #: (namespace, name) -> every (metric, label values) written for that integration.
        self._owned: dict[tuple[str, str], set[tuple[MetricWrapperBase, tuple[str, ...]]]] = {}
        self.born_at_zero_process()

    # --------------------------------------------------------------------------- born at 0
    def born_at_zero(self, namespace: str, name: str, gates: Iterable[str] = ()) -> None:
        """Create, at 0, the label children that alerts and dashboards count with ``increase()``:
        a counter first exported at 1 is invisible to ``increase()``, so the first rollback of an
        integration (and the first after a restart) would go unnoticed. Called whenever an
        integration is observed (idempotent: existing children keep their values)."""
        for reason in ROLLBACK_REASONS:
            self._child(self.rollbacks, namespace, name, reason)
        for gate in gates:
            for result in COUNTED_RESULTS:
                self._child(self.gate_evaluations, namespace, name, gate, result.value)

    def born_at_zero_process(self) -> None:
        """The process-wide children (no integration label), at 0 from start-up."""
        for reason in PROMETHEUS_ERROR_REASONS:
            self.prometheus_errors.labels(reason)
        for sink in NOTIFICATION_SINKS:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(sink, result)

    # ------------------------------------------------------------------------------ helpers
    def _child(self, metric: MetricWrapperBase, namespace: str, name: str, *rest: str) -> Any:
        labels = (namespace, name, *rest)
        with self._lock:
            self._owned.setdefault((namespace, name), set()).add((metric, labels))
        return metric.labels(*labels)

    def sample(self, metric: str, /, **labels: str) -> float | None:
        """The current value of one sample (tests, the benchmark)."""
        return self.registry.get_sample_value(metric, labels)

    def exposition(self) -> str:
        """The text format, as ``/metrics`` serves it."""
        return generate_latest(self.registry).decode()

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose the registry on ``http://addr:port/metrics`` from a daemon thread."""
        start_http_server(port, addr=addr, registry=self.registry)

    # ------------------------------------------------------------------------ per integration
    def observe_status(
        self,
        namespace: str,
        name: str,
        status: JeffreyIntegrationStatus,
        now: datetime.datetime | None = None,
    ) -> None:
        """Set level, target level, phase and time in phase of one integration from its status.

        ``jeffrey_phase_since_seconds`` is computed when scraped (wall clock), from
        ``status.phaseSince`` (``now`` when that is empty).
        """
        since = _parse_since(status.phase_since)
        if since is None:
            since = (now or datetime.datetime.now(datetime.UTC)).timestamp()
        state = _State(
            level_index(status.current_level), level_index(status.target_level), status.phase, since
        )
        self.states.put((namespace, name), state)

    def record_transition(
        self, namespace: str, name: str, from_level: Level | None, to_level: Level | None, reason: str
    ) -> None:
        labels = (_level_label(from_level), _level_label(to_level), reason)
        self._child(self.transitions, namespace, name, *labels).inc()

    def record_rollback(self, namespace: str, name: str, reason: str) -> None:
        self._child(self.rollbacks, namespace, name, reason).inc()

    def record_gates(self, namespace: str, name: str, gates: Iterable[GateStatus]) -> None:
        """Count one evaluation per applicable gate and publish its value; inactive gates are skipped."""
        for gate in gates:
            if gate.result is GateResult.INACTIVE:
                continue
            self._child(self.gate_evaluations, namespace, name, gate.name, gate.result.value).inc()
            value = float("nan") if gate.value is None else gate.value
            self._child(self.gate_value, namespace, name, gate.name).set(value)

    def record_checks(
        self, namespace: str, name: str, old: Iterable[CheckStatus], new: Iterable[CheckStatus]
    ) -> None:
        """Count every check run that reached a result since ``old`` (a run that is inconclusive and
        then passes counts once under each); every check's counters exist from the start, at 0."""
        before = {s.name: (s.attempt, s.result) for s in old}
        for check in new:
            for result in CHECK_RUN_RESULTS:
                self._child(self.check_runs, namespace, name, check.name, result.value)  # born at 0
            if check.result in CHECK_RUN_RESULTS and before.get(check.name) != (check.attempt, check.result):
                self._child(self.check_runs, namespace, name, check.name, check.result.value).inc()

    def observe(
        self, namespace: str, name: str, decision: Decision, old: JeffreyIntegrationStatus, seconds: float
    ) -> None:
        """One reconcile: the status it ended with, what changed since ``old``, how long it took."""
        new = decision.status
        self.born_at_zero(namespace, name, (g.name for g in (*old.gates, *new.gates)))
        self.observe_status(namespace, name, new)
        for transition in new.transitions:
            if transition.seq > old.transition_seq:
                self.record_transition(
                    namespace, name, transition.from_level, transition.to_level, transition.reason
                )
        rollback = new.last_rollback
        if rollback is not None and (old.last_rollback is None or old.last_rollback.time != rollback.time):
            self.record_rollback(namespace, name, rollback.reason)
        if new.phase is not Phase.PAUSED:  # paused: the gates shown are the old ones, not evaluated
            self.record_gates(namespace, name, new.gates)
        self.record_checks(namespace, name, old.checks, new.checks)
        self.reconcile_duration.observe(seconds)

    def forget(self, namespace: str, name: str) -> None:
        """Remove every label set of a deleted integration."""
        self.states.drop((namespace, name))
        with self._lock:
            owned = self._owned.pop((namespace, name), set())
        for metric, labels in owned:
            with suppress(KeyError):
                metric.remove(*labels)

    # --------------------------------------------------------------------------- the process
    def observe_prometheus_query(self, seconds: float) -> None:
        self.prometheus_query_duration.observe(seconds)

    def record_prometheus_error(self, reason: str) -> None:
        self.prometheus_errors.labels(reason).inc()

    def set_state_store_up(self, up: bool) -> None:
        self.state_store_up.set(1 if up else 0)

    def record_api_write(self, verb: str, resource: str) -> None:
        """``verb``: create, patch, update, delete; ``resource``: e.g. deployments, jeffreyintegrations."""
        self.api_writes.labels(verb, resource).inc()

    def set_notification_failures(
        self, namespace: str, name: str, sink: str, kind: str, failures: int | None
    ) -> None:
        if failures is not None:
            self._child(self.notification_failures, namespace, name, sink, kind).set(failures)
            return
        labels = (namespace, name, sink, kind)
        with self._lock:
            self._owned.get((namespace, name), set()).discard((self.notification_failures, labels))
        with suppress(KeyError):
            self.notification_failures.remove(*labels)

    def record_notification(self, sink: str, result: str) -> None:
        """``sink``: alertmanager, webhook, slack; ``result``: delivered, failed, refused."""
        self.notifications.labels(sink, result).inc()
