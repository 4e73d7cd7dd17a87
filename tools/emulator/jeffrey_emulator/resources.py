"""Resource types served by the emulator: the built-ins and the ones defined by CRDs."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BUILTIN_RESOURCES",
    "CRDS",
    "DEPLOYMENTS",
    "EVENTS",
    "JOBS",
    "KOPF_PEERINGS_CRDS",
    "NAMESPACES",
    "ResourceType",
    "ScaleSpec",
    "resources_from_crd",
]

ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)
SUBRESOURCE_VERBS: tuple[str, ...] = ("get", "patch", "update")

#: Which part of an object counts for ``metadata.generation``.
GenerationScope = Literal["none", "spec", "non-metadata"]


@dataclass(frozen=True)
class ScaleSpec:
    """The ``/scale`` subresource: JSON paths as in CRD ``subresources.scale``."""

    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = None


@dataclass(frozen=True)
class ResourceType:
    """One served resource in one served version (``group/version/plural``)."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    scale: ScaleSpec | None = None
    generation: GenerationScope = "none"
    #: The ``openAPIV3Schema`` of custom resources (structural schema); None for built-ins.
    schema: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    #: The version objects are stored in; objects are shared by all served versions of a resource.
    storage_version: str = ""
    list_kind: str = ""
    #: Extra field-selector labels beyond ``metadata.name`` & ``metadata.namespace``.
    field_labels: tuple[str, ...] = ()
    custom: bool = False
    #: A CRD version's ``additionalPrinterColumns`` (the columns of ``kubectl get``, see :mod:`.tables`).
    printer_columns: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def group_resource(self) -> str:
        """``deployments.apps``, ``configmaps`` — how Kubernetes names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects are stored per group+plural, shared by all served versions."""
        return (self.group, self.plural)

    @property
    def effective_storage_version(self) -> str:
        return self.storage_version or self.version

    @property
    def effective_list_kind(self) -> str:
        return self.list_kind or f"{self.kind}List"

    @property
    def subresources(self) -> tuple[str, ...]:
        result: list[str] = []
        if self.status_subresource:
            result.append("status")
        if self.scale is not None:
            result.append("scale")
        return tuple(result)

    def names(self) -> set[str]:
        """All the names this resource can be referred to by (lowercase)."""
        names = {self.plural, self.singular, self.kind.lower(), *self.short_names}
        if self.group:
            names |= {f"{n}.{self.group}" for n in (self.plural, self.singular, self.kind.lower())}
            names |= {
                f"{self.group}/{self.version}/{self.plural}",
                f"{self.plural}.{self.version}.{self.group}",
            }
        else:
            names |= {f"v1/{self.plural}", f"{self.plural}.v1"}
        return {n.lower() for n in names}


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short_names: Iterable[str] = (),
    status: bool = False,
    scale: ScaleSpec | None = None,
    generation: GenerationScope = "none",
    field_labels: Iterable[str] = (),
    categories: Iterable[str] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=tuple(short_names),
        status_subresource=status,
        scale=scale,
        generation=generation,
        field_labels=tuple(field_labels),
        categories=tuple(categories),
    )


_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

NAMESPACES = _builtin(
    "",
    "v1",
    "namespaces",
    "Namespace",
    namespaced=False,
    short_names=["ns"],
    status=True,
    field_labels=["status.phase"],
)
EVENTS = _builtin("", "v1", "events", "Event", short_names=["ev"], field_labels=_EVENT_FIELDS)
SECRETS = _builtin("", "v1", "secrets", "Secret", field_labels=["type"])
CONFIGMAPS = _builtin("", "v1", "configmaps", "ConfigMap", short_names=["cm"])
DEPLOYMENTS = _builtin(
    "apps",
    "v1",
    "deployments",
    "Deployment",
    short_names=["deploy"],
    status=True,
    scale=ScaleSpec(),
    generation="spec",
    categories=["all"],
)
EVENTS_K8S = _builtin(
    "events.k8s.io",
    "v1",
    "events",
    "Event",
    short_names=["ev"],
    field_labels=("regarding.kind", "regarding.namespace", "regarding.name", "reason", "type"),
)
LEASES = _builtin("coordination.k8s.io", "v1", "leases", "Lease")
JOBS = _builtin("batch", "v1", "jobs", "Job", status=True, generation="spec", categories=["all"])
CRDS = _builtin(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
    short_names=["crd", "crds"],
    status=True,
    generation="spec",
)

BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    NAMESPACES,
    EVENTS,
    SECRETS,
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS_K8S,
    LEASES,
    CRDS,
    JOBS,
)

_PRESERVE: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _peering_crd(plural: str, kind: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"status": copy.deepcopy(_PRESERVE)},
                        }
                    },
                }
            ],
        },
    }


#: kopf's peering CRDs (as shipped with kopf): always registered.
KOPF_PEERINGS_CRDS: tuple[dict[str, Any], ...] = (
    _peering_crd("kopfpeerings", "KopfPeering", "Namespaced"),
    _peering_crd("clusterkopfpeerings", "ClusterKopfPeering", "Cluster"),
)


def resources_from_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    """All served versions of a CRD (``apiextensions.k8s.io/v1`` as a dict) as resource types."""
    spec = crd.get("spec") or {}
    group = spec.get("group")
    names = spec.get("names") or {}
    plural = names.get("plural")
    kind = names.get("kind")
    if not group or not plural or not kind:
        raise ValueError("A CRD needs spec.group, spec.names.plural and spec.names.kind.")
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    if not versions:
        raise ValueError(f"The CRD {plural}.{group} serves no versions.")
    storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    storage_version = storage[0] if storage else versions[0]["name"]
    result: list[ResourceType] = []
    for version in versions:
        subresources = version.get("subresources") or spec.get("subresources") or {}
        scale_dict = subresources.get("scale")
        scale = None
        if scale_dict is not None:
            scale = ScaleSpec(
                spec_replicas_path=scale_dict.get("specReplicasPath", ".spec.replicas"),
                status_replicas_path=scale_dict.get("statusReplicasPath", ".status.replicas"),
                label_selector_path=scale_dict.get("labelSelectorPath"),
            )
        schema = (version.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema")
        result.append(
            ResourceType(
                group=group,
                version=version["name"],
                plural=plural,
                kind=kind,
                singular=names.get("singular") or kind.lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in subresources,
                scale=scale,
                generation="non-metadata",
                schema=copy.deepcopy(schema) if schema is not None else None,
                storage_version=storage_version,
                list_kind=names.get("listKind") or f"{kind}List",
                custom=True,
                printer_columns=tuple(
                    copy.deepcopy(c)
                    for c in version.get("additionalPrinterColumns")
                    or spec.get("additionalPrinterColumns")
                    or ()
                    if isinstance(c, Mapping)
                ),
            )
        )
    return result
