"""The state of the emulated cluster: objects, resource versions, the watch history.

:class:`ObjectStore` implements the API semantics independently of HTTP, so that tests can seed,
read and modify objects directly (``emu.store.create(...)``) with the very same behaviour as the
HTTP API (resourceVersion bumps, watch events, finalizers, status separation, validation).
It is thread-safe: the HTTP server uses it from its event loop, tests may use it from any thread.

Every object version is also mirrored into kmock's ``ObjectsArray`` (``emu.objects``) so that
kmock's pattern-matching assertions and version histories work::

    assert emu.objects["apps/v1/deployments", "ns", "web"] >= {"spec": {"replicas": 3}}

That mirror is for reading only: changing it does not change what the API serves.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import copy
import datetime
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from kmock import ObjectsArray
from kmock import resource as kmock_resource

from . import cel, errors, managed, openapi, patches, schema
from .errors import ApiError, FieldError
from .resources import (
    BUILTIN_RESOURCES,
    CRDS,
    DEPLOYMENTS,
    JOBS,
    KOPF_PEERINGS_CRDS,
    NAMESPACES,
    SECRETS,
    ResourceType,
    ScaleSpec,
    resources_from_crd,
)
from .selectors import (
    FieldSelector,
    LabelSelector,
    label_selector_from_dict,
    make_matcher,
    parse_field_selector,
    parse_label_selector,
)

__all__ = ["ObjectStore", "ResourceRef", "WatchEvent", "now_rfc3339"]

ResourceRef = ResourceType | str
#: ``fieldValidation`` of a write: what to do with fields the schema does not declare.
FieldValidation = Literal["Strict", "Warn", "Ignore"]
GroupResource = tuple[str, str]
Body = dict[str, Any]

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_ANNOTATIONS_BYTES = 256 * 1024  # apimachinery's TotalAnnotationSizeLimitB

#: metadata fields that only the server sets (copied from the stored object on every update).
_SERVER_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
    "name",
    "namespace",
    "selfLink",
)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class WatchEvent(NamedTuple):
    """One change in the history of a resource. ``obj`` is never mutated after creation."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: Body
    old: Body | None


@dataclass
class _EventLog:
    events: list[WatchEvent] = field(default_factory=list)
    #: Events with ``rv > compacted_rv`` are all in ``events``; older ones may be lost.
    compacted_rv: int = 0


class Waiter:
    """A wake-up signal for an asyncio task, safe to trigger from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def wake(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.event.set()
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits anymore
                self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self, max_wait: float | None) -> bool:
        # NB: asyncio.timeout(), not wait_for(): no extra task that others could cancel (kopf does).
        try:
            async with asyncio.timeout(max_wait):
                await self.event.wait()
        except TimeoutError:
            return False
        finally:
            self.event.clear()
        return True


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _get_path(obj: Mapping[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    node = obj
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


class ObjectStore:
    """All objects of the emulated cluster, with the API semantics, usable without HTTP."""

    def __init__(
        self,
        *,
        objects: ObjectsArray | None = None,
        history_size: int = 1000,
        max_object_versions: int = 50,
        auto_namespaces: bool = False,
        namespaces: Iterable[str] = ("default",),
        prune_unknown_fields: bool = True,
        garbage_collection: bool = True,
        managed_fields: bool = True,
    ) -> None:
        self._lock = threading.RLock()
        #: Track ``metadata.managedFields`` for writes that name a field manager (the HTTP API).
        self.managed_fields = managed_fields
        self._rv = 0
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._live: dict[GroupResource, dict[tuple[str | None, str], Body]] = {}
        self._logs: dict[GroupResource, _EventLog] = {}
        self._waiters: dict[GroupResource, set[Waiter]] = {}
        self._uids: dict[str, tuple[GroupResource, str | None, str]] = {}
        self.objects: ObjectsArray = objects if objects is not None else ObjectsArray()
        self.history_size = history_size
        self.max_object_versions = max_object_versions
        self.auto_namespaces = auto_namespaces
        self.prune_unknown_fields = prune_unknown_fields
        self.garbage_collection = garbage_collection
        for rt in BUILTIN_RESOURCES:
            self._register(rt)
        for crd in KOPF_PEERINGS_CRDS:
            self.register_crd(crd)
        for ns in namespaces:
            self.create(NAMESPACES, {"metadata": {"name": ns}})

    # ------------------------------------------------------------------------------ resources

    @property
    def resource_version(self) -> int:
        """The latest global resourceVersion (as an integer)."""
        with self._lock:
            return self._rv

    @property
    def resource_types(self) -> builtins.list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def _register(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt
        self._live.setdefault(rt.storage_key, {})
        self._logs.setdefault(rt.storage_key, _EventLog())

    def register_crd(self, crd: Mapping[str, Any]) -> Body:
        """Serve the resource of a CRD (a dict as in the YAML); creates or updates the CRD object."""
        resources_from_crd(crd)  # fail early on an unusable CRD
        name = _meta(crd).get("name") or ""
        with self._lock:
            current = self._live[CRDS.storage_key].get((None, name))
            if current is None:
                return self.create(CRDS, copy.deepcopy(dict(crd)))
            body = copy.deepcopy(dict(crd))
            body.setdefault("metadata", {})["resourceVersion"] = _meta(current).get("resourceVersion")
            return self.update(CRDS, body)

    def resolve(self, ref: ResourceRef) -> ResourceType:
        """A resource by a reference: a ResourceType, ``"deployments"``, ``"apps/v1/deployments"``,
        ``"deployments.apps"``, a kind (``"Deployment"``) or a short name (``"ji"``)."""
        if isinstance(ref, ResourceType):
            with self._lock:
                known = self._types.get((ref.group, ref.version, ref.plural))
            if known is None:
                raise errors.endpoint_not_found()
            return known
        key = ref.strip().lower()
        with self._lock:
            candidates = [rt for rt in self._types.values() if key in rt.names()]
        if not candidates:
            raise KeyError(f"Unknown resource: {ref!r}")
        # Prefer the storage version, then the core group over others for ambiguous names ("events").
        candidates.sort(key=lambda rt: (rt.version != rt.effective_storage_version, rt.group != ""))
        return candidates[0]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def resource_for(self, api_version: str, kind: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for rt in self._types.values():
                if rt.group == group and rt.version == version and rt.kind == kind:
                    return rt
        raise KeyError(f"Unknown kind: {api_version} {kind}")

    # -------------------------------------------------------------------------------- reading

    def _convert(self, obj: Body, rt: ResourceType) -> Body:
        """The object as served in the requested version (a deep copy)."""
        result = copy.deepcopy(obj)
        result["apiVersion"] = rt.api_version
        result["kind"] = rt.kind
        return result

    def _current(self, rt: ResourceType, namespace: str | None, name: str) -> Body | None:
        return self._live[rt.storage_key].get((namespace if rt.namespaced else None, name))

    def get(self, ref: ResourceRef, namespace: str | None, name: str) -> Body:
        """The object (a copy); 404 :class:`ApiError` if absent."""
        rt = self.resolve(ref)
        with self._lock:
            current = self._current(rt, namespace, name)
            if current is None:
                raise errors.not_found(rt, name)
            return self._convert(current, rt)

    def try_get(self, ref: ResourceRef, namespace: str | None, name: str) -> Body | None:
        try:
            return self.get(ref, namespace, name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def list(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | LabelSelector | None = None,
        field_selector: str | FieldSelector | None = None,
    ) -> builtins.list[Body]:
        """Objects (copies) sorted by namespace & name; ``namespace=None`` lists all namespaces."""
        items, _ = self.list_with_version(
            ref, namespace, label_selector=label_selector, field_selector=field_selector
        )
        return items

    def list_with_version(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | LabelSelector | None = None,
        field_selector: str | FieldSelector | None = None,
    ) -> tuple[builtins.list[Body], int]:
        rt = self.resolve(ref)
        labels = (
            label_selector
            if isinstance(label_selector, LabelSelector)
            else parse_label_selector(label_selector)
        )
        fields = (
            field_selector
            if isinstance(field_selector, FieldSelector)
            else parse_field_selector(field_selector, rt.field_labels)
        )
        matcher = make_matcher(namespace if rt.namespaced else None, labels, fields)
        with self._lock:
            objs = self._live[rt.storage_key]
            keys = sorted(objs, key=lambda k: (k[0] or "", k[1]))
            items = [self._convert(objs[k], rt) for k in keys if matcher(objs[k])]
            return items, self._rv

    def __iter__(self) -> Iterator[Body]:
        """All live objects of all resources (copies)."""
        with self._lock:
            everything = [copy.deepcopy(obj) for objs in self._live.values() for obj in objs.values()]
        return iter(everything)

    # -------------------------------------------------------------------------------- watching

    def subscribe(self, ref: ResourceRef, waiter: Waiter) -> None:
        rt = self.resolve(ref)
        with self._lock:
            self._waiters.setdefault(rt.storage_key, set()).add(waiter)

    def unsubscribe(self, ref: ResourceRef, waiter: Waiter) -> None:
        rt = self.resolve(ref)
        with self._lock:
            self._waiters.get(rt.storage_key, set()).discard(waiter)

    def snapshot(self, ref: ResourceRef) -> tuple[builtins.list[Body], int]:
        """All live objects of a resource (not copies! do not modify) and the current rv."""
        rt = self.resolve(ref)
        with self._lock:
            objs = self._live[rt.storage_key]
            keys = sorted(objs, key=lambda k: (k[0] or "", k[1]))
            return [objs[k] for k in keys], self._rv

    def events_after(self, ref: ResourceRef, rv: int) -> tuple[builtins.list[WatchEvent], int]:
        """Events of a resource newer than ``rv`` and the current global rv; 410 if compacted."""
        rt = self.resolve(ref)
        with self._lock:
            log = self._logs[rt.storage_key]
            if rv < log.compacted_rv:
                raise errors.gone(f"too old resource version: {rv} ({log.compacted_rv})")
            events = log.events
            if events and events[-1].rv > rv:
                lo, hi = 0, len(events)
                while lo < hi:  # the first event with rv > the requested one
                    mid = (lo + hi) // 2
                    if events[mid].rv <= rv:
                        lo = mid + 1
                    else:
                        hi = mid
                return events[lo:], self._rv
            return [], self._rv

    def compact(self, ref: ResourceRef | None = None) -> None:
        """Forget the watch history (as etcd compaction does): watches resuming from an older
        resourceVersion — including the streams open right now — get a 410 Gone ERROR event.

        The global resourceVersion advances by one (as if another key had been written), so
        that a client re-listing afterwards gets a version that is valid again.
        """
        with self._lock:
            keys = [self.resolve(ref).storage_key] if ref is not None else list(self._logs)
            self._rv += 1
            for key in keys:
                log = self._logs[key]
                log.events.clear()
                log.compacted_rv = self._rv
                for waiter in list(self._waiters.get(key, ())):
                    waiter.wake()

    def _emit(self, rt: ResourceType, event_type: str, obj: Body, old: Body | None) -> None:
        log = self._logs[rt.storage_key]
        log.events.append(WatchEvent(self._rv, event_type, obj, old))
        if len(log.events) > self.history_size:
            drop = len(log.events) - self.history_size
            log.compacted_rv = log.events[drop - 1].rv
            del log.events[:drop]
        for waiter in list(self._waiters.get(rt.storage_key, ())):
            waiter.wake()

    def _mirror(self, rt: ResourceType, namespace: str | None, name: str, obj: Body | None) -> None:
        key = (kmock_resource(rt.group, rt.effective_storage_version, rt.plural), namespace, name)
        if obj is None:
            if key in self.objects:
                self.objects[key].delete()
            return
        if key not in self.objects:
            self.objects[key] = obj
        else:
            history = self.objects[key].history
            history.append(obj)
            if len(history) > self.max_object_versions:
                del history[: len(history) - self.max_object_versions]

    # -------------------------------------------------------------------------------- writing

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _check_name(self, rt: ResourceType, name: str) -> builtins.list[FieldError]:
        if rt is NAMESPACES or (rt.group == NAMESPACES.group and rt.plural == "namespaces"):
            if len(name) > 63 or not _DNS1123_LABEL.match(name):
                return [
                    FieldError(
                        "metadata.name",
                        "Invalid",
                        name,
                        "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                        "characters or '-', and must start and end with an alphanumeric character "
                        "(e.g. 'my-name',  or '123-abc', regex used for validation is "
                        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                    )
                ]
        elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
            return [
                FieldError(
                    "metadata.name",
                    "Invalid",
                    name,
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.', and must start and end with an alphanumeric character "
                    "(e.g. 'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                )
            ]
        return []

    def _check_metadata(self, meta: Mapping[str, Any]) -> builtins.list[FieldError]:
        problems: builtins.list[FieldError] = []
        for section in ("labels", "annotations"):
            values = meta.get(section)
            if values is None:
                continue
            if not isinstance(values, dict):
                raise errors.bad_request(f"metadata.{section}: expected a map of strings")
            for key, value in values.items():
                if not isinstance(value, str):
                    raise errors.bad_request(
                        f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                        f"ObjectMeta.metadata.{section} of type string"
                    )
                name = key.split("/")[-1]
                if not name or len(name) > 63 or not _LABEL_KEY_NAME.match(name):
                    problems.append(
                        FieldError(
                            f"metadata.{section}",
                            "Invalid",
                            key,
                            "name part must consist of alphanumeric characters, '-', '_' "
                            "or '.', and must start and end with an alphanumeric character",
                        )
                    )
                if section == "labels" and (len(value) > 63 or not _LABEL_VALUE.match(value)):
                    problems.append(
                        FieldError(
                            "metadata.labels",
                            "Invalid",
                            value,
                            "a valid label must be an empty string or consist of "
                            "alphanumeric characters, '-', '_' or '.', and must start "
                            "and end with an alphanumeric character",
                        )
                    )
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            size = sum(len(k) + len(v) for k, v in annotations.items() if isinstance(v, str))
            if size > _MAX_ANNOTATIONS_BYTES:  # why big CRDs need server-side apply (no last-applied)
                problems.append(
                    FieldError(
                        "metadata.annotations",
                        "TooLong",
                        None,
                        f"must have at most {_MAX_ANNOTATIONS_BYTES} bytes",
                    )
                )
        finalizers = meta.get("finalizers")
        if finalizers is not None and (
            not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
        ):
            raise errors.bad_request("metadata.finalizers: expected a list of strings")
        return problems

    def ensure_namespace(self, namespace: str) -> Body:
        """The Namespace object, created first if absent (``kubectl create namespace``, idempotent)."""
        with self._lock:
            current = self._live[NAMESPACES.storage_key].get((None, namespace))
            if current is None:
                return self.create(NAMESPACES, {"metadata": {"name": namespace}})
            return self._convert(current, NAMESPACES)

    def _ensure_namespace(self, namespace: str) -> None:
        """Writes into a namespace need the Namespace: 404 ``namespaces "x" not found`` as on a
        real server (or, with ``auto_namespaces=True``, create it, as older emulators did)."""
        current = self._live[NAMESPACES.storage_key].get((None, namespace))
        if current is None:
            if not self.auto_namespaces:
                raise errors.not_found(NAMESPACES, namespace)
            self.create(NAMESPACES, {"metadata": {"name": namespace}})
        elif _meta(current).get("deletionTimestamp"):
            raise errors.forbidden(
                f"unable to create new content in namespace {namespace} because it is being terminated",
                NAMESPACES,
                namespace,
            )

    def _builtin_prepare(self, rt: ResourceType, obj: Body, old: Body | None) -> builtins.list[FieldError]:
        """Defaulting & validation of built-in kinds (only what matters for us)."""
        problems: builtins.list[FieldError] = []
        if rt.storage_key == SECRETS.storage_key:
            obj.setdefault("type", "Opaque")
            string_data = obj.pop("stringData", None)
            if isinstance(string_data, dict):
                data = obj.setdefault("data", {})
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
        elif rt.storage_key == NAMESPACES.storage_key:
            status = obj.setdefault("status", {})
            if isinstance(status, dict) and "phase" not in status:
                status["phase"] = "Terminating" if _meta(obj).get("deletionTimestamp") else "Active"
            # As the API server: the name label (selectable by namespaceSelector) and the finalizer.
            meta = obj.setdefault("metadata", {})
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
            if isinstance(obj.setdefault("spec", {}), dict):
                obj["spec"].setdefault("finalizers", ["kubernetes"])
        elif rt.storage_key == DEPLOYMENTS.storage_key:
            problems.extend(self._prepare_deployment(obj, old))
        elif rt.storage_key == CRDS.storage_key:
            problems.extend(self._prepare_crd(obj))
        elif rt.storage_key == JOBS.storage_key:
            from .jobs import prepare_job  # jobs.py imports this module

            problems.extend(prepare_job(obj, old))
        return problems

    def _prepare_deployment(self, obj: Body, old: Body | None) -> builtins.list[FieldError]:
        problems: builtins.list[FieldError] = []
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [FieldError("spec", "Required")]
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        template = spec.get("template")
        if isinstance(template, dict) and isinstance(template.get("spec"), dict):
            _default_pod_spec(template["spec"])
        strategy = spec.get("strategy")
        if not isinstance(strategy, dict):
            strategy = spec["strategy"] = {}
        strategy.setdefault("type", "RollingUpdate")  # also inside `strategy: {}`, as the API server
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.get("rollingUpdate")
            if not isinstance(rolling, dict):
                rolling = strategy["rollingUpdate"] = {}
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        replicas = spec.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise errors.bad_request(
                "json: cannot unmarshal into Go struct field DeploymentSpec.spec.replicas of type int32"
            )
        if replicas < 0:
            problems.append(
                FieldError("spec.replicas", "Invalid", replicas, "must be greater than or equal to 0")
            )
        selector = spec.get("selector")
        template = spec.get("template")
        if not isinstance(selector, dict) or not (
            selector.get("matchLabels") or selector.get("matchExpressions")
        ):
            problems.append(FieldError("spec.selector", "Required"))
        elif not isinstance(template, dict):
            problems.append(FieldError("spec.template", "Required"))
        else:
            labels = (template.get("metadata") or {}).get("labels") or {}
            try:
                matches = label_selector_from_dict(selector).matches(labels)
            except ApiError:
                matches = False
            if not matches:
                problems.append(
                    FieldError(
                        "spec.template.metadata.labels",
                        "Invalid",
                        labels,
                        "`selector` does not match template `labels`",
                    )
                )
        if isinstance(template, dict):
            containers = (template.get("spec") or {}).get("containers")
            if not containers:
                problems.append(FieldError("spec.template.spec.containers", "Required"))
        if (
            isinstance(old, dict)
            and isinstance(old.get("spec"), dict)
            and old["spec"].get("selector") != spec.get("selector")
        ):
            problems.append(
                FieldError("spec.selector", "Invalid", spec.get("selector"), "field is immutable")
            )
        return problems

    def _prepare_crd(self, obj: Body) -> builtins.list[FieldError]:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        expected = f"{names.get('plural')}.{spec.get('group')}"
        name = _meta(obj).get("name")
        if name != expected:
            return [FieldError("metadata.name", "Invalid", name, 'must be spec.names.plural+"."+spec.group')]
        try:
            resources = resources_from_crd(obj)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return [FieldError("spec", "Invalid", None, str(e))]
        problems: builtins.list[FieldError] = []
        for index, version in enumerate(spec.get("versions") or []):
            root = ((version or {}).get("schema") or {}).get("openAPIV3Schema")
            problems.extend(_cel_compile_errors(root, f"spec.versions[{index}].schema.openAPIV3Schema"))
        if problems:
            return problems
        stamp = now_rfc3339()
        accepted = dict(names)
        accepted.setdefault("singular", names.get("kind", "").lower())
        accepted.setdefault("listKind", f"{names.get('kind')}List")
        previous: dict[str, Any] = obj["status"] if isinstance(obj.get("status"), dict) else {}
        conditions = previous.get("conditions") or [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": stamp,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": stamp,
            },
        ]
        stored = list(previous.get("storedVersions") or [])
        if resources[0].effective_storage_version not in stored:
            stored.append(resources[0].effective_storage_version)
        obj["status"] = {"acceptedNames": accepted, "conditions": conditions, "storedVersions": stored}
        return []

    def _apply_schema(
        self, rt: ResourceType, obj: Body, old: Body | None = None
    ) -> builtins.list[FieldError]:
        if rt.schema is None:
            return []
        pruned = schema.prune(obj, rt.schema) if self.prune_unknown_fields else copy.deepcopy(obj)
        schema.apply_defaults(pruned, rt.schema)
        obj.clear()
        obj.update(pruned)
        if old is None:
            return schema.validate(obj, rt.schema)
        # Validation ratcheting (on by default since 1.30): an update may keep a value that has
        # become invalid (a stricter CRD); only what it changes must be valid.
        problems = schema.validate(obj, rt.schema, old=old)
        return [p for p in problems if not _unchanged(p.field, obj, old)]

    def _generation_part(self, rt: ResourceType, obj: Mapping[str, Any]) -> Any:
        if rt.generation == "spec":
            return obj.get("spec")
        skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rt.status_subresource else set())
        return {k: v for k, v in obj.items() if k not in skip}

    def shape(self, rt: ResourceType) -> managed.Shape:
        """How field management sees the objects of ``rt`` (its schema, ObjectMeta for metadata)."""
        definitions = openapi.builtin_definitions()
        if rt.custom:
            root = dict(rt.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
            properties = dict(root.get("properties") or {})
            properties["metadata"] = {"$ref": f"#/definitions/{openapi.OBJECT_META}"}
            root["properties"] = properties
            return managed.Shape(root, definitions)
        return managed.Shape(definitions.get(openapi.definition_name(rt)), definitions)

    def _track(
        self,
        rt: ResourceType,
        old: Body | None,
        new: Body,
        manager: str,
        subresource: str | None,
        *,
        base: Any = None,
        entry: str | None = None,
    ) -> builtins.list[Body]:
        return managed.track_update(
            base if old is not None else None,
            old,
            new,
            manager=manager,
            api_version=rt.api_version,
            subresource=subresource,
            status_subresource=rt.status_subresource,
            shape=self.shape(rt),
            now=now_rfc3339(),
            entry_subresource=entry,
        )

    def _server_side_apply(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        config: Any,
        *,
        manager: str | None,
        force: bool,
        subresource: str | None,
        dry_run: bool,
        validate: bool,
        field_validation: FieldValidation,
        warnings: builtins.list[str] | None,
    ) -> Body:
        if not manager:
            raise _patch_options_invalid("fieldManager", "Required", "is required for apply patch")
        if not isinstance(config, dict):
            raise errors.bad_request("error decoding YAML: the apply configuration must be an object")
        if not config.get("apiVersion") or not config.get("kind"):
            raise errors.bad_request("couldn't get version/kind; json parse error: Object 'Kind' is missing")
        self._check_type(rt, config)
        meta = _meta(config)
        if meta.get("managedFields") is not None:
            raise errors.bad_request("metadata.managedFields must be nil")
        if not meta.get("name"):
            meta = {**meta, "name": name}
            config = {**config, "metadata": meta}
        unknown = self.unknown_fields(rt, config)
        if unknown and field_validation == "Strict":
            where = f"{namespace}/{name}" if namespace else name
            gvk = f"{rt.api_version}, Kind={rt.kind}"
            fields = ", ".join(f".{u}: field not declared in schema" for u in unknown)
            raise errors.bad_request(f"failed to create typed patch object ({where}; {gvk}): {fields}")
        if unknown:
            if field_validation == "Warn" and warnings is not None:
                warnings.extend(f'unknown field "{u}"' for u in unknown)
            config = schema.prune(config, rt.schema) if rt.schema is not None else config
        with self._lock:
            current = self._current(rt, namespace, name)
            live = self._convert(current, rt) if current is not None else None
            if current is not None:
                _check_identity(rt, meta, current, namespace, name, name_required=True)
            elif subresource is not None:
                raise errors.not_found(rt, name)
            merged, entries = managed.apply(
                live,
                config,
                manager=manager,
                api_version=rt.api_version,
                subresource=subresource,
                status_subresource=rt.status_subresource,
                shape=self.shape(rt),
                force=force,
                now=now_rfc3339(),
            )
            if current is None:
                merged.setdefault("metadata", {}).pop("resourceVersion", None)
                return self.create(
                    rt, merged, namespace, dry_run=dry_run, validate=validate, managed_fields=entries
                )
            merged["metadata"]["resourceVersion"] = _meta(current).get("resourceVersion")
            return self._write(
                rt, current, merged, subresource, dry_run=dry_run, validate=validate, managed_fields=entries
            )

    def _check_fields(
        self,
        rt: ResourceType,
        body: Mapping[str, Any],
        field_validation: FieldValidation,
        warnings: builtins.list[str] | None,
        *,
        patch: bool,
        duplicates: Sequence[str] = (),
    ) -> None:
        """``fieldValidation``: unknown and duplicate fields refused (Strict, 400 as the API
        server's strict decoder), reported (Warn: one ``Warning`` each) or dropped (Ignore)."""
        if field_validation == "Ignore":
            return
        texts = [f'duplicate field "{field}"' for field in duplicates]
        texts += [f'unknown field "{field}"' for field in self.unknown_fields(rt, body)]
        if not texts:
            return
        if field_validation == "Strict":
            message = "strict decoding error: " + ", ".join(texts)
            if not patch:
                message = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {message}'
            raise errors.bad_request(message)
        if warnings is not None:
            warnings.extend(texts)

    def unknown_fields(self, rt: ResourceType, body: Mapping[str, Any]) -> builtins.list[str]:
        """The fields of ``body`` the schema of ``rt`` does not declare (``spec.targetLvel``)."""
        definitions = openapi.builtin_definitions()
        metadata = definitions[openapi.OBJECT_META]
        if rt.custom:
            return schema.unknown_fields(body, rt.schema, definitions=definitions, metadata=metadata)
        builtin = definitions.get(openapi.definition_name(rt))
        if builtin is None:
            return []
        return schema.unknown_fields(body, builtin, definitions=definitions, metadata=metadata)

    def _check_type(self, rt: ResourceType, body: Mapping[str, Any]) -> None:
        api_version = body.get("apiVersion")
        kind = body.get("kind")
        if api_version is not None and api_version != rt.api_version:
            versions = {t.api_version for t in self._types.values() if t.storage_key == rt.storage_key}
            if api_version not in versions:
                raise errors.bad_request(
                    f"the API version in the data ({api_version}) does not match the "
                    f"expected API version ({rt.api_version})"
                )
        if kind is not None and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )

    def create(
        self,
        ref: ResourceRef | Mapping[str, Any],
        body: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        *,
        dry_run: bool = False,
        validate: bool = True,
        field_validation: FieldValidation = "Ignore",
        warnings: builtins.list[str] | None = None,
        manager: str | None = None,
        managed_fields: builtins.list[Body] | None = None,
        duplicates: Sequence[str] = (),
    ) -> Body:
        """Create an object (201 semantics); returns the stored object (a copy).

        ``manager``: the field manager of the write (``managedFields`` are tracked for it);
        ``managed_fields``: the entries to store as they are (a server-side apply).

        ``create(obj)`` infers the resource from ``apiVersion``/``kind``; ``validate=False`` skips
        the schema/built-in validation (defaulting and pruning still happen) for seeding.
        """
        if body is None and isinstance(ref, Mapping):
            body = ref
            rt = self.resource_for(str(body.get("apiVersion", "")), str(body.get("kind", "")))
        else:
            assert not isinstance(ref, Mapping)
            rt = self.resolve(ref)
        if not isinstance(body, Mapping):
            raise errors.bad_request("the body of the request must be a JSON object")
        with self._lock:
            self._check_type(rt, body)
            self._check_fields(rt, body, field_validation, warnings, patch=False, duplicates=duplicates)
            obj: Body = copy.deepcopy(dict(body))
            meta = obj.get("metadata")
            if meta is None:
                meta = obj["metadata"] = {}
            if not isinstance(meta, dict):
                raise errors.bad_request("metadata must be an object")
            if rt.namespaced:
                if namespace is not None and meta.get("namespace") not in (None, "", namespace):
                    raise errors.bad_request(
                        "the namespace of the provided object does not match the namespace "
                        "sent on the request"
                    )
                ns = namespace or meta.get("namespace") or "default"
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
                ns = None
            name = meta.get("name")
            if not name:
                prefix = meta.get("generateName")
                if not prefix:
                    raise errors.invalid(
                        rt,
                        "",
                        [FieldError("metadata.name", "Required", None, "name or generateName is required")],
                    )
                for _ in range(100):
                    name = prefix + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
                    if self._current(rt, ns, name) is None:
                        break
                meta["name"] = name
            if not isinstance(name, str):
                raise errors.bad_request("metadata.name must be a string")
            problems = self._check_name(rt, name) + self._check_metadata(meta)
            if problems and validate:
                raise errors.invalid(rt, name, problems)
            if ns is not None:
                self._ensure_namespace(ns)
            if self._current(rt, ns, name) is not None:
                raise errors.already_exists(rt, name)
            obj["apiVersion"] = (
                rt.api_version if not rt.custom else f"{rt.group}/{rt.effective_storage_version}"
            )
            obj["kind"] = rt.kind
            if rt.status_subresource and rt.storage_key != NAMESPACES.storage_key:
                obj.pop("status", None)
            for key in (
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
                "managedFields",
                "selfLink",
                "generation",
                "uid",
                "creationTimestamp",
            ):
                meta.pop(key, None)
            problems = self._builtin_prepare(rt, obj, None) + self._apply_schema(rt, obj)
            if problems and validate:
                raise errors.invalid(rt, name, problems)
            meta = obj["metadata"]
            if managed_fields is not None:
                meta["managedFields"] = managed_fields
            elif manager is not None and self.managed_fields:
                meta["managedFields"] = self._track(rt, None, obj, manager, None)
            if not meta.get("managedFields"):
                meta.pop("managedFields", None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if rt.generation != "none":
                meta["generation"] = 1
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return self._convert(obj, rt)
            meta["resourceVersion"] = self._bump()
            self._live[rt.storage_key][(ns, name)] = obj
            self._uids[meta["uid"]] = (rt.storage_key, ns, name)
            self._mirror(rt, ns, name, obj)
            self._emit(rt, "ADDED", obj, None)
            if rt.storage_key == CRDS.storage_key:
                self._on_crd_changed(obj)
            return self._convert(obj, rt)

    def update(
        self,
        ref: ResourceRef,
        body: Mapping[str, Any],
        namespace: str | None = None,
        name: str | None = None,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        validate: bool = True,
        field_validation: FieldValidation = "Ignore",
        warnings: builtins.list[str] | None = None,
        manager: str | None = None,
        duplicates: Sequence[str] = (),
    ) -> Body:
        """Replace an object (PUT semantics; ``subresource="status"`` writes only the status)."""
        rt = self.resolve(ref)
        if not isinstance(body, Mapping):
            raise errors.bad_request("the body of the request must be a JSON object")
        meta = _meta(body)
        name = name or meta.get("name")
        namespace = namespace or meta.get("namespace") or ("default" if rt.namespaced else None)
        if not name:
            raise errors.bad_request("name is required")
        with self._lock:
            current = self._current(rt, namespace, name)
            if current is None:
                raise errors.not_found(rt, name)
            self._check_type(rt, body)
            _check_identity(rt, meta, current, namespace, name, name_required=False)
            self._check_fields(rt, body, field_validation, warnings, patch=False, duplicates=duplicates)
            return self._write(
                rt,
                current,
                copy.deepcopy(dict(body)),
                subresource,
                dry_run=dry_run,
                validate=validate,
                manager=manager,
            )

    def patch(
        self,
        ref: ResourceRef,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        dry_run: bool = False,
        validate: bool = True,
        field_validation: FieldValidation = "Ignore",
        warnings: builtins.list[str] | None = None,
        manager: str | None = None,
        force: bool = False,
    ) -> Body:
        """Patch an object. ``patch_type``: ``merge``, ``json``, ``strategic``, ``apply`` or a
        content type (``application/apply-patch+yaml``: server-side apply by ``manager``, which
        creates the object if absent: see :mod:`.managed`)."""
        rt = self.resolve(ref)
        kind = {
            "merge": patches.MERGE_PATCH,
            "json": patches.JSON_PATCH,
            "strategic": patches.STRATEGIC_MERGE_PATCH,
            "apply": patches.APPLY_PATCH,
        }.get(patch_type, patch_type)
        if kind == patches.APPLY_PATCH:
            return self._server_side_apply(
                rt,
                namespace,
                name,
                patch,
                manager=manager,
                force=force,
                subresource=subresource,
                dry_run=dry_run,
                validate=validate,
                field_validation=field_validation,
                warnings=warnings,
            )
        if force:
            raise _patch_options_invalid("force", "Forbidden", "may not be specified for non-apply patch")
        with self._lock:
            current = self._current(rt, namespace, name)
            if current is None:
                raise errors.not_found(rt, name)
            if subresource == "scale":
                return self._patch_scale(rt, current, patch, kind, dry_run=dry_run, manager=manager)
            base = self._convert(current, rt)
            patched = self._apply_patch(rt, base, patch, kind)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patched object must be a JSON object")
            _check_identity(rt, _meta(patched), current, namespace, name, name_required=True)
            self._check_fields(rt, patched, field_validation, warnings, patch=True)
            return self._write(
                rt, current, patched, subresource, dry_run=dry_run, validate=validate, manager=manager
            )

    def _apply_patch(self, rt: ResourceType, base: Body, patch: Any, kind: str) -> Any:
        if kind == patches.JSON_PATCH:
            return patches.apply_json_patch(base, patch)
        if kind == patches.MERGE_PATCH:
            if not isinstance(patch, dict):
                raise errors.bad_request("merge patch: the patch must be a JSON object")
            return patches.apply_merge_patch(base, patch)
        if kind == patches.STRATEGIC_MERGE_PATCH:
            return patches.apply_strategic_merge_patch(base, patch, builtin=not rt.custom)
        raise errors.unsupported_media_type(kind)

    def modify(
        self,
        ref: ResourceRef,
        namespace: str | None,
        name: str,
        fn: Callable[[Body], Body | None],
        *,
        subresource: str | None = None,
        validate: bool = True,
        manager: str | None = None,
    ) -> Body:
        """Atomically read-modify-write an object: ``fn`` gets a copy, changes it (or returns a new
        one). Goes through the same write path as the API (status separation, events, rv);
        ``manager``: the field manager it is recorded for in ``managedFields``."""
        rt = self.resolve(ref)
        with self._lock:
            current = self._current(rt, namespace, name)
            if current is None:
                raise errors.not_found(rt, name)
            draft = self._convert(current, rt)
            result = fn(draft)
            new = result if result is not None else draft
            return self._write(rt, current, new, subresource, validate=validate, manager=manager)

    def set_status(
        self, ref: ResourceRef, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> Body:
        """Replace the status of an object (via the status subresource where it exists)."""
        rt = self.resolve(ref)

        def fn(obj: Body) -> None:
            obj["status"] = copy.deepcopy(dict(status))

        return self.modify(rt, namespace, name, fn, subresource="status" if rt.status_subresource else None)

    def _write(
        self,
        rt: ResourceType,
        current: Body,
        incoming: Body,
        subresource: str | None,
        *,
        dry_run: bool = False,
        validate: bool = True,
        manager: str | None = None,
        managed_fields: builtins.list[Body] | None = None,
        managed_as: str | None = None,
    ) -> Body:
        cur_meta = _meta(current)
        incoming_managed = _meta(incoming).get("managedFields")
        name = cur_meta["name"]
        if subresource == "status":
            if not rt.status_subresource:
                raise errors.endpoint_not_found()
            new = copy.deepcopy(current)
            if "status" in incoming:
                new["status"] = incoming["status"]
            else:
                new.pop("status", None)
        elif subresource is not None:
            raise errors.endpoint_not_found()
        else:
            new = incoming
            if not isinstance(new.get("metadata"), dict):
                new["metadata"] = {}
            new_meta = new["metadata"]
            for key in _SERVER_METADATA:
                if key in cur_meta:
                    new_meta[key] = copy.deepcopy(cur_meta[key])
                else:
                    new_meta.pop(key, None)
            new_meta.pop("managedFields", None)
            if "managedFields" in cur_meta:
                new_meta["managedFields"] = copy.deepcopy(cur_meta["managedFields"])
            if rt.status_subresource and rt.storage_key != NAMESPACES.storage_key:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            problems = self._check_metadata(new_meta)
            if cur_meta.get("deletionTimestamp"):
                added = [
                    f for f in new_meta.get("finalizers") or [] if f not in (cur_meta.get("finalizers") or [])
                ]
                if added:
                    rendered = ", ".join(f'"{f}"' for f in added)
                    problems.append(
                        FieldError(
                            "metadata.finalizers",
                            "Forbidden",
                            None,
                            f"no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers []string{{{rendered}}}",
                        )
                    )
            if problems and validate:
                raise errors.invalid(rt, name, problems)
        new["apiVersion"] = current.get("apiVersion", rt.api_version)
        new["kind"] = rt.kind
        problems = self._builtin_prepare(rt, new, current) + self._apply_schema(rt, new, current)
        if problems and validate:
            raise errors.invalid(rt, name, problems)
        if rt.generation != "none" and self._generation_part(rt, new) != self._generation_part(rt, current):
            new["metadata"]["generation"] = int(cur_meta.get("generation") or 0) + 1
        if not new["metadata"].get("finalizers"):
            new["metadata"].pop("finalizers", None)
        if managed_fields is not None or (manager is not None and self.managed_fields):
            base = cur_meta.get("managedFields")
            if isinstance(incoming_managed, list) and incoming_managed and incoming_managed != base:
                # A client may replace the entries (``[{}]`` clears them), as on a real server.
                base = [e for e in incoming_managed if isinstance(e, dict) and e]
            if managed_fields is not None:
                entries = managed_fields
            else:
                assert manager is not None
                entries = self._track(rt, current, new, manager, subresource, base=base, entry=managed_as)
            new["metadata"]["managedFields"] = entries
            if not entries:
                new["metadata"].pop("managedFields", None)
        if new == current:
            return self._convert(current, rt)  # a no-op: no new resourceVersion, no watch event
        if dry_run:
            return self._convert(new, rt)
        namespace = cur_meta.get("namespace")
        new["metadata"]["resourceVersion"] = self._bump()
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(rt, namespace, name, new, current)
        else:
            self._live[rt.storage_key][(namespace, name)] = new
            self._mirror(rt, namespace, name, new)
            self._emit(rt, "MODIFIED", new, current)
            if rt.storage_key == CRDS.storage_key:
                self._on_crd_changed(new)
        return self._convert(new, rt)

    # -------------------------------------------------------------------------------- deleting

    def delete(
        self,
        ref: ResourceRef,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: str | None = None,
        dry_run: bool = False,
    ) -> Body:
        """Delete an object: with finalizers, only mark it (deletionTimestamp); else remove it."""
        rt = self.resolve(ref)
        with self._lock:
            current = self._current(rt, namespace, name)
            if current is None:
                raise errors.not_found(rt, name)
            meta = _meta(current)
            if uid is not None and uid != meta.get("uid"):
                raise errors.conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta.get('uid')}",
                )
            if resource_version is not None and resource_version != meta.get("resourceVersion"):
                raise errors.conflict(
                    rt,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{resource_version}, ResourceVersion in object meta: "
                    f"{meta.get('resourceVersion')}",
                )
            if dry_run:
                return self._convert(current, rt)
            ns = meta.get("namespace")
            has_content = rt.storage_key == NAMESPACES.storage_key and self._namespace_has_content(name)
            if meta.get("deletionTimestamp"):
                return self._convert(current, rt)
            if meta.get("finalizers") or has_content:
                new = copy.deepcopy(current)
                new_meta = new["metadata"]
                new_meta["deletionTimestamp"] = now_rfc3339()
                new_meta["deletionGracePeriodSeconds"] = 0
                if rt.generation != "none":
                    new_meta["generation"] = int(new_meta.get("generation") or 0) + 1
                if rt.storage_key == NAMESPACES.storage_key:
                    new.setdefault("status", {})["phase"] = "Terminating"
                new_meta["resourceVersion"] = self._bump()
                self._live[rt.storage_key][(ns, name)] = new
                self._mirror(rt, ns, name, new)
                self._emit(rt, "MODIFIED", new, current)
                if rt.storage_key == NAMESPACES.storage_key:
                    self._delete_namespace_content(name)
                    self._maybe_finish_namespace(name)
                    return self._convert(self._current(rt, None, name) or new, rt)
                return self._convert(new, rt)
            final = copy.deepcopy(current)
            final["metadata"]["resourceVersion"] = self._bump()
            self._remove(rt, ns, name, final, current, orphan=propagation_policy == "Orphan")
            return self._convert(final, rt)

    def delete_collection(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[Body]:
        rt = self.resolve(ref)
        with self._lock:
            deleted = []
            for obj in self.list(rt, namespace, label_selector=label_selector, field_selector=field_selector):
                meta = obj["metadata"]
                deleted.append(self.delete(rt, meta.get("namespace"), meta["name"]))
            return deleted

    def _remove(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        final: Body,
        old: Body,
        *,
        orphan: bool = False,
    ) -> None:
        del self._live[rt.storage_key][(namespace, name)]
        uid = _meta(final).get("uid")
        if uid:
            self._uids.pop(uid, None)
        self._mirror(rt, namespace, name, None)
        self._emit(rt, "DELETED", final, old)
        if rt.storage_key == CRDS.storage_key:
            self._on_crd_removed(final)
        if rt.storage_key == NAMESPACES.storage_key:
            return
        if uid and self.garbage_collection and not orphan:
            self._collect_garbage(uid)
        if namespace is not None:
            self._maybe_finish_namespace(namespace)

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background cascading deletion: dependents whose owners are all gone get deleted."""
        dependents: builtins.list[tuple[ResourceType, str | None, str]] = []
        for (group, plural), objs in self._live.items():
            for (ns, name), obj in objs.items():
                owners = _meta(obj).get("ownerReferences") or []
                uids = [o.get("uid") for o in owners if isinstance(o, dict)]
                if owner_uid in uids and not any(u in self._uids for u in uids):
                    rt = next(t for t in self._types.values() if t.storage_key == (group, plural))
                    dependents.append((rt, ns, name))
        for rt, ns, name in dependents:
            if self._current(rt, ns, name) is not None:
                self.delete(rt, ns, name)

    def _namespace_has_content(self, namespace: str) -> bool:
        return any(ns == namespace for objs in self._live.values() for (ns, _) in objs)

    def _delete_namespace_content(self, namespace: str) -> None:
        for rt in list(self._types.values()):
            if not rt.namespaced or rt.version != rt.effective_storage_version:
                continue
            for ns, name in list(self._live[rt.storage_key]):
                if ns == namespace and self._current(rt, ns, name) is not None:
                    self.delete(rt, ns, name)

    def _maybe_finish_namespace(self, namespace: str) -> None:
        current = self._live[NAMESPACES.storage_key].get((None, namespace))
        if current is None or not _meta(current).get("deletionTimestamp"):
            return
        if self._namespace_has_content(namespace) or _meta(current).get("finalizers"):
            return
        final = copy.deepcopy(current)
        final["metadata"]["resourceVersion"] = self._bump()
        self._remove(NAMESPACES, None, namespace, final, current)

    # ------------------------------------------------------------------------------------ CRDs

    def _on_crd_changed(self, crd: Body) -> None:
        resources = resources_from_crd(crd)
        known = {(rt.version) for rt in self._types.values() if rt.storage_key == resources[0].storage_key}
        served = {rt.version for rt in resources}
        for version in known - served:
            self._types.pop((resources[0].group, version, resources[0].plural), None)
        for rt in resources:
            self._register(rt)

    def _on_crd_removed(self, crd: Body) -> None:
        try:
            resources = resources_from_crd(crd)
        except ValueError:
            return
        key = resources[0].storage_key
        rt = resources[0]
        for (ns, name), obj in list(self._live.get(key, {}).items()):
            final = copy.deepcopy(obj)
            final["metadata"]["resourceVersion"] = self._bump()
            self._remove(rt, ns, name, final, obj)
        for res in resources:
            self._types.pop((res.group, res.version, res.plural), None)

    # ----------------------------------------------------------------------------------- scale

    def scale_of(self, rt: ResourceType, obj: Body) -> Body:
        spec = rt.scale or ScaleSpec()
        meta = _meta(obj)
        selector: Any
        if rt.storage_key == DEPLOYMENTS.storage_key:
            selector = str(label_selector_from_dict((obj.get("spec") or {}).get("selector")))
        else:
            selector = _get_path(obj, spec.label_selector_path) if spec.label_selector_path else None
        status: dict[str, Any] = {"replicas": _get_path(obj, spec.status_replicas_path) or 0}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": _get_path(obj, spec.spec_replicas_path) or 0},
            "status": status,
        }

    def get_scale(self, ref: ResourceRef, namespace: str | None, name: str) -> Body:
        rt = self.resolve(ref)
        if rt.scale is None:
            raise errors.endpoint_not_found()
        with self._lock:
            current = self._current(rt, namespace, name)
            if current is None:
                raise errors.not_found(rt, name)
            return self.scale_of(rt, current)

    def update_scale(
        self,
        ref: ResourceRef,
        namespace: str | None,
        name: str,
        scale: Any,
        *,
        dry_run: bool = False,
        manager: str | None = None,
    ) -> Body:
        rt = self.resolve(ref)
        if rt.scale is None:
            raise errors.endpoint_not_found()
        with self._lock:
            current = self._current(rt, namespace, name)
            if current is None:
                raise errors.not_found(rt, name)
            return self._set_scale(rt, current, scale, dry_run=dry_run, manager=manager)

    def _patch_scale(
        self, rt: ResourceType, current: Body, patch: Any, kind: str, *, dry_run: bool, manager: str | None
    ) -> Body:
        if rt.scale is None:
            raise errors.endpoint_not_found()
        scale = self._apply_patch(rt, self.scale_of(rt, current), patch, kind)
        return self._set_scale(rt, current, scale, dry_run=dry_run, manager=manager)

    def _set_scale(
        self, rt: ResourceType, current: Body, scale: Any, *, dry_run: bool, manager: str | None = None
    ) -> Body:
        assert rt.scale is not None
        if not isinstance(scale, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        name = _meta(current)["name"]
        incoming_rv = _meta(scale).get("resourceVersion")
        if incoming_rv not in (None, "") and str(incoming_rv) != _meta(current).get("resourceVersion"):
            raise errors.conflict(rt, name)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid(
                rt,
                name,
                [FieldError("spec.replicas", "Invalid", replicas, "must be greater than or equal to 0")],
            )
        new = copy.deepcopy(current)
        _set_path(new, rt.scale.spec_replicas_path, replicas)
        # The scale writer owns the replicas (``subresource: scale``): an HPA's or ``kubectl scale``'s
        # replicas conflict with a later apply of another value, as on a cluster.
        result = self._write(rt, current, new, None, dry_run=dry_run, manager=manager, managed_as="scale")
        return self.scale_of(rt, result)


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _unchanged(field_path: str, new: Any, old: Any) -> bool:
    """Whether the value at a field path (``spec.levels[0].modules``) exists, equal, in both."""
    a, b = new, old
    for name, index in _PATH_PART.findall(field_path):
        if name:
            if not (isinstance(a, dict) and isinstance(b, dict) and name in a and name in b):
                return False
            a, b = a[name], b[name]
        else:
            i = int(index)
            if not (isinstance(a, list) and isinstance(b, list) and i < len(a) and i < len(b)):
                return False
            a, b = a[i], b[i]
    return bool(field_path) and patches.json_equal(a, b)


def _default_pod_spec(pod: Body) -> None:
    """The API server's defaults of a pod template that show in ``kubectl get -o yaml`` (and in
    the diffs of GitOps tools): restart and DNS policy, grace period, and per container the pull
    policy (``Always`` for ``:latest`` or no tag), termination message and port protocol."""
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in pod.get(key) or []:
            if not isinstance(container, dict):
                continue
            image = str(container.get("image") or "")
            tag = image.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]
            latest = "@" not in image and tag in ("", "latest")
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("resources", {})
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def _patch_options_invalid(field_name: str, kind: str, detail: str) -> ApiError:
    error = FieldError(field_name, kind, None, detail)
    return ApiError(
        422,
        "Invalid",
        f'PatchOptions.meta.k8s.io "" is invalid: {error}',
        {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [error.cause()]},
    )


def _cel_compile_errors(node: Any, path: str) -> builtins.list[FieldError]:
    """CEL rules of a CRD schema that do not compile (the API server refuses such a CRD)."""
    if not isinstance(node, Mapping):
        return []
    problems: builtins.list[FieldError] = []
    for index, rule in enumerate(node.get("x-kubernetes-validations") or []):
        if not isinstance(rule, Mapping):
            continue
        for key in ("rule", "messageExpression"):
            if key in rule:
                error = cel.compile_error(str(rule[key]))
                if error is not None:
                    field_path = f"{path}.x-kubernetes-validations[{index}].{key}"
                    problems.append(FieldError(field_path, "Invalid", rule[key], error))
    for key, child in (node.get("properties") or {}).items():
        problems.extend(_cel_compile_errors(child, f"{path}.properties[{key}]"))
    for key in ("items", "additionalProperties"):
        problems.extend(_cel_compile_errors(node.get(key), f"{path}.{key}"))
    return problems


def _check_identity(
    rt: ResourceType,
    meta: Mapping[str, Any],
    current: Body,
    namespace: str | None,
    name: str,
    *,
    name_required: bool,
) -> None:
    """A write names the object of its URL, and carries the stored resourceVersion if any (409)."""
    if meta.get("name") != name and (name_required or meta.get("name") is not None):
        raise errors.bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
        )
    if rt.namespaced and meta.get("namespace") not in (None, "", namespace):
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    incoming_rv = meta.get("resourceVersion")
    if incoming_rv not in (None, "") and str(incoming_rv) != _meta(current).get("resourceVersion"):
        raise errors.conflict(rt, name)
