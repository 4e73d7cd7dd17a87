"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection``.

With several replicas exactly one acts: the one holding the Lease (``--peering NAME`` names it).
The others keep their caches warm (CR and Deployment watches) and take over when the holder stops
renewing: after ``lease_duration`` of seeing the Lease unchanged (measured on the standby's own
clock, so clock skew between nodes does not matter), the next attempt takes it.

Worked example (lease 8 s, renew deadline 6 s, retry 2 s): the leader renews every 2 s. It is
killed (``kill -9``) right after a renewal at t=0. The standby saw that renewal at t≤2, sees the
Lease unchanged at t=4, 6, 8, and takes it at the first attempt after t=10 (≤ 8 s after it last
saw a change), i.e. at t≤12. A leader that cannot renew for 6 s (API unreachable) stops acting
before its Lease can expire for the others. A leader that stops cleanly releases the Lease, so
the standby takes over at its next attempt.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from jeffrey_operator.adapters.kube import Kube, KubeError

__all__ = ["LeaderElector", "default_identity"]

log = logging.getLogger(__name__)


def default_identity() -> str:
    """``pod-pid-random`` (the pod's name from ``POD_NAME``, else the host name): unique per
    process, readable in ``kubectl get lease -o yaml``."""
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire and renew one Lease; call ``on_started``/``on_stopped`` as leadership changes."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        *,
        identity: str | None = None,
        lease_duration: float = 8.0,
        renew_deadline: float = 6.0,
        retry_period: float = 2.0,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
        contact: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("leader election needs lease duration > renew deadline > retry period > 0")
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._contact = contact
        self._clock = clock
        self.is_leader = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    # ------------------------------------------------------------------------------ the loop
    async def run(self) -> None:
        """Until cancelled; releases the Lease on the way out if it holds it."""
        try:
            while True:
                acquired = await self.try_acquire_or_renew()
                now = self._clock()
                if acquired:
                    self._renewed_at = now
                    if not self.is_leader:
                        self.is_leader = True
                        log.info(
                            "leader election: %s leads (Lease %s/%s)",
                            self.identity,
                            self.namespace,
                            self.name,
                        )
                        self._on_started()
                elif self.is_leader and now - self._renewed_at > self.renew_deadline:
                    self.is_leader = False
                    log.warning(
                        "leader election: %s could not renew Lease %s/%s for %.0fs; standing by",
                        self.identity,
                        self.namespace,
                        self.name,
                        now - self._renewed_at,
                    )
                    self._on_stopped()
                delay = self.retry_period if self.is_leader else self.retry_period * random.uniform(0.9, 1.1)
                await asyncio.sleep(delay)
        finally:
            if self.is_leader:
                self.is_leader = False
                self._on_stopped()
                await asyncio.shield(self.release())

    # ------------------------------------------------------------------------- one attempt
    def _expired(self, spec: Mapping[str, Any]) -> bool:
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseTransitions"),
        )
        now = self._clock()
        if record != self._observed:
            self._observed = record
            self._observed_at = now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        return now - self._observed_at > duration

    async def try_acquire_or_renew(self) -> bool:
        """One attempt: True when this replica holds the Lease afterwards."""
        now = datetime.datetime.now(datetime.UTC)
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            self._contact()
            if lease is None:
                await self.kube.create_lease(self.namespace, self._body(None, now))
                self._contact()
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            if holder and holder != self.identity and not self._expired(spec):
                return False
            await self.kube.replace_lease(self.namespace, self.name, self._body(lease, now))
            self._contact()
            return True
        except KubeError as exc:
            if exc.status != 409:  # 409: another replica wrote it first; anything else is said
                log.warning("leader election: Lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    def _body(self, lease: Mapping[str, Any] | None, now: datetime.datetime) -> dict[str, Any]:
        old = dict((lease or {}).get("spec") or {})
        mine = old.get("holderIdentity") == self.identity
        transitions = int(old.get("leaseTransitions") or 0) + (0 if mine or lease is None else 1)
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if lease is not None:
            metadata["resourceVersion"] = (lease.get("metadata") or {}).get("resourceVersion")
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "acquireTime": old.get("acquireTime") if mine else _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": transitions,
            },
        }

    async def release(self) -> None:
        """Give the Lease up (empty holder): a standby takes it at its next attempt."""
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            body = self._body(lease, datetime.datetime.now(datetime.UTC))
            body["spec"]["holderIdentity"] = ""
            body["spec"]["leaseDurationSeconds"] = 1
            await self.kube.replace_lease(self.namespace, self.name, body)
            log.info("leader election: %s released Lease %s/%s", self.identity, self.namespace, self.name)
        except KubeError as exc:
            log.warning("leader election: releasing Lease %s/%s failed: %s", self.namespace, self.name, exc)
