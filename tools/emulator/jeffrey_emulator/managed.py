"""Field management: ``metadata.managedFields`` and server-side apply (``application/apply-patch+yaml``).

The model of the API server's structured-merge-diff, on a smaller scale:

* an object's fields form a set of paths (``.spec.levels[level="CORE"].modules``): a field of a
  struct or map is ``f:<name>``, an item of an associative list ``k:{"level":"CORE"}`` (its key
  fields from ``x-kubernetes-list-map-keys`` or a built-in's ``patchMergeKey``), an item of a set
  ``v:<value>``; atomic lists and maps (and every list a CRD does not declare otherwise) are one
  field. The paths are stored per manager in ``managedFields`` as ``FieldsV1``, as on a cluster;
* an **update** (create, PUT, JSON/merge/strategic patch) by a manager takes the fields it changed
  from everybody else: it never conflicts;
* an **apply** declares the fields a manager wants to own, with their values: a field another
  manager owns with a different value is a conflict (409, the API server's message) unless
  ``force=true`` moves it; fields the manager applied before and leaves out now are removed from
  the object unless somebody else owns them too;
* server-set metadata (name, uid, resourceVersion, ...) is never managed; with a status
  subresource, the main resource's managers never own ``status`` and the status managers own
  only ``status`` (entries carry ``subresource: status``).

Not modelled: version conversion of managed fields, the ``i:`` (index) elements of granular
atomic lists, and ownership of fields a mutating admission adds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .patches import json_equal
from .schema import resolve

__all__ = [
    "Shape",
    "apply",
    "conflict_error",
    "decode",
    "encode",
    "fieldset",
    "render_path",
    "track_update",
]

Path = tuple[str, ...]
FieldSet = frozenset[Path]
Schema = Mapping[str, Any]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

#: Fields only the server sets: never owned by anybody.
_UNMANAGED: tuple[Path, ...] = (
    ("f:apiVersion",),
    ("f:kind",),
    *(
        ("f:metadata", f"f:{name}")
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "generation",
            "managedFields",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        )
    ),
)


# ------------------------------------------------------------------------------------ shapes


@dataclass(frozen=True)
class Shape:
    """How field management sees one node of a schema (None: an untyped, "deduced" node)."""

    schema: Schema | None
    definitions: Mapping[str, Schema]

    def _node(self) -> Schema:
        return resolve(self.schema, self.definitions) if self.schema is not None else {}

    def child(self, key: str) -> Shape:
        node = self._node()
        properties = node.get("properties") or {}
        if key in properties:
            return Shape(properties[key], self.definitions)
        additional = node.get("additionalProperties")
        if isinstance(additional, Mapping):
            return Shape(additional, self.definitions)
        return Shape(None, self.definitions)

    def items(self) -> Shape:
        items = self._node().get("items")
        return Shape(items if isinstance(items, Mapping) else None, self.definitions)

    def atomic_map(self) -> bool:
        return self._node().get("x-kubernetes-map-type") == "atomic"

    def list_keys(self) -> tuple[str, ...] | None:
        """The key fields of an associative list, ``()`` for a set, None for an atomic list."""
        node = self._node()
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "map":
            return tuple(node.get("x-kubernetes-list-map-keys") or ())
        if list_type == "set":
            return ()
        if list_type == "atomic":
            return None
        merge_key = node.get("x-kubernetes-patch-merge-key")
        if merge_key and "merge" in str(node.get("x-kubernetes-patch-strategy", "")):
            return (str(merge_key),)
        if "merge" in str(node.get("x-kubernetes-patch-strategy", "")):
            return ()
        return None


def _key_element(item: Mapping[str, Any], keys: Iterable[str]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in sorted(keys)}, separators=(",", ":"))


def _value_element(value: Any) -> str:
    return "v:" + json.dumps(value, separators=(",", ":"))


# --------------------------------------------------------------------------------- field sets


def fieldset(value: Any, shape: Shape, prefix: Path = ()) -> set[Path]:
    """The managed paths of a value (leaves, list items, empty maps)."""
    result: set[Path] = set()
    _collect(value, shape, prefix, result)
    return result


def _collect(value: Any, shape: Shape, prefix: Path, out: set[Path]) -> None:
    if isinstance(value, dict) and not shape.atomic_map():
        if not value and prefix:
            out.add(prefix)
        for key, item in value.items():
            _collect(item, shape.child(key), (*prefix, f"f:{key}"), out)
        return
    if isinstance(value, list):
        keys = shape.list_keys()
        if keys is None or (keys and not all(isinstance(i, dict) for i in value)):
            out.add(prefix)
            return
        for item in value:
            if keys:
                element = (*prefix, _key_element(item, keys))
                out.add(element)
                _collect(item, shape.items(), element, out)
            else:
                out.add((*prefix, _value_element(item)))
        if not value:
            out.add(prefix)
        return
    out.add(prefix)


def managed_paths(paths: Iterable[Path], *, status_subresource: bool, subresource: str | None) -> set[Path]:
    """The paths that can be owned in a write (see the module docstring)."""
    result = set()
    for path in paths:
        if any(path[: len(u)] == u for u in _UNMANAGED) or not path:
            continue
        if status_subresource:
            in_status = path[0] == "f:status"
            if (subresource == "status") != in_status:
                continue
        result.add(path)
    return result


def _find(node: Any, element: str) -> Any:
    if element.startswith("f:"):
        return node.get(element[2:], MISSING) if isinstance(node, dict) else MISSING
    if not isinstance(node, list):
        return MISSING
    if element.startswith("k:"):
        wanted = json.loads(element[2:])
        for item in node:
            if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
                return item
        return MISSING
    if element.startswith("v:"):
        wanted = json.loads(element[2:])
        return next((item for item in node if json_equal(item, wanted)), MISSING)
    return MISSING


def value_at(obj: Any, path: Path) -> Any:
    node = obj
    for element in path:
        node = _find(node, element)
        if node is MISSING:
            return MISSING
    return node


def render_path(path: Path) -> str:
    """``.spec.levels[level="CORE"].modules`` — how the API server prints a field path."""
    text = ""
    for element in path:
        kind, rest = element[:2], element[2:]
        if kind == "f:":
            text += f".{rest}"
        elif kind == "k:":
            fields = json.loads(rest)
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in fields.items()) + "]"
        elif kind == "v:":
            text += f"[={rest}]"
        else:
            text += f"[{rest}]"
    return text


def encode(paths: Iterable[Path]) -> dict[str, Any]:
    """A set of paths as ``fieldsV1``."""
    members = set(paths)
    tree: dict[str, Any] = {}
    for path in sorted(members):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    for path in members:
        node = tree
        for element in path:
            node = node[element]
        if node and "." not in node:
            node["."] = {}
    return tree


def decode(fields: Any, prefix: Path = ()) -> set[Path]:
    """``fieldsV1`` as a set of paths."""
    result: set[Path] = set()
    if not isinstance(fields, Mapping):
        return result
    for key, sub in fields.items():
        if key == ".":
            result.add(prefix)
        elif isinstance(sub, Mapping) and sub:
            result |= decode(sub, (*prefix, key))
        else:
            result.add((*prefix, key))
    return result


# ---------------------------------------------------------------------------------- entries


@dataclass
class Entry:
    manager: str
    operation: str
    api_version: str
    time: str
    fields: set[Path]
    subresource: str | None = None

    @property
    def ident(self) -> tuple[str, str, str, str | None]:
        # As the API server identifies managers: appliers regardless of their apiVersion.
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """``"kubectl-patch" using jeffreyos.io/v1alpha1`` (updaters), ``"helm"`` (appliers),
        ``"hpa" with subresource "scale" using apps/v1``: the API server's ``printManager``."""
        name = json.dumps(self.manager)
        if self.subresource:
            name += f" with subresource {json.dumps(self.subresource)}"
        return f"{name} using {self.api_version}" if self.operation == "Update" else name

    def render(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(self.fields),
        }
        if self.subresource:
            result["subresource"] = self.subresource
        return result


def entries_of(managed: Any) -> list[Entry]:
    result = []
    for raw in managed or []:
        if not isinstance(raw, Mapping) or (not raw.get("manager") and not raw.get("fieldsV1")):
            continue
        result.append(
            Entry(
                manager=str(raw.get("manager", "")),
                operation=str(raw.get("operation", "Update")),
                api_version=str(raw.get("apiVersion", "")),
                time=str(raw.get("time", "")),
                fields=decode(raw.get("fieldsV1")),
                subresource=raw.get("subresource") or None,
            )
        )
    return result


def render(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    return [entry.render() for entry in entries if entry.fields]


def _entry(entries: list[Entry], manager: str, operation: str, api_version: str, sub: str | None) -> Entry:
    probe = Entry(manager, operation, api_version, "", set(), sub)
    for entry in entries:
        if entry.ident == probe.ident:
            entry.api_version = api_version
            return entry
    entries.append(probe)
    return probe


def track_update(
    managed: Any,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    *,
    manager: str,
    api_version: str,
    subresource: str | None,
    status_subresource: bool,
    shape: Shape,
    now: str,
    entry_subresource: str | None = None,
) -> list[dict[str, Any]]:
    """``managedFields`` after a non-apply write by ``manager`` (it takes what it changed);
    ``entry_subresource``: the subresource the entry names when it differs (``scale``)."""
    entries = entries_of(managed)
    new_paths = managed_paths(
        fieldset(new, shape), status_subresource=status_subresource, subresource=subresource
    )
    if old is None:
        changed, removed = new_paths, set()
    else:
        old_paths = managed_paths(
            fieldset(old, shape), status_subresource=status_subresource, subresource=subresource
        )
        removed = old_paths - new_paths
        changed = {p for p in new_paths if not _same(value_at(old, p), value_at(new, p), p)}
    if not changed and not removed:
        return render(entries)
    for entry in entries:
        entry.fields -= removed
    mine = _entry(entries, manager, "Update", api_version, entry_subresource or subresource)
    for entry in entries:
        if entry is not mine:
            entry.fields -= changed
    mine.fields |= changed
    mine.time = now
    return render(entries)


def _same(before: Any, after: Any, path: Path) -> bool:
    if before is MISSING:
        return False
    if path and path[-1][:2] in ("k:", "v:"):
        return True  # the item exists in both; its fields are compared on their own
    return json_equal(before, after)


# ------------------------------------------------------------------------------------ apply


def conflict_error(conflicts: list[tuple[Entry, Path]]) -> ApiError:
    """409 with the API server's message and ``FieldManagerConflict`` causes."""
    causes = [
        {"type": "FieldManagerConflict", "message": f"conflict with {e.describe()}", "field": render_path(p)}
        for e, p in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.describe()}: {render_path(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.describe(), []).append(render_path(path))
        lines = []
        for described in sorted(by_manager):
            lines.append(f"conflicts with {described}:")
            lines.extend(f"- {p}" for p in sorted(by_manager[described]))
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


def _remove(obj: Any, path: Path) -> None:
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    element = path[-1]
    if element.startswith("f:") and isinstance(parent, dict):
        parent.pop(element[2:], None)
    elif isinstance(parent, list):
        target = _find(parent, element)
        if target is not MISSING:
            parent.remove(target)


def merge(live: Any, config: Any, shape: Shape) -> Any:
    """The applied configuration merged into the live value (structurally, by the schema)."""
    if isinstance(config, dict) and isinstance(live, dict) and not shape.atomic_map():
        result = dict(live)
        for key, value in config.items():
            result[key] = merge(live.get(key, MISSING), value, shape.child(key))
        return result
    if isinstance(config, list) and isinstance(live, list):
        keys = shape.list_keys()
        if keys and all(isinstance(i, dict) for i in config) and all(isinstance(i, dict) for i in live):
            merged = list(live)
            for item in config:
                element = _key_element(item, keys)
                current = _find(merged, element)
                if current is MISSING:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[merged.index(current)] = merge(current, item, shape.items())
            return merged
        if keys == ():
            return [*live, *(copy.deepcopy(i) for i in config if not any(json_equal(i, x) for x in live))]
    return copy.deepcopy(config)


def apply(
    live: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    *,
    manager: str,
    api_version: str,
    subresource: str | None,
    status_subresource: bool,
    shape: Shape,
    force: bool,
    now: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The object after ``manager`` applies ``config`` to ``live`` (None: a create), and its
    ``managedFields``; raises the 409 conflict error (see the module docstring)."""
    entries = entries_of((live or {}).get("metadata", {}).get("managedFields"))
    applied = managed_paths(
        fieldset(config, shape), status_subresource=status_subresource, subresource=subresource
    )
    mine = _entry(entries, manager, "Apply", api_version, subresource)
    others = [e for e in entries if e is not mine]
    base: dict[str, Any] = copy.deepcopy(dict(live)) if live is not None else {}
    conflicts: list[tuple[Entry, Path]] = []
    for path in sorted(applied):
        if _same(value_at(base, path), value_at(config, path), path):
            continue
        conflicts.extend((entry, path) for entry in others if path in entry.fields)
    if conflicts and not force:
        raise conflict_error(conflicts)
    for entry, path in conflicts:
        entry.fields.discard(path)
    owned_by_others = set().union(*(e.fields for e in others)) if others else set()
    for path in sorted(mine.fields - applied - owned_by_others, key=len, reverse=True):
        _remove(base, path)
    result = merge(base, config, shape)
    mine.fields = applied
    mine.time = now
    return result, render(entries)
