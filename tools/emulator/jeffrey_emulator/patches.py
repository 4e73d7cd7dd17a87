"""Patch formats of the Kubernetes API: JSON patch (RFC 6902), merge patch (RFC 7386), and a
strategic merge patch that knows the merge keys of the few built-in lists we care about.

All functions are pure: they never modify their inputs and return new structures.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request, unprocessable

__all__ = [
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "json_equal",
]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == 1.0`` but ``True != 1`` and ``{} != []``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


# ------------------------------------------------------------------------------------ JSON patch


def _parse_pointer(pointer: Any) -> list[str]:
    if not isinstance(pointer, str):
        raise bad_request(f"json patch: path must be a string, got {pointer!r}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise bad_request(f"json patch: path {pointer!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _array_index(token: str, size: int, pointer: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return size
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise unprocessable(f"json patch: invalid array index {token!r} in {pointer!r}", pointer)
    index = int(token)
    if index > size or (index == size and not allow_end):
        raise unprocessable(f"json patch: array index {index} out of bounds in {pointer!r}", pointer)
    return index


def _resolve_parent(doc: Any, tokens: list[str], pointer: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise unprocessable(f"json patch: path {pointer!r} does not exist", pointer)
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, len(node), pointer, allow_end=False)]
        else:
            raise unprocessable(f"json patch: path {pointer!r} does not exist", pointer)
    return node


def _get(doc: Any, pointer: str) -> Any:
    tokens = _parse_pointer(pointer)
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(f"json patch: path {pointer!r} does not exist", pointer)
        return parent[last]
    if isinstance(parent, list):
        return parent[_array_index(last, len(parent), pointer, allow_end=False)]
    raise unprocessable(f"json patch: path {pointer!r} does not exist", pointer)


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _parse_pointer(pointer)
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_array_index(last, len(parent), pointer, allow_end=True), value)
    else:
        raise unprocessable(f"json patch: cannot add to a scalar at {pointer!r}", pointer)
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    tokens = _parse_pointer(pointer)
    if not tokens:
        raise unprocessable("json patch: cannot remove the whole document", pointer)
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(f"json patch: path {pointer!r} does not exist", pointer)
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_array_index(last, len(parent), pointer, allow_end=False))
    raise unprocessable(f"json patch: path {pointer!r} does not exist", pointer)


def _replace(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _parse_pointer(pointer)
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(f"json patch: path {pointer!r} does not exist", pointer)
        parent[last] = value
    elif isinstance(parent, list):
        parent[_array_index(last, len(parent), pointer, allow_end=False)] = value
    else:
        raise unprocessable(f"json patch: path {pointer!r} does not exist", pointer)
    return doc


def apply_json_patch(doc: Any, ops: Any) -> Any:
    """Apply RFC 6902 operations; a failing ``test`` raises 422 Invalid, like the real server."""
    if not isinstance(ops, list):
        raise bad_request("json patch: the patch must be a JSON array of operations")
    result = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"json patch: invalid operation {op!r}")
        kind = op["op"]
        path = op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f"json patch: operation {kind!r} requires a value")
        if kind == "add":
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            result, _ = _remove(result, path)
        elif kind == "replace":
            result = _replace(result, path, copy.deepcopy(op["value"]))
        elif kind == "move":
            result, value = _remove(result, op.get("from", ""))
            result = _add(result, path, value)
        elif kind == "copy":
            result = _add(result, path, copy.deepcopy(_get(result, op.get("from", ""))))
        elif kind == "test":
            try:
                actual = _get(result, path)
            except ApiError:
                raise unprocessable(f"testing value {path} failed: the path does not exist", path) from None
            if not json_equal(actual, op["value"]):
                raise unprocessable(
                    f"testing value {path} failed: expected {op['value']!r}, found {actual!r}",
                    path,
                )
        else:
            raise bad_request(f"json patch: unknown operation {kind!r}")
    return result


# ----------------------------------------------------------------------------------- merge patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


# ------------------------------------------------------------------------- strategic merge patch

#: List fields of built-in types with ``patchStrategy: merge`` and their ``patchMergeKey``.
#: Only the ones an operator is likely to touch; other lists are replaced as in a merge patch.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
#: Lists of scalars that are merged as sets (``patchStrategy: merge`` on a primitive list).
PRIMITIVE_MERGE: frozenset[str] = frozenset({"finalizers"})


def _merge_keyed_list(target: list[Any], patch: list[Any], key: str) -> list[Any]:
    result = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            # Items without a merge key cannot be merged: fall back to a full replacement.
            return copy.deepcopy([p for p in patch if not (isinstance(p, dict) and "$patch" in p)])
        directive = item.get("$patch")
        index = next(
            (i for i, e in enumerate(result) if isinstance(e, dict) and e.get(key) == item[key]), None
        )
        if directive == "delete":
            if index is not None:
                del result[index]
        elif directive == "replace":
            clean = {k: v for k, v in item.items() if k != "$patch"}
            if index is None:
                result.append(copy.deepcopy(clean))
            else:
                result[index] = copy.deepcopy(clean)
        elif index is None:
            result.append(_strategic(None, item))
        else:
            result[index] = _strategic(result[index], item)
    return result


def _strategic(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return copy.deepcopy({k: v for k, v in patch.items() if k != "$patch"})
    if patch.get("$patch") == "delete":
        return None
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field_name = key.split("/", 1)[1]
            if isinstance(result.get(field_name), list) and isinstance(value, list):
                result[field_name] = [e for e in result[field_name] if e not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_keyed_list(result[key], value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in PRIMITIVE_MERGE and isinstance(result.get(key), list):
            merged = list(result[key])
            merged.extend(v for v in value if v not in merged)
            result[key] = merged
        elif isinstance(value, list):
            result[key] = copy.deepcopy([v for v in value if not (isinstance(v, dict) and "$patch" in v)])
        else:
            merged_value = _strategic(result.get(key), value)
            if merged_value is None:
                result.pop(key, None)
            else:
                result[key] = merged_value
    return result


def apply_strategic_merge_patch(target: Any, patch: Any, *, builtin: bool) -> Any:
    """Strategic merge patch for built-ins; for custom resources, a plain merge patch.

    A real API server rejects strategic merge patches of custom resources with 415; the emulator
    is lenient and treats them as merge patches (as the Kubernetes clients do not send them for
    custom resources anyway).
    """
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch: the patch must be a JSON object")
    if not builtin:
        return apply_merge_patch(target, patch)
    return _strategic(target, patch)
