"""The Kubernetes adapter: the only module that calls the API (besides kopf itself).

It turns Deployment bodies into :class:`~jeffrey_operator.core.ports.DeploymentObservation` and
check Job bodies into :class:`~jeffrey_operator.core.ports.JobObservation`, scales and labels
Deployments, creates and deletes check Jobs, patches the JeffreyIntegration status, reads and
writes Leases, and lists + watches Deployments and check Jobs by label selector
(:class:`LabelWatch`). It decides nothing. Bodies are read as raw JSON (``_preload_content=False``)
where it matters: the client's model classes cost more CPU than everything else the operator does
with an event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jeffrey_operator import __version__
from jeffrey_operator.adapters.resilience import Backoff
from jeffrey_operator.core.checks import LABEL_ATTEMPT, LABEL_CHECK, LABEL_LEVEL
from jeffrey_operator.core.models import GROUP, PLURAL, VERSION
from jeffrey_operator.core.ports import DeploymentObservation, JobObservation, NoTelemetry, Telemetry

#: The name the operator's writes carry in ``metadata.managedFields`` (``kubectl get -o yaml
#: --show-managed-fields``) and the User-Agent in the API server's audit log.
FIELD_MANAGER = "jeffrey-operator"
USER_AGENT = f"jeffrey-operator/{__version__}"
#: What :class:`LabelWatch` (:meth:`Kube.list_raw`) can list and watch.
WATCHABLE = ("deployments", "jobs")

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


def resource_version(body: Mapping[str, Any]) -> int:
    """``metadata.resourceVersion`` as a number (0 when absent or not a number)."""
    text = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else 0


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

    def __init__(self, api_client: Any | None = None, *, telemetry: Telemetry | None = None) -> None:
        self._client = api_client
        #: (verb, resource) -> writes made (``jeffrey_api_writes_total`` counts the same).
        self.writes: dict[tuple[str, str], int] = {}
        #: resource -> live reads of objects the watches do not hold (Deployments not labelled
        #: yet); the benchmark prints them per climb.
        self.reads: dict[str, int] = {}
        self.telemetry: Telemetry = telemetry or NoTelemetry()

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
        self._client.user_agent = USER_AGENT

    @staticmethod
    def warm_up() -> None:
        """Import the API classes every reconcile calls: the ``kubernetes`` package imports each
        on first use, which made the first reconcile after start-up pay for the imports
        (``CoreV1Api``, 10 MB of code, only for notification secrets, stays lazy)."""
        import kubernetes

        for api in ("AppsV1Api", "BatchV1Api", "CoordinationV1Api", "CustomObjectsApi"):
            getattr(kubernetes.client, api)

    @property
    def client(self) -> Any:
        if self._client is None:
            self.connect()
        return self._client

    def _count(self, verb: str, resource: str) -> None:
        self.writes[(verb, resource)] = self.writes.get((verb, resource), 0) + 1
        self.telemetry.record_api_write(verb, resource)

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

    async def patch_deployment(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of one Deployment; returns the Deployment as the API server stored it."""
        import kubernetes

        apps = kubernetes.client.AppsV1Api(self.client)
        self._count("patch", "deployments")
        response = await self._call(
            apps.patch_namespaced_deployment,
            name,
            namespace,
            dict(patch),
            field_manager=FIELD_MANAGER,
            _preload_content=False,
        )
        return dict(json.loads(response.data))

    async def scale(
        self, namespace: str, name: str, replicas: int, *, labels: Mapping[str, str | None] | None = None
    ) -> dict[str, Any]:
        """Set ``spec.replicas`` (and, in the same write, ``labels``: None removes one)."""
        patch: dict[str, Any] = {"spec": {"replicas": replicas}}
        if labels:
            patch["metadata"] = {"labels": dict(labels)}
        return await self.patch_deployment(namespace, name, patch)

    async def label_deployment(
        self, namespace: str, name: str, labels: Mapping[str, str | None]
    ) -> dict[str, Any]:
        """Set (or, with None, remove) labels of one Deployment."""
        return await self.patch_deployment(namespace, name, {"metadata": {"labels": dict(labels)}})

    def list_raw(self, resource: str, namespace: str | None, timeout: float, **query: Any) -> Any:
        """List (or, with ``watch=True``, watch) ``resource`` (one of :data:`WATCHABLE`) in
        ``namespace`` (None: all); the raw HTTP response (blocking: for :class:`LabelWatch`'s
        thread)."""
        import kubernetes

        options = {"_preload_content": False, "_request_timeout": timeout, **query}
        if resource == "deployments":
            apps = kubernetes.client.AppsV1Api(self.client)
            if namespace:
                return apps.list_namespaced_deployment(namespace, **options)
            return apps.list_deployment_for_all_namespaces(**options)
        if resource == "jobs":
            batch = kubernetes.client.BatchV1Api(self.client)
            if namespace:
                return batch.list_namespaced_job(namespace, **options)
            return batch.list_job_for_all_namespaces(**options)
        raise ValueError(f"cannot watch {resource!r}: one of {', '.join(WATCHABLE)}")

    # ----------------------------------------------------------------------------- leases
    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        import kubernetes

        api = kubernetes.client.CoordinationV1Api(self.client)
        try:
            response = await self._call(api.read_namespaced_lease, name, namespace, _preload_content=False)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(json.loads(response.data))

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        import kubernetes

        api = kubernetes.client.CoordinationV1Api(self.client)
        self._count("create", "leases")
        response = await self._call(
            api.create_namespaced_lease,
            namespace,
            dict(body),
            field_manager=FIELD_MANAGER,
            _preload_content=False,
        )
        return dict(json.loads(response.data))

    async def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT with the body's resourceVersion: a 409 when someone else wrote it since it was read."""
        import kubernetes

        api = kubernetes.client.CoordinationV1Api(self.client)
        self._count("update", "leases")
        response = await self._call(
            api.replace_namespaced_lease,
            name,
            namespace,
            dict(body),
            field_manager=FIELD_MANAGER,
            _preload_content=False,
        )
        return dict(json.loads(response.data))

    async def read_deployment(self, namespace: str, name: str) -> DeploymentObservation | None:
        """A live read (None when it does not exist)."""
        body = await self.read_deployment_body(namespace, name)
        return None if body is None else observe_deployment(body)

    async def read_deployment_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A live read of a Deployment not in the watch's cache (None when it does not exist)."""
        import kubernetes

        apps = kubernetes.client.AppsV1Api(self.client)
        self.reads["deployments"] = self.reads.get("deployments", 0) + 1
        try:
            body = await self._call(apps.read_namespaced_deployment, name, namespace, _preload_content=False)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(json.loads(body.data))

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
            field_manager=FIELD_MANAGER,
        )
        return dict(result) if isinstance(result, dict) else {}

    async def read_integration(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A live read of a JeffreyIntegration (None when it does not exist)."""
        import kubernetes

        api = kubernetes.client.CustomObjectsApi(self.client)
        try:
            result = await self._call(
                api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(result)

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> bool:
        """Create a check Job; False when a Job of that name exists already (the same run)."""
        import kubernetes

        batch = kubernetes.client.BatchV1Api(self.client)
        self._count("create", "jobs")
        try:
            await self._call(
                batch.create_namespaced_job, namespace, dict(manifest), field_manager=FIELD_MANAGER
            )
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
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason)
    except (ValueError, TypeError, AttributeError):
        return str(getattr(exc, "reason", exc))


# ------------------------------------------------------------------------------- watching


@dataclass(frozen=True)
class WatchEvent:
    """One change of a watched object: ``ADDED``, ``MODIFIED``, ``DELETED``; or ``LISTED`` with
    the whole list as ``body`` (objects not in it are gone)."""

    type: str
    body: Mapping[str, Any]


class LabelWatch:
    """List, then watch, objects of ``resource`` (``deployments`` or ``jobs``) matching the label
    ``selector`` (server-side: the API server sends nothing else) in one namespace (None: all),
    in a thread of its own (a watch blocks on its socket; it must not hold a worker of the event
    loop's executor). Events go to ``deliver`` on ``loop``; ``contact`` is called after every
    successful list or watch request (the liveness probe reads it).

    On a broken stream it watches again from the last resourceVersion; on 410 Gone it lists
    again (``deliver`` then gets the fresh list as one ``LISTED`` event).
    """

    def __init__(
        self,
        kube: Kube,
        resource: str,
        namespace: str | None,
        selector: str,
        *,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[WatchEvent], None],
        contact: Callable[[], None] = lambda: None,
        timeout: int = 30,
    ) -> None:
        if resource not in WATCHABLE:
            raise ValueError(f"cannot watch {resource!r}: one of {', '.join(WATCHABLE)}")
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.selector = selector
        self._loop = loop
        self._deliver = deliver
        self._contact = contact
        self._timeout = timeout
        self._stopped = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(
            target=self._main, name=f"watch-{resource}-{namespace or 'all'}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:
            try:
                # close() from this thread waits for the reading thread (until the server next
                # sends a line: seconds); shutdown() (urllib3 >= 2.3) wakes the reader at once.
                shutdown = getattr(response, "shutdown", None)
                if shutdown is not None:
                    shutdown()
                else:
                    threading.Thread(target=response.close, daemon=True).start()
            except Exception as exc:  # closing a socket another thread reads: nothing to save
                log.debug("closing the watch stream: %s", exc)

    def _post(self, event: WatchEvent) -> None:
        if not self._stopped.is_set():
            try:
                self._loop.call_soon_threadsafe(self._deliver, event)
            except RuntimeError:  # the loop is closed: the operator is stopping
                self._stopped.set()

    def _touch(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._contact)
        except RuntimeError:
            self._stopped.set()

    def _main(self) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        backoff = Backoff(base=0.5, cap=30.0)
        rv = ""
        while not self._stopped.is_set():
            try:
                if not rv:
                    response = self.kube.list_raw(
                        self.resource, self.namespace, 30, label_selector=self.selector
                    )
                    listed = json.loads(response.data)
                    self._touch()
                    self._post(WatchEvent("LISTED", listed))
                    rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                self._response = self.kube.list_raw(
                    self.resource,
                    self.namespace,
                    self._timeout + 10,
                    label_selector=self.selector,
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self._timeout,
                )
                self._touch()
                backoff.reset()
                for line in iter_resp_lines(self._response):
                    if self._stopped.is_set():
                        break
                    if not line:
                        continue
                    event = json.loads(line)
                    kind = event.get("type")
                    if kind == "BOOKMARK":
                        self._touch()
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            rv = ""  # too old: list again
                            break
                        raise KubeError(
                            int(obj.get("code") or 0), str(obj.get("reason")), str(obj.get("message"))
                        )
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._post(WatchEvent(str(kind), obj))
                self._response = None
                self._touch()
            except Exception as exc:
                self._response = None
                if self._stopped.is_set():
                    break
                status = getattr(exc, "status", None)
                if status == 410:
                    rv = ""
                delay = backoff.next()
                log.warning(
                    "watching %s (%s) failed: %s; again in %.1fs",
                    self.resource,
                    self.namespace or "all namespaces",
                    exc,
                    delay,
                )
                self._stopped.wait(delay)
