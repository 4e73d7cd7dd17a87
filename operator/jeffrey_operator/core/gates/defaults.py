"""The default gates (``spec.defaultGates: true``): the design documents' safety checklist.

Each gate queries the metrics contract of ``docs/metrics.md`` for the integration's namespace
(``{{namespace}}``). Thresholds come from ``spec.defaultGateThresholds``
(:class:`~jeffrey_operator.core.models.DefaultGateOverrides`) and ``spec.bus.maxRate``, so they change
without rewriting a query. A gate in ``spec.gates`` with the name of a default gate replaces it
(to change its ``for``, ``onNoData`` or query).

Windows. Rollback gates judge the latest scrape (``irate(...[1m])``: the last two samples within
a minute) and get their patience from ``for`` only, so that a sustained breach is seen one scrape
after it starts and a spike shorter than ``for`` never rolls back. Promotion gates judge the
average of the last minute, so that one busy scrape during validation does not fail (and roll
back) a level: CPU and bus rate as ``avg_over_time((<irate expression>)[1m:5s])``, the P95 from
``rate(..._bucket[1m])``. Not ``rate(x[1m])`` for CPU and bus rate: it divides by the whole
minute, so it understates a module during its first minute of life, which is exactly when a new
level is validated. All of them assume a scrape interval of 30 s or less.

Memory growth since the level started uses PromQL's ``@`` modifier (enabled by default since
Prometheus 2.33; Thanos and Mimir support it) with ``{{levelStart}}``, the Unix time of
``GateContext.level_started_at``: the namespace's resident memory now minus the same sum at the
level's start. The baseline thus lives in Prometheus, survives operator restarts, is visible in
the resolved query (paste it into Prometheus to check), and needs no state in the operator.
Without data at the level start (Prometheus had not scraped yet) the result is empty and the gate
passes (``onNoData: pass``) rather than counting all memory as growth.
"""

from __future__ import annotations

from jeffrey_operator.core.models import (
    DefaultGateOverrides,
    GateSpec,
    GateWhen,
    JeffreyIntegrationSpec,
    Level,
    OnNoData,
)

__all__ = ["DEFAULT_GATE_NAMES", "default_gates", "gates_for"]

_NS = 'namespace="{{namespace}}"'
_FN = "$fn"  # irate (the latest scrape) or rate (the P95 of the last minute)

# Per module: CPU in percent of its CPU limit, hottest replica.
_CPU = (
    "100 * max by (namespace, module) ($fn(process_cpu_seconds_total{" + _NS + "}[1m]))"
    " / max by (namespace, module) (jeffrey_module_cpu_limit_cores{" + _NS + "})"
)
# Per module: resident memory in percent of its memory limit, fullest replica.
_MEMORY = (
    "100 * max by (namespace, module) (process_resident_memory_bytes{" + _NS + "})"
    " / max by (namespace, module) (jeffrey_module_memory_limit_bytes{" + _NS + "})"
)
# The whole bus of the namespace, in messages per second.
_BUS_RATE = "sum by (namespace) ($fn(jeffrey_bus_messages_published_total{" + _NS + "}[1m]))"
# Per module: messages dropped in the last minute.
_DROPPED = "sum by (namespace, module) (increase(jeffrey_bus_messages_dropped_total{" + _NS + "}[1m]))"
# Per module: publish latency P95 in milliseconds.
_P95 = (
    "1000 * histogram_quantile(0.95, sum by (namespace, module, le) "
    "($fn(jeffrey_bus_publish_latency_seconds_bucket{" + _NS + "}[1m])))"
)
# Resident memory of the namespace now minus at the level start, in MiB.
_MEMORY_GROWTH = (
    "(sum by (namespace) (process_resident_memory_bytes{" + _NS + "})"
    " - sum by (namespace) (process_resident_memory_bytes{" + _NS + "} @ {{levelStart}})) / 1048576"
)
# Modules down (jeffrey_module_up == 0) or with 10+ errors in the last minute; 0 when none.
_MODULES_IN_ERROR = (
    "count(max by (namespace, module) (jeffrey_module_up{" + _NS + "} == 0)"
    " or max by (namespace, module) (increase(jeffrey_module_errors_total{" + _NS + "}[1m]) >= 10))"
    " or vector(0)"
)


def _latest(query: str) -> str:
    """The value at the latest scrape."""
    return query.replace(_FN, "irate")


def _minute_average(query: str) -> str:
    """The average of the latest-scrape value over the last minute (every 5 s)."""
    return f"avg_over_time(({_latest(query)})[1m:5s])"


def _minute_rate(query: str) -> str:
    return query.replace(_FN, "rate")


DEFAULT_GATE_NAMES = (
    "promotion-cpu",
    "promotion-memory",
    "promotion-bus-rate",
    "loops-bus-headroom",
    "loops-dropped-messages",
    "loops-latency-p95",
    "rollback-bus-rate",
    "rollback-memory-growth",
    "rollback-cpu",
    "rollback-modules-in-error",
    "rollback-latency-p95",
)


def default_gates(thresholds: DefaultGateOverrides, bus_max_rate: float) -> list[GateSpec]:
    """The checklist as gates, in this order (see the table in ``docs/metrics.md``).

    >>> from jeffrey_operator.core.models import DefaultGateOverrides
    >>> gates = default_gates(DefaultGateOverrides(max_bus_rate=800), bus_max_rate=2000)
    >>> [(g.name, g.max) for g in gates if "bus" in g.name]
    [('promotion-bus-rate', 800.0), ('loops-bus-headroom', 1400.0), ('rollback-bus-rate', 800.0)]
    """
    t = thresholds
    return [
        # Before each promotion (the last minute on average); no data: cannot tell, hold.
        _promotion("promotion-cpu", _minute_average(_CPU), t.max_cpu_percent),
        _promotion("promotion-memory", _MEMORY, t.max_memory_percent),
        _promotion("promotion-bus-rate", _minute_average(_BUS_RATE), t.max_bus_rate),
        # Stability before the extra loops (promoting LOOPS, then PRODUCTION).
        _promotion(
            "loops-bus-headroom", _minute_average(_BUS_RATE), t.loops_bus_ratio * bus_max_rate, Level.LOOPS
        ),
        _promotion("loops-dropped-messages", _DROPPED, t.loops_max_dropped, Level.LOOPS),
        # No publish in the last minute gives no quantile (NaN): that is not instability.
        _promotion("loops-latency-p95", _minute_rate(_P95), t.loops_max_p95_ms, Level.LOOPS, OnNoData.PASS),
        # Roll back to CORE, at any time (the latest scrape; patience only from `for`).
        _rollback("rollback-bus-rate", _latest(_BUS_RATE), t.max_bus_rate),
        _rollback("rollback-memory-growth", _MEMORY_GROWTH, t.rollback_memory_growth_mb),
        _rollback("rollback-cpu", _latest(_CPU), t.rollback_cpu_percent, t.rollback_cpu_for),
        _rollback("rollback-modules-in-error", _MODULES_IN_ERROR, t.rollback_max_modules_in_error),
        _rollback("rollback-latency-p95", _latest(_P95), t.rollback_p95_ms),
    ]


def _promotion(
    name: str,
    query: str,
    maximum: float,
    from_level: Level = Level.CORE,
    on_no_data: OnNoData = OnNoData.HOLD,
) -> GateSpec:
    return GateSpec(
        name=name,
        query=query,
        max=maximum,
        when=GateWhen.PROMOTION,
        from_level=from_level,
        on_no_data=on_no_data,
    )


def _rollback(name: str, query: str, maximum: float, for_: str = "0s") -> GateSpec:
    """No data is no evidence of trouble: pass (monitoring trouble is Inconclusive anyway)."""
    return GateSpec(
        name=name, query=query, max=maximum, for_=for_, when=GateWhen.ALWAYS, on_no_data=OnNoData.PASS
    )


def gates_for(spec: JeffreyIntegrationSpec) -> list[GateSpec]:
    """The gates of an integration: the defaults (when enabled), then ``spec.gates``.

    A gate of ``spec.gates`` named like a default gate takes that default's place.
    """
    own = {g.name: g for g in spec.gates}
    out: list[GateSpec] = []
    if spec.default_gates:
        for gate in default_gates(spec.default_gate_thresholds, spec.bus.max_rate):
            out.append(own.pop(gate.name, gate))
    out.extend(g for g in spec.gates if g.name in own)
    return out
