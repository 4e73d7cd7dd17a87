"""The dashboard's HTTP server (aiohttp): the page, its assets, the event stream and the actions.

Routes (all under one origin; every asset is in the package, nothing is fetched from elsewhere):

==========================================  =================================================
``GET /``                                   the page (carries the per-process CSRF token)
``GET /static/{file}``                      ``app.js``, ``style.css``, ``favicon.svg``
``GET /api/events``                         server-sent events: ``snapshot``, ``upsert``,
                                            ``delete``, ``connection``
``GET /api/integrations``                   the same snapshot as JSON
``GET /api/sparklines/{namespace}/{name}``  recent values of each gate (Prometheus
                                            ``query_range``), or why there are none
``GET /api/history/{namespace}/{name}``     the Redis history when ``--redis-url`` is given
``POST /api/steer/{namespace}/{name}/{a}``  ``a`` = pause, resume or retry; ``{"dryRun": true}``
                                            says what would change; needs ``X-CSRF-Token``
``GET /healthz``                            ``ok``
==========================================  =================================================

Safety: binds 127.0.0.1 unless told otherwise; on a loopback address it answers only requests
whose ``Host`` is a loopback name (a DNS-rebinding page cannot read it); writes need the token
of this process in ``X-CSRF-Token`` and, when the browser sends one, an ``Origin`` equal to the
page's; ``--read-only`` removes the buttons and refuses every write. Every response carries a
Content-Security-Policy that allows this origin only. The page receives the dicts of
:mod:`.model` and nothing else; credentials (kube tokens, the Redis password, Prometheus
headers and Secrets) stay in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import importlib.resources
import ipaddress
import json
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from aiohttp import web

from jeffrey_operator import __version__
from jeffrey_operator.adapters.redis.connection import redact_url
from jeffrey_operator.ctl.client import Cluster, CtlError
from jeffrey_operator.ctl.dashboard.hub import Clock, Hub, Message, Watcher, utc_now
from jeffrey_operator.ctl.dashboard.model import history_row, redact_text
from jeffrey_operator.ctl.dashboard.sparklines import Sparklines
from jeffrey_operator.ctl.history import rows_from_entries
from jeffrey_operator.ctl.steer import Action, steer

__all__ = [
    "ASSETS",
    "Backend",
    "BackgroundDashboard",
    "Dashboard",
    "DashboardOptions",
    "create_app",
    "serve",
]

log = logging.getLogger(__name__)

#: The files of ``static/`` the server serves (and the wheel must carry), with their types.
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
TOKEN_HEADER = "X-CSRF-Token"
ACTIONS: tuple[Action, ...] = ("pause", "resume", "retry")
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True)
class DashboardOptions:
    """What ``jeffreyctl dashboard`` was asked for."""

    #: Where to listen; 127.0.0.1 unless told otherwise.
    address: str = "127.0.0.1"
    #: TCP port (0: any free port).
    port: int = 3100
    #: No pause/resume/retry: no buttons, every write refused.
    read_only: bool = False
    #: The namespace in scope; None: every namespace (``-A``).
    namespace: str | None = None
    #: Where sparklines come from instead of each integration's ``spec.analysis.prometheus.url``
    #: (e.g. a ``kubectl port-forward`` of the operator's Prometheus).
    prometheus_url: str | None = None
    #: The state store, for the full transition history (else ``status.transitions``).
    redis_url: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_key_prefix: str = "jeffrey"


class Backend(Protocol):
    """What the handlers need from the cluster (:class:`~jeffrey_operator.ctl.client.Cluster`)."""

    def get(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...

    def secret_value(self, namespace: str, name: str, key: str) -> str: ...


# ------------------------------------------------------------------------------------------ assets


def _load_assets() -> dict[str, bytes]:
    root = importlib.resources.files("jeffrey_operator.ctl.dashboard") / "static"
    return {name: (root / name).read_bytes() for name in ASSETS}


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:20] + '"'


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":")))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_allowed(host: str) -> bool:
    """``Host`` is a loopback name or address (with any port)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    return _is_loopback(name)


# ----------------------------------------------------------------------------------------- the app


def create_app(
    options: DashboardOptions,
    hub: Hub,
    backend: Backend,
    *,
    token: str | None = None,
    clock: Clock = utc_now,
) -> web.Application:
    """The aiohttp application (tests drive it with a fake ``backend`` and a hub they fill)."""
    token = token or secrets.token_urlsafe(32)
    assets = _load_assets()
    etags = {name: _etag(data) for name, data in assets.items()}
    loopback_only = _is_loopback(options.address)
    sparklines = Sparklines(backend, override_url=options.prometheus_url)
    scope = f"namespace {options.namespace}" if options.namespace else "all namespaces"
    page = (
        assets["index.html"]
        .decode()
        .replace("__CSRF_TOKEN__", "" if options.read_only else html.escape(token, quote=True))
        .replace("__READ_ONLY__", "true" if options.read_only else "false")
        .replace("__SCOPE__", html.escape(scope))
        .replace("__VERSION__", html.escape(__version__))
        .encode()
    )

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if loopback_only and not _host_allowed(request.host):
            response: web.StreamResponse = _error(
                421, f"this dashboard answers on loopback names only, not {request.host!r}"
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = _error(exc.status, exc.reason)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    def _asset(name: str, data: bytes, request: web.Request) -> web.Response:
        tag = etags[name] if data is assets[name] else _etag(data)
        headers = {"Cache-Control": "no-cache", "ETag": tag}
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, headers={**headers, "Content-Type": ASSETS[name]})

    async def index(request: web.Request) -> web.Response:
        return _asset("index.html", page, request)

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in assets or name == "index.html":
            return _error(404, f"no asset {name!r}")
        return _asset(name, assets[name], request)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def integrations(_: web.Request) -> web.Response:
        return _json(hub.snapshot())

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue = hub.subscribe()

        async def send(message: Message) -> None:
            name, data = message
            payload = json.dumps(data, separators=(",", ":"))
            await response.write(f"event: {name}\ndata: {payload}\n\n".encode())

        try:
            await response.write(b"retry: 2000\n\n")
            await send(("snapshot", hub.snapshot()))
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if message is None:
                    break
                await send(message)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            hub.unsubscribe(queue)
        return response

    def _body(request: web.Request) -> Mapping[str, Any] | None:
        key = f"{request.match_info['namespace']}/{request.match_info['name']}"
        return hub.bodies.get(key)

    async def sparks(request: web.Request) -> web.Response:
        body = _body(request)
        if body is None:
            return _error(404, "no such integration in the dashboard's scope")
        return _json(await sparklines.of(body))

    async def history(request: web.Request) -> web.Response:
        body = _body(request)
        if body is None:
            return _error(404, "no such integration in the dashboard's scope")
        if not options.redis_url:
            return _json({"source": "status", "transitions": None, "message": ""})
        from jeffrey_operator.sdk import StateClient  # the Redis client loads only when configured

        namespace, name = request.match_info["namespace"], request.match_info["name"]
        source = f"Redis history at {redact_url(options.redis_url)}"
        try:
            async with StateClient(
                options.redis_url,
                namespace,
                name,
                password=options.redis_password,
                key_prefix=options.redis_key_prefix,
            ) as client:
                entries = await client.history(200)
        except Exception as exc:  # Redis down, auth, a bad URL: the page falls back to status
            return _json(
                {
                    "source": "status",
                    "transitions": None,
                    "message": f"the Redis history is unavailable ({redact_text(str(exc))[:200]}); "
                    "showing status.transitions",
                }
            )
        return _json(
            {
                "source": source,
                "transitions": [history_row(r) for r in rows_from_entries(entries)],
                "message": "",
            }
        )

    async def steer_handler(request: web.Request) -> web.Response:
        if options.read_only:
            return _error(403, "the dashboard runs with --read-only: no pause, resume or retry")
        sent = request.headers.get(TOKEN_HEADER, "")
        if not sent or not hmac.compare_digest(sent.encode(), token.encode()):
            return _error(403, f"missing or wrong {TOKEN_HEADER}: reload the dashboard page")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return _error(403, f"cross-origin request from {origin!r} refused")
        action = next((a for a in ACTIONS if a == request.match_info["action"]), None)
        if action is None:
            return _error(404, f"unknown action {request.match_info['action']!r} (pause, resume or retry)")
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if options.namespace is not None and namespace != options.namespace:
            return _error(404, "no such integration in the dashboard's scope")
        try:
            payload = await request.json() if request.can_read_body else {}
        except ValueError:
            return _error(400, 'the body must be JSON, e.g. {} or {"dryRun": true}')
        dry_run = bool(isinstance(payload, dict) and payload.get("dryRun"))
        try:
            body = await asyncio.to_thread(backend.get, namespace, name)
            plan = steer(action, body, clock())
            patched = False
            if plan.patch is not None and not dry_run:
                await asyncio.to_thread(backend.patch, namespace, name, plan.patch)
                patched = True
        except CtlError as exc:
            return _error(502, str(exc))
        return _json(
            {
                "action": action,
                "key": f"{namespace}/{name}",
                "dryRun": dry_run,
                "patched": patched,
                "changes": [c.render() for c in plan.changes],
                "note": plan.note,
            }
        )

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", index)
    app.router.add_get("/static/{file}", static)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/integrations", integrations)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/sparklines/{namespace}/{name}", sparks)
    app.router.add_get("/api/history/{namespace}/{name}", history)
    app.router.add_post("/api/steer/{namespace}/{name}/{action}", steer_handler)

    async def on_shutdown(_: web.Application) -> None:
        hub.close()
        await sparklines.close()

    app.on_shutdown.append(on_shutdown)
    app["token"] = token
    app["sparklines"] = sparklines
    return app


# -------------------------------------------------------------------------------------- running


class Dashboard:
    """The hub, the watch and the server, in the running event loop."""

    def __init__(self, options: DashboardOptions, cluster: Cluster, *, token: str | None = None) -> None:
        self.options = options
        self.cluster = cluster
        self.token = token
        self.hub = Hub(prometheus_url=options.prometheus_url)
        self.watcher: Watcher | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.app: web.Application | None = None

    async def start(self) -> str:
        """List (so that a missing CRD or RBAC fails here, as one line), start the watch, listen."""
        initial = await asyncio.to_thread(self.cluster.list_versioned, self.options.namespace)
        loop = asyncio.get_running_loop()

        def deliver(kind: str, payload: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
                loop.call_soon_threadsafe(self.hub.on_watch, kind, payload)

        self.watcher = Watcher(self.cluster, self.options.namespace, deliver, initial=initial)
        self.app = create_app(self.options, self.hub, self.cluster, token=self.token)
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.address, self.options.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise CtlError(
                f"cannot listen on {self.options.address}:{self.options.port}: {exc.strerror or exc} "
                "(another dashboard? use --port N)"
            ) from None
        self.watcher.start()
        port = self.options.port
        for address in self._runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                port = int(address[1])
                break
        host = self.options.address
        shown = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):
            shown = "127.0.0.1"
        self.url = f"http://{shown}:{port}/"
        return self.url

    async def stop(self) -> None:
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def serve(options: DashboardOptions, cluster: Cluster, out: TextIO, err: TextIO) -> int:
    """``jeffreyctl dashboard``: serve until Ctrl-C."""

    async def main() -> None:
        dashboard = Dashboard(options, cluster)
        url = await dashboard.start()
        mode = "read-only" if options.read_only else "pause/resume/retry behind a confirmation"
        scope = f"namespace {options.namespace}" if options.namespace else "all namespaces"
        out.write(f"Dashboard at {url} ({scope}, {mode}; context {cluster.context}). Ctrl-C to stop.\n")
        out.flush()
        if not _is_loopback(options.address):
            err.write(
                f"warning: listening on {options.address}: whoever reaches it sees what your kubeconfig "
                "sees"
                + ("" if options.read_only else " and can pause/resume/retry with the page's token")
                + "; consider --read-only\n"
            )
        try:
            await asyncio.Event().wait()
        finally:
            await dashboard.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        out.write("\n")
    return 0


class BackgroundDashboard:
    """A dashboard in a thread with its own event loop (the playground, tests)."""

    def __init__(self, options: DashboardOptions, cluster: Cluster, *, token: str | None = None) -> None:
        self.dashboard = Dashboard(options, cluster, token=token)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dashboard", daemon=True)

    @property
    def hub(self) -> Hub:
        return self.dashboard.hub

    def start(self, timeout: float = 30.0) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.dashboard.start(), self._loop).result(timeout)

    def run(self, coro: Awaitable[Any], timeout: float = 10.0) -> Any:
        async def wrapper() -> Any:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.dashboard.stop(), self._loop).result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        if not self._loop.is_running():
            self._loop.close()
