"""The HTTP side of the emulator: a kmock handler that serves the Kubernetes REST API.

:class:`EmulatorHandler` subclasses kmock's ``KubernetesEmulator`` and keeps what works there:
the request log and the DSL for injecting reactions (``emu.kmock["patch", ...] << 500`` takes
precedence over the emulated API), the ``objects`` history array and the ``resources`` array.

Replaced (kmock 0.8 cannot be fixed from the outside for these):

* request parsing — kmock's path parser crashes on ``/api/v1/namespaces`` and treats
  ``/api/v1/namespaces/x`` as a namespace, not as the Namespace object; a PUT has no action;
* the stock state machine (``_handle``/``_serve_*``) — no resourceVersion, 200 on create, merge-only
  patches, no status subresource, no selectors, JSON-patch ``test`` answered with 500; the
  API is served by :class:`ApiServer` on top of :class:`~.store.ObjectStore` instead;
* discovery — kmock renders the core group as ``/v1`` and subresources with the main verbs;
* watch streaming — written directly to aiohttp responses (bookmarks, timeouts, 410 Gone).

Added for real clients (kubectl 1.31): aggregated discovery, ``/openapi/v2`` and ``/openapi/v3``
(:mod:`.openapi`), Table responses (:mod:`.tables`), ``fieldValidation`` and ``Warning`` headers,
``fieldManager`` (or the User-Agent's product) for managed fields and server-side apply
(:mod:`.managed`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import aiohttp.web
import attrs
import yaml
from kmock import KubernetesEmulator, RawHandler, Request
from kmock import action as kmock_action
from kmock import resource as kmock_resource

from . import errors, openapi, openapi_proto, tables
from .errors import ApiError
from .patches import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH
from .resources import ALL_VERBS, SUBRESOURCE_VERBS, ResourceType
from .selectors import FieldSelector, Matcher, make_matcher, parse_field_selector, parse_label_selector
from .store import FieldValidation, ObjectStore, Waiter, WatchEvent

__all__ = ["ApiServer", "EmulatorHandler", "RequestLog", "RequestRecord", "Route", "parse_path"]

logger = logging.getLogger("jeffrey_emulator")

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SERVER_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-jeffrey-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


# ----------------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Route:
    """What a URL path addresses."""

    #: "root", "version", "health", "openapi", "api", "apis", "group", "resources", "object", "unknown"
    kind: str
    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch_prefix: bool = False


_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


def parse_path(path: str) -> Route:
    """Parse an API path the way kube-apiserver's RequestInfoFactory does."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        return Route("root")
    if parts == ["version"]:
        return Route("version")
    if parts[0] in ("healthz", "livez", "readyz"):
        return Route("health")
    if parts[0] == "openapi":
        # /openapi/v2, /openapi/v3, /openapi/v3/api/v1, /openapi/v3/apis/{group}/{version}
        return Route(
            "openapi", version=parts[1] if len(parts) > 1 else None, name="/".join(parts[2:]) or None
        )
    if parts[0] == "api":
        if len(parts) == 1:
            return Route("api")
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return Route("apis")
        if len(parts) == 2:
            return Route("group", group=parts[1])
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Route("unknown")
    if not rest:
        return Route("resources", group=group, version=version)
    watch_prefix = False
    if rest[0] == "watch":
        watch_prefix = True
        rest = rest[1:]
        if not rest:
            return Route("unknown")
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 3:
        return Route("object", group, version, "namespaces", None, rest[1], rest[2], watch_prefix)
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return Route("object", group, version, plural, namespace, name, subresource, watch_prefix)


# -------------------------------------------------------------------------------- request log


@dataclass
class RequestRecord:
    """One served request: what was asked, how it was classified, and the response status."""

    id: int
    method: str
    path: str
    query: dict[str, str]
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection, discovery, other
    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    content_type: str | None = None
    body: Any = None
    status: int = 0
    reason: str | None = None
    #: The ``Warning`` headers of the response (``unknown field "spec.x"`` under fieldValidation=Warn).
    warnings: list[str] = field(default_factory=list)
    intercepted: bool = False  # served by a kmock reaction injected by a test
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def resource(self) -> str | None:
        """``deployments.apps``, ``configmaps``, ``jeffreyintegrations.jeffreyos.io``."""
        if self.plural is None:
            return None
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        return f"{self.method} {self.path}{'?' + query if query else ''} -> {self.status}"


def _resource_matches(record: RequestRecord, resource: str | None) -> bool:
    if resource is None:
        return True
    if record.plural is None:
        return False
    names = {record.plural, record.resource or ""}
    if record.group is not None and record.version is not None:
        names.add(
            f"{record.group}/{record.version}/{record.plural}" if record.group else f"v1/{record.plural}"
        )
    return resource in names


class RequestLog(Sequence[RequestRecord]):
    """All requests served by the emulator, in order, with counting helpers for benchmarks."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    @overload
    def __getitem__(self, index: int) -> RequestRecord: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RequestRecord]: ...

    def __getitem__(self, index: int | slice) -> RequestRecord | Sequence[RequestRecord]:
        with self._lock:
            return self._records[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Iterator[RequestRecord]:
        with self._lock:
            return iter(list(self._records))

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def mark(self) -> int:
        """A position to count from later: ``emu.requests.count_writes(since=mark)``."""
        return len(self)

    def filter(
        self,
        *,
        verb: str | Sequence[str] | None = None,
        resource: str | None = None,
        subresource: str | bool | None = False,
        namespace: str | None = None,
        name: str | None = None,
        since: int = 0,
        successful: bool | None = None,
    ) -> list[RequestRecord]:
        """Records by verb(s), resource (``deployments``, ``deployments.apps``, ``apps/v1/deployments``),
        subresource (``False``: any; ``None``: the main resource only; ``"status"``), namespace, name."""
        verbs = {verb} if isinstance(verb, str) else set(verb) if verb is not None else None
        result = []
        for record in self[since:]:
            if verbs is not None and record.verb not in verbs:
                continue
            if not _resource_matches(record, resource):
                continue
            if subresource is not False and record.subresource != subresource:
                continue
            if namespace is not None and record.namespace != namespace:
                continue
            if name is not None and record.name != name:
                continue
            if successful is not None and record.ok != successful:
                continue
            result.append(record)
        return result

    def writes(
        self,
        *,
        since: int = 0,
        resource: str | None = None,
        verb: str | Sequence[str] | None = None,
        subresource: str | bool | None = False,
        namespace: str | None = None,
        name: str | None = None,
        successful: bool | None = True,
    ) -> list[RequestRecord]:
        """Successful (by default) API writes: create/update/patch/delete/deletecollection."""
        verbs = verb if verb is not None else sorted(WRITE_VERBS)
        return self.filter(
            verb=verbs,
            resource=resource,
            subresource=subresource,
            namespace=namespace,
            name=name,
            since=since,
            successful=successful,
        )

    def count_writes(self, **kwargs: Any) -> int:
        return len(self.writes(**kwargs))

    def write_counts(self, *, since: int = 0, successful: bool | None = True) -> Counter[tuple[str, str]]:
        """``{(verb, "resource[/subresource]"): count}`` of API writes, for benchmarks."""
        counter: Counter[tuple[str, str]] = Counter()
        for record in self.writes(since=since, successful=successful):
            target = record.resource or record.path
            if record.subresource:
                target += f"/{record.subresource}"
            counter[(record.verb, target)] += 1
        return counter

    def server_errors(self) -> list[RequestRecord]:
        """Requests answered with 5xx (should always be empty)."""
        return [record for record in self if record.status >= 500]

    def warned(self) -> list[RequestRecord]:
        """Requests answered with ``Warning`` headers (fields a real server would drop, too)."""
        return [record for record in self if record.warnings]


# ---------------------------------------------------------------------------------- the API


def _json(data: Any, status: int = 200, warnings: Sequence[str] = ()) -> aiohttp.web.Response:
    response = aiohttp.web.json_response(data, status=status)
    for warning in warnings:  # as the API server sends them: one header each, code 299
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


def _field_manager(raw: aiohttp.web.BaseRequest, query: Mapping[str, str]) -> str:
    """``fieldManager``, or the User-Agent's product (``kubectl``, ``kopf``), as the API server does."""
    manager = query.get("fieldManager")
    if manager:
        return manager
    agent = raw.headers.get("User-Agent", "").split("/")[0].strip()
    return agent[:128] or "unknown"


class _JsonObject(dict[str, Any]):
    """A JSON object as parsed, with the keys it had more than once (for ``fieldValidation``)."""

    duplicates: list[str]

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _JsonObject:
        obj = cls()
        obj.duplicates = []
        for key, value in pairs:
            if key in obj and key not in obj.duplicates:
                obj.duplicates.append(key)
            obj[key] = value
        return obj


def _plain(value: Any, path: str, duplicates: list[str]) -> Any:
    """Plain dicts again, collecting the duplicate fields by path (``spec.levels[0].level``)."""
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", ()):
            duplicates.append(f"{path}.{key}" if path else key)
        return {k: _plain(v, f"{path}.{k}" if path else k, duplicates) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, f"{path}[{i}]", duplicates) for i, v in enumerate(value)]
    return value


AGGREGATED_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _wants_aggregated(accept: str | None) -> bool:
    """Whether the client's first choice is the aggregated discovery document (kubectl's is)."""
    first = (accept or "").split(",")[0]
    params = dict(p.strip().split("=", 1) for p in first.split(";")[1:] if "=" in p)
    return params == {"g": "apidiscovery.k8s.io", "v": "v2", "as": "APIGroupDiscoveryList"}


_FIELD_VALIDATIONS: dict[str, FieldValidation] = {"Strict": "Strict", "Warn": "Warn", "Ignore": "Ignore"}


def _field_validation(query: Mapping[str, str]) -> FieldValidation:
    """The ``fieldValidation`` of a write; ``Warn`` when absent, as on the API server."""
    value = query.get("fieldValidation") or "Warn"
    if value not in _FIELD_VALIDATIONS:
        raise errors.bad_request(
            f'fieldValidation: Unsupported value: "{value}": supported values: "Ignore", "Warn", "Strict"'
        )
    return _FIELD_VALIDATIONS[value]


def _encode_continue(namespace: str | None, name: str, rv: int) -> str:
    raw = json.dumps({"ns": namespace or "", "name": name, "rv": rv}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(data["ns"]), str(data["name"])
    except (ValueError, KeyError, TypeError):
        raise errors.bad_request(f"invalid continue token {token!r}") from None


def _transform(event: WatchEvent, matcher: Matcher) -> str | None:
    """The event type a selector-filtered watch sees (objects moving in/out of the selection)."""
    if event.type == "ADDED":
        return "ADDED" if matcher(event.obj) else None
    if event.type == "DELETED":
        return "DELETED" if matcher(event.obj) or (event.old is not None and matcher(event.old)) else None
    now = matcher(event.obj)
    before = event.old is not None and matcher(event.old)
    if now and before:
        return "MODIFIED"
    if now:
        return "ADDED"
    if before:
        return "DELETED"
    return None


class ApiServer:
    """The emulated kube-apiserver REST API over an :class:`ObjectStore`."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        token: str | None = None,
        bookmark_interval: float = 10.0,
        max_watch_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self.requests = RequestLog()
        self.address = "127.0.0.1:0"
        self._closing = False
        self._watch_waiters: set[Waiter] = set()
        self._openapi_proto: tuple[dict[str, Any], bytes] | None = None
        self._openapi_cache: (
            tuple[tuple[int, ...], list[ResourceType], dict[str, dict[str, Any]], dict[str, Any]] | None
        ) = None

    def close(self) -> None:
        """End all watch streams (used at shutdown)."""
        self._closing = True
        for waiter in list(self._watch_waiters):
            waiter.wake()

    # ---------------------------------------------------------------------------- discovery

    def _group_versions(self) -> dict[str, dict[str, list[ResourceType]]]:
        groups: dict[str, dict[str, list[ResourceType]]] = {}
        for rt in self.store.resource_types:
            groups.setdefault(rt.group, {}).setdefault(rt.version, []).append(rt)
        return groups

    def _preferred(self, versions: Mapping[str, list[ResourceType]]) -> str:
        storage = [rt.effective_storage_version for rts in versions.values() for rt in rts]
        return max(set(storage), key=storage.count) if storage else sorted(versions)[0]

    def _api_group(self, group: str, versions: Mapping[str, list[ResourceType]]) -> dict[str, Any]:
        preferred = self._preferred(versions)
        ordered = [preferred, *sorted(v for v in versions if v != preferred)]
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered],
            "preferredVersion": {"groupVersion": f"{group}/{preferred}", "version": preferred},
        }

    def discovery(self, route: Route) -> dict[str, Any]:
        groups = self._group_versions()
        if route.kind == "api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}],
            }
        if route.kind == "apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._api_group(g, vs) for g, vs in sorted(groups.items()) if g],
            }
        if route.kind == "group":
            if not route.group or route.group not in groups:
                raise errors.endpoint_not_found()
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                **self._api_group(route.group, groups[route.group]),
            }
        group, version = route.group or "", route.version or ""
        rts = groups.get(group, {}).get(version)
        if not rts:
            raise errors.endpoint_not_found()
        resources: list[dict[str, Any]] = []
        for rt in sorted(rts, key=lambda r: r.plural):
            main: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(ALL_VERBS),
            }
            if rt.short_names:
                main["shortNames"] = list(rt.short_names)
            if rt.categories:
                main["categories"] = list(rt.categories)
            resources.append(main)
            if rt.status_subresource:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": list(SUBRESOURCE_VERBS),
                    }
                )
            if rt.scale is not None:
                resources.append(
                    {
                        "name": f"{rt.plural}/scale",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": list(SUBRESOURCE_VERBS),
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _openapi_documents(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI v3 documents by group-version path, cached until the served types change."""
        types = self.store.resource_types
        key = tuple(id(rt) for rt in types)
        if self._openapi_cache is None or self._openapi_cache[0] != key:
            by_path: dict[str, list[ResourceType]] = {}
            for rt in types:
                by_path.setdefault(openapi.v3_path(rt), []).append(rt)
            documents = {
                path: openapi.v3_document(rts, SERVER_VERSION["gitVersion"]) for path, rts in by_path.items()
            }
            # The types are kept with the key, so that their ids cannot be reused meanwhile.
            self._openapi_cache = (
                key,
                types,
                documents,
                openapi.v2_document(types, SERVER_VERSION["gitVersion"]),
            )
        return self._openapi_cache[2]

    def _openapi(self, raw: aiohttp.web.BaseRequest, route: Route) -> aiohttp.web.Response:
        accept = raw.headers.get("Accept", "")
        wanted = [t.split(";")[0].strip() for t in accept.split(",")]
        if (
            route.version == "v2"
            and route.name is None
            and any(t in openapi_proto.MEDIA_TYPES for t in wanted)
        ):
            self._openapi_documents()
            assert self._openapi_cache is not None
            if self._openapi_proto is None or self._openapi_proto[0] is not self._openapi_cache[3]:
                self._openapi_proto = (
                    self._openapi_cache[3],
                    openapi_proto.encode_document(self._openapi_cache[3]),
                )
            return aiohttp.web.Response(
                body=self._openapi_proto[1], content_type=openapi_proto.MEDIA_TYPES[1]
            )
        if accept and not any(
            t.split(";")[0].strip() in ("application/json", "*/*", "application/*") for t in accept.split(",")
        ):
            raise ApiError(
                406, "NotAcceptable", "only the following media types are accepted: application/json"
            )
        documents = self._openapi_documents()
        assert self._openapi_cache is not None
        if route.version == "v2" and route.name is None:
            return _json(self._openapi_cache[3])
        if route.version == "v3" and route.name is None:
            return _json(openapi.v3_discovery(documents))
        if route.version == "v3" and route.name in documents:
            document = documents[route.name]
            headers = {"Etag": f'"{openapi.document_hash(document)}"'}
            if raw.query.get("hash") == openapi.document_hash(document):
                headers["Cache-Control"] = "public, immutable"
            else:
                headers["Cache-Control"] = "no-cache, private"
            return aiohttp.web.json_response(document, headers=headers)
        raise errors.endpoint_not_found()

    def aggregated_discovery(self, *, core: bool) -> dict[str, Any]:
        """``apidiscovery.k8s.io/v2`` ``APIGroupDiscoveryList`` of ``/api`` (core) or ``/apis``: all
        groups, versions and resources in one document, as kubectl 1.31 asks for them first."""
        items = []
        for group, versions in sorted(self._group_versions().items()):
            if (group == "") != core:
                continue
            preferred = self._preferred(versions)
            ordered = [preferred, *sorted(v for v in versions if v != preferred)]
            entries = []
            for version in ordered:
                resources = []
                for rt in sorted(versions[version], key=lambda r: r.plural):
                    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
                    entry: dict[str, Any] = {
                        "resource": rt.plural,
                        "responseKind": kind,
                        "scope": "Namespaced" if rt.namespaced else "Cluster",
                        "singularResource": rt.singular,
                        "verbs": list(ALL_VERBS),
                    }
                    if rt.short_names:
                        entry["shortNames"] = list(rt.short_names)
                    if rt.categories:
                        entry["categories"] = list(rt.categories)
                    subresources = []
                    if rt.status_subresource:
                        subresources.append(
                            {"subresource": "status", "responseKind": kind, "verbs": list(SUBRESOURCE_VERBS)}
                        )
                    if rt.scale is not None:
                        scale = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
                        subresources.append(
                            {"subresource": "scale", "responseKind": scale, "verbs": list(SUBRESOURCE_VERBS)}
                        )
                    if subresources:
                        entry["subresources"] = subresources
                    resources.append(entry)
                entries.append({"version": version, "resources": resources, "freshness": "Current"})
            items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": entries})
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        }

    def root_paths(self) -> dict[str, Any]:
        paths = {
            "/api",
            "/api/v1",
            "/apis",
            "/version",
            "/healthz",
            "/livez",
            "/readyz",
            "/openapi/v2",
            "/openapi/v3",
        }
        for group, versions in self._group_versions().items():
            if group:
                paths.add(f"/apis/{group}")
                paths |= {f"/apis/{group}/{v}" for v in versions}
        return {"paths": sorted(paths)}

    # ------------------------------------------------------------------------------ requests

    @staticmethod
    def classify(method: str, route: Route, query: Mapping[str, str]) -> str:
        if route.kind in ("api", "apis", "group", "resources", "root", "version", "openapi"):
            return "discovery" if method == "GET" else "other"
        if route.kind != "object":
            return "other"
        if method == "GET":
            if route.watch_prefix or query.get("watch") in ("true", "1"):
                return "watch"
            return "get" if route.name else "list"
        if method == "POST":
            return "create" if route.name is None else "other"
        if method == "PUT":
            return "update" if route.name else "other"
        if method == "PATCH":
            return "patch" if route.name else "other"
        if method == "DELETE":
            return "delete" if route.name else "deletecollection"
        return "other"

    def _authorize(self, raw: aiohttp.web.BaseRequest) -> None:
        if self.token is None:
            return
        if raw.headers.get("Authorization", "") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

    async def handle(
        self, raw: aiohttp.web.BaseRequest, record: RequestRecord, route: Route, body: bytes
    ) -> aiohttp.web.StreamResponse:
        self._authorize(raw)
        if route.kind == "version":
            return _json(SERVER_VERSION)
        if route.kind == "health":
            return aiohttp.web.Response(text="ok")
        if route.kind == "root":
            return _json(self.root_paths())
        if route.kind == "openapi":
            if raw.method != "GET":
                raise errors.method_not_allowed()
            return self._openapi(raw, route)
        if route.kind in ("api", "apis", "group", "resources"):
            if raw.method != "GET":
                raise errors.method_not_allowed()
            if route.kind in ("api", "apis") and _wants_aggregated(raw.headers.get("Accept")):
                body = json.dumps(self.aggregated_discovery(core=route.kind == "api")).encode()
                return aiohttp.web.Response(body=body, headers={"Content-Type": AGGREGATED_DISCOVERY})
            return _json(self.discovery(route))
        if route.kind != "object" or route.group is None or route.version is None or route.plural is None:
            raise errors.endpoint_not_found()

        rt = self.store.lookup(route.group, route.version, route.plural)
        if rt is None:
            raise errors.endpoint_not_found()
        if route.namespace is not None and not rt.namespaced:
            raise errors.endpoint_not_found()
        if route.subresource is not None:
            if route.subresource not in rt.subresources or route.name is None:
                raise errors.endpoint_not_found()
            if record.verb not in ("get", "update", "patch"):
                raise errors.method_not_allowed()
        if (
            rt.namespaced
            and route.namespace is None
            and record.verb not in ("list", "watch", "deletecollection")
        ):
            raise errors.endpoint_not_found()
        query = dict(raw.query)
        dry_run = query.get("dryRun") == "All"
        verb = record.verb
        name = route.name or ""
        ns = route.namespace if rt.namespaced else None

        as_table = tables.wants_table(raw.headers.get("Accept"))
        if verb == "get":
            if route.subresource == "scale":
                return _json(self.store.get_scale(rt, ns, name))
            obj = self.store.get(rt, ns, name)
            if as_table:
                meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                return _json(
                    tables.table(rt, [obj], metadata=meta, include_object=query.get("includeObject"))
                )
            return _json(obj)
        if verb == "list":
            listed = self._list(rt, ns, query)
            if as_table:
                return _json(
                    tables.table(
                        rt,
                        listed["items"],
                        metadata=listed["metadata"],
                        include_object=query.get("includeObject"),
                    )
                )
            return _json(listed)
        if verb == "watch":
            return await self._watch(raw, record, rt, namespace=ns, name=route.name, query=query)
        field_validation = _field_validation(query)
        manager = _field_manager(raw, query)
        warnings = record.warnings
        if verb == "create":
            obj, duplicates = self._parse_body(body, raw.content_type)
            if not isinstance(obj, dict):
                raise errors.bad_request("the body of the request must be a JSON object")
            created = self.store.create(
                rt,
                obj,
                ns,
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
                manager=manager,
                duplicates=duplicates,
            )
            return _json(created, status=201, warnings=warnings)
        if verb == "update":
            obj, duplicates = self._parse_body(body, raw.content_type)
            if route.subresource == "scale":
                return _json(self.store.update_scale(rt, ns, name, obj, dry_run=dry_run, manager=manager))
            if not isinstance(obj, dict):
                raise errors.bad_request("the body of the request must be a JSON object")
            updated = self.store.update(
                rt,
                obj,
                ns,
                name,
                subresource=route.subresource,
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
                manager=manager,
                duplicates=duplicates,
            )
            return _json(updated, warnings=warnings)
        if verb == "patch":
            content_type = raw.content_type
            if content_type not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH):
                raise errors.unsupported_media_type(content_type)
            patch = self._parse_yaml(body) if content_type == APPLY_PATCH else self._parse_json(body)
            force = query.get("force") in ("true", "1")
            existed = self.store.try_get(rt, ns, name) is not None
            patched = self.store.patch(
                rt,
                ns,
                name,
                patch,
                patch_type=content_type,
                subresource=route.subresource,
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
                manager=manager,
                force=force,
            )
            return _json(patched, status=200 if existed else 201, warnings=warnings)
        if verb == "delete":
            options = self._parse_json(body) if body.strip() else {}
            options = options if isinstance(options, dict) else {}
            preconditions = options.get("preconditions") or {}
            policy = options.get("propagationPolicy") or query.get("propagationPolicy")
            dry_run = dry_run or "All" in (options.get("dryRun") or [])
            return _json(
                self.store.delete(
                    rt,
                    ns,
                    name,
                    uid=preconditions.get("uid"),
                    resource_version=preconditions.get("resourceVersion"),
                    propagation_policy=policy,
                    dry_run=dry_run,
                )
            )
        if verb == "deletecollection":
            deleted = self.store.delete_collection(
                rt, ns, label_selector=query.get("labelSelector"), field_selector=query.get("fieldSelector")
            )
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "group": rt.group,
                        "kind": rt.plural,
                        "causes": [{"reason": "Deleted", "field": o["metadata"]["name"]} for o in deleted],
                    },
                }
            )
        raise errors.method_not_allowed()

    @staticmethod
    def _parse_yaml(body: bytes) -> Any:
        try:
            return yaml.safe_load(body.decode("utf-8")) if body.strip() else None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise errors.bad_request(f"error decoding YAML: {e}") from None

    @staticmethod
    def _parse_json(body: bytes) -> Any:
        try:
            return json.loads(body.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError) as e:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None

    def _parse_body(self, body: bytes, content_type: str) -> tuple[Any, list[str]]:
        """The object of a create or update, and its duplicate fields (``spec.targetLevel``)."""
        if content_type and content_type not in (
            "application/json",
            "application/octet-stream",
            "text/plain",
        ):
            raise errors.unsupported_media_type(content_type)
        if not body.strip():
            raise errors.bad_request("the body of the request is empty")
        try:
            parsed = json.loads(body.decode("utf-8"), object_pairs_hook=_JsonObject.of)
        except (ValueError, UnicodeDecodeError) as e:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None
        duplicates: list[str] = []
        return _plain(parsed, "", duplicates), duplicates

    def _list(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> dict[str, Any]:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), rt.field_labels)
        items, rv = self.store.list_with_version(rt, namespace, label_selector=labels, field_selector=fields)
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        token = query.get("continue")
        if token:
            start = _decode_continue(token)
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        limit_text = query.get("limit")
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise errors.bad_request(f"invalid limit {limit_text!r}") from None
            if 0 < limit < len(items):
                last = items[limit - 1]["metadata"]
                metadata["continue"] = _encode_continue(last.get("namespace"), last["name"], rv)
                metadata["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        return {
            "kind": rt.effective_list_kind,
            "apiVersion": rt.api_version,
            "metadata": metadata,
            "items": items,
        }

    # -------------------------------------------------------------------------------- watch

    def _serve(self, obj: Mapping[str, Any], rt: ResourceType) -> dict[str, Any]:
        result = dict(obj)
        result["apiVersion"] = rt.api_version
        return result

    async def _watch(
        self,
        raw: aiohttp.web.BaseRequest,
        record: RequestRecord,
        rt: ResourceType,
        *,
        namespace: str | None,
        name: str | None,
        query: Mapping[str, str],
    ) -> aiohttp.web.StreamResponse:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), rt.field_labels)
        as_table = tables.wants_table(raw.headers.get("Accept"))
        if name is not None:
            fields = FieldSelector((*fields.terms, ("metadata.name", "=", name)))
        matcher = make_matcher(namespace, labels, fields)
        rv_text = query.get("resourceVersion") or ""
        send_initial = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout: float | None = None
        if query.get("timeoutSeconds"):
            try:
                timeout = float(query["timeoutSeconds"])
            except ValueError:
                raise errors.bad_request(f"invalid timeoutSeconds {query['timeoutSeconds']!r}") from None
        if self.max_watch_seconds is not None:
            timeout = min(timeout, self.max_watch_seconds) if timeout is not None else self.max_watch_seconds
        if rv_text and not rv_text.isdigit():
            raise errors.bad_request(f"invalid resource version: {rv_text!r}")

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        waiter = Waiter()
        self.store.subscribe(rt, waiter)
        self._watch_waiters.add(waiter)
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(raw)
            record.status = response.status

            headers_sent = False

            async def send(event_type: str, obj: Mapping[str, Any]) -> None:
                nonlocal headers_sent
                if as_table:  # each event carries a one-row Table; the columns come with the first only
                    rows = [] if event_type in ("BOOKMARK", "ERROR") else [obj]
                    meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
                    if event_type != "ERROR":
                        obj = tables.table(
                            rt,
                            rows,
                            metadata=meta,
                            include_object=query.get("includeObject"),
                            headers=not headers_sent,
                        )
                        headers_sent = True
                line = json.dumps({"type": event_type, "object": obj}, separators=(",", ":"))
                await response.write(line.encode("utf-8") + b"\n")

            def bookmark(rv: int, initial_end: bool = False) -> dict[str, Any]:
                meta: dict[str, Any] = {"resourceVersion": str(rv)}
                if initial_end:
                    meta["annotations"] = {"k8s.io/initial-events-end": "true"}
                return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

            if not rv_text or rv_text == "0" or send_initial:
                objs, position = self.store.snapshot(rt)
                for obj in objs:
                    if matcher(obj):
                        await send("ADDED", self._serve(obj, rt))
                if send_initial and bookmarks:
                    await send("BOOKMARK", bookmark(position, initial_end=True))
            else:
                position = int(rv_text)
            last_bookmark = loop.time()
            while not self._closing:
                try:
                    events, current = self.store.events_after(rt, position)
                except ApiError as e:
                    await send("ERROR", e.status())
                    break
                for event in events:
                    event_type = _transform(event, matcher)
                    if event_type is not None:
                        await send(event_type, self._serve(event.obj, rt))
                    position = event.rv
                position = max(position, current)
                now = loop.time()
                if bookmarks and now - last_bookmark >= self.bookmark_interval:
                    await send("BOOKMARK", bookmark(position))
                    last_bookmark = now
                if deadline is not None and now >= deadline:
                    break
                wait: float | None = None
                if deadline is not None:
                    wait = deadline - now
                if bookmarks:
                    until_bookmark = max(0.0, self.bookmark_interval - (now - last_bookmark))
                    wait = until_bookmark if wait is None else min(wait, until_bookmark)
                await waiter.wait(wait)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the client has gone away
        finally:
            self._watch_waiters.discard(waiter)
            self.store.unsubscribe(rt, waiter)
        return response


# ------------------------------------------------------------------------- the kmock handler


def _k8s_action(verb: str) -> Any:
    return {
        "list": kmock_action.LIST,
        "watch": kmock_action.WATCH,
        "get": kmock_action.FETCH,
        "create": kmock_action.CREATE,
        "update": kmock_action.UPDATE,
        "patch": kmock_action.UPDATE,
        "delete": kmock_action.DELETE,
    }.get(verb)


@attrs.define(kw_only=True)
class EmulatorHandler(KubernetesEmulator):
    """kmock's ``KubernetesEmulator`` serving the emulated API (see the module docstring).

    Reactions added with kmock's DSL take precedence over the API::

        emu.kmock["patch", kmock.resource("apps/v1/deployments")] << 500   # inject a failure
    """

    api: ApiServer

    def __attrs_post_init__(self) -> None:
        # Deliberately not calling the parents: they register kmock's own fallback reactions
        # (discovery & the stock object store), which the emulated API replaces entirely.
        return

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()
        route = parse_path(raw_request.path)
        query = dict(raw_request.query)
        verb = ApiServer.classify(raw_request.method, route, query)
        data: Any = None
        if body:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                data = json.loads(body.decode("utf-8"))
        record = RequestRecord(
            id=len(self.api.requests),
            method=raw_request.method,
            path=raw_request.path,
            query=query,
            verb=verb,
            group=route.group,
            version=route.version,
            plural=route.plural,
            namespace=route.namespace,
            name=route.name,
            subresource=route.subresource,
            content_type=raw_request.headers.get("Content-Type"),
            body=data,
        )
        self.api.requests.append(record)
        response: aiohttp.web.StreamResponse | None = None
        try:
            request = Request(
                id=len(self._requests),
                raw_request=raw_request,
                url=raw_request.url,
                method=raw_request.method,
                params=query,
                headers=dict(raw_request.headers),
                cookies=dict(raw_request.cookies),
                body=body,
                text=body.decode("utf-8", errors="replace"),
                data=data,
                action=_k8s_action(verb),
                resource=None
                if route.group is None
                else kmock_resource(route.group, route.version, route.plural),
                namespace=route.namespace,
                name=route.name,
                subresource=route.subresource,
            )
            self._requests.append(request)
            if self._payloads:
                try:
                    response = await RawHandler._handle(self, request)
                    record.intercepted = True
                except NotImplementedError:
                    response = None  # no reaction of a test matched: serve the emulated API
            if response is None:
                response = await self.api.handle(raw_request, record, route, body)
        except ApiError as e:
            record.reason = e.reason
            response = _json(e.status(), status=e.code)
        except asyncio.CancelledError:
            record.status = 499  # the client went away (nginx's convention)
            raise
        except Exception as e:
            logger.exception("The emulated API failed on %s %s", raw_request.method, raw_request.path)
            if self._errors:
                self._errors[-1].append(e)
            record.reason = "InternalError"
            response = _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"emulator failure: {e!r}",
                    "reason": "InternalError",
                    "details": {"causes": [{"message": traceback.format_exc()}]},
                    "code": 500,
                },
                status=500,
            )
        finally:
            record.finished = time.monotonic()
        record.status = response.status
        return response
