"""A simulated Deployment controller: no pods, only the status a real controller would report.

When a Deployment's generation changes (spec.replicas, the template, ...), the controller waits
for the configured delay and then writes ``status`` (observedGeneration, replicas,
updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas, conditions) through
the status subresource of the same store, so watches see it and resourceVersion bumps.

Behaviour is configurable per Deployment from tests::

    emu.deployments.set_behaviour("ns", "web", delay=0.5)              # ready after 0.5 s
    emu.deployments.set_behaviour("ns", "web", ready=False)            # never ready (0 ready)
    emu.deployments.set_behaviour("ns", "web", ready_replicas=1)       # partially ready
    emu.deployments.set_behaviour("ns", "web", fail_after=2.0)         # ready, then crashes
    emu.deployments.set_behaviour("ns", "web", observe=False)          # controller is "down"
    emu.deployments.set_behaviour("ns", "web", mode="never", stalled=True)  # ProgressDeadlineExceeded
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .controllers import Controller, object_key
from .errors import ApiError
from .resources import DEPLOYMENTS
from .store import Body, ObjectStore, now_rfc3339

__all__ = ["DeploymentBehaviour", "DeploymentController", "deployment_manifest"]

Mode = Literal["ready", "never", "partial", "fail_after", "ignore"]
#: Who writes a Deployment's status on a cluster (its ``managedFields`` entry, ``subresource: status``).
MANAGER = "kube-controller-manager"
_MANAGED = (
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "conditions",
)


@dataclass(frozen=True)
class DeploymentBehaviour:
    """How the simulated controller treats one Deployment."""

    #: Seconds from a generation change until the status is written.
    delay: float = 0.0
    #: Whether the pods ever become ready. False: the status stays at 0 ready replicas.
    ready: bool = True
    #: If set, at most this many replicas become ready (partial readiness).
    ready_replicas: int | None = None
    #: If set, the Deployment loses all ready replicas this many seconds after becoming ready.
    fail_after: float | None = None
    #: False: the controller ignores the Deployment entirely (observedGeneration lags forever).
    observe: bool = True
    #: With ``ready=False``: report ``Progressing=False/ProgressDeadlineExceeded``.
    stalled: bool = False

    @classmethod
    def from_mode(cls, mode: Mode, **changes: Any) -> DeploymentBehaviour:
        base = {
            "ready": cls(),
            "never": cls(ready=False),
            "partial": cls(ready_replicas=changes.pop("ready_replicas", 1)),
            "fail_after": cls(fail_after=changes.pop("fail_after", 1.0)),
            "ignore": cls(observe=False),
        }[mode]
        return dataclasses.replace(base, **changes)


def _max_unavailable(spec: Mapping[str, Any], replicas: int) -> int:
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return replicas
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(replicas * float(value[:-1]) / 100)
    return int(value) if isinstance(value, int | float | str) and str(value).isdigit() else 0


def _condition(
    old: list[dict[str, Any]], type_: str, *, status: str, reason: str, message: str, stamp: str
) -> dict[str, Any]:
    previous = next((c for c in old if isinstance(c, dict) and c.get("type") == type_), None)
    same = previous is not None and previous.get("status") == status
    unchanged = same and previous is not None and previous.get("reason") == reason
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": previous.get("lastUpdateTime", stamp) if unchanged and previous else stamp,
        "lastTransitionTime": previous.get("lastTransitionTime", stamp) if same and previous else stamp,
        "reason": reason,
        "message": message,
    }


def compute_status(
    obj: Mapping[str, Any], behaviour: DeploymentBehaviour, *, failed: bool = False
) -> dict[str, Any]:
    """The status a Deployment controller would report for this Deployment and behaviour."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    old: dict[str, Any] = dict(obj.get("status") or {})
    name = meta.get("name", "")
    replicas = int(spec.get("replicas", 1))
    if not behaviour.ready or failed:
        ready = 0
    elif behaviour.ready_replicas is not None:
        ready = max(0, min(replicas, behaviour.ready_replicas))
    else:
        ready = replicas
    status = {k: v for k, v in old.items() if k not in _MANAGED}
    status["observedGeneration"] = meta.get("generation", 1)
    if replicas:
        status["replicas"] = replicas
        status["updatedReplicas"] = replicas
    if ready:
        status["readyReplicas"] = ready
        status["availableReplicas"] = ready
    if replicas - ready > 0:
        status["unavailableReplicas"] = replicas - ready
    stamp = now_rfc3339()
    old_conditions = list(old.get("conditions") or [])
    available = ready >= replicas - _max_unavailable(spec, replicas)
    if available:
        avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        avail = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    if behaviour.stalled and ready < replicas:
        progress = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{name}" has timed out progressing.')
    elif ready >= replicas:
        progress = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.')
    else:
        progress = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
    conditions = [
        _condition(old_conditions, type_, status=cond[0], reason=cond[1], message=cond[2], stamp=stamp)
        for type_, cond in (("Available", avail), ("Progressing", progress))
    ]
    status["conditions"] = conditions
    return status


@dataclass
class _Rollout:
    generation: int
    behaviour: DeploymentBehaviour
    handle: asyncio.TimerHandle | None = None
    #: False until the first status write of this rollout (the one after the delay).
    written: bool = False


class DeploymentController(Controller):
    """The simulated controller, in the emulator's event loop (see :mod:`.controllers`): a write
    of a Deployment costs the work of that Deployment only."""

    resource = DEPLOYMENTS
    task_name = "emulated deployment controller"

    def __init__(self, store: ObjectStore, default: DeploymentBehaviour | None = None) -> None:
        super().__init__(store)
        self._default = default or DeploymentBehaviour()
        self._behaviours: dict[tuple[str, str], DeploymentBehaviour] = {}
        self._rollouts: dict[tuple[str, str], _Rollout] = {}
        #: How many status writes the controller has made (for tests).
        self.writes = 0

    # --------------------------------------------------------------------------- configuration

    @property
    def default_behaviour(self) -> DeploymentBehaviour:
        return self._default

    def set_default_behaviour(
        self, behaviour: DeploymentBehaviour | None = None, *, mode: Mode | None = None, **changes: Any
    ) -> DeploymentBehaviour:
        """Change the behaviour of all Deployments without their own behaviour."""
        with self._lock:
            base = behaviour or (DeploymentBehaviour.from_mode(mode) if mode else self._default)
            self._default = dataclasses.replace(base, **changes)
            result = self._default
        self.kick()
        return result

    def set_behaviour(
        self,
        namespace: str,
        name: str,
        behaviour: DeploymentBehaviour | None = None,
        *,
        mode: Mode | None = None,
        **changes: Any,
    ) -> DeploymentBehaviour:
        """Set how one Deployment behaves; keyword changes apply on top of the current behaviour.

        It can be set before the Deployment exists. A changed behaviour re-runs the rollout of the
        current generation (the delay starts again).
        """
        with self._lock:
            if behaviour is None and mode is not None:
                behaviour = DeploymentBehaviour.from_mode(mode, **changes)
                changes = {}
            base = behaviour or self._behaviours.get((namespace, name), self._default)
            result = self._behaviours[(namespace, name)] = dataclasses.replace(base, **changes)
        self.kick()
        return result

    def behaviour(self, namespace: str, name: str) -> DeploymentBehaviour:
        with self._lock:
            return self._behaviours.get((namespace, name), self._default)

    def reset(self) -> None:
        """Forget all per-Deployment behaviours and restore the default one."""
        with self._lock:
            self._behaviours.clear()
            self._default = DeploymentBehaviour()
        self.kick()

    def reconcile_now(self, namespace: str, name: str) -> None:
        """Re-run the rollout of a Deployment's current generation (e.g. after tampering)."""
        with self._lock:
            rollout = self._rollouts.pop((namespace, name), None)
            if rollout is not None and rollout.handle is not None:
                rollout.handle.cancel()
        self.kick()

    @property
    def busy(self) -> bool:
        """Whether a rollout is still waiting for its delay (``fail_after`` crashes not counted)."""
        with self._lock:
            return any(not r.written and r.behaviour.observe for r in self._rollouts.values()) or self.woken

    async def wait_idle(self, within: float = 5.0) -> None:
        """Wait until all pending rollouts have written their status (polling: thread-safe)."""
        async with asyncio.timeout(within):
            await asyncio.sleep(0)
            for _ in itertools.count():
                if not self.busy:
                    return
                await asyncio.sleep(0.01)

    # ------------------------------------------------------------------------------- reconcile

    def cancel_all(self) -> None:
        for rollout in self._rollouts.values():
            if rollout.handle is not None:
                rollout.handle.cancel()
        self._rollouts.clear()

    def reconcile(self, changed: Sequence[Body], deleted: Sequence[Body], *, complete: bool) -> None:
        loop = asyncio.get_running_loop()
        seen: set[tuple[str, str]] = set()
        with self._lock:
            for obj in changed:
                key = object_key(obj)
                seen.add(key)
                behaviour = self.behaviour(*key)
                generation = int((obj.get("metadata") or {}).get("generation") or 1)
                current = self._rollouts.get(key)
                if (
                    current is not None
                    and current.generation == generation
                    and current.behaviour == behaviour
                ):
                    continue
                if current is not None and current.handle is not None:
                    current.handle.cancel()
                rollout = self._rollouts[key] = _Rollout(generation, behaviour)
                if behaviour.observe:
                    rollout.handle = loop.call_later(
                        max(0.0, behaviour.delay), self._step, key, rollout, False
                    )
            gone = set(self._rollouts) - seen if complete else {object_key(obj) for obj in deleted}
            for key in gone:
                rollout_gone = self._rollouts.pop(key, None)
                if rollout_gone is not None and rollout_gone.handle is not None:
                    rollout_gone.handle.cancel()

    def _step(self, key: tuple[str, str], rollout: _Rollout, failed: bool) -> None:
        with self._lock:
            if self._rollouts.get(key) is not rollout:
                return  # superseded by a newer generation or behaviour
            rollout.handle = None
        self._write(key, rollout.generation, rollout.behaviour, failed=failed)
        with self._lock:
            rollout.written = True
            behaviour = rollout.behaviour
            if not failed and behaviour.fail_after is not None and behaviour.ready:
                loop = asyncio.get_running_loop()
                rollout.handle = loop.call_later(behaviour.fail_after, self._step, key, rollout, True)

    def _write(
        self, key: tuple[str, str], generation: int, behaviour: DeploymentBehaviour, *, failed: bool
    ) -> None:
        written = False

        def fn(obj: dict[str, Any]) -> None:
            nonlocal written
            if int((obj.get("metadata") or {}).get("generation") or 1) != generation:
                return  # a newer generation is being rolled out
            new_status = compute_status(obj, behaviour, failed=failed)
            if new_status != obj.get("status"):
                obj["status"] = new_status
                written = True

        try:
            self._store.modify(
                DEPLOYMENTS, key[0], key[1], fn, subresource="status", validate=False, manager=MANAGER
            )
        except ApiError:
            return  # deleted meanwhile
        if written:
            self.writes += 1


def deployment_manifest(
    name: str,
    namespace: str = "default",
    *,
    replicas: int = 1,
    image: str = "registry.example/jeffrey/module:latest",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A minimal valid ``apps/v1`` Deployment (for seeding tests and the playground)."""
    selector = dict(labels or {"app": name})
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(selector)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(selector)},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }
