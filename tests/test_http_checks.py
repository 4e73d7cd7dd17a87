"""The HTTP check adapter against a real local HTTP server: what each kind of answer (or its
absence) becomes, redirects, headers from Secrets, and what is never copied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import pytest

from jeffrey_operator.adapters.checks import HttpChecks
from jeffrey_operator.core.egress import EgressPolicy
from jeffrey_operator.core.models import CheckSpec
from jeffrey_operator.core.ports import CheckOutcomeKind


class NotFound(Exception):
    status = 404
    message = 'secrets "s" not found'


SECRETS = {("ns", "s", "k"): "t0ken"}


async def read_secret(namespace: str, name: str, key: str) -> str:
    try:
        return SECRETS[(namespace, name, key)]
    except KeyError:
        raise NotFound() from None


class Server:
    def __init__(self) -> None:
        self.seen: list[aiohttp.web.Request] = []
        self.bodies: list[str] = []
        self.url = ""

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        self.seen.append(request)
        self.bodies.append(await request.text())
        path = request.path
        if path == "/ok":
            return aiohttp.web.json_response({"status": "ok", "secret": "do-not-copy"})
        if path == "/starting":
            return aiohttp.web.json_response({"status": "starting", "secret": "do-not-copy"})
        if path == "/boom":
            return aiohttp.web.json_response({"error": "do-not-copy"}, status=500)
        if path == "/text":
            return aiohttp.web.Response(text="ok, not json")
        if path == "/slow":
            await asyncio.sleep(5)
            return aiohttp.web.json_response({"status": "ok"})
        if path == "/hop":
            raise aiohttp.web.HTTPFound("/ok")
        if path == "/away":
            raise aiohttp.web.HTTPFound(request.query["to"])
        if path == "/loop":
            raise aiohttp.web.HTTPFound("/loop")
        return aiohttp.web.Response(status=404)


async def serve(server: Server) -> aiohttp.web.AppRunner:
    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    return runner


@pytest.fixture(name="server")
async def server_fixture() -> AsyncIterator[Server]:
    server = Server()
    runner = await serve(server)
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture(name="other")
async def other_fixture() -> AsyncIterator[Server]:
    server = Server()
    runner = await serve(server)
    try:
        yield server
    finally:
        await runner.cleanup()


async def run(url: str, *, limit: str = "2s", egress: Any = None, **http: Any) -> Any:
    check = CheckSpec.model_validate(
        {"name": "c", "level": "CORE", "timeout": limit, "http": {"url": url, **http}}
    )
    runner = HttpChecks(read_secret, **({"egress": egress} if egress else {}))
    try:
        return await runner.run("ns", check, 7)
    finally:
        await runner.close()


FIELD = {"expectStatus": [200], "jsonPath": "$.status", "equals": "ok"}


@pytest.mark.parametrize(
    ("path", "options", "kind", "value", "fragment"),
    [
        ("/ok", {}, CheckOutcomeKind.SUCCEEDED, "", "HTTP 200"),
        ("/ok", FIELD, CheckOutcomeKind.SUCCEEDED, "ok", '$.status = "ok"'),
        ("/starting", FIELD, CheckOutcomeKind.FAILED, "starting", 'expected "ok"'),
        ("/boom", FIELD, CheckOutcomeKind.FAILED, "", "HTTP 500, expected 200"),
        ("/missing", {}, CheckOutcomeKind.FAILED, "", "HTTP 404, expected 2xx"),
        ("/text", FIELD, CheckOutcomeKind.FAILED, "", "not JSON"),
        ("/hop", FIELD, CheckOutcomeKind.SUCCEEDED, "ok", "HTTP 200"),
        ("/loop", {}, CheckOutcomeKind.FAILED, "", "more than 3 redirects"),
    ],
)
async def test_answers(  # noqa: PLR0917 (one parameter per column of the table)
    server: Server, path: str, options: dict[str, Any], kind: Any, value: str, fragment: str
) -> None:
    got = await run(server.url + path, **options)
    assert (got.kind, got.value, got.attempt) == (kind, value, 7)
    assert fragment in got.message
    assert "do-not-copy" not in got.message + got.value


async def test_no_answer_within_the_timeout_is_inconclusive(server: Server) -> None:
    got = await run(server.url + "/slow", limit="300ms")
    assert got.kind is CheckOutcomeKind.UNAVAILABLE and "no answer within 0.3s" in got.message


async def test_connection_refused_and_dns_failures_are_inconclusive() -> None:
    refused = await run("http://127.0.0.1:9/readyz")
    unknown = await run("http://no-such-host.invalid/readyz")
    assert refused.kind is CheckOutcomeKind.UNAVAILABLE and "cannot connect" in refused.message
    assert unknown.kind is CheckOutcomeKind.UNAVAILABLE


async def test_a_redirect_to_another_host_is_not_followed(server: Server, other: Server) -> None:
    other_host = other.url.replace("127.0.0.1", "localhost")
    got = await run(f"{server.url}/away?to={other_host}/ok")
    assert got.kind is CheckOutcomeKind.FAILED and "another host (localhost)" in got.message
    assert not other.seen


async def test_headers_from_secrets_and_a_post_body(server: Server) -> None:
    headers = [
        {"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "X-Plain", "value": "v"},
    ]
    got = await run(server.url + "/ok", method="POST", body='{"q": 1}', headers=headers)
    assert got.kind is CheckOutcomeKind.SUCCEEDED
    request = server.seen[-1]
    assert (request.method, request.headers["X-Token"], request.headers["X-Plain"]) == ("POST", "t0ken", "v")
    assert server.bodies[-1] == '{"q": 1}'


async def test_a_missing_secret_is_invalid_and_sends_nothing(server: Server) -> None:
    headers = [{"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}]
    got = await run(server.url + "/ok", headers=headers)
    assert got.kind is CheckOutcomeKind.INVALID and "Secret s key nope" in got.message
    assert not server.seen


async def test_a_host_outside_the_egress_allow_list_is_invalid(server: Server) -> None:
    got = await run(server.url + "/ok", egress=EgressPolicy.parse(["*.svc.cluster.local"]))
    assert got.kind is CheckOutcomeKind.INVALID and "not in the operator's egress allow-list" in got.message
    assert not server.seen


async def test_cloud_metadata_is_refused_by_default() -> None:
    got = await run("http://169.254.169.254/latest/meta-data/")
    assert got.kind is CheckOutcomeKind.INVALID and "link-local" in got.message


async def test_a_name_resolving_to_a_refused_address_is_refused(server: Server) -> None:
    async def lookup(host: str) -> list[str]:
        return ["169.254.169.254"]

    url = server.url.replace("127.0.0.1", "localhost") + "/ok"  # a name, judged by its addresses
    check = CheckSpec.model_validate({"name": "c", "level": "CORE", "http": {"url": url}})
    runner = HttpChecks(read_secret, lookup=lookup)
    try:
        got = await runner.run("ns", check, 1)
    finally:
        await runner.close()
    assert got.kind is CheckOutcomeKind.INVALID and "resolves to 169.254.169.254" in got.message
    assert not server.seen


async def test_a_query_token_never_reaches_a_message() -> None:
    refused = await run("http://127.0.0.1:9/readyz?token=s3cret")
    metadata = await run("http://169.254.169.254/latest?token=s3cret")
    assert "127.0.0.1:9/readyz" in refused.message and "s3cret" not in refused.message + metadata.message
