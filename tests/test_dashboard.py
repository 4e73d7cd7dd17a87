"""``jeffreyctl dashboard`` without a browser: the pure view model, the HTTP handlers (a real
aiohttp server on loopback with a fake cluster behind it), the watch against the emulated API,
sparklines from a real Prometheus, the Redis history, and the command line.

The page itself is tested in headless Chromium: ``tests/test_dashboard_browser.py``.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from jeffrey_emulator import BackgroundEmulator, Emulator
from jeffrey_operator.adapters.kube import merge_patch
from jeffrey_operator.adapters.prometheus.client import BadQuery
from jeffrey_operator.adapters.prometheus.range import parse_range_response
from jeffrey_operator.core.crdgen import crd
from jeffrey_operator.core.models import Phase
from jeffrey_operator.ctl.client import CtlError, connect
from jeffrey_operator.ctl.dashboard.hub import Hub
from jeffrey_operator.ctl.dashboard.model import generic_rows, health, integration, rungs
from jeffrey_operator.ctl.dashboard.server import (
    ASSETS,
    TOKEN_HEADER,
    BackgroundDashboard,
    DashboardOptions,
    create_app,
)
from jeffrey_operator.ctl.main import main, view_of
from prom_fixtures import PrometheusServer, SimulatorFleet, free_port, wait_until
from test_argocd_lua import HEALTH, ArgoLua

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOW = datetime.datetime(2026, 12, 1, 9, 0, 0, tzinfo=datetime.UTC)
TOKEN = "test-token-0123456789"
SECRETS = ("s3cret-bearer", "hunter2", "T000/B000/XXXX", "sekrit-header")


def body(
    name: str = "demo",
    namespace: str = "dash",
    *,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A JeffreyIntegration with CORE (memory, bus), COGNITIVE (learner), EMOTIONAL (emotion)."""
    return {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegration",
        "metadata": {"name": name, "namespace": namespace, "generation": 1, "resourceVersion": "7"},
        "spec": {
            "targetLevel": "PRODUCTION",
            "levels": [
                {"level": "CORE", "modules": [{"deployment": "memory"}, {"deployment": "bus"}]},
                {"level": "COGNITIVE", "modules": [{"deployment": "learner"}]},
                {"level": "EMOTIONAL", "modules": [{"deployment": "emotion", "optional": True}]},
            ],
            **spec,
        },
        "status": {"observedGeneration": 1, **(status or {})},
    }


# ------------------------------------------------------------------------------------ the model


HEALTH_CASES = [
    {"status": {}},
    {"status": {"phase": "Stable", "currentLevel": "PRODUCTION", "observedGeneration": 1}},
    {"status": {"phase": "Stable", "currentLevel": "LOOPS", "observedGeneration": 1}},
    {"status": {"phase": "RolledBack", "currentLevel": "CORE", "observedGeneration": 1}},
    {"status": {"phase": "RolledBack", "observedGeneration": 0}},
    {"status": {"phase": "Validating", "observedGeneration": 1}, "paused": True},
    {"status": {"phase": "Paused", "observedGeneration": 1}},
    {"status": {"phase": "Invalid", "observedGeneration": 1}},
    {"status": {"phase": "Sideways", "observedGeneration": 1}},
    *({"status": {"phase": p.value, "observedGeneration": 1}} for p in Phase),
]


@pytest.mark.parametrize("version", ["lua51", "lua54"])
def test_health_is_the_argo_cd_health_check(version: str) -> None:
    """One rule in two languages: the dashboard's badge and Argo CD's health.lua agree."""
    argo = ArgoLua(version)
    for case in HEALTH_CASES:
        obj: dict[str, Any] = {
            "metadata": {"name": "x", "namespace": "y", "generation": 1},
            "spec": {"targetLevel": "PRODUCTION", **({"paused": True} if case.get("paused") else {})},
            "status": case["status"] or None,
        }
        expected = argo.run(HEALTH, obj)["status"]
        assert health(obj) == expected, obj


def test_rungs_show_six_levels_with_marks_and_undefined_ones_greyed() -> None:
    b = body(
        status={
            "phase": "Validating",
            "currentLevel": "COGNITIVE",
            "activeLevel": "EMOTIONAL",
            "modules": [
                {"deployment": "memory", "level": "CORE", "desired": 1, "ready": 1, "state": "Ready"},
                {
                    "deployment": "emotion",
                    "level": "EMOTIONAL",
                    "desired": 1,
                    "ready": 0,
                    "state": "Progressing",
                },
            ],
        },
        targetLevel="EMOTIONAL",
    )
    got = rungs(view_of(b, NOW))
    assert [(r["level"], r["defined"], r["state"]) for r in got] == [
        ("CORE", True, "up"),
        ("COGNITIVE", True, "up"),
        ("EMOTIONAL", True, "validating"),
        ("CONSCIOUS", False, "undefined"),
        ("LOOPS", False, "undefined"),
        ("PRODUCTION", False, "undefined"),
    ]
    marks = {r["level"]: [m for m in ("current", "active", "target") if r[m]] for r in got}
    assert marks["COGNITIVE"] == ["current"]
    assert marks["EMOTIONAL"] == ["active", "target"]
    assert got[0]["modules"][0] == {
        "deployment": "memory",
        "desired": 1,
        "ready": 1,
        "optional": False,
        "state": "Ready",
    }
    assert got[2]["modules"][0]["optional"] is True and got[2]["modules"][0]["state"] == "Progressing"


def test_integration_carries_overview_detail_and_timeline_newest_first() -> None:
    b = body(
        status={
            "phase": "RolledBack",
            "reason": "GateBreach",
            "message": "bus-rate breached",
            "phaseSince": "2026-12-01T08:59:00.000Z",
            "currentLevel": "CORE",
            "lastRollback": {
                "time": "2026-12-01T08:58:30.000Z",
                "fromLevel": "COGNITIVE",
                "reason": "GateBreach",
                "gate": "bus-rate",
                "value": 5650.4,
                "threshold": 1000,
                "retryToken": "abc",
            },
            "gates": [
                {"name": "bus-rate", "query": "sum(x)", "value": 5650.4, "max": 1000, "result": "Breach"},
                {"name": "later", "query": "y", "result": "Inactive"},
            ],
            "transitions": [
                {"seq": 1, "time": "2026-12-01T08:58:00.000Z", "phase": "Validating", "reason": "Promoted"},
                {
                    "seq": 2,
                    "time": "2026-12-01T08:58:31.000Z",
                    "phase": "RollingBack",
                    "reason": "GateBreach",
                },
            ],
            "transitionSeq": 2,
        }
    )
    item = integration(b, NOW)
    assert (item["key"], item["health"], item["phase"], item["currentLevel"]) == (
        "dash/demo",
        "Degraded",
        "RolledBack",
        "CORE",
    )
    assert item["lastRollback"]["valueText"] == "5650" and item["lastRollback"]["thresholdText"] == "1000"
    assert "retryToken" not in item["lastRollback"]
    assert [(g["name"], g["active"], g["thresholdText"]) for g in item["gates"]] == [
        ("bus-rate", True, "<= 1000"),
        ("later", False, "-"),
    ]
    assert [t["seq"] for t in item["timeline"]] == [2, 1]
    assert item["transitions"] == 2  # the count, as in ``jeffreyctl status -o json``
    assert "levels" not in item and len(item["rungs"]) == 6


@pytest.mark.parametrize(
    "odd",
    [
        {"metadata": {"name": "bare", "namespace": "dash"}},
        {"metadata": {"name": "bad", "namespace": "dash"}, "spec": {"levels": "CORE"}, "status": "??"},
        {
            "metadata": {"name": "invalid", "namespace": "dash"},
            "spec": {"levels": []},
            "status": {"phase": "Invalid", "reason": "InvalidSpec", "message": "levels: at least one"},
        },
        {"metadata": {"name": "future", "namespace": "dash"}, "spec": {}, "status": {"phase": "Hovering"}},
    ],
)
def test_odd_objects_still_make_a_view(odd: dict[str, Any]) -> None:
    """Whatever the API holds, the page gets a view (never an exception that ends the stream)."""
    item = integration(odd, NOW)
    assert item["key"] == f"dash/{odd['metadata']['name']}"
    assert len(item["rungs"]) == 6 and item["gateSpecs"] == []
    assert item["health"] in ("Progressing", "Degraded", "Unknown")
    json.dumps(item)


def test_nothing_secret_reaches_the_page() -> None:
    b = body(
        analysis={
            "prometheus": {
                "url": "http://prom:hunter2@prometheus.monitoring:9090",
                "headers": {"X-Scope-OrgID": "sekrit-header"},
                "bearerTokenSecretRef": {"name": "prom-token", "key": "s3cret-bearer"},
            }
        },
        notifications=[{"slack": {"url": "https://hooks.slack.com/services/T000/B000/XXXX"}}],
        status={
            "phase": "Stable",
            "message": "Prometheus at http://prom:hunter2@prometheus:9090 answered",
            "notifications": [{"name": "slack", "result": "Sent", "url": "https://hooks/T000/B000/XXXX"}],
            "checks": [{"name": "smoke", "level": "CORE", "result": "Passed", "token": "s3cret-bearer"}],
        },
    )
    text = json.dumps(integration(b, NOW))
    for secret in SECRETS:
        assert secret not in text
    assert "prometheus.monitoring:9090" in text  # the URL is shown, its password is not
    item = integration(b, NOW)
    assert item["notifications"] == [
        {"name": "slack", "level": "", "result": "Sent", "message": "", "time": ""}
    ]
    assert item["checks"][0]["result"] == "Passed"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, []),
        ("text", []),
        ([{"name": "a", "phase": "Running", "message": "m", "lastRun": "t"}], [("a", "Running", "m", "t")]),
        ({"b": {"state": "Failed", "error": "boom"}}, [("b", "Failed", "boom", "")]),
        ([{"check": "c", "result": True}], [("c", "true", "", "")]),
        ([{"webhookUrl": "http://x", "result": "Sent"}], [("", "Sent", "", "")]),
    ],
)
def test_checks_and_notifications_of_any_shape(raw: Any, expected: list[tuple[str, ...]]) -> None:
    assert [(r["name"], r["result"], r["message"], r["time"]) for r in generic_rows(raw)] == expected


def test_range_answers_become_points_or_typed_errors() -> None:
    with pytest.raises(BadQuery):
        parse_range_response(400, b'{"status":"error","errorType":"bad_data","error":"parse error"}')
    with pytest.raises(BadQuery, match="matrix"):
        parse_range_response(200, b'{"status":"success","data":{"resultType":"vector","result":[]}}')
    assert parse_range_response(200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}') == ()


# ------------------------------------------------------------------------------------- handlers


class FakeCluster:
    """The three calls the handlers make, on dicts; records the patches."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = {f"{b['metadata']['namespace']}/{b['metadata']['name']}": b for b in bodies}
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.bodies[f"{namespace}/{name}"])
        except KeyError:
            raise CtlError(f'jeffreyintegration "{name}" in namespace "{namespace}" not found') from None

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        key = f"{namespace}/{name}"
        self.patches.append((key, dict(patch)))
        self.bodies[key] = merge_patch(self.bodies[key], patch)
        return self.bodies[key]

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        raise CtlError(f'no permission: secrets "{name}" is forbidden')


async def start(
    options: DashboardOptions, *bodies: dict[str, Any]
) -> tuple[TestClient[Any, Any], Hub, FakeCluster]:
    hub = Hub(clock=lambda: NOW)
    hub.reset(bodies)
    cluster = FakeCluster(*bodies)
    app = create_app(options, hub, cluster, token=TOKEN, clock=lambda: NOW)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, hub, cluster


@pytest.fixture(name="dashboard")
async def dashboard_fixture() -> AsyncIterator[tuple[TestClient[Any, Any], Hub, FakeCluster]]:
    client, hub, cluster = await start(DashboardOptions(port=0), body(status={"phase": "Stable"}))
    try:
        yield client, hub, cluster
    finally:
        await client.close()


async def test_the_page_and_its_assets_come_from_this_origin_only(
    dashboard: tuple[TestClient[Any, Any], Hub, FakeCluster],
) -> None:
    client, _, _ = dashboard
    page = await client.get("/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    html = await page.text()
    assert f'<meta name="csrf-token" content="{TOKEN}">' in html
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("/", "#")), url  # no CDN, no font or script from elsewhere
    for name in ASSETS:
        if name == "index.html":
            continue
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
        assert response.headers["Content-Type"] == ASSETS[name]
        text = await response.text()
        # The only absolute URL is the SVG namespace name (an identifier, never fetched).
        assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg"}, name
        again = await client.get(f"/static/{name}", headers={"If-None-Match": response.headers["ETag"]})
        assert again.status == 304
    assert (await client.get("/static/../server.py")).status == 404
    assert (await client.get("/static/nope.js")).status == 404


async def test_writes_need_this_process_token_and_the_same_origin(
    dashboard: tuple[TestClient[Any, Any], Hub, FakeCluster],
) -> None:
    client, _, cluster = dashboard
    url = "/api/steer/dash/demo/pause"
    no_token = await client.post(url, json={})
    assert no_token.status == 403 and TOKEN_HEADER in (await no_token.json())["error"]
    wrong = await client.post(url, json={}, headers={TOKEN_HEADER: "guess"})
    assert wrong.status == 403
    foreign = await client.post(url, json={}, headers={TOKEN_HEADER: TOKEN, "Origin": "http://evil.example"})
    assert foreign.status == 403 and "cross-origin" in (await foreign.json())["error"]
    assert cluster.patches == []

    dry = await client.post(url, json={"dryRun": True}, headers={TOKEN_HEADER: TOKEN})
    plan = await dry.json()
    assert dry.status == 200 and plan["patched"] is False
    assert plan["changes"] == ["spec.paused: false -> true"]
    assert cluster.patches == []

    done = await client.post(
        url, json={}, headers={TOKEN_HEADER: TOKEN, "Origin": f"http://{client.host}:{client.port}"}
    )
    assert done.status == 200 and (await done.json())["patched"] is True
    assert cluster.patches == [("dash/demo", {"spec": {"paused": True}})]

    again = await client.post(url, json={}, headers={TOKEN_HEADER: TOKEN})
    assert (await again.json())["patched"] is False  # already paused: nothing to change
    unknown = await client.post("/api/steer/dash/demo/delete", json={}, headers={TOKEN_HEADER: TOKEN})
    assert unknown.status == 404
    missing = await client.post("/api/steer/dash/nope/retry", json={}, headers={TOKEN_HEADER: TOKEN})
    assert missing.status == 502 and "not found" in (await missing.json())["error"]


async def test_read_only_has_no_token_and_refuses_every_write() -> None:
    client, _, cluster = await start(DashboardOptions(port=0, read_only=True), body())
    try:
        html = await (await client.get("/")).text()
        assert '<meta name="csrf-token" content="">' in html
        assert '<meta name="read-only" content="true">' in html
        for action in ("pause", "resume", "retry"):
            response = await client.post(
                f"/api/steer/dash/demo/{action}", json={}, headers={TOKEN_HEADER: TOKEN}
            )
            assert response.status == 403 and "--read-only" in (await response.json())["error"]
        assert cluster.patches == []
    finally:
        await client.close()


async def test_a_foreign_host_name_is_refused_on_loopback(
    dashboard: tuple[TestClient[Any, Any], Hub, FakeCluster],
) -> None:
    """A DNS-rebinding page (evil.example resolving to 127.0.0.1) cannot read the token."""
    client, _, _ = dashboard
    response = await client.get("/", headers={"Host": "evil.example:3100"})
    assert response.status == 421
    assert TOKEN not in await response.text()
    assert (await client.get("/", headers={"Host": "localhost:3100"})).status == 200


async def test_events_stream_a_snapshot_then_each_change(
    dashboard: tuple[TestClient[Any, Any], Hub, FakeCluster],
) -> None:
    client, hub, _ = dashboard
    response = await client.get("/api/events")
    assert response.headers["Content-Type"] == "text/event-stream"

    async def next_event() -> tuple[str, dict[str, Any]]:
        name, data = "", ""
        while True:
            line = (await asyncio.wait_for(response.content.readline(), 5)).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and name:
                return name, json.loads(data)

    name, snapshot = await next_event()
    assert name == "snapshot" and [i["key"] for i in snapshot["items"]] == ["dash/demo"]
    assert hub.subscribers == 1

    changed = body(status={"phase": "Validating", "activeLevel": "CORE"})
    changed["metadata"]["resourceVersion"] = "8"
    hub.apply("MODIFIED", changed)
    hub.apply("MODIFIED", changed)  # the same resourceVersion again: no second message
    hub.apply("ADDED", body("other"))
    hub.apply("DELETED", body("other"))
    got = [await next_event() for _ in range(3)]
    assert [(n, d.get("item", d).get("key")) for n, d in got] == [
        ("upsert", "dash/demo"),
        ("upsert", "dash/other"),
        ("delete", "dash/other"),
    ]
    assert got[0][1]["item"]["phase"] == "Validating"
    hub.set_connection("lost", "connection refused")
    assert await next_event() == (
        "connection",
        {"state": "lost", "message": "connection refused", "since": hub.connection["since"]},
    )
    response.close()
    await wait_async(lambda: hub.subscribers == 0)


async def wait_async(check: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def test_a_tab_that_does_not_read_is_cut_off_not_buffered() -> None:
    hub = Hub(clock=lambda: NOW, queue_size=2)
    queue = hub.subscribe()
    for i in range(3):
        b = body(f"i{i}")
        hub.apply("ADDED", b)
    assert hub.subscribers == 0 and hub.dropped == 1
    items = [queue.get_nowait() for _ in range(queue.qsize())]
    assert items[-1] is None  # the stream ends; the browser reconnects and gets a snapshot


async def test_a_view_that_fails_costs_that_object_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import jeffrey_operator.ctl.dashboard.hub as hub_module

    real = hub_module.integration

    def flaky(b: Mapping[str, Any], now: datetime.datetime, **kw: Any) -> dict[str, Any]:
        if b["metadata"]["name"] == "boom":
            raise RuntimeError("a bug")
        return real(b, now, **kw)

    monkeypatch.setattr(hub_module, "integration", flaky)
    hub = Hub(clock=lambda: NOW)
    queue = hub.subscribe()
    hub.reset([body("fine"), body("boom")])
    hub.apply("MODIFIED", {**body("boom"), "metadata": {**body("boom")["metadata"], "resourceVersion": "9"}})
    assert sorted(hub.views) == ["dash/fine"]
    assert [m[0] for m in [queue.get_nowait() for _ in range(queue.qsize())] if m] == ["snapshot"]
    assert "cannot show dash/boom" in caplog.text


async def test_sparklines_say_plainly_when_prometheus_is_unreachable() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    b = body(
        analysis={"prometheus": {"url": dead}},
        status={"phase": "Validating", "gates": [{"name": "g", "query": "up", "max": 1, "result": "Pass"}]},
    )
    client, _, _ = await start(DashboardOptions(port=0), b)
    try:
        data = await (await client.get("/api/sparklines/dash/demo")).json()
        assert data["available"] is False
        assert data["message"].startswith(f"Prometheus at {dead} is not reachable from the dashboard")
        secret = body(
            analysis={"prometheus": {"url": dead, "bearerTokenSecretRef": {"name": "tok", "key": "t"}}},
            status={"phase": "Stable", "gates": [{"name": "g", "query": "up", "result": "Pass"}]},
        )
        secret["metadata"]["name"] = "secret"
    finally:
        await client.close()
    client, _, _ = await start(DashboardOptions(port=0), secret)
    try:
        data = await (await client.get("/api/sparklines/dash/secret")).json()
        assert data["available"] is False and "cannot read the Prometheus credentials" in data["message"]
        assert (await client.get("/api/sparklines/dash/nope")).status == 404
    finally:
        await client.close()


async def test_history_without_redis_points_at_status(
    dashboard: tuple[TestClient[Any, Any], Hub, FakeCluster],
) -> None:
    client, _, _ = dashboard
    assert await (await client.get("/api/history/dash/demo")).json() == {
        "source": "status",
        "transitions": None,
        "message": "",
    }


# -------------------------------------------------------------------------- real Prometheus


@pytest.mark.slow
async def test_sparklines_from_a_real_prometheus(
    prometheus: PrometheusServer, simulators: SimulatorFleet
) -> None:
    simulators.start(["spark-bus"], "spark")
    query = 'sum(rate(jeffrey_bus_messages_published_total{namespace="spark"}[5s]))'
    b = body(
        "sparky",
        "spark",
        analysis={"prometheus": {"url": prometheus.url}},
        status={
            "phase": "Stable",
            "gates": [{"name": "bus-rate", "query": query, "max": 1000, "result": "Pass"}],
        },
    )
    client, _, _ = await start(DashboardOptions(port=0), b)
    try:
        deadline = time.monotonic() + 30
        while True:
            data = await (await client.get("/api/sparklines/spark/sparky")).json()
            points = data["gates"].get("bus-rate", {}).get("points", []) if data["available"] else []
            if len(points) >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert data["available"] is True and data["source"] == prometheus.url
        assert len(points) >= 2, data
        assert all(v > 0 for _, v in points) and 40 <= points[-1][1] <= 60  # the healthy 50 msg/s
        assert data["gates"]["bus-rate"]["last"] == points[-1][1]
        assert points == sorted(points) and data["step"] == 5.0
    finally:
        await client.close()


# ------------------------------------------------------------------------- the watch, for real


@pytest.fixture(name="watched")
def watched_fixture(tmp_path: pathlib.Path) -> Iterator[tuple[Emulator, BackgroundDashboard]]:
    background = BackgroundEmulator(crds=[crd()], namespaces=("default", "dash"), max_watch_seconds=1.0)
    emu = background.start()
    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig", namespace="dash")
    emu.create(body("first"))
    dashboard = BackgroundDashboard(DashboardOptions(port=0, namespace=None), connect(str(kubeconfig)))
    try:
        dashboard.start()
        yield emu, dashboard
    finally:
        dashboard.stop()
        background.stop()
    emu.assert_no_server_errors()


def test_one_watch_follows_changes_across_watch_restarts(
    watched: tuple[Emulator, BackgroundDashboard],
) -> None:
    emu, dashboard = watched
    hub = dashboard.hub
    wait_until(lambda: dashboard.run(_keys(hub)) == ["dash/first"], timeout=10, what="the first list")
    emu.create(body("second"))
    wait_until(lambda: "dash/second" in dashboard.run(_keys(hub)), timeout=10, what="ADDED")
    time.sleep(2.5)  # the emulator ends each watch after 1 s: the dashboard watches again
    emu.store.set_status("ji", "dash", "second", {"phase": "Paused", "reason": "Paused"})
    wait_until(
        lambda: dashboard.run(_phase(hub, "dash/second")) == "Paused",
        timeout=10,
        what="MODIFIED after restarts",
    )
    emu.delete("ji", "dash", "first")
    wait_until(lambda: dashboard.run(_keys(hub)) == ["dash/second"], timeout=10, what="DELETED")
    watcher = dashboard.dashboard.watcher
    assert watcher is not None and watcher.watches >= 2 and watcher.lists == 0  # no relist needed
    lists = [r for r in emu.requests if r.plural == "jeffreyintegrations" and r.verb == "list"]
    assert len(lists) == 1  # the dashboard's first list, nothing per tab, no polling

    # The API forgets old versions (etcd compaction): the open watch gets 410 Gone, the
    # dashboard lists again and goes on, without saying "lost".
    emu.store.compact()
    emu.create(body("third"))
    wait_until(lambda: dashboard.run(_keys(hub)) == ["dash/second", "dash/third"], timeout=10, what="relist")
    assert watcher.lists == 1
    assert dashboard.run(_connection(hub)) == "live"


async def _keys_impl(hub: Hub) -> list[str]:
    return sorted(hub.views)


def _keys(hub: Hub) -> Any:
    return _keys_impl(hub)


def _connection(hub: Hub) -> Any:
    async def state() -> str:
        return hub.connection["state"]

    return state()


def _phase(hub: Hub, key: str) -> Any:
    async def phase() -> str:
        return str(hub.views.get(key, {}).get("phase"))

    return phase()


def test_the_command_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "--help"]) == 0
    assert "--read-only" in capsys.readouterr().out
    missing = tmp_path / "nothing"
    err = io.StringIO()
    assert main(["--kubeconfig", str(missing), "dashboard", "-A", "-n", "x"], stderr=err) == 1
    assert "exclude each other" in err.getvalue()
    err = io.StringIO()
    assert main(["--kubeconfig", str(missing), "dashboard"], stderr=err) == 1
    assert (
        err.getvalue().startswith("jeffreyctl: no cluster: no kubeconfig")
        and "Traceback" not in err.getvalue()
    )


async def test_history_from_redis_and_its_password_stays_in_the_process(
    redis_server_with_password: Any,
) -> None:
    from jeffrey_operator.adapters.redis import RedisStateStore
    from jeffrey_operator.core.models import JeffreyIntegrationStatus

    server = redis_server_with_password
    transitions = [
        {
            "seq": 1,
            "time": "2026-12-01T08:58:00.000Z",
            "phase": "Promoting",
            "reason": "Promoting",
            "toLevel": "CORE",
        },
        {"seq": 2, "time": "2026-12-01T08:59:00.000Z", "phase": "RolledBack", "reason": "GateBreach"},
    ]
    status = JeffreyIntegrationStatus.model_validate(
        {"phase": "RolledBack", "transitionSeq": 2, "transitions": transitions}
    )
    store = RedisStateStore.from_settings(server.url, server.password)
    try:
        await store.publish("dash", "demo", status, generation=1, bus_max_rate=1000)
    finally:
        await store.aclose()
    options = DashboardOptions(port=0, redis_url=server.url, redis_password=server.password)
    client, _, _ = await start(options, body(status={"phase": "RolledBack"}))
    try:
        response = await client.get("/api/history/dash/demo")
        text = await response.text()
        data = json.loads(text)
        assert data["source"] == f"Redis history at {server.url}"
        assert [(t["seq"], t["reason"]) for t in data["transitions"]] == [(2, "GateBreach"), (1, "Promoting")]
        assert server.password not in text
    finally:
        await client.close()
    wrong = DashboardOptions(port=0, redis_url=server.url, redis_password="wrong-password")
    client, _, _ = await start(wrong, body(status={"phase": "RolledBack"}))
    try:
        data = await (await client.get("/api/history/dash/demo")).json()
        assert data["transitions"] is None and "the Redis history is unavailable" in data["message"]
        assert "wrong-password" not in json.dumps(data)
    finally:
        await client.close()


def test_jeffreyctl_dashboard_serves_until_ctrl_c(
    kubeconfig: pathlib.Path, threaded_emulator: Emulator
) -> None:
    """The console command for real: prints its URL, serves the page and the API, stops on SIGINT."""
    threaded_emulator.ensure_namespace("dash")  # namespaces are real objects in the emulator
    threaded_emulator.create(body("cli"))
    command = [sys.executable, "-m", "jeffrey_operator.ctl.main", "--kubeconfig", str(kubeconfig)]
    process = subprocess.Popen(
        [*command, "dashboard", "-A", "--port", "0", "--read-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.match(
            r"Dashboard at (http://127\.0\.0\.1:\d+/) \(all namespaces, read-only; context \S+\)", line
        )
        assert match, line + (process.stderr.read() if process.poll() is not None and process.stderr else "")
        url = match[1]
        with urllib.request.urlopen(url + "api/integrations", timeout=5) as response:
            keys = [i["key"] for i in json.load(response)["items"]]
        assert keys == ["dash/cli"]
        with urllib.request.urlopen(url, timeout=5) as response:
            assert '<meta name="read-only" content="true">' in response.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0 and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:3100", True),
        ("localhost:3100", True),
        ("localhost", True),
        ("[::1]:3100", True),
        ("127.0.0.2:80", True),
        ("evil.example:3100", False),
        ("10.0.0.5:3100", False),
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
def test_loopback_host_names(host: str, allowed: bool) -> None:
    from jeffrey_operator.ctl.dashboard.server import _host_allowed

    assert _host_allowed(host) is allowed
