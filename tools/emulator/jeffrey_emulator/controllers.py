"""What the simulated controllers (Deployments, Jobs) share: one asyncio task in the emulator's
event loop that reconciles the objects of one resource **that changed**.

A controller keeps the resourceVersion it has seen. Woken by a write, it reads only the events
after it from the store's history (``ObjectStore.events_after``), so one write costs the work of
one object, not a pass over all of them: with 12,000 Deployments a pass over all of them on every
write made the emulator, not the operator, the bottleneck of the benchmark. It lists everything
(``ObjectStore.snapshot``) only at start, after ``kick(full=True)`` (a changed behaviour may
concern any object) and when the history it needs was compacted (410).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

from .errors import ApiError
from .store import Body, ObjectStore, ResourceRef, Waiter

__all__ = ["Controller", "Key", "object_key"]

Key = tuple[str, str]


def object_key(obj: Body) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Controller:
    """Subclasses say which resource (``resource``) and what to do with changed objects
    (:meth:`reconcile`); timers they start are loop timers, not tasks, so that frameworks which
    cancel "foreign" tasks at their exit (kopf does) cannot break them."""

    resource: ResourceRef
    task_name = "emulated controller"

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._waiter: Waiter | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.RLock()
        self._rv = 0
        self._full = True

    # ------------------------------------------------------------------------- to subclass
    def reconcile(self, changed: Sequence[Body], deleted: Sequence[Body], *, complete: bool) -> None:
        """``changed``: the live objects that changed (all of them when ``complete``);
        ``deleted``: their last state before deletion (empty when ``complete``: every object not
        in ``changed`` is gone)."""
        raise NotImplementedError

    def cancel_all(self) -> None:
        """Cancel every timer (the controller stops)."""

    # ----------------------------------------------------------------------------- running
    def kick(self, *, full: bool = True) -> None:
        """Look again; ``full``: at every object (a behaviour changed), not only the changed ones."""
        if full:
            self._full = True
        if self._waiter is not None:
            self._waiter.wake()

    @property
    def woken(self) -> bool:
        """Whether a wake-up is pending (a write not reconciled yet)."""
        return self._waiter is not None and self._waiter.event.is_set()

    async def start(self) -> None:
        if self._task is None:
            self._waiter = Waiter()
            self._store.subscribe(self.resource, self._waiter)
            self._full = True
            self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._waiter is not None:
            self._store.unsubscribe(self.resource, self._waiter)
            self._waiter = None
        with self._lock:
            self.cancel_all()

    async def _run(self) -> None:
        assert self._waiter is not None
        while True:
            self._sync()
            await self._waiter.wait(None)

    def _sync(self) -> None:
        if not self._full:
            try:
                events, self._rv = self._store.events_after(self.resource, self._rv)
            except ApiError:  # 410: the history this controller needs was compacted
                self._full = True
            else:
                latest = {object_key(e.obj): e for e in events}  # the last event of each object
                changed = [e.obj for e in latest.values() if e.type != "DELETED"]
                deleted = [e.obj for e in latest.values() if e.type == "DELETED"]
                if changed or deleted:
                    self.reconcile(changed, deleted, complete=False)
                return
        self._full = False
        objs, self._rv = self._store.snapshot(self.resource)
        self.reconcile(objs, (), complete=True)
