"""Every condition type and reason the operator writes, in one module.

Condition types follow Kubernetes and kstatus conventions: ``Ready`` (the integration is stable at
its target), ``Reconciling`` (work in progress), ``Stalled`` (it cannot proceed without a human:
invalid spec, holding after a rollback), ``Degraded`` (up, but optional modules are missing or
unready). Adapters add ``GatesHealthy`` / ``MetricsAvailable`` (Prometheus) and
``StateStoreAvailable`` (Redis). Reasons are also used as Event reasons.
"""

from __future__ import annotations

from collections.abc import Sequence

from jeffrey_operator.core.models import Condition, ConditionStatus

# ------------------------------------------------------------------------------------------ types
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
DEGRADED = "Degraded"
GATES_HEALTHY = "GatesHealthy"
METRICS_AVAILABLE = "MetricsAvailable"
STATE_STORE_AVAILABLE = "StateStoreAvailable"
NOTIFICATIONS_DELIVERED = "NotificationsDelivered"
CHECKS_HEALTHY = "ChecksHealthy"

CONDITION_TYPES = (
    READY,
    RECONCILING,
    STALLED,
    DEGRADED,
    GATES_HEALTHY,
    METRICS_AVAILABLE,
    STATE_STORE_AVAILABLE,
    NOTIFICATIONS_DELIVERED,
    CHECKS_HEALTHY,
)

# ---------------------------------------------------------------------------------------- reasons
# The ladder
PROMOTING = "Promoting"
WAITING_FOR_READY = "WaitingForReady"
VALIDATING = "Validating"
WAITING_FOR_GATES = "WaitingForGates"
LEVEL_VALIDATED = "LevelValidated"
COOLING_DOWN = "CoolingDown"
TARGET_REACHED = "TargetReached"
DEMOTING = "Demoting"
LEVEL_DEMOTED = "LevelDemoted"
# Rollback
READINESS_TIMEOUT = "ReadinessTimeout"
MODULE_UNREADY = "ModuleUnready"
GATE_BREACH = "GateBreach"
ROLLING_BACK = "RollingBack"
ROLLED_BACK = "RolledBack"
HOLDING_AFTER_ROLLBACK = "HoldingAfterRollback"
RETRY_REQUESTED = "RetryRequested"
SPEC_CHANGED = "SpecChanged"
AUTO_RETRY = "AutoRetry"
# Freeze and bad input
PAUSED = "Paused"
INVALID_SPEC = "InvalidSpec"
DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
DEPLOYMENT_CLAIMED = "DeploymentClaimed"
DUPLICATE_LEVEL = "DuplicateLevel"
DUPLICATE_DEPLOYMENT = "DuplicateDeployment"
NO_LEVEL_AT_TARGET = "NoLevelAtOrBelowTarget"
INVALID_GATE_BOUNDS = "InvalidGateBounds"
# Health
OPTIONAL_MODULES_DEGRADED = "OptionalModulesDegraded"
MODULES_HEALTHY = "ModulesHealthy"
GATES_PASSING = "GatesPassing"
GATES_INCONCLUSIVE = "GatesInconclusive"
GATES_INVALID = "InvalidGate"
NO_GATES = "NoGates"
NO_GATES_CONFIGURED = "NoGatesConfigured"
PROMETHEUS_UNAVAILABLE = "PrometheusUnavailable"
PROMETHEUS_AVAILABLE = "PrometheusAvailable"
STATE_STORE_UNAVAILABLE = "StateStoreUnavailable"
STATE_STORE_SYNCED = "StateStoreSynced"
STATE_STORE_DISABLED = "StateStoreDisabled"
# Notifications (docs/notifications.md)
NOTIFICATIONS_UP_TO_DATE = "NotificationsUpToDate"
NOTIFICATION_FAILING = "NotificationFailing"
NOTIFICATION_REFUSED = "NotificationRefused"
# Level checks (spec.checks)
WAITING_FOR_CHECKS = "WaitingForChecks"
CHECK_STARTED = "CheckStarted"
CHECK_PASSED = "CheckPassed"
CHECK_FAILED = "CheckFailed"
CHECK_INCONCLUSIVE = "CheckInconclusive"
CHECK_INVALID = "InvalidCheck"
#: Every reason a rollback is recorded with (label values of ``jeffrey_rollbacks_total``).
ROLLBACK_REASONS = (GATE_BREACH, READINESS_TIMEOUT, MODULE_UNREADY, CHECK_FAILED)
CHECKS_RUNNING = "ChecksRunning"
CHECKS_PASSING = "ChecksPassing"
CHECKS_PENDING = "ChecksPending"
JOB_CREATE_FAILED = "CheckJobCreateFailed"
# Operator-level
SCALED = "Scaled"
REPLICAS_RESTORED = "ReplicasRestored"
SCALE_FAILED = "ScaleFailed"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: bool | ConditionStatus,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int,
) -> list[Condition]:
    """Return ``conditions`` with ``type_`` set. ``lastTransitionTime`` moves only when the status
    flips, so an unchanged condition is byte-for-byte unchanged (no write at steady state)."""
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    out: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            out.append(cond)
            continue
        found = True
        since = cond.last_transition_time if cond.status == status else now
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    out.sort(key=lambda c: order.get(c.type, len(order)))
    return out


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
