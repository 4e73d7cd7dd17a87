"""Send the request of an HTTP check; judging the answer is pure (``core.checks.judge_http_answer``).

What this adapter guarantees, whatever the spec says:

* every request has a timeout (``timeout_of(check)``); a timeout, a DNS failure or a refused
  connection is *inconclusive* (the ladder holds, nothing rolls back), like a Prometheus outage;
* redirects are followed only on the same scheme, host and port (at most 3); a redirect elsewhere
  is a failure that names the host, and is never followed;
* header values come from Secrets of the JeffreyIntegration's own namespace (``secretKeyRef``);
* at most 1 MiB of an answer is read, only when ``jsonPath`` is set, and nothing of it leaves this
  module but the one compared field;
* every URL and redirect target, and the addresses its host resolves to, pass the operator's
  egress policy (:mod:`jeffrey_operator.core.egress`: the allow-list, link-local and cloud
  metadata refused by default); a refused URL is an Invalid run that names it, and nothing is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from jeffrey_operator.core.checks import judge_http_answer, shown_url, timeout_of
from jeffrey_operator.core.egress import EgressPolicy, redirect_allowed
from jeffrey_operator.core.models import CheckSpec, HttpMethod
from jeffrey_operator.core.ports import CheckOutcome, CheckOutcomeKind

log = logging.getLogger(__name__)

SecretReader = Callable[[str, str, str], Awaitable[str]]
#: host → the addresses it resolves to (injectable for tests).
Lookup = Callable[[str], Awaitable[list[str]]]

MAX_REDIRECTS = 3
MAX_BODY = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)


async def _getaddrinfo(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


class HttpChecks:
    """The :class:`~jeffrey_operator.core.ports.HttpCheckPort` on aiohttp."""

    def __init__(
        self, secret_reader: SecretReader, *, egress: EgressPolicy | None = None, lookup: Lookup | None = None
    ) -> None:
        self._read_secret = secret_reader
        self._egress = egress or EgressPolicy()
        self._lookup = lookup or _getaddrinfo
        self._session: aiohttp.ClientSession | None = None

    async def _refusal(self, url: str) -> str:
        """Why the policy refuses ``url`` (its host's addresses included), or ``""``. A host that
        does not resolve is not refused here: connecting fails and is reported as inconclusive."""
        refused = self._egress.refusal(url)
        if refused is None:
            host = (urlsplit(url).hostname or "").rstrip(".")
            try:
                addresses = await self._lookup(host)
            except OSError:
                addresses = []
            refused = self._egress.refusal(url, addresses)
        return f"{shown_url(url)} is refused: {refused.why}" if refused is not None else ""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def _headers(self, namespace: str, check: CheckSpec, attempt: int) -> dict[str, str] | CheckOutcome:
        assert check.http is not None
        out: dict[str, str] = {}
        for header in check.http.headers:
            if header.value is not None:
                out[header.name] = header.value
                continue
            assert header.value_from is not None
            ref = header.value_from.secret_key_ref
            try:
                out[header.name] = await self._read_secret(namespace, ref.name, ref.key)
            except Exception as exc:
                status = getattr(exc, "status", None)
                kind = CheckOutcomeKind.INVALID if status in (403, 404) else CheckOutcomeKind.UNAVAILABLE
                what = f"header {header.name}: Secret {ref.name} key {ref.key}"
                return CheckOutcome(attempt, kind, f"{what}: {getattr(exc, 'message', exc)}")
        return out

    async def run(self, namespace: str, check: CheckSpec, attempt: int) -> CheckOutcome:
        """Never raises: every failure is an outcome."""
        assert check.http is not None
        spec = check.http
        headers = await self._headers(namespace, check, attempt)
        if isinstance(headers, CheckOutcome):
            return headers
        seconds = timeout_of(check)
        url = spec.url
        method = spec.method.value
        data: str | None = spec.body if spec.method is HttpMethod.POST else None
        try:
            async with asyncio.timeout(seconds):
                for _ in range(MAX_REDIRECTS + 1):
                    refused = await self._refusal(url)
                    if refused:
                        return CheckOutcome(attempt, CheckOutcomeKind.INVALID, f"egress policy: {refused}")
                    async with self._client().request(
                        method, url, headers=headers, data=data, allow_redirects=False
                    ) as resp:
                        location = resp.headers.get("Location")
                        if resp.status in _REDIRECTS and location:
                            target = urljoin(url, location)
                            if not redirect_allowed(url, target):
                                host = urlsplit(target).hostname or target
                                return CheckOutcome(
                                    attempt,
                                    CheckOutcomeKind.FAILED,
                                    f"HTTP {resp.status} redirects to another host ({host}): not followed",
                                )
                            url = target
                            if resp.status == 303:
                                method, data = "GET", None
                            continue
                        document = await self._document(resp) if spec.json_path is not None else None
                        return judge_http_answer(spec, attempt, resp.status, document)
                return CheckOutcome(attempt, CheckOutcomeKind.FAILED, f"more than {MAX_REDIRECTS} redirects")
        except TimeoutError:
            return CheckOutcome(
                attempt,
                CheckOutcomeKind.UNAVAILABLE,
                f"{method} {shown_url(url)}: no answer within {seconds:g}s",
            )
        except aiohttp.ClientConnectorError as exc:
            return CheckOutcome(
                attempt,
                CheckOutcomeKind.UNAVAILABLE,
                f"{method} {shown_url(url)}: cannot connect: {exc.os_error}",
            )
        except (aiohttp.ClientError, OSError) as exc:
            return CheckOutcome(
                attempt,
                CheckOutcomeKind.UNAVAILABLE,
                f"{method} {shown_url(url)}: {type(exc).__name__}: {exc}",
            )

    @staticmethod
    async def _document(resp: aiohttp.ClientResponse) -> Any:
        raw = await resp.content.read(MAX_BODY)
        try:
            return json.loads(raw)
        except ValueError:
            return None
