"""The Kubernetes adapter: the only module that calls the API (besides kopf itself).

It turns Deployment bodies into :class:`~jeffrey_operator.core.ports.DeploymentObservation` and
check Job bodies into :class:`~jeffrey_operator.core.ports.JobObservation`, scales Deployments,
creates and deletes check Jobs, and patches the JeffreyIntegration status. It decides nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

from jeffrey_operator.core.checks import LABEL_ATTEMPT, LABEL_CHECK, LABEL_LEVEL
from jeffrey_operator.core.models import GROUP, PLURAL, VERSION
from jeffrey_operator.core.ports import DeploymentObservation, JobObservation

log = logging.getLogger(__name__)


class KubeError(Exception):
    """An API call failed. ``status`` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retriable(self) -> bool:
        return self.status in (0, 409, 429) or self.status >= 500


def observe_deployment(body: Mapping[str, Any]) -> DeploymentObservation:
    """A Deployment body (as kopf or the API gives it) → what the engine needs."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return DeploymentObservation(
        name=str(meta.get("name", "")),
        exists=True,
        spec_replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        generation=int(meta.get("generation") or 1),
        observed_generation=int(status.get("observedGeneration") or 0),
    )


def observe_job(body: Mapping[str, Any]) -> JobObservation:
    """A check Job body → what the engine needs (its run from the labels, its end from conditions)."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = body.get("status") or {}
    true = {
        str(c.get("type")): c
        for c in status.get("conditions") or []
        if isinstance(c, Mapping) and c.get("status") == "True"
    }
    failed = true.get("Failed")
    try:
        attempt = int(labels.get(LABEL_ATTEMPT, 0))
    except (TypeError, ValueError):
        attempt = 0
    return JobObservation(
        name=str(meta.get("name", "")),
        check=str(labels.get(LABEL_CHECK, "")),
        attempt=attempt,
        level=str(labels.get(LABEL_LEVEL, "")),
        complete="Complete" in true,
        failed=failed is not None,
        reason=str(failed.get("reason") or "") if failed else "",
        message=str(failed.get("message") or "") if failed else "",
        active=int(status.get("active") or 0),
        creation=str(meta.get("creationTimestamp", "")),
        owner=next(
            (
                str(ref.get("uid", ""))
                for ref in meta.get("ownerReferences") or []
                if isinstance(ref, Mapping) and ref.get("kind") == "JeffreyIntegration"
            ),
            "",
        ),
    )


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """An RFC 7386 merge patch turning ``old`` into ``new`` (keys gone from ``new`` become null)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


class Kube:
    """Thin async facade over the ``kubernetes`` client (its calls run in worker threads)."""

    def __init__(self, api_client: Any | None = None) -> None:
        self._client = api_client
        self.writes: dict[tuple[str, str], int] = {}

    def connect(self) -> None:
        """Load credentials like kubectl: ``KUBECONFIG``/``~/.kube/config``, else in-cluster."""
        if self._client is not None:
            return
        import kubernetes

        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            kubernetes.config.load_incluster_config()
        else:
            # KUBECONFIG as it is now (the client reads it only once, at import time).
            kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        self._client = kubernetes.client.ApiClient()

    @property
    def client(self) -> Any:
        if self._client is None:
            self.connect()
        return self._client

    def _count(self, verb: str, resource: str) -> None:
        self.writes[(verb, resource)] = self.writes.get((verb, resource), 0) + 1

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            raise KubeError(int(exc.status or 0), str(exc.reason or ""), _api_message(exc)) from exc
        except OSError as exc:  # connection refused, DNS, TLS
            raise KubeError(0, "Unreachable", str(exc)) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("urllib3"):
                raise KubeError(0, "Unreachable", str(exc)) from exc
            raise

    async def scale(self, namespace: str, name: str, replicas: int) -> int:
        """Set ``spec.replicas``; return the Deployment's ``metadata.generation`` after it."""
        import kubernetes

        apps = kubernetes.client.AppsV1Api(self.client)
        self._count("patch", "deployments")
        body = {"spec": {"replicas": replicas}}
        result = await self._call(apps.patch_namespaced_deployment, name, namespace, body)
        return int(getattr(getattr(result, "metadata", None), "generation", None) or 0)

    async def read_deployment(self, namespace: str, name: str) -> DeploymentObservation | None:
        """A live read (None when it does not exist): confirms what the watch cache says is missing."""
        import kubernetes

        apps = kubernetes.client.AppsV1Api(self.client)
        try:
            body = await self._call(apps.read_namespaced_deployment, name, namespace, _preload_content=False)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        import json

        return observe_deployment(json.loads(body.data))

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        import kubernetes

        api = kubernetes.client.CustomObjectsApi(self.client)
        self._count("patch", f"{PLURAL}/status")
        result = await self._call(
            api.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": patch},
        )
        return dict(result) if isinstance(result, dict) else {}

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> bool:
        """Create a check Job; False when a Job of that name exists already (the same run)."""
        import kubernetes

        batch = kubernetes.client.BatchV1Api(self.client)
        self._count("create", "jobs")
        try:
            await self._call(batch.create_namespaced_job, namespace, dict(manifest))
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a check Job and its pods (background propagation); gone already is fine."""
        import kubernetes

        batch = kubernetes.client.BatchV1Api(self.client)
        self._count("delete", "jobs")
        try:
            await self._call(batch.delete_namespaced_job, name, namespace, propagation_policy="Background")
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """The decoded value of one key of a Secret (for Prometheus credentials)."""
        import base64

        import kubernetes

        core = kubernetes.client.CoreV1Api(self.client)
        secret = await self._call(core.read_namespaced_secret, name, namespace)
        data = (secret.data or {}).get(key)
        if data is None:
            raise KubeError(404, "NotFound", f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data).decode()


def _api_message(exc: Any) -> str:
    import json

    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason)
    except (ValueError, TypeError, AttributeError):
        return str(getattr(exc, "reason", exc))
