"""Regenerate ``jeffrey_emulator/builtin_schemas.json``: the OpenAPI v2 definitions of the
built-in kinds the emulator may serve, as Kubernetes 1.31 publishes them.

The source is the Kubernetes 1.31 OpenAPI, as converted to JSON Schema by the
``kubernetes-validate`` package (Apache-2.0, like Kubernetes; installed by ``hack/bootstrap.sh``
in ``.tools/checkov``). The conversion is undone here: ``type: [T, "null"]`` → ``type: T``,
``#/$defs/`` → ``#/definitions/``, int-or-string and quantity back to strings, and the
``apiVersion``/``kind`` enums that converter adds are dropped. Only the definitions reachable
from :data:`ROOTS` are kept.

    python tools/emulator/scripts/gen_builtin_schemas.py .tools/checkov/lib/python3.11/site-packages/\
kubernetes_validate/kubernetes-json-schema/v1.31.0-local/_definitions.json
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

#: The kinds whose schemas (and everything they reference) are kept: what the emulator serves,
#: plus the kinds other parts of the project may add (Job, Pod, Service, ...).
ROOTS = (
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.Event",
    "io.k8s.api.core.v1.Secret",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Pod",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.apps.v1.ReplicaSet",
    "io.k8s.api.apps.v1.StatefulSet",
    "io.k8s.api.batch.v1.Job",
    "io.k8s.api.batch.v1.CronJob",
    "io.k8s.api.coordination.v1.Lease",
    "io.k8s.api.events.v1.Event",
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
)
_SCALAR_STRINGS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
}


def _undo(node: Any) -> Any:
    if isinstance(node, list):
        return [_undo(item) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            kinds = [v for v in value if v != "null"]
            result[key] = kinds[0] if len(kinds) == 1 else kinds
        elif key == "$ref" and isinstance(value, str):
            result[key] = value.replace("#/$defs/", "#/definitions/")
        else:
            result[key] = _undo(value)
    return result


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def build(source: dict[str, Any]) -> dict[str, Any]:
    defs = source["$defs"]
    keep: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        definition = _undo(defs[name])
        if name in _SCALAR_STRINGS:
            definition = {**_SCALAR_STRINGS[name], "description": defs[name].get("description", "")}
        if definition.get("x-kubernetes-group-version-kind"):
            for field in ("apiVersion", "kind"):
                definition.get("properties", {}).get(field, {}).pop("enum", None)
        keep[name] = definition
        found: set[str] = set()
        _refs(definition, found)
        todo.extend(sorted(found - keep.keys()))
    return {"kubernetes": "v1.31", "definitions": dict(sorted(keep.items()))}


def main() -> None:
    source = json.loads(pathlib.Path(sys.argv[1]).read_text(encoding="utf-8"))
    target = pathlib.Path(__file__).resolve().parents[1] / "jeffrey_emulator" / "builtin_schemas.json"
    target.write_text(
        json.dumps(build(source), sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
