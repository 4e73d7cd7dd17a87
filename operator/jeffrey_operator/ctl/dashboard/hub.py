"""One watch per dashboard process, fanned out to every open tab.

:class:`Watcher` runs the list-then-watch loop of the JeffreyIntegrations in scope in a thread
(the ``kubernetes`` client is synchronous; this keeps kubeconfig auth plugins working as for every
other ``jeffreyctl`` command): it lists, watches from the list's ``resourceVersion`` with
bookmarks, watches again when the server ends the stream, lists again after ``410 Gone``, and
after an error waits (0.5 s doubling to 10 s) and starts over. It hands what it sees to the
:class:`Hub` in the event loop.

:class:`Hub` keeps the objects, turns each into the page's dict (:func:`.model.integration`) once
per change, and puts messages on the queue of every subscriber (one per server-sent-events
stream). A browser tab costs a queue, never an API call.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jeffrey_operator.core.timestamps import format_time
from jeffrey_operator.ctl.client import Cluster, CtlError, WatchExpired, WatchStream
from jeffrey_operator.ctl.dashboard.model import integration, key_of

__all__ = ["Hub", "Message", "Watcher"]

log = logging.getLogger(__name__)

#: (event name, data) as sent to the browser: ``snapshot``, ``upsert``, ``delete``, ``connection``.
Message = tuple[str, dict[str, Any]]
Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Hub:
    """The objects in scope and the open streams. Call its methods from the event loop only."""

    def __init__(
        self, *, clock: Clock = utc_now, prometheus_url: str | None = None, queue_size: int = 512
    ) -> None:
        self._clock = clock
        self._prometheus_url = prometheus_url
        self._queue_size = queue_size
        self.bodies: dict[str, dict[str, Any]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self._subscribers: set[asyncio.Queue[Message | None]] = set()
        self.connection: dict[str, str] = {"state": "connecting", "message": "", "since": self._stamp()}
        #: Messages put on queues, and subscribers dropped for falling behind (for tests and logs).
        self.sent = 0
        self.dropped = 0

    def _stamp(self) -> str:
        return format_time(self._clock())

    def _view(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            return integration(body, self._clock(), prometheus_url=self._prometheus_url)
        except Exception:  # a bug in the view must cost one object, not the stream of every tab
            log.exception("cannot show %s", key_of(body))
            return None

    # ---------------------------------------------------------------------------- the objects
    def reset(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        """A fresh list: replace everything and send every stream a new snapshot."""
        self.bodies = {key_of(b): dict(b) for b in bodies}
        views = {k: self._view(b) for k, b in self.bodies.items()}
        self.views = {k: v for k, v in views.items() if v is not None}
        self._broadcast(("snapshot", self.snapshot()))

    def apply(self, kind: str, body: Mapping[str, Any]) -> None:
        """One watch event (``ADDED``, ``MODIFIED``, ``DELETED``; bookmarks are ignored)."""
        key = key_of(body)
        if kind == "DELETED":
            if self.bodies.pop(key, None) is not None:
                self.views.pop(key, None)
                self._broadcast(("delete", {"key": key, "now": self._stamp()}))
            return
        if kind not in ("ADDED", "MODIFIED"):
            return
        old = self.bodies.get(key)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if old is not None and version and (old.get("metadata") or {}).get("resourceVersion") == version:
            return
        self.bodies[key] = dict(body)
        view = self._view(body)
        if view is None:
            return
        self.views[key] = view
        self._broadcast(("upsert", {"item": view, "now": self._stamp()}))

    def set_connection(self, state: str, message: str = "") -> None:
        """``live``, ``lost`` (with the error), or ``connecting``."""
        if self.connection.get("state") == state and self.connection.get("message") == message:
            return
        self.connection = {"state": state, "message": message, "since": self._stamp()}
        self._broadcast(("connection", dict(self.connection)))

    def on_watch(self, kind: str, payload: Any) -> None:
        """What the :class:`Watcher` delivers: ``reset`` (a list), ``lost`` (an error), or an event."""
        if kind == "reset":
            self.reset(payload)
            self.set_connection("live")
        elif kind == "lost":
            self.set_connection("lost", str(payload))
        else:
            self.apply(kind, payload)

    def snapshot(self) -> dict[str, Any]:
        """Every integration in scope (by namespace, name), the watch's state, and the server's time."""
        return {
            "items": [self.views[k] for k in sorted(self.views)],
            "connection": dict(self.connection),
            "now": self._stamp(),
        }

    # ------------------------------------------------------------------------------- streams
    def subscribe(self) -> asyncio.Queue[Message | None]:
        queue: asyncio.Queue[Message | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Message | None]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every stream (at shutdown)."""
        for queue in list(self._subscribers):
            self._end(queue)
        self._subscribers.clear()

    def _end(self, queue: asyncio.Queue[Message | None]) -> None:
        while True:  # make room for the end marker
            try:
                queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                queue.get_nowait()

    def _broadcast(self, message: Message) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
                self.sent += 1
            except asyncio.QueueFull:
                # A tab that does not read: end its stream; its EventSource reconnects and gets a
                # fresh snapshot, instead of this process buffering without bound.
                self.dropped += 1
                self._subscribers.discard(queue)
                self._end(queue)


class Watcher:
    """The list-then-watch loop in a thread; ``deliver(kind, payload)`` is called from that thread."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str | None,
        deliver: Callable[[str, Any], None],
        *,
        timeout_seconds: int = 30,
        initial: tuple[list[dict[str, Any]], str] | None = None,
        max_backoff: float = 10.0,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.deliver = deliver
        self.timeout_seconds = timeout_seconds
        self.max_backoff = max_backoff
        self._initial = initial
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="jeffreyctl-dashboard-watch", daemon=True)
        #: Lists and watch requests made (each tab adds none).
        self.lists = 0
        self.watches = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing a broken stream may fail in many ways; we are leaving
                log.debug("closing the watch stream failed", exc_info=True)
        self._thread.join(timeout)

    def _list(self) -> str:
        if self._initial is not None:
            items, version = self._initial
            self._initial = None
        else:
            self.lists += 1
            items, version = self.cluster.list_versioned(self.namespace)
        self.deliver("reset", items)
        return version

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                version = self._list()
                backoff = 0.5
                while not self._stop.is_set():
                    stream = self.cluster.watch(self.namespace, version, timeout_seconds=self.timeout_seconds)
                    self.watches += 1
                    with self._lock:
                        self._stream = stream
                    try:
                        for kind, obj in stream:
                            if self._stop.is_set():
                                break
                            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                            if kind != "BOOKMARK":
                                self.deliver(kind, obj)
                    finally:
                        with self._lock:
                            self._stream = None
                        stream.close()
            except WatchExpired:
                continue  # list again from now
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.deliver("lost", _describe(exc, self.cluster))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)


def _describe(exc: BaseException, cluster: Cluster) -> str:
    if isinstance(exc, CtlError):
        return str(exc)
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return f"the watch of the Kubernetes API at {cluster.server} broke: {text}"
