"""Liveness and readiness, served on ``--health-port``.

* ``/healthz`` (liveness) answers 200 while the operator has reached the Kubernetes API and listed
  or watched its resources within the last ``grace`` seconds (``--liveness-grace``, default 60 s),
  and 500 with the reason after that, so that Kubernetes restarts a pod whose credentials,
  address or permissions are wrong instead of leaving it running blind.
* ``/readyz`` (readiness) answers 200 once the Deployment caches have been listed (the operator
  can act, or stand by as a warm replica), 503 before.

Worked example (grace 60 s): the watch lists at t=0 (contact), re-watches every 30 s (contact at
t=30, 60, ...): live. The API goes away at t=65: the watch fails and retries with backoff; no
contact after t=60, so ``/healthz`` fails from t=120 on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

__all__ = ["Health", "serve_health"]

log = logging.getLogger(__name__)


class Health:
    """What the probes report; ``contact()`` after every successful API list/watch request."""

    def __init__(self, grace: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self._clock = clock
        self.started = clock()
        self.last_contact: float | None = None
        #: The caches not listed yet: (resource, scope), a scope being a namespace or None (all).
        self.unlisted: set[tuple[str, str | None]] = set()

    def contact(self) -> None:
        self.last_contact = self._clock()

    def live(self) -> tuple[bool, str]:
        """(alive, why).

        >>> now = [0.0]
        >>> h = Health(grace=60, clock=lambda: now[0])
        >>> now[0] = 59; h.live()[0]
        True
        >>> now[0] = 61; h.live()
        (False, 'the Kubernetes API has not been reached for 61s (grace 60s)')
        >>> h.contact(); h.live()[0]
        True
        """
        since = self.last_contact if self.last_contact is not None else self.started
        silent = self._clock() - since
        if silent <= self.grace:
            return True, "ok"
        return False, f"the Kubernetes API has not been reached for {silent:.0f}s (grace {self.grace:g}s)"

    def ready(self) -> tuple[bool, str]:
        """Ready once every label-selected watch (Deployments and check Jobs, in each watched
        scope) has delivered its list: before that the operator holds a partial picture.

        >>> h = Health()
        >>> h.unlisted = {("deployments", "jeffrey"), ("jobs", None)}
        >>> h.ready()
        (False, 'not listed yet: deployments in jeffrey, jobs in all namespaces')
        >>> h.unlisted.clear(); h.ready()
        (True, 'ok')
        """
        if not self.unlisted:
            return True, "ok"
        waiting = sorted(f"{r} in {s or 'all namespaces'}" for r, s in self.unlisted)
        return False, "not listed yet: " + ", ".join(waiting)


async def serve_health(health: Health, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start the probe server; the caller cleans the runner up."""

    async def healthz(_: web.Request) -> web.Response:
        ok, why = health.live()
        return web.Response(status=200 if ok else 500, text=why + "\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = health.ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.debug("probes on :%d (/healthz, /readyz)", port)
    return runner
