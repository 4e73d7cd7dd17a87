"""Running the emulator: an aiohttp server on a free 127.0.0.1 port, in a loop or in a thread."""

from __future__ import annotations

import asyncio
import copy
import pathlib
import socket
import threading
from collections.abc import Awaitable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.web
import yaml
from kmock import ObjectsArray, ResourceInfo

from .deployments import DeploymentBehaviour, DeploymentController
from .http import ApiServer, EmulatorHandler, RequestLog
from .jobs import JobController
from .resources import ResourceType
from .store import Body, ObjectStore, ResourceRef

__all__ = ["BackgroundEmulator", "Emulator", "load_crds"]

T = TypeVar("T")

DEFAULT_TOKEN = "emulator-token"  # a fake token for the kubeconfig


def load_crds(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """All CustomResourceDefinitions in a YAML file (multi-document) or a directory of them."""
    path = pathlib.Path(path)
    files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    result: list[dict[str, Any]] = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                result.append(doc)
    return result


class Emulator:
    """An emulated Kubernetes API server (see :mod:`jeffrey_emulator`)::

    async with Emulator(crds=[crd]) as emu:
        emu.write_kubeconfig(tmp_path / "kubeconfig")
        ...  # point kopf / the kubernetes client at emu.url
        assert not emu.requests.server_errors()
    """

    def __init__(
        self,
        *,
        crds: Iterable[Mapping[str, Any]] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        require_token: bool = False,
        deployment_controller: bool = True,
        default_behaviour: DeploymentBehaviour | None = None,
        history_size: int = 1000,
        bookmark_interval: float = 10.0,
        max_watch_seconds: float | None = None,
        auto_namespaces: bool = False,
        namespaces: Iterable[str] = ("default",),
        prune_unknown_fields: bool = True,
        garbage_collection: bool = True,
        max_object_versions: int = 50,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self.host = host
        self.token = token
        self.shutdown_timeout = shutdown_timeout
        self._requested_port = port
        self._port: int | None = None
        objects = ObjectsArray()
        self.store = ObjectStore(
            objects=objects,
            history_size=history_size,
            max_object_versions=max_object_versions,
            auto_namespaces=auto_namespaces,
            namespaces=namespaces,
            prune_unknown_fields=prune_unknown_fields,
            garbage_collection=garbage_collection,
        )
        self.api = ApiServer(
            self.store,
            token=token if require_token else None,
            bookmark_interval=bookmark_interval,
            max_watch_seconds=max_watch_seconds,
        )
        #: The kmock handler: its DSL injects reactions that take precedence over the API.
        self.kmock = EmulatorHandler(api=self.api)
        self.kmock._objects = objects  # share kmock's object history array with the store
        self.deployments = DeploymentController(self.store, default_behaviour)
        #: The simulated Job controller (outcome and delay by annotation; see :mod:`.jobs`).
        self.jobs = JobController(self.store)
        self._controller_enabled = deployment_controller
        self._runner: aiohttp.web.ServerRunner | None = None
        self._server: aiohttp.web.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        for crd in crds:
            self.register_crd(crd)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("The emulator is already running.")
        self._loop = asyncio.get_running_loop()
        self._sync_kmock_resources()
        await self.kmock.__aenter__()
        server = self._server = aiohttp.web.Server(self.kmock, handler_cancellation=True)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        site = aiohttp.web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        self._port = int(sock.getsockname()[1])
        self.api.address = f"{self.host}:{self._port}"
        self.api._closing = False
        if self._controller_enabled:
            await self.deployments.start()
            await self.jobs.start()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await self.deployments.stop()
        await self.jobs.stop()
        self.api.close()
        await runner.cleanup()
        await self.kmock.__aexit__(None, None, None)
        self._loop = None
        self._server = None

    def close_idle_connections(self) -> int:
        """Close the clients' idle keep-alive connections (busy ones close after their request).

        Useful when a client framework waits for all "its" tasks at exit: kopf waits up to 5 s
        for every task created while it ran, including this server's per-connection tasks.
        """
        connections = self._server.connections if self._server is not None else []
        for connection in connections:
            connection.close()
        return len(connections)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("The emulator is not started: no port yet.")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — the server URL for kopf and the kubernetes client."""
        return f"http://{self.host}:{self.port}"

    def run_coroutine(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """From another thread: run a coroutine in the emulator's loop (for :class:`BackgroundEmulator`)."""
        if self._loop is None:
            raise RuntimeError("The emulator is not running.")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ---------------------------------------------------------------------------- resources

    def register_crd(self, crd: Mapping[str, Any]) -> Body:
        """Serve a CustomResourceDefinition (a dict as in its YAML) and store the CRD object."""
        result = self.store.register_crd(crd)
        self._sync_kmock_resources()
        return result

    def register_crd_file(self, path: str | pathlib.Path) -> list[Body]:
        return [self.register_crd(crd) for crd in load_crds(path)]

    def resource(self, ref: ResourceRef) -> ResourceType:
        return self.store.resolve(ref)

    def _sync_kmock_resources(self) -> None:
        """Mirror the served resources into kmock's ``resources`` array (for kmock introspection)."""
        for rt in self.store.resource_types:
            self.kmock.resources[
                f"{rt.group}/{rt.version}/{rt.plural}" if rt.group else f"v1/{rt.plural}"
            ] = ResourceInfo(
                namespaced=rt.namespaced,
                kind=rt.kind,
                singular=rt.singular,
                shortnames=set(rt.short_names),
                categories=set(rt.categories),
                subresources=set(rt.subresources),
                verbs={"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"},
            )

    # -------------------------------------------------------------------------- direct access

    @property
    def requests(self) -> RequestLog:
        """Every request served, with verbs, statuses and counting helpers."""
        return self.api.requests

    @property
    def objects(self) -> ObjectsArray:
        """kmock's array of objects & their version histories (read-only mirror of the store)."""
        return self.store.objects

    def create(self, obj: Mapping[str, Any], namespace: str | None = None, **kwargs: Any) -> Body:
        """Create an object without HTTP; the resource is inferred from ``apiVersion``/``kind``."""
        rt = self.store.resource_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        return self.store.create(rt, obj, namespace, **kwargs)

    def apply(self, obj: Mapping[str, Any], namespace: str | None = None) -> Body:
        """Create the object, or replace it (spec, metadata and status) if it exists."""
        rt = self.store.resource_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        meta = obj.get("metadata") or {}
        ns = namespace or meta.get("namespace") or ("default" if rt.namespaced else None)
        current = self.store.try_get(rt, ns, meta.get("name", ""))
        if current is None:
            return self.store.create(rt, obj, ns)
        body = copy.deepcopy(dict(obj))
        body.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        result = self.store.update(rt, body, ns)
        if rt.status_subresource and "status" in obj:
            result = self.store.set_status(rt, ns, meta["name"], obj["status"])
        return result

    def ensure_namespace(self, name: str) -> Body:
        """Create the Namespace unless it exists (writes into a missing namespace answer 404)."""
        return self.store.ensure_namespace(name)

    def get(self, ref: ResourceRef, namespace: str | None, name: str) -> Body:
        return self.store.get(ref, namespace, name)

    def list(self, ref: ResourceRef, namespace: str | None = None, **kwargs: Any) -> list[Body]:
        return self.store.list(ref, namespace, **kwargs)

    def patch(self, ref: ResourceRef, namespace: str | None, name: str, patch: Any, **kwargs: Any) -> Body:
        return self.store.patch(ref, namespace, name, patch, **kwargs)

    def delete(self, ref: ResourceRef, namespace: str | None, name: str, **kwargs: Any) -> Body:
        return self.store.delete(ref, namespace, name, **kwargs)

    def assert_no_server_errors(self) -> None:
        failures = self.requests.server_errors()
        if failures:
            raise AssertionError("The emulated API answered with 5xx:\n" + "\n".join(map(str, failures)))

    # ----------------------------------------------------------------------- client configs

    def kubeconfig(self, namespace: str = "default", context: str = "emulator") -> dict[str, Any]:
        """A kubeconfig (as a dict) pointing at this emulator with a fake bearer token."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": context, "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}
            ],
            "users": [{"name": context, "user": {"token": self.token}}],
            "contexts": [
                {"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}
            ],
            "current-context": context,
            "preferences": {},
        }

    def write_kubeconfig(
        self, path: str | pathlib.Path, namespace: str = "default", context: str = "emulator"
    ) -> pathlib.Path:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            yaml.safe_dump(self.kubeconfig(namespace, context), sort_keys=False), encoding="utf-8"
        )
        return path

    def connection_info(self, namespace: str = "default") -> Any:
        """``kopf.ConnectionInfo`` for an ``@kopf.on.login`` handler."""
        import kopf

        return kopf.ConnectionInfo(
            server=self.url, insecure=True, scheme="Bearer", token=self.token, default_namespace=namespace
        )

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` (the sync client) configured for this emulator."""
        import kubernetes

        configuration = kubernetes.client.Configuration(
            host=self.url,
            api_key={"authorization": self.token},
            api_key_prefix={"authorization": "Bearer"},
        )
        configuration.verify_ssl = False
        return kubernetes.client.ApiClient(configuration)


class BackgroundEmulator:
    """An :class:`Emulator` in a daemon thread with its own event loop, for synchronous code::

        with BackgroundEmulator(crds=[crd]) as emu:
            api = kubernetes.client.CoreV1Api(emu.api_client())
            ...

    The store, the request log and the deployment behaviours are thread-safe; coroutines
    (e.g. ``emu.deployments.wait_idle()``) run via ``emu.run_coroutine(...)``.
    """

    def __init__(self, **options: Any) -> None:
        self.emulator = Emulator(**options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> Emulator:
        if self._thread is not None:
            raise RuntimeError("The background emulator is already running.")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="kubernetes-emulator", daemon=True)
        self._thread.start()
        ready.wait(timeout)
        asyncio.run_coroutine_threadsafe(self.emulator.start(), loop).result(timeout)
        return self.emulator

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.emulator.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()

    def run(self, awaitable: Awaitable[T], timeout: float | None = 30.0) -> T:
        if self._loop is None:
            raise RuntimeError("The background emulator is not running.")

        async def wrapper() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
