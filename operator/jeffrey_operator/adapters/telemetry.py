"""The operator's own Prometheus metrics (documented in ``docs/metrics.md``).

:class:`OperatorTelemetry` implements the :class:`~jeffrey_operator.core.ports.Telemetry` port.
Each instance owns its own :class:`~prometheus_client.CollectorRegistry` (never the global one),
so one operator process has one registry, and tests, the benchmark and the playground can run
several operators side by side without sharing a counter. It is built once in
:func:`jeffrey_operator.runtime.app.build_context` and handed to every adapter that counts
something (Kubernetes writes, Prometheus requests, the state store) and to the loop.

Every series that names an integration (``namespace``, ``name``) is built at scrape time from
plain numbers kept per integration (:class:`IntegrationStates`, :class:`IntegrationSeries`), so
that :meth:`~OperatorTelemetry.forget` drops all of them at once when the JeffreyIntegration is
deleted, and so that an integration costs a dict, not two dozen metric children with their locks.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
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


class _Family(NamedTuple):
    """One metric of :class:`IntegrationSeries`: its labels after ``namespace`` and ``name``."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    counter: bool


#: (metric name, label values after namespace and name) -> (value, created at).
_Series = dict[tuple[str, tuple[str, ...]], tuple[float, float]]


class IntegrationSeries(Collector):
    """The counters and gauges that name an integration, built at scrape time from one dict per
    integration. As ``prometheus_client`` children they were two dozen objects each (a metric, its
    value, two locks, label tuples) per series: at 1,000 integrations 22,000 children, 20 MB, and
    most of what the garbage collector walked on every full collection. Counters keep the time
    they were created, exported as ``<name>_created`` as ``prometheus_client`` does (the rollback
    alert reads it)."""

    def __init__(self, *families: _Family) -> None:
        self._families = {f.name: f for f in families}
        self._series: dict[tuple[str, str], _Series] = {}
        self._lock = threading.Lock()

    def ensure(self, family: _Family, key: tuple[str, str], rest: tuple[str, ...]) -> None:
        """Create the series at 0 unless it exists (``born at 0``)."""
        with self._lock:
            series = self._series.setdefault(key, {})
            if (family.name, rest) not in series:
                series[(family.name, rest)] = (0.0, time.time())

    def inc(self, family: _Family, key: tuple[str, str], rest: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            series = self._series.setdefault(key, {})
            value, created = series.get((family.name, rest)) or (0.0, time.time())
            series[(family.name, rest)] = (value + amount, created)

    def set(self, family: _Family, key: tuple[str, str], rest: tuple[str, ...], value: float) -> None:
        with self._lock:
            series = self._series.setdefault(key, {})
            old = series.get((family.name, rest))
            series[(family.name, rest)] = (value, time.time() if old is None else old[1])

    def remove(self, family: _Family, key: tuple[str, str], rest: tuple[str, ...]) -> None:
        with self._lock:
            self._series.get(key, {}).pop((family.name, rest), None)

    def drop(self, key: tuple[str, str]) -> None:
        """Every series of one integration."""
        with self._lock:
            self._series.pop(key, None)

    def describe(self) -> Iterable[Metric]:
        return self._empty().values()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            snapshot = [(key, list(series.items())) for key, series in self._series.items()]
        out = self._empty()
        for (namespace, name), series in snapshot:
            for (metric, rest), (value, created) in series:
                family = out[metric]
                if isinstance(family, CounterMetricFamily):
                    family.add_metric((namespace, name, *rest), value, created=created)
                else:
                    family.add_metric((namespace, name, *rest), value)
        return out.values()

    def _empty(self) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        return {
            f.name: (CounterMetricFamily if f.counter else GaugeMetricFamily)(
                f.name, f.documentation, labels=(*_INTEGRATION, *f.labels)
            )
            for f in self._families.values()
        }


TRANSITIONS = _Family(
    "jeffrey_transitions",
    "Level/phase transitions by origin, destination and reason.",
    ("from_level", "to_level", "reason"),
    counter=True,
)
ROLLBACKS = _Family("jeffrey_rollbacks", "Rollbacks to CORE by reason.", ("reason",), counter=True)
GATE_EVALUATIONS = _Family(
    "jeffrey_gate_evaluations",
    "Gate evaluations by result (Pass, Breach, PendingBreach, Inconclusive, Invalid).",
    ("gate", "result"),
    counter=True,
)
CHECK_RUNS = _Family(
    "jeffrey_check_runs",
    "Runs of level checks (spec.checks) by result: Pass, Fail, Inconclusive, Invalid.",
    ("check", "result"),
    counter=True,
)
GATE_VALUE = _Family(
    "jeffrey_gate_value",
    "Last value a gate's query returned (the series the status names; NaN when none).",
    ("gate",),
    counter=False,
)
NOTIFICATION_FAILURES = _Family(
    "jeffrey_notification_sink_failures",
    "Consecutive failed deliveries of one notification sink (0 while it delivers).",
    ("sink", "kind"),
    counter=False,
)


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
        #: Every counter and gauge that names an integration, computed when scraped.
        self.series = IntegrationSeries(
            TRANSITIONS, ROLLBACKS, GATE_EVALUATIONS, CHECK_RUNS, GATE_VALUE, NOTIFICATION_FAILURES
        )
        r.register(self.series)
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
        self.born_at_zero_process()

    # --------------------------------------------------------------------------- born at 0
    def born_at_zero(self, namespace: str, name: str, gates: Iterable[str] = ()) -> None:
        """Create, at 0, the label children that alerts and dashboards count with ``increase()``:
        a counter first exported at 1 is invisible to ``increase()``, so the first rollback of an
        integration (and the first after a restart) would go unnoticed. Called whenever an
        integration is observed (idempotent: existing children keep their values)."""
        key = (namespace, name)
        for reason in ROLLBACK_REASONS:
            self.series.ensure(ROLLBACKS, key, (reason,))
        for gate in gates:
            for result in COUNTED_RESULTS:
                self.series.ensure(GATE_EVALUATIONS, key, (gate, result.value))

    def born_at_zero_process(self) -> None:
        """The process-wide children (no integration label), at 0 from start-up."""
        for reason in PROMETHEUS_ERROR_REASONS:
            self.prometheus_errors.labels(reason)
        for sink in NOTIFICATION_SINKS:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(sink, result)

    # ------------------------------------------------------------------------------ helpers
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
        self.series.inc(TRANSITIONS, (namespace, name), labels)

    def record_rollback(self, namespace: str, name: str, reason: str) -> None:
        self.series.inc(ROLLBACKS, (namespace, name), (reason,))

    def record_gates(self, namespace: str, name: str, gates: Iterable[GateStatus]) -> None:
        """Count one evaluation per applicable gate and publish its value; inactive gates are skipped."""
        for gate in gates:
            if gate.result is GateResult.INACTIVE:
                continue
            self.series.inc(GATE_EVALUATIONS, (namespace, name), (gate.name, gate.result.value))
            value = float("nan") if gate.value is None else gate.value
            self.series.set(GATE_VALUE, (namespace, name), (gate.name,), value)

    def record_checks(
        self, namespace: str, name: str, old: Iterable[CheckStatus], new: Iterable[CheckStatus]
    ) -> None:
        """Count every check run that reached a result since ``old`` (a run that is inconclusive and
        then passes counts once under each); every check's counters exist from the start, at 0."""
        key = (namespace, name)
        before = {s.name: (s.attempt, s.result) for s in old}
        for check in new:
            for result in CHECK_RUN_RESULTS:
                self.series.ensure(CHECK_RUNS, key, (check.name, result.value))  # born at 0
            if check.result in CHECK_RUN_RESULTS and before.get(check.name) != (check.attempt, check.result):
                self.series.inc(CHECK_RUNS, key, (check.name, check.result.value))

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
        self.series.drop((namespace, name))

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
        """``failures`` consecutive failed deliveries; None: the sink is gone (its series too)."""
        if failures is None:
            self.series.remove(NOTIFICATION_FAILURES, (namespace, name), (sink, kind))
        else:
            self.series.set(NOTIFICATION_FAILURES, (namespace, name), (sink, kind), failures)

    def record_notification(self, sink: str, result: str) -> None:
        """``sink``: alertmanager, webhook, slack; ``result``: delivered, failed, refused."""
        self.notifications.labels(sink, result).inc()
