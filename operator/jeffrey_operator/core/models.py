"""The JeffreyIntegration resource: spec and status, in one place.

These pydantic models are the single source of truth for the public API. The CRD in ``crds/`` is
generated from them (``make crds``; a test fails when the committed file drifts), the engine reads
and writes them, and every adapter speaks them.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from jeffrey_operator.core.durations import DURATION_PATTERN, OPTIONAL_DURATION_PATTERN, parse_duration

GROUP = "jeffreyos.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "JeffreyIntegration"
PLURAL = "jeffreyintegrations"
SINGULAR = "jeffreyintegration"
SHORT_NAMES = ["ji"]
RETRY_ANNOTATION = f"{GROUP}/retry"
#: The label the operator puts on every Deployment it manages (value: the integration's name);
#: removed when the integration releases it. The operator watches Deployments by this label.
INTEGRATION_LABEL = f"{GROUP}/integration"
#: How many transitions status keeps (enough to back-fill the Redis history after an outage).
TRANSITIONS_KEPT = 50

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class Level(enum.StrEnum):
    """The six integration levels, lowest first."""

    CORE = "CORE"
    COGNITIVE = "COGNITIVE"
    EMOTIONAL = "EMOTIONAL"
    CONSCIOUS = "CONSCIOUS"
    LOOPS = "LOOPS"
    PRODUCTION = "PRODUCTION"

    @property
    def rank(self) -> int:
        """0 for CORE … 5 for PRODUCTION."""
        return _LEVEL_INDEX[self]

    @classmethod
    def ordered(cls) -> list[Level]:
        return list(cls)


_LEVEL_INDEX = {level: i for i, level in enumerate(Level)}


class Phase(enum.StrEnum):
    """Where an integration stands. ``phase`` is a summary; conditions carry the detail."""

    PENDING = "Pending"
    PROMOTING = "Promoting"
    VALIDATING = "Validating"
    COOLING_DOWN = "CoolingDown"
    STABLE = "Stable"
    DEMOTING = "Demoting"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    PAUSED = "Paused"
    INVALID = "Invalid"


def _check_duration(value: str) -> str:
    if value:
        parse_duration(value)
    return value


Duration = Annotated[str, Field(pattern=DURATION_PATTERN), AfterValidator(_check_duration)]
OptionalDuration = Annotated[str, Field(pattern=OPTIONAL_DURATION_PATTERN), AfterValidator(_check_duration)]


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict as the API server stores it (camelCase, no None values)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _StatusModel(_Model):
    """Status models tolerate fields written by newer operator versions."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# --------------------------------------------------------------------------------------------- spec


class ModuleSpec(_Model):
    """One Jeffrey module: an existing Deployment in the resource's namespace."""

    deployment: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="Name of an existing Deployment in the JeffreyIntegration's namespace.",
    )
    replicas: int = Field(
        1, ge=0, le=1000, description="spec.replicas the operator sets when the level is up."
    )
    optional: bool = Field(
        False, description="Missing or unready optional modules degrade the level but never block it."
    )


class LevelSpec(_Model):
    """The modules that make up one integration level."""

    level: Level = Field(description="One of CORE, COGNITIVE, EMOTIONAL, CONSCIOUS, LOOPS, PRODUCTION.")
    modules: list[ModuleSpec] = Field(
        min_length=1, max_length=100, description="Deployments brought up at this level."
    )


class PromotionSpec(_Model):
    """Timings of a promotion step."""

    readiness_timeout: Duration = Field(
        "120s", description="All required modules of a level must be Ready within this, else rollback."
    )
    validation_window: Duration = Field(
        "30s", description="The level must stay healthy this long before the next promotion."
    )
    cooldown: Duration = Field("2s", description="Pause between two levels.")


class RollbackSpec(_Model):
    """What happens after a rollback to CORE."""

    auto_retry_after: OptionalDuration = Field(
        "",
        description=(
            "Retry the climb this long after a rollback. Empty: hold until the spec changes "
            "or the jeffreyos.io/retry annotation gets a new value."
        ),
    )


class SecretKeyRef(_Model):
    """A key of a Secret in the resource's namespace."""

    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)


class BasicAuth(_Model):
    """HTTP basic auth for Prometheus, both parts from Secrets."""

    username_secret_ref: SecretKeyRef
    password_secret_ref: SecretKeyRef


class PrometheusSpec(_Model):
    """Where the health gates' queries go."""

    url: str = Field(
        "http://prometheus-operated.monitoring:9090",
        pattern=r"^https?://.+",
        description="Base URL of the Prometheus HTTP API (Prometheus, Thanos, Mimir, Cortex).",
    )
    timeout: Duration = Field("5s", description="Timeout of one query.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers, e.g. X-Scope-OrgID for Mimir/Cortex."
    )
    bearer_token_secret_ref: SecretKeyRef | None = Field(
        None, description="Bearer token from a Secret in the resource's namespace."
    )
    basic_auth: BasicAuth | None = Field(None, description="Basic auth from Secrets.")


class AnalysisSpec(_Model):
    """How and how often health gates are evaluated."""

    interval: Duration = Field("10s", description="How often gates are evaluated (at least 1s).")
    prometheus: PrometheusSpec = Field(default_factory=PrometheusSpec)


class GateWhen(enum.StrEnum):
    """When a gate is evaluated."""

    PROMOTION = "promotion"  # only while a level is being promoted or validated
    CONTINUOUS = "continuous"  # only once the target level is reached
    ALWAYS = "always"


class OnNoData(enum.StrEnum):
    """What an empty query result means."""

    HOLD = "hold"  # inconclusive: promotion waits, no rollback
    FAIL = "fail"  # counts as a breach
    PASS = "pass"  # counts as healthy


class GateSpec(_Model):
    """A PromQL health gate: breach when the value leaves [min, max]."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)
    query: str = Field(
        min_length=1, max_length=4096, description="PromQL; may use {{namespace}} and {{name}}."
    )
    max: float | None = Field(None, description="Breach when a value is greater than this.")
    min: float | None = Field(None, description="Breach when a value is lower than this.")
    for_: Duration = Field("0s", alias="for", description="A breach must persist this long before it counts.")
    when: GateWhen = Field(GateWhen.ALWAYS, description="promotion | continuous | always")
    from_level: Level = Field(
        Level.CORE, description="The gate applies once this level is being promoted or is up."
    )
    on_no_data: OnNoData = Field(OnNoData.HOLD, description="hold | fail | pass")


class DefaultGateOverrides(_Model):
    """Thresholds of the default gates (the design documents' checklist), overridable one by one."""

    max_cpu_percent: float = Field(80, ge=0, description="Promotion: CPU below this.")
    max_memory_percent: float = Field(80, ge=0, description="Promotion: memory below this.")
    max_bus_rate: float = Field(1000, ge=0, description="Promotion and rollback: bus msg/s.")
    loops_bus_ratio: float = Field(
        0.7, ge=0, le=1, description="Before LOOPS: bus below this share of its limit."
    )
    loops_max_dropped: float = Field(0, ge=0, description="Before LOOPS: dropped messages.")
    loops_max_p95_ms: float = Field(100, ge=0, description="Before LOOPS: publish latency P95.")
    rollback_memory_growth_mb: float = Field(
        500, ge=0, description="Rollback: memory growth since level start."
    )
    rollback_cpu_percent: float = Field(90, ge=0, description="Rollback: sustained CPU.")
    rollback_cpu_for: Duration = Field("30s", description="How long CPU must stay high.")
    rollback_max_modules_in_error: float = Field(
        3, ge=0, description="Rollback: more modules than this in error."
    )
    rollback_p95_ms: float = Field(500, ge=0, description="Rollback: publish latency P95.")


class BusSpec(_Model):
    """The message bus limits the operator publishes to the modules."""

    max_rate: int = Field(1000, ge=1, le=10_000_000, description="Bus rate limit in messages per second.")


class NotifyEvent(enum.StrEnum):
    """What a notification sink is told about (docs/notifications.md)."""

    ROLLED_BACK = "RolledBack"  # a rollback to CORE began
    TARGET_REACHED = "TargetReached"  # stable at the target level
    INVALID = "Invalid"  # the spec cannot be acted on
    STALLED = "Stalled"  # the climb held (outage, failing check) longer than stalledAfter
    RECOVERED = "Recovered"  # stable at the target again after a rollback or Invalid


DEFAULT_NOTIFY_ON = (NotifyEvent.ROLLED_BACK, NotifyEvent.INVALID, NotifyEvent.STALLED)


class AlertmanagerSink(_Model):
    """Post alerts to Alertmanager's ``/api/v2/alerts``; resolved when healthy again."""

    url: str = Field(
        pattern=r"^https?://.+", max_length=2048, description="Base URL of Alertmanager (…:9093)."
    )
    bearer_token_secret_ref: SecretKeyRef | None = Field(
        None, description="Bearer token from a Secret in the resource's namespace."
    )


class WebhookSink(_Model):
    """POST a JSON payload signed with HMAC-SHA256 (header ``X-Jeffrey-Signature-256``)."""

    url: str = Field(pattern=r"^https?://.+", max_length=2048, description="Where the payload is POSTed.")
    secret_ref: SecretKeyRef = Field(description="The HMAC key, from a Secret in the resource's namespace.")


class SlackSink(_Model):
    """A Slack incoming webhook; its URL is a credential, so it comes from a Secret."""

    url_secret_ref: SecretKeyRef = Field(
        description="The incoming-webhook URL, from a Secret in the resource's namespace."
    )


_ONE_SINK = "(has(self.alertmanager) ? 1 : 0) + (has(self.webhook) ? 1 : 0) + (has(self.slack) ? 1 : 0) == 1"


class NotificationSpec(_Model):
    """One notification sink: exactly one of alertmanager, webhook, slack."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": _ONE_SINK, "message": "set exactly one of alertmanager, webhook, slack"}
            ]
        }
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)
    on: list[NotifyEvent] = Field(
        default_factory=lambda: list(DEFAULT_NOTIFY_ON),
        min_length=1,
        max_length=5,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="RolledBack, TargetReached, Invalid, Stalled, Recovered "
        "(default RolledBack, Invalid, Stalled).",
    )
    alertmanager: AlertmanagerSink | None = None
    webhook: WebhookSink | None = None
    slack: SlackSink | None = None

    @model_validator(mode="after")
    def _exactly_one_sink(self) -> NotificationSpec:
        if sum(x is not None for x in (self.alertmanager, self.webhook, self.slack)) != 1:
            raise ValueError("set exactly one of alertmanager, webhook, slack")
        return self

    @property
    def kind(self) -> str:
        """alertmanager, webhook or slack."""
        return "alertmanager" if self.alertmanager else "webhook" if self.webhook else "slack"


def _unique_names(items: list[NotificationSpec]) -> list[NotificationSpec]:
    names = [n.name for n in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"notification names must be unique: {', '.join(duplicates)}")
    return items


Notifications = Annotated[
    list[NotificationSpec],
    Field(
        max_length=20,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(x, self.exists_one(y, y.name == x.name))",
                    "message": "notification names must be unique",
                }
            ]
        },
    ),
    AfterValidator(_unique_names),
]

# ------------------------------------------------------------------------------------- checks spec


class CheckWhen(enum.StrEnum):
    """The moment of its level a check runs at."""

    BEFORE_PROMOTION = "beforePromotion"  # before the level's Deployments are scaled
    VALIDATION = "validation"  # inside the validation window; the level passes only with it
    AFTER_PROMOTION = "afterPromotion"  # once the level is validated; a failure rolls back


class CheckOnFailure(enum.StrEnum):
    """What a failed check does to the ladder."""

    ROLLBACK = "rollback"  # like a gate breach: back to CORE, lastRollback names the check
    HOLD = "hold"  # stop the climb where it is until a retry or a spec change


class CheckOnInconclusive(enum.StrEnum):
    """What a check that cannot tell (timeout, DNS, connection refused) does."""

    HOLD = "hold"  # like a Prometheus outage: hold, try again, never roll back
    FAIL = "fail"  # counts as a failure


class _Open(_Model):
    """Kubernetes types we pass through: the fields we check are typed, the rest is kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class CheckPodSpec(_Open):
    """A core/v1 PodSpec; only ``containers`` is checked here, the API server checks the rest."""

    containers: list[dict[str, Any]] = Field(
        min_length=1, description="At least one container (a core/v1 Container each)."
    )


class CheckPodTemplate(_Open):
    """A core/v1 PodTemplateSpec."""

    metadata: dict[str, Any] | None = None
    spec: CheckPodSpec


class CheckJobSpec(_Open):
    """A batch/v1 JobSpec (``template``, ``backoffLimit``, ``activeDeadlineSeconds``, ...)."""

    template: CheckPodTemplate
    backoff_limit: int | None = Field(None, ge=0, description="Retries before the Job fails.")
    active_deadline_seconds: int | None = Field(None, ge=1)


class JobCheck(_Model):
    """Run a Kubernetes Job; the check passes when it completes, fails when it fails."""

    spec: CheckJobSpec = Field(description="A batch/v1 JobSpec.")
    history_limit: int = Field(
        3, ge=0, le=20, description="Finished Jobs of this check kept for inspection (older ones deleted)."
    )


class HeaderValueSource(_Model):
    secret_key_ref: SecretKeyRef = Field(description="A key of a Secret in the resource's namespace.")


class HttpHeader(_Model):
    """One request header: a literal value or one from a Secret."""

    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    value: str | None = Field(None, max_length=4096)
    value_from: HeaderValueSource | None = None

    @model_validator(mode="after")
    def _one_value(self) -> HttpHeader:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"header {self.name}: set exactly one of value or valueFrom")
        return self


class HttpMethod(enum.StrEnum):
    GET = "GET"
    POST = "POST"


class HttpCheck(_Model):
    """Ask a URL; 2xx (or ``expectStatus``) and, optionally, one JSON field equal to a value."""

    url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://[^/?#\s]+.*$")
    method: HttpMethod = Field(HttpMethod.GET, description="GET | POST")
    headers: list[HttpHeader] = Field(default_factory=list, max_length=20)
    body: str = Field("", max_length=65536, description="Request body (POST).")
    expect_status: list[int] = Field(
        default_factory=list,
        max_length=20,
        description="Status codes that pass; empty: any 2xx.",
    )
    json_path: str | None = Field(
        None,
        max_length=256,
        pattern=r"^\$([.][A-Za-z0-9_-]+|\[[0-9]+\])*$",
        description="A field of the JSON answer to compare, e.g. $.status or $.items[0].ready.",
    )
    equals: str | None = Field(None, max_length=1024, description="The value (as text) jsonPath must have.")

    @model_validator(mode="after")
    def _path_and_value(self) -> HttpCheck:
        if (self.json_path is None) != (self.equals is None):
            raise ValueError("jsonPath and equals go together: set both or neither")
        if any(not 100 <= code <= 599 for code in self.expect_status):
            raise ValueError("expectStatus codes must be 100..599")
        return self


class CheckSpec(_Model):
    """A check of one level: a Job or an HTTP request whose result counts like a gate's."""

    name: str = Field(min_length=1, max_length=40, pattern=DNS1123_LABEL)
    level: Level = Field(description="The level it validates.")
    when: CheckWhen = Field(CheckWhen.VALIDATION, description="beforePromotion | validation | afterPromotion")
    timeout: OptionalDuration = Field(
        "",
        description="Job: must complete within this (default 10m). HTTP: one request (default 10s).",
    )
    on_failure: CheckOnFailure = Field(CheckOnFailure.ROLLBACK, description="rollback | hold")
    on_inconclusive: CheckOnInconclusive = Field(CheckOnInconclusive.HOLD, description="hold | fail")
    job: JobCheck | None = None
    http: HttpCheck | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CheckSpec:
        if (self.job is None) == (self.http is None):
            raise ValueError(f"check {self.name}: set exactly one of job or http")
        return self


class JeffreyIntegrationSpec(_Model):
    """Desired state of a progressive integration."""

    target_level: Level = Field(Level.PRODUCTION, description="The level to climb to.")
    paused: bool = Field(False, description="Freeze: no promotion, no demotion, no rollback.")
    levels: list[LevelSpec] = Field(
        min_length=1, max_length=6, description="Any subset of the six levels, each at most once."
    )
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    default_gates: bool = Field(False, description="Add the design documents' checklist as gates.")
    default_gate_thresholds: DefaultGateOverrides = Field(default_factory=DefaultGateOverrides)
    gates: list[GateSpec] = Field(default_factory=list, max_length=50)
    bus: BusSpec = Field(default_factory=BusSpec)
    notifications: Notifications = Field(
        default_factory=list, description="Who is told when the ladder moves (docs/notifications.md)."
    )
    stalled_after: Duration = Field(
        "10m", description="A climb held by an outage or a failing check this long is Stalled."
    )
    checks: list[CheckSpec] = Field(
        default_factory=list, max_length=20, description="Job and HTTP checks of levels (docs/checks.md)."
    )


# ------------------------------------------------------------------------------------------- status


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_StatusModel):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int = 0


class ModuleState(enum.StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    MISSING = "Missing"
    SCALED_DOWN = "ScaledDown"
    PENDING = "Pending"  # its level has not been reached yet


class ModuleStatus(_StatusModel):
    deployment: str
    level: Level
    optional: bool = False
    desired: int = 0
    ready: int = 0
    state: ModuleState = ModuleState.PENDING


class GateResult(enum.StrEnum):
    PASS = "Pass"
    BREACH = "Breach"  # sustained for `for`: counts
    PENDING_BREACH = "PendingBreach"  # out of bounds, but not yet for `for`
    INCONCLUSIVE = "Inconclusive"  # Prometheus unreachable, no data with onNoData=hold
    INVALID = "Invalid"  # bad query
    INACTIVE = "Inactive"  # not applicable at this level/phase


class GateStatus(_StatusModel):
    """What the last evaluation of one gate said, and since when."""

    name: str
    query: str = ""
    value: float | None = None
    series: str = ""
    min: float | None = None
    max: float | None = None
    result: GateResult = GateResult.INACTIVE
    since: str = ""
    message: str = ""


class CheckResult(enum.StrEnum):
    """Where one check's run stands (gate vocabulary: Pass, Inconclusive, Invalid)."""

    PENDING = "Pending"  # its moment has not come in this climb
    RUNNING = "Running"  # started, no verdict yet
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"  # could not tell (timeout, DNS, connection): tried again
    INVALID = "Invalid"  # the check cannot run as written (a bad Job template, a missing Secret)


class CheckStatus(_StatusModel):
    """The current run of one check."""

    name: str
    level: Level
    when: CheckWhen = CheckWhen.VALIDATION
    result: CheckResult = CheckResult.PENDING
    #: Runs of this check so far; a Job carries its run's number in the label jeffreyos.io/attempt.
    attempt: int = 0
    #: When the current result began (RFC 3339).
    since: str = ""
    #: When the current run started (its timeout counts from here).
    started_at: str = ""
    #: The Job of the current run (job checks).
    job: str = ""
    #: The compared JSON field (HTTP checks): the only part of an answer ever copied.
    value: str = ""
    #: The generation the run started at (a held failure runs again when the spec changes).
    generation: int = 0
    message: str = ""


class RollbackRecord(_StatusModel):
    time: str
    from_level: Level | None = None
    reason: str
    message: str = ""
    gate: str = ""
    value: float | None = None
    threshold: float | None = None
    generation: int = 0
    retry_token: str = ""
    #: The check whose failure rolled back (empty when a gate or readiness did).
    check: str = ""


class Transition(_StatusModel):
    """One change of (currentLevel, phase)."""

    seq: int
    time: str
    from_level: Level | None = None
    to_level: Level | None = None
    phase: Phase
    reason: str
    message: str = ""


class SinkDelivery(_StatusModel):
    """How far one notification sink got: the last notification delivered to it."""

    name: str
    #: The transition ``seq`` of the last notification delivered (0: none yet).
    seq: int = 0
    #: Its event (RolledBack, …): several notifications may share a seq.
    event: str = ""
    time: str = ""


class JeffreyIntegrationStatus(_StatusModel):
    """Observed state. The engine derives every decision from spec + this + what it observes now."""

    observed_generation: int = 0
    phase: Phase = Phase.PENDING
    reason: str = ""
    message: str = ""
    current_level: Level | None = None
    target_level: Level | None = None
    #: The level the current phase works on (being promoted, validated, cooled down from, demoted).
    active_level: Level | None = None
    #: When the current phase began for ``active_level`` (RFC 3339).
    phase_since: str = ""
    #: When the promotion of the highest level up (or being promoted) began; gates measure
    #: "memory grew since the level started" from here.
    level_started_at: str = ""
    #: Since when a required module of an up level is unready (readiness lost after promotion).
    unready_since: str = ""
    modules: list[ModuleStatus] = Field(default_factory=list)
    gates: list[GateStatus] = Field(default_factory=list)
    checks: list[CheckStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    last_rollback: RollbackRecord | None = None
    #: The last ``jeffreyos.io/retry`` value acted on.
    last_retry_token: str = ""
    transitions: list[Transition] = Field(default_factory=list)
    transition_seq: int = 0
    #: Per notification sink, the last notification delivered (written by the delivery worker only).
    notifications: list[SinkDelivery] = Field(default_factory=list)


class JeffreyIntegration(_Model):
    """The whole object, for printing and for the CRD generator."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    api_version: Literal["jeffreyos.io/v1alpha1"] = "jeffreyos.io/v1alpha1"
    kind: Literal["JeffreyIntegration"] = "JeffreyIntegration"
    spec: JeffreyIntegrationSpec
    status: JeffreyIntegrationStatus = Field(default_factory=JeffreyIntegrationStatus)
