"""The notification sinks: Alertmanager, a signed webhook, Slack. They send; they decide nothing.

What to send comes from :mod:`jeffrey_operator.core.notify`; the delivery worker
(:mod:`jeffrey_operator.runtime.notifications`) calls :meth:`Senders.send` and retries.
Every request passes the egress policy (the URL, the addresses it resolves to, no redirects), and
a failure is a :class:`DeliveryError` whose message names the status, never the response body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from jeffrey_operator.adapters.egress import EgressRefusedError, guarded_request, guarded_session
from jeffrey_operator.core.egress import EgressPolicy
from jeffrey_operator.core.models import NotificationSpec, SecretKeyRef
from jeffrey_operator.core.notify import Alert, Notice, slack_message, webhook_payload

__all__ = [
    "SIGNATURE_HEADER",
    "DeliveryError",
    "Senders",
    "SinkTarget",
    "sign",
]

log = logging.getLogger(__name__)

#: ``sha256=<hex HMAC-SHA256 of the raw body, keyed with the Secret's value>``.
SIGNATURE_HEADER = "X-Jeffrey-Signature-256"
EVENT_HEADER = "X-Jeffrey-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "jeffrey-operator"

SecretReader = Callable[[str, str, str], Awaitable[str]]


class DeliveryError(Exception):
    """A delivery failed; ``refused``: the egress policy said no (retrying will not help until the
    policy or the URL changes, but it is retried all the same, slowly)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SinkTarget:
    """One sink of one integration, with where its secrets live."""

    namespace: str
    name: str
    uid: str
    sink: NotificationSpec
    #: The namespace its secretKeyRefs name: the integration's own; the operator's for defaults.
    secret_namespace: str


class Senders:
    """One aiohttp session (egress-guarded) shared by every sink of the operator."""

    def __init__(
        self,
        policy: EgressPolicy | None = None,
        *,
        secret_reader: SecretReader | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.policy = policy or EgressPolicy()
        self.secrets = secret_reader
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = guarded_session(self.policy, headers={"User-Agent": USER_AGENT})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _secret(self, target: SinkTarget, ref: SecretKeyRef) -> str:
        if self.secrets is None:
            raise DeliveryError(f"cannot read Secret {ref.name}: no Kubernetes access")
        try:
            return (await self.secrets(target.secret_namespace, ref.name, ref.key)).strip()
        except Exception as exc:
            raise DeliveryError(
                f"cannot read key {ref.key!r} of Secret {target.secret_namespace}/{ref.name}: "
                f"{getattr(exc, 'reason', '') or type(exc).__name__}"
            ) from None

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        headers = {"Content-Type": "application/json", **headers}
        try:
            async with guarded_request(
                self._get_session(),
                "POST",
                url,
                self.policy,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                if 200 <= response.status < 300:
                    return
                if 300 <= response.status < 400:
                    raise DeliveryError(f"HTTP {response.status}: redirect to another host not followed")
                raise DeliveryError(f"HTTP {response.status} {response.reason or ''}".strip())
        except EgressRefusedError as exc:
            raise DeliveryError(f"egress refused: {exc}", refused=True) from None
        except TimeoutError:
            raise DeliveryError(f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"unreachable: {type(exc).__name__}") from None
        except OSError as exc:
            raise DeliveryError(f"unreachable: {exc.strerror or type(exc).__name__}") from None

    # ------------------------------------------------------------------------------ the sinks
    async def send(self, target: SinkTarget, notice: Notice) -> None:
        """Deliver one notice to a webhook or Slack sink."""
        sink = target.sink
        if sink.webhook is not None:
            secret = await self._secret(target, sink.webhook.secret_ref)
            payload = webhook_payload(target.namespace, target.name, target.uid, notice)
            body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
            headers = {
                SIGNATURE_HEADER: sign(secret, body),
                EVENT_HEADER: notice.event.value,
                IDEMPOTENCY_HEADER: str(payload["idempotencyKey"]),
            }
            await self._post(sink.webhook.url, body, headers)
        elif sink.slack is not None:
            url = await self._secret(target, sink.slack.url_secret_ref)
            body = json.dumps(slack_message(target.namespace, target.name, notice)).encode()
            await self._post(url, body, {})
        else:
            raise DeliveryError(f"sink {sink.name} is not a webhook or Slack sink")

    async def post_alerts(self, target: SinkTarget, alerts: Sequence[dict[str, Any]]) -> None:
        """Post alerts (already in wire form) to an Alertmanager sink."""
        am = target.sink.alertmanager
        if am is None:
            raise DeliveryError(f"sink {target.sink.name} is not an Alertmanager sink")
        headers: dict[str, str] = {}
        if am.bearer_token_secret_ref is not None:
            headers["Authorization"] = "Bearer " + await self._secret(target, am.bearer_token_secret_ref)
        body = json.dumps(list(alerts)).encode()
        await self._post(am.url.rstrip("/") + "/api/v2/alerts", body, headers)


def wire_alerts(alerts: Sequence[Alert], now: Any, ttl: float) -> list[dict[str, Any]]:
    return [a.wire(now, ttl) for a in alerts]
