"""Typed operator settings, validated once at start-up.

Every setting comes from a command-line flag of ``jeffrey-operator run`` or the environment
variable named beside it; flags win over the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr, TypeAdapter, ValidationError

from jeffrey_operator.core.egress import EgressPolicy, EgressPolicyError
from jeffrey_operator.core.models import NotificationSpec

LogFormat = Literal["text", "json"]


class SettingsError(ValueError):
    """A setting with a value the operator cannot run with."""


@dataclass(frozen=True)
class OperatorSettings:
    #: Namespaces to watch (``--namespace``, ``JEFFREY_NAMESPACES`` comma-separated).
    namespaces: tuple[str, ...] = ()
    #: Watch every namespace (``--all-namespaces``); the default when no namespace is given.
    all_namespaces: bool = True
    #: Port of the ``/healthz`` liveness endpoint (``--health-port``, ``JEFFREY_HEALTH_PORT``); 0 disables.
    health_port: int = 8080
    #: Port of the Prometheus ``/metrics`` endpoint (``--metrics-port``, ``JEFFREY_METRICS_PORT``);
    #: 0 disables.
    metrics_port: int = 9090
    #: ``text`` for people, ``json`` for log pipelines (``--log-format``, ``JEFFREY_LOG_FORMAT``).
    log_format: LogFormat = "text"
    #: Verbose (debug) logging (``--verbose``).
    verbose: bool = False
    #: High availability: the name of the ``coordination.k8s.io/v1`` Lease the replicas elect a
    #: leader with (only the holder acts); None with ``standalone`` (``--peering``, ``JEFFREY_PEERING``).
    peering: str | None = None
    #: Run without leader election: only safe with a single replica (``--standalone``).
    standalone: bool = True
    #: Namespace of the Lease (``--lease-namespace``, ``JEFFREY_LEASE_NAMESPACE``, else the pod's
    #: ``POD_NAMESPACE``, else the first watched namespace, else ``default``).
    lease_namespace: str = "default"
    #: Seconds a standby waits, after it last saw the Lease change, before it takes it
    #: (``--lease-duration``); fail-over after a crash takes at most this plus twice ``retry_period``.
    lease_duration: float = 8.0
    #: Seconds the leader keeps trying to renew before it stops acting (``--renew-deadline``).
    renew_deadline: float = 6.0
    #: Seconds between two attempts to acquire or renew the Lease (``--retry-period``).
    retry_period: float = 2.0
    #: ``/healthz`` fails after this many seconds without reaching the Kubernetes API
    #: (``--liveness-grace``, ``JEFFREY_LIVENESS_GRACE``).
    liveness_grace: float = 60.0
    #: Integrations reconciled at the same time (work-queue workers, ``--workers``).
    workers: int = 8
    #: Seconds between two probes of the state store (``jeffrey_state_store_up`` follows them).
    state_store_probe: float = 5.0
    #: Redis URL of the state store; empty disables it (``--redis-url``, ``JEFFREY_REDIS_URL``).
    redis_url: str = ""
    #: Redis password, filled from a Secret (``JEFFREY_REDIS_PASSWORD``); never logged.
    redis_password: SecretStr = field(default_factory=lambda: SecretStr(""))
    #: Prefix of every Redis key (``--redis-key-prefix``, ``JEFFREY_REDIS_KEY_PREFIX``).
    redis_key_prefix: str = "jeffrey"
    #: Length the Redis history stream is trimmed to (``--history-length``).
    history_length: int = 1000
    #: Refresh gate values in status at most this often when nothing else changed (seconds).
    gate_status_refresh: float = 60.0
    #: Hosts (``name``, ``*.domain``) and CIDRs the operator may send requests to for an
    #: integration (Prometheus, checks, notification sinks); empty: any host. Link-local and
    #: cloud-metadata addresses are refused unless listed (``--egress-allow``, repeatable;
    #: ``JEFFREY_EGRESS_ALLOW`` comma-separated).
    egress_allow: tuple[str, ...] = ()
    #: Notification sinks every integration gets besides its own (a JSON list shaped like
    #: ``spec.notifications``; ``--default-notifications``, ``JEFFREY_DEFAULT_NOTIFICATIONS``).
    default_notifications: tuple[NotificationSpec, ...] = ()
    #: The operator's namespace, where the default sinks' Secrets live (``POD_NAMESPACE``).
    operator_namespace: str = ""

    def __post_init__(self) -> None:
        for port_name in ("health_port", "metrics_port"):
            port = getattr(self, port_name)
            if not 0 <= port <= 65535:
                raise SettingsError(f"{port_name.replace('_', '-')} must be 0..65535, got {port}")
        if self.namespaces and self.all_namespaces:
            raise SettingsError("--namespace and --all-namespaces exclude each other")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"--log-format must be text or json, got {self.log_format!r}")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("--redis-url must start with redis://, rediss:// or unix://")
        if not self.standalone and not self.peering:
            raise SettingsError("--peering NAME is required unless --standalone")
        if self.history_length < 10:
            raise SettingsError("--history-length must be at least 10")
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise SettingsError(
                "leader election needs --lease-duration > --renew-deadline > --retry-period > 0, got "
                f"{self.lease_duration:g} > {self.renew_deadline:g} > {self.retry_period:g}"
            )
        if self.liveness_grace <= 0:
            raise SettingsError(f"--liveness-grace must be positive, got {self.liveness_grace:g}")
        if self.workers < 1:
            raise SettingsError(f"--workers must be at least 1, got {self.workers}")
        policy = self.egress_policy
        for sink in self.default_notifications:
            for url in (
                sink.alertmanager.url if sink.alertmanager else "",
                sink.webhook.url if sink.webhook else "",
            ):
                refusal = policy.refusal(url) if url else None
                if refusal is not None:
                    raise SettingsError(f"default notification {sink.name}: {refusal}")
            if (
                sink.webhook
                or sink.slack
                or (sink.alertmanager and sink.alertmanager.bearer_token_secret_ref)
            ) and not (self.operator_namespace):
                raise SettingsError(
                    f"default notification {sink.name} reads a Secret: set POD_NAMESPACE to the "
                    "operator's namespace"
                )

    @property
    def egress_policy(self) -> EgressPolicy:
        """The egress allow-list, parsed (it is validated when the settings are made)."""
        try:
            return EgressPolicy.parse(self.egress_allow)
        except EgressPolicyError as exc:
            raise SettingsError(str(exc)) from None


_SINKS = TypeAdapter(list[NotificationSpec])


def parse_notifications(text: str) -> tuple[NotificationSpec, ...]:
    """Default sinks from JSON (the chart renders ``notifications.defaults`` so)."""
    try:
        raw = json.loads(text or "[]")
        if isinstance(raw, list) and any(isinstance(s, dict) and "true" in s for s in raw):
            raise SettingsError(
                'default notifications: a sink has a field "true": write "on": quoted in YAML '
                "(YAML 1.1 reads a bare on as true)"
            )
        sinks = _SINKS.validate_python(raw)
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"default notifications are not a valid list of sinks: {exc}") from None
    names = [s.name for s in sinks]
    if len(set(names)) != len(names):
        raise SettingsError("default notification names must be unique")
    return tuple(sinks)


def env_defaults(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """The settings the environment provides (flags override them)."""
    env = os.environ if env is None else env
    out: dict[str, object] = {}
    if env.get("JEFFREY_NAMESPACES"):
        out["namespaces"] = tuple(ns.strip() for ns in env["JEFFREY_NAMESPACES"].split(",") if ns.strip())
    for key, name in (("JEFFREY_HEALTH_PORT", "health_port"), ("JEFFREY_METRICS_PORT", "metrics_port")):
        if env.get(key):
            try:
                out[name] = int(env[key])
            except ValueError as exc:
                raise SettingsError(f"{key} must be a port number, got {env[key]!r}") from exc
    if env.get("JEFFREY_LOG_FORMAT"):
        out["log_format"] = env["JEFFREY_LOG_FORMAT"]
    if env.get("JEFFREY_PEERING"):
        out["peering"] = env["JEFFREY_PEERING"]
        out["standalone"] = False
    lease_namespace = env.get("JEFFREY_LEASE_NAMESPACE") or env.get("POD_NAMESPACE")
    if lease_namespace:
        out["lease_namespace"] = lease_namespace
    if env.get("JEFFREY_LIVENESS_GRACE"):
        try:
            out["liveness_grace"] = float(env["JEFFREY_LIVENESS_GRACE"])
        except ValueError as exc:
            raise SettingsError(
                f"JEFFREY_LIVENESS_GRACE must be a number of seconds, got {env['JEFFREY_LIVENESS_GRACE']!r}"
            ) from exc
    if env.get("JEFFREY_REDIS_URL"):
        out["redis_url"] = env["JEFFREY_REDIS_URL"]
    if env.get("JEFFREY_REDIS_PASSWORD"):
        out["redis_password"] = SecretStr(env["JEFFREY_REDIS_PASSWORD"])
    if env.get("JEFFREY_REDIS_KEY_PREFIX"):
        out["redis_key_prefix"] = env["JEFFREY_REDIS_KEY_PREFIX"]
    if env.get("JEFFREY_EGRESS_ALLOW"):
        out["egress_allow"] = tuple(h.strip() for h in env["JEFFREY_EGRESS_ALLOW"].split(",") if h.strip())
    if env.get("JEFFREY_DEFAULT_NOTIFICATIONS"):
        out["default_notifications"] = parse_notifications(env["JEFFREY_DEFAULT_NOTIFICATIONS"])
    if env.get("POD_NAMESPACE"):
        out["operator_namespace"] = env["POD_NAMESPACE"]
    return out
