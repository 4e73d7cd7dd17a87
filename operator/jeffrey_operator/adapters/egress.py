"""The egress policy where connections are made: DNS answers are judged too.

:mod:`jeffrey_operator.core.egress` judges a URL as written. Here, where the operator connects:

- :class:`GuardedResolver` is the aiohttp resolver of every session that sends requests a
  JeffreyIntegration chose (Prometheus, notification sinks): a host name that resolves to a
  refused address fails the connection (:class:`EgressRefusedError`), so DNS cannot smuggle a
  request to the cloud metadata service.
- :class:`EgressGuard` answers "may the operator call this URL?" before the first request, DNS
  included (cached for ``ttl`` seconds), so that a refused host makes the integration Invalid
  with a clear reason instead of a silent hold.
- :func:`guarded_request` follows redirects only to the same scheme, host and port.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from jeffrey_operator.core.egress import EgressPolicy, Refusal, redirect_allowed, spec_urls
from jeffrey_operator.core.models import JeffreyIntegrationSpec
from jeffrey_operator.core.validation import Problem

__all__ = ["EgressGuard", "EgressRefusedError", "GuardedResolver", "guarded_request", "guarded_session"]

#: Redirects followed at most (same origin only).
MAX_REDIRECTS = 5


class EgressRefusedError(aiohttp.ClientConnectionError):
    """The policy refused the host or an address it resolves to."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, with every answer judged by the egress policy."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        answers = await self._inner.resolve(host, port, family)
        refusal = self.policy.refusal(f"http://{host}/", [a["host"] for a in answers])
        if refusal is not None:
            raise EgressRefusedError(Refusal(host, refusal.why))
        return answers

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def guarded_session(policy: EgressPolicy, **kwargs: Any) -> aiohttp.ClientSession:
    """A session whose connections pass the policy (call inside a running event loop)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy))
    return aiohttp.ClientSession(connector=connector, **kwargs)


@asynccontextmanager
async def guarded_request(
    session: aiohttp.ClientSession, method: str, url: str, policy: EgressPolicy, **kwargs: Any
) -> AsyncIterator[aiohttp.ClientResponse]:
    """``session.request`` that checks ``url`` first and follows only same-origin redirects;
    a redirect elsewhere is answered as it is (a 3xx the caller treats as a failure)."""
    refusal = policy.refusal(url)
    if refusal is not None:
        raise EgressRefusedError(refusal)
    kwargs["allow_redirects"] = False
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        response = await session.request(method, current, **kwargs)
        location = response.headers.get("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            target = urljoin(current, location)
            if redirect_allowed(current, target) and policy.refusal(target) is None:
                response.release()
                if response.status == 303:
                    method = "GET"
                    kwargs.pop("data", None)
                    kwargs.pop("json", None)
                current = target
                continue
        try:
            yield response
        finally:
            response.release()
        return
    raise aiohttp.TooManyRedirects(response.request_info, response.history)


class EgressGuard:
    """The spec's URLs judged by the policy, DNS answers included (cached ``ttl`` seconds).

    A name that does not resolve is not refused here: connecting will fail and be reported
    as the outage it is.
    """

    def __init__(
        self,
        policy: EgressPolicy | None = None,
        *,
        ttl: float = 30.0,
        lookup_timeout: float = 2.0,
        lookup: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or EgressPolicy()
        self.ttl = ttl
        self.lookup_timeout = lookup_timeout
        self._lookup = lookup or _getaddrinfo
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}

    async def addresses(self, host: str) -> tuple[str, ...]:
        now = self._clock()
        cached = self._cache.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            # Bounded: a slow resolver must not hold the reconcile loop.
            found = tuple(await asyncio.wait_for(self._lookup(host), self.lookup_timeout))
        except (OSError, TimeoutError):
            found = ()
        self._cache[host] = (now + self.ttl, found)
        if len(self._cache) > 4096:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        return found

    async def refusal(self, url: str) -> Refusal | None:
        """Why ``url`` may not be requested, its host's current addresses included."""
        refused = self.policy.refusal(url)
        if refused is not None:
            return refused
        host = (urlsplit(url).hostname or "").rstrip(".")
        if not host or _is_literal(host):
            return None
        return self.policy.refusal(url, await self.addresses(host))

    async def problems(self, spec: JeffreyIntegrationSpec) -> list[Problem]:
        """The spec's refused URLs as validation problems (the integration becomes Invalid)."""
        out: list[Problem] = []
        for field, url in spec_urls(spec):
            refused = await self.refusal(url)
            if refused is not None:
                out.append(refused.problem(field))
        return out


def _is_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


async def _getaddrinfo(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})
