"""The Kubernetes side of ``jeffreyctl``: the user's kubeconfig, like kubectl, and a few calls.

Credentials and the default namespace come from the kubeconfig (``--kubeconfig``, else
``KUBECONFIG``, else ``~/.kube/config``; ``--context`` picks a context, else the current one),
or from the in-cluster service account when there is no kubeconfig and ``KUBERNETES_SERVICE_HOST``
is set. Every failure becomes a :class:`CtlError`: one readable line, never a traceback.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import json
import os
import pathlib
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from jeffrey_operator.core.checks import LABEL_INTEGRATION
from jeffrey_operator.core.models import GROUP, PLURAL, VERSION

__all__ = ["Cluster", "CtlError", "WatchExpired", "WatchStream", "connect", "kubeconfig_path"]

T = TypeVar("T")

IN_CLUSTER_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: (connect, read) seconds for one API call: a CLI should fail fast when no cluster answers.
REQUEST_TIMEOUT = (5.0, 30.0)
RESOURCE = f"{PLURAL}.{GROUP}"


class CtlError(Exception):
    """A failure to show to the user as one line on stderr (exit code 1)."""


def kubeconfig_path(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """``--kubeconfig``, else ``$KUBECONFIG`` (may list several files, separated by ``:``), else
    ``~/.kube/config``."""
    env = os.environ if env is None else env
    return explicit or env.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _kubeconfig_exists(path: str) -> bool:
    return any(os.path.exists(os.path.expanduser(p)) for p in path.split(os.pathsep) if p)


@dataclass
class Cluster:
    """A connected API client, the namespace of the current context, and where they came from."""

    api_client: Any
    namespace: str
    server: str
    context: str

    # ------------------------------------------------------------------------------ errors
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn()
        except ApiException as exc:
            raise self._api_error(what, exc) from None
        except Exception as exc:
            if _is_connection_error(exc):
                raise CtlError(
                    f"no cluster: cannot reach the Kubernetes API at {self.server} "
                    f"(context {self.context}): {_root_cause(exc)}"
                ) from None
            raise

    def _api_error(self, what: str, exc: Any) -> CtlError:
        status = int(getattr(exc, "status", 0) or 0)
        message, details = _status_body(exc)
        if status == 404:
            if details.get("name"):
                return CtlError(f"{what} not found")
            return CtlError(
                f"the JeffreyIntegration API ({RESOURCE}) is not served by {self.server}: "
                "is the CRD installed? (kubectl apply -f crds/)"
            )
        if status == 403:
            return CtlError(f"no permission: {message or 'forbidden'} (while reading/writing {what})")
        if status == 401:
            return CtlError(
                f"not logged in: the API at {self.server} rejected the credentials of "
                f"context {self.context} ({message or 'Unauthorized'})"
            )
        if status == 0:
            return CtlError(f"no cluster: cannot reach the Kubernetes API at {self.server}: {exc}")
        return CtlError(
            f"{what}: the API answered {status} {getattr(exc, 'reason', '')}: {message}".rstrip(": ")
        )

    # ------------------------------------------------------------------------------- calls
    def _custom(self) -> Any:
        import kubernetes

        return kubernetes.client.CustomObjectsApi(self.api_client)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        """One JeffreyIntegration as a dict."""
        api = self._custom()
        result = self._call(
            f'jeffreyintegration "{name}" in namespace "{namespace}"',
            lambda: api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            ),
        )
        return dict(result)

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        """The JeffreyIntegrations of a namespace, or of every namespace (``None``), by name."""
        return self.list_versioned(namespace)[0]

    def list_versioned(self, namespace: str | None) -> tuple[builtins.list[dict[str, Any]], str]:
        """:meth:`list` and the list's ``resourceVersion`` (where a watch starts from)."""
        api = self._custom()
        where = f'namespace "{namespace}"' if namespace else "any namespace"
        if namespace is None:
            result = self._call(
                f"jeffreyintegrations in {where}",
                lambda: api.list_cluster_custom_object(
                    GROUP, VERSION, PLURAL, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        else:
            result = self._call(
                f"jeffreyintegrations in {where}",
                lambda: api.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        items = [dict(i) for i in (result or {}).get("items") or []]
        version = str(((result or {}).get("metadata") or {}).get("resourceVersion") or "")
        ordered = sorted(
            items,
            key=lambda o: (
                (o.get("metadata") or {}).get("namespace", ""),
                (o.get("metadata") or {}).get("name", ""),
            ),
        )
        return ordered, version

    def watch(
        self, namespace: str | None, resource_version: str, *, timeout_seconds: int = 30
    ) -> WatchStream:
        """A watch of the JeffreyIntegrations of a namespace (or all: ``None``) from
        ``resource_version``, with bookmarks; the server ends it after ``timeout_seconds``."""
        api = self._custom()
        options: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout_seconds,
            "_preload_content": False,
            "_request_timeout": (REQUEST_TIMEOUT[0], timeout_seconds + 15.0),
        }
        if resource_version:
            options["resource_version"] = resource_version
        where = f'namespace "{namespace}"' if namespace else "any namespace"
        if namespace is None:
            response = self._call(
                f"a watch of jeffreyintegrations in {where}",
                lambda: api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **options),
            )
        else:
            response = self._call(
                f"a watch of jeffreyintegrations in {where}",
                lambda: api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **options),
            )
        return WatchStream(response)

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (with the user's RBAC; raises :class:`CtlError`)."""
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.api_client)
        secret = self._call(
            f'secret "{name}" in namespace "{namespace}"',
            lambda: core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT),
        )
        data = getattr(secret, "data", None) or {}
        if key not in data:
            raise CtlError(f'secret "{name}" in namespace "{namespace}" has no key {key!r}')
        return base64.b64decode(data[key]).decode("utf-8").strip()

    def deployments(self, namespace: str) -> dict[str, dict[str, Any]]:
        """The Deployments of a namespace, by name, as raw API dicts (one list call)."""
        import kubernetes

        apps = kubernetes.client.AppsV1Api(self.api_client)
        response = self._call(
            f'deployments in namespace "{namespace}"',
            lambda: apps.list_namespaced_deployment(
                namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            ),
        )
        data = json.loads(getattr(response, "data", None) or b"{}")
        return {str((d.get("metadata") or {}).get("name", "")): d for d in data.get("items") or []}

    def check_jobs(self, namespace: str, integration: str) -> builtins.list[dict[str, Any]]:
        """The check Jobs of one integration (label ``jeffreyos.io/integration``), as raw dicts."""
        import kubernetes

        batch = kubernetes.client.BatchV1Api(self.api_client)
        response = self._call(
            f'jobs of jeffreyintegration "{integration}" in namespace "{namespace}"',
            lambda: batch.list_namespaced_job(
                namespace,
                label_selector=f"{LABEL_INTEGRATION}={integration}",
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )
        data = json.loads(getattr(response, "data", None) or b"{}")
        return [dict(d) for d in data.get("items") or []]

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of a JeffreyIntegration's main resource."""
        api = self._custom()
        result = self._call(
            f'jeffreyintegration "{name}" in namespace "{namespace}"',
            lambda: api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                dict(patch),
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )
        return dict(result)


class WatchExpired(CtlError):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class WatchStream:
    """The events of one watch request: ``(type, object)`` pairs until the server ends it.

    :meth:`close` may be called from another thread to end a blocking read.
    """

    def __init__(self, response: Any) -> None:
        self._response = response

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        buffer = b""
        for chunk in self._response.stream(amt=65536, decode_content=True):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield self._event(line)
        if buffer.strip():
            yield self._event(buffer)

    @staticmethod
    def _event(line: bytes) -> tuple[str, dict[str, Any]]:
        doc = json.loads(line)
        kind = str(doc.get("type", ""))
        obj = dict(doc.get("object") or {})
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise WatchExpired(str(obj.get("message") or "resourceVersion too old"))
            raise CtlError(f"the watch failed: {code} {obj.get('message', '')}".rstrip())
        return kind, obj

    def close(self) -> None:
        shutdown = getattr(self._response, "shutdown", None)
        if callable(shutdown):  # urllib3 >= 2.3: interrupts a read blocked in another thread
            with contextlib.suppress(Exception):  # it refuses a stream that has already ended
                shutdown()
        self._response.close()
        self._response.release_conn()


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """Load credentials like kubectl and return a :class:`Cluster`; raise :class:`CtlError`."""
    import kubernetes
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig_path(kubeconfig)
    configuration = kubernetes.client.Configuration()
    if not _kubeconfig_exists(path):
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except ConfigException as exc:
                raise CtlError(f"no cluster: in-cluster configuration failed: {exc}") from None
            namespace = "default"
            if IN_CLUSTER_NAMESPACE.exists():
                namespace = IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
            return _cluster(configuration, namespace, "in-cluster")
        raise CtlError(
            f"no cluster: no kubeconfig at {path} (use --kubeconfig FILE, set KUBECONFIG, "
            "or run inside a cluster)"
        )
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
        chosen = current
        if context is not None:
            chosen = next((c for c in contexts or [] if c.get("name") == context), None)
            if chosen is None:
                names = ", ".join(str(c.get("name")) for c in contexts or []) or "none"
                raise CtlError(f"no context {context!r} in {path} (contexts: {names})")
        if not chosen:
            raise CtlError(f"no current context in {path}: use --context NAME")
        namespace = str((chosen.get("context") or {}).get("namespace") or "default")
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path,
            context=str(chosen.get("name")),
            client_configuration=configuration,
            persist_config=False,
        )
    except CtlError:
        raise
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise CtlError(f"no cluster: cannot use the kubeconfig {path}: {_first_line(exc)}") from None
    except Exception as exc:  # the YAML parser and auth plugins raise their own types
        raise CtlError(f"no cluster: cannot use the kubeconfig {path}: {_first_line(exc)}") from None
    return _cluster(configuration, namespace, str(chosen.get("name")))


def _cluster(configuration: Any, namespace: str, context: str) -> Cluster:
    import kubernetes

    # Fail fast: one attempt, no urllib3 retry loop when nothing listens.
    configuration.retries = 0
    return Cluster(
        api_client=kubernetes.client.ApiClient(configuration),
        namespace=namespace,
        server=str(configuration.host),
        context=context,
    )


def _status_body(exc: Any) -> tuple[str, dict[str, Any]]:
    """The ``message`` and ``details`` of a ``kind: Status`` error body."""
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
    except (TypeError, ValueError):
        return str(getattr(exc, "reason", "") or ""), {}
    if not isinstance(body, dict):
        return str(getattr(exc, "reason", "") or ""), {}
    details = body.get("details")
    return str(body.get("message") or getattr(exc, "reason", "") or ""), details if isinstance(
        details, dict
    ) else {}


def _is_connection_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError | socket.timeout | TimeoutError):
            return True
        if type(current).__module__.startswith("urllib3"):
            return True
        current = current.__cause__ or current.__context__
    return False


def _root_cause(exc: BaseException) -> str:
    """``connection refused`` rather than urllib3's three-line retry story."""
    text = str(exc)
    lowered = text.lower()
    if "connection refused" in lowered or "errno 111" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    if "certificate" in lowered or "ssl" in lowered:
        return "TLS error: " + _first_line(exc)[:160]
    return _first_line(exc)[:200]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
