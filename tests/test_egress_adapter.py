"""The egress policy where connections are made (jeffrey_operator.adapters.egress): DNS answers,
redirects, and the adapters that use it (Prometheus client, notification senders), over real HTTP
on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from jeffrey_operator.adapters.egress import EgressGuard, EgressRefusedError, GuardedResolver, guarded_request
from jeffrey_operator.adapters.notify import DeliveryError, Senders, SinkTarget
from jeffrey_operator.adapters.prometheus.client import Endpoint, PrometheusClient, PrometheusError
from jeffrey_operator.core.egress import EgressPolicy
from jeffrey_operator.core.models import JeffreyIntegrationSpec, NotificationSpec, NotifyEvent, Phase
from jeffrey_operator.core.notify import Notice


class FakeResolver(AbstractResolver):
    """Every name resolves to ``address`` (a DNS answer the test chooses)."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": self.address, "port": port, "family": family, "proto": 0, "flags": 0}
        ]

    async def close(self) -> None:
        return None


@pytest.fixture(name="server")
async def server_fixture() -> AsyncIterator[str]:
    """127.0.0.1:PORT with /ok, /same (redirects to /ok) and /other (redirects to localhost)."""
    hits: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        hits.append(request.path)
        sample = {"metric": {}, "value": [0, "1"]}
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": [sample]}})

    async def same(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def other(request: web.Request) -> web.Response:
        port = request.url.port
        raise web.HTTPTemporaryRedirect(f"http://localhost:{port}/ok")

    app = web.Application()
    for path, handler in (("/ok", ok), ("/same", same), ("/other", other)):
        app.router.add_route("*", path, handler)
        app.router.add_route("*", "/api/v1/query" if path == "/other" else path + "/api/v1/query", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_name_that_resolves_to_a_refused_address_is_not_connected(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    resolver = GuardedResolver(EgressPolicy(), inner=FakeResolver("169.254.169.254"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as session:
        with pytest.raises(EgressRefusedError, match=r"169\.254\.169\.254, which is a link-local address"):
            await session.get(f"http://rebind.example:{port}/ok")
    # The same resolver lets an allowed answer through.
    resolver = GuardedResolver(EgressPolicy(), inner=FakeResolver("127.0.0.1"))
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://anything.example:{port}/ok") as response,
    ):
        assert response.status == 200


async def test_redirects_are_followed_on_the_same_origin_only(server: str) -> None:
    policy = EgressPolicy()
    async with aiohttp.ClientSession() as session:
        async with guarded_request(session, "GET", server + "/same", policy) as response:
            assert (response.status, response.url.path) == (200, "/ok")
        async with guarded_request(session, "GET", server + "/other", policy) as response:
            assert response.status == 307  # to localhost: another host, not followed
        with pytest.raises(EgressRefusedError, match="link-local"):
            async with guarded_request(session, "GET", "http://169.254.169.254/", policy):
                pass


async def test_the_prometheus_client_follows_no_redirect_to_another_host(server: str) -> None:
    client = PrometheusClient(egress=EgressPolicy())
    try:
        ok = await client.query(Endpoint(url=server + "/ok", timeout=2.0), "up")
        assert [s.value for s in ok] == [1.0]
        with pytest.raises(PrometheusError):
            await client.query(Endpoint(url=server, timeout=2.0), "up")  # /api/v1/query → /other
    finally:
        await client.close()


def target(sink: dict[str, Any]) -> SinkTarget:
    return SinkTarget("ns", "ji", "uid", NotificationSpec.model_validate({"name": "s", **sink}), "ns")


NOTICE = Notice(NotifyEvent.ROLLED_BACK, 1, "2026-01-01T00:00:00Z", Phase.ROLLING_BACK, "GateBreach", "m")


async def test_senders_refuse_what_the_policy_refuses(server: str) -> None:
    async def secrets(namespace: str, name: str, key: str) -> str:
        return {"url": "http://169.254.169.254/hook", "hmac": "k"}[key]

    senders = Senders(EgressPolicy(), secret_reader=secrets)
    try:
        with pytest.raises(DeliveryError, match="egress refused") as exc:
            await senders.send(target({"slack": {"urlSecretRef": {"name": "x", "key": "url"}}}), NOTICE)
        assert exc.value.refused
        hook = {"webhook": {"url": server + "/other", "secretRef": {"name": "x", "key": "hmac"}}}
        with pytest.raises(DeliveryError, match="HTTP 307: redirect to another host not followed"):
            await senders.send(target(hook), NOTICE)
        await senders.send(
            target({"webhook": {"url": server + "/ok", "secretRef": {"name": "x", "key": "hmac"}}}), NOTICE
        )
    finally:
        await senders.close()


async def test_the_guard_judges_dns_answers_with_a_cache_and_a_deadline() -> None:
    answers = {"rebind.example": ["10.0.0.1", "169.254.169.254"], "fine.example": ["10.0.0.2"]}
    asked: list[str] = []

    async def lookup(host: str) -> list[str]:
        asked.append(host)
        if host == "slow.example":
            await asyncio.sleep(5)
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    guard = EgressGuard(EgressPolicy(), lookup=lookup, lookup_timeout=0.2)
    spec = JeffreyIntegrationSpec.model_validate(
        {
            "levels": [{"level": "CORE", "modules": [{"deployment": "memory"}]}],
            "analysis": {"prometheus": {"url": "http://fine.example:9090"}},
            "gates": [{"name": "up", "query": "up", "min": 1}],
            "notifications": [
                {"name": "a", "alertmanager": {"url": "http://rebind.example:9093"}},
                {"name": "b", "alertmanager": {"url": "http://nxdomain.example:9093"}},
                {"name": "c", "alertmanager": {"url": "http://slow.example:9093"}},
            ],
        }
    )
    problems = await guard.problems(spec)
    assert [(p.field, p.reason) for p in problems] == [
        ("spec.notifications[0].alertmanager.url", "EgressRefused")
    ]
    assert "rebind.example resolves to 169.254.169.254" in problems[0].message
    await guard.problems(spec)
    assert sorted(asked) == ["fine.example", "nxdomain.example", "rebind.example", "slow.example"]  # cached


def test_a_non_prometheus_answer_is_never_copied_into_the_error() -> None:
    from jeffrey_operator.adapters.prometheus.client import ServerError, parse_response

    body = b"<html>AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG</html>"
    with pytest.raises(ServerError) as exc:
        parse_response(200, body)
    assert "AWS_SECRET" not in str(exc.value) and "html" not in str(exc.value)
    assert f"{len(body)} bytes, not JSON" in str(exc.value)
