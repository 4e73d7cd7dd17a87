"""What the operator holds in memory, and which integrations an event concerns.

* :class:`Integrations`: the JeffreyIntegration bodies (from kopf's watch) and, for every
  (namespace, Deployment), the claims of the integrations that list it. An event maps to keys
  through this index only: its cost does not depend on how many integrations exist.
* :class:`Deployments`: only the managed Deployments (those labelled
  ``jeffreyos.io/integration``, watched with that server-side label selector), each as the small
  :class:`~jeffrey_operator.core.ports.DeploymentObservation` the engine needs, plus live reads of
  listed Deployments the operator has not labelled yet.

Worked example: ``jeffrey`` lists ``memory`` and ``neural-bus``; ``other`` lists ``memory``.
A watch event for ``memory`` → keys ``{(ns, jeffrey), (ns, other)}``; for ``neural-bus`` →
``{(ns, jeffrey)}``; for an unrelated Deployment nothing reaches the operator at all (the
API server filters by label), and if one did, it maps to no key.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jeffrey_operator.adapters.kube import observe_deployment, resource_version
from jeffrey_operator.core.models import INTEGRATION_LABEL
from jeffrey_operator.core.observe import listed_deployments
from jeffrey_operator.core.ports import DeploymentObservation
from jeffrey_operator.core.validation import Claim, claim_of

__all__ = ["Deployments", "Integrations", "Key", "Seen", "seen_of"]

#: (namespace, name)
Key = tuple[str, str]


class Integrations:
    """The JeffreyIntegration bodies and the Deployment → claims index."""

    def __init__(self) -> None:
        self.bodies: dict[Key, Mapping[str, Any]] = {}
        #: (namespace, Deployment) -> integration key -> its claim.
        self._claims: dict[Key, dict[Key, Claim]] = {}
        #: integration key -> the Deployments it lists (what it is registered for).
        self._lists: dict[Key, set[str]] = {}

    def __len__(self) -> int:
        return len(self.bodies)

    def upsert(self, key: Key, body: Mapping[str, Any]) -> set[Key]:
        """Remember ``body``; return the integrations to wake: this one, and every other one that
        shares a Deployment with it now or did before (their claims may have changed)."""
        namespace = key[0]
        self.bodies[key] = body
        new = listed_deployments(body)
        old = self._lists.get(key, set())
        claim = claim_of(body.get("metadata") or {})
        wake = {key}
        for deployment in old - new:
            users = self._claims.get((namespace, deployment))
            if users is not None:
                users.pop(key, None)
                wake.update(users)
                if not users:
                    del self._claims[(namespace, deployment)]
        for deployment in new:
            users = self._claims.setdefault((namespace, deployment), {})
            users[key] = claim
            if len(users) > 1:
                wake.update(users)
        self._lists[key] = new
        return wake

    def remove(self, key: Key) -> set[Key]:
        """Forget ``key``; return the integrations that shared a Deployment with it."""
        self.bodies.pop(key, None)
        wake: set[Key] = set()
        for deployment in self._lists.pop(key, set()):
            users = self._claims.get((key[0], deployment))
            if users is not None:
                users.pop(key, None)
                wake.update(users)
                if not users:
                    del self._claims[(key[0], deployment)]
        return wake

    def listing(self, namespace: str, deployment: str) -> Iterable[Key]:
        """The integrations that list this Deployment (the keys its events go to)."""
        return tuple(self._claims.get((namespace, deployment), {}))

    def claims(self, namespace: str, deployments: Iterable[str]) -> dict[str, list[Claim]]:
        """Deployment → the claims of every integration listing it (input to ``observe``)."""
        out: dict[str, list[Claim]] = {}
        for deployment in deployments:
            users = self._claims.get((namespace, deployment))
            if users:
                out[deployment] = list(users.values())
        return out


@dataclass(frozen=True)
class Seen:
    """One Deployment as last seen: through the label-selected watch (``watched``), or by a live
    read of a listed Deployment that does not carry the label yet; ``owner`` is the label's value."""

    observation: DeploymentObservation
    owner: str = ""
    watched: bool = False
    resource_version: int = 0
    #: ``time.monotonic()`` of the read or event.
    read_at: float = 0.0


def seen_of(body: Mapping[str, Any], *, watched: bool) -> Seen:
    """A Deployment body (watch event, write answer, live read) → what the cache keeps."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    owner = str(labels.get(INTEGRATION_LABEL, ""))
    return Seen(
        observation=observe_deployment(body),
        owner=owner,
        watched=watched or bool(owner),
        resource_version=resource_version(body),
        read_at=time.monotonic(),
    )


class Deployments:
    """The managed Deployments, and live reads of listed ones not labelled yet."""

    def __init__(self) -> None:
        self._seen: dict[Key, Seen] = {}
        #: (namespace, owner) -> the Deployments whose label names that owner.
        self._by_owner: dict[Key, set[str]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def get(self, namespace: str, name: str) -> Seen | None:
        return self._seen.get((namespace, name))

    def put(self, namespace: str, name: str, seen: Seen) -> bool:
        """Record ``seen`` unless what is held is newer (by resourceVersion); True if recorded."""
        held = self._seen.get((namespace, name))
        if held is not None and seen.resource_version and held.resource_version > seen.resource_version:
            return False
        if held is not None and held.owner != seen.owner:
            self._unown(namespace, name, held.owner)
        self._seen[(namespace, name)] = seen
        if seen.owner:
            self._by_owner.setdefault((namespace, seen.owner), set()).add(name)
        return True

    def drop(self, namespace: str, name: str) -> None:
        held = self._seen.pop((namespace, name), None)
        if held is not None:
            self._unown(namespace, name, held.owner)

    def _unown(self, namespace: str, name: str, owner: str) -> None:
        names = self._by_owner.get((namespace, owner))
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_owner[(namespace, owner)]

    def owned_by(self, namespace: str, owner: str) -> list[str]:
        """The Deployments whose label names ``owner`` (what releasing it unlabels)."""
        return sorted(self._by_owner.get((namespace, owner), ()))

    def watched_keys(self, namespace: str | None) -> list[Key]:
        """The watched Deployments of one namespace (None: all)."""
        return [k for k, s in self._seen.items() if s.watched and (namespace is None or k[0] == namespace)]

    def same(self, namespace: str, name: str, seen: Seen) -> bool:
        """True when ``seen`` tells nothing new (the engine would see the same)."""
        held = self._seen.get((namespace, name))
        return (
            held is not None
            and held.watched == seen.watched
            and held.owner == seen.owner
            and held.observation == seen.observation
        )

    def owners(self) -> dict[Key, str]:
        """(namespace, Deployment) → the integration its label names, for every labelled one."""
        return {(ns, name): owner for (ns, owner), names in self._by_owner.items() for name in names}
