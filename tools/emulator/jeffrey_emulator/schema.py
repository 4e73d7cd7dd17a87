"""Structural-schema handling of custom resources: pruning, defaulting, validation.

A subset of what kube-apiserver does with a CRD's ``openAPIV3Schema``, in the same order
(prune unknown fields → apply defaults → validate) and with the same error texts:

* pruning of unknown fields (honouring ``x-kubernetes-preserve-unknown-fields``,
  ``additionalProperties``, ``x-kubernetes-embedded-resource``), and of ``null`` values of
  non-nullable fields;
* defaulting of ``default`` values, top-down (a defaulted ``{}`` gets its own defaults);
* validation of ``type`` (incl. ``nullable`` and ``x-kubernetes-int-or-string``), ``required``,
  ``enum``, ``pattern``, ``minLength``/``maxLength``, ``minimum``/``maximum`` (+ exclusive),
  ``multipleOf``, ``minItems``/``maxItems``, ``uniqueItems``, ``minProperties``/``maxProperties``,
  ``x-kubernetes-list-type: set|map``, ``allOf``/``anyOf``/``oneOf``/``not``;
* CEL ``x-kubernetes-validations`` with a real CEL implementation (see :mod:`.cel`), with
  ``oldSelf`` bound on updates (transition rules);
* the unknown fields of a value (:func:`unknown_fields`), for ``fieldValidation``, against a CRD's
  structural schema or a built-in definition with ``$ref``s.

Not implemented: ``format`` checks. Validation ratcheting is the store's (it drops the errors at
values an update leaves unchanged).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from . import cel
from .errors import FieldError

__all__ = ["apply_defaults", "prune", "resolve", "unknown_fields", "validate"]

Schema = Mapping[str, Any]


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _preserves(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


# --------------------------------------------------------------------------------------- pruning


def prune(value: Any, schema: Schema | None, *, root: bool = True) -> Any:
    """Drop fields the schema does not know (a new structure; the input is not modified)."""
    if schema is None:
        return copy.deepcopy(value)
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        result: dict[str, Any] = {}
        for key, item in value.items():
            if (root and key in ("apiVersion", "kind", "metadata")) or (
                embedded and key in ("apiVersion", "kind", "metadata")
            ):
                result[key] = copy.deepcopy(item)
            elif key in properties:
                sub = properties[key]
                if item is None and not sub.get("nullable"):
                    continue  # nulls of non-nullable fields are pruned (and then defaulted)
                result[key] = prune(item, sub, root=False)
            elif isinstance(additional, Mapping):
                result[key] = prune(item, additional, root=False)
            elif additional is True or _preserves(schema):
                result[key] = copy.deepcopy(item)
        return result
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            return [prune(item, items, root=False) for item in value]
        return copy.deepcopy(value)
    return value


# ------------------------------------------------------------------------------------ defaulting


def apply_defaults(value: Any, schema: Schema | None) -> Any:
    """Fill in ``default`` values of absent fields (in place for dicts/lists; returns the value)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key == "metadata" and "apiVersion" in schema.get("properties", {}):
                continue  # never default the metadata of (embedded) objects
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key in list(value):
                if key not in (schema.get("properties") or {}):
                    value[key] = apply_defaults(value[key], additional)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                value[index] = apply_defaults(item, items)
    return value


# ------------------------------------------------------------------------------------ validation


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # pragma: no cover


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _num(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


_NO_OLD: Any = object()


def validate(value: Any, schema: Schema | None, path: str = "", *, old: Any = _NO_OLD) -> list[FieldError]:
    """All the schema violations of a value, with apiserver-like field paths and messages.

    ``old``: the previous object on updates, for CEL transition rules (``oldSelf``).
    """
    errors: list[FieldError] = []
    if schema is not None:
        _validate(value, schema, path, errors, root=True, old=old)
    return errors


def _old_item(old: Any, value: list[Any], index: int, schema: Schema) -> Any:
    """The previous version of a list item: correlated by key in map lists, else none (as the
    API server correlates for transition rules)."""
    if not isinstance(old, list) or schema.get("x-kubernetes-list-type") != "map":
        return _NO_OLD
    keys = schema.get("x-kubernetes-list-map-keys") or []
    item = value[index]
    if not isinstance(item, dict):
        return _NO_OLD
    for candidate in old:
        if isinstance(candidate, dict) and all(candidate.get(k) == item.get(k) for k in keys):
            return candidate
    return _NO_OLD


def _validate(
    value: Any,
    schema: Schema,
    path: str,
    errors: list[FieldError],
    *,
    root: bool = False,
    old: Any = _NO_OLD,
) -> None:
    shown = path or "<root>"
    if value is None:
        if schema.get("nullable") or not schema.get("type"):
            return
        errors.append(
            FieldError(path, "Invalid", None, f'{shown} in body must be of type {schema["type"]}: "null"')
        )
        return

    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            errors.append(
                FieldError(
                    path,
                    "Invalid",
                    value,
                    f'{shown} in body must be of type int-or-string: "{_json_type(value)}"',
                )
            )
            return
    elif (expected := schema.get("type")) and not _type_ok(value, expected):
        errors.append(
            FieldError(
                path, "Invalid", value, f'{shown} in body must be of type {expected}: "{_json_type(value)}"'
            )
        )
        return

    if "enum" in schema and not any(_canonical(value) == _canonical(e) for e in schema["enum"]):
        supported = [e if isinstance(e, str) else json.dumps(e) for e in schema["enum"]]
        errors.append(FieldError(path, "Unsupported", value, supported=supported))

    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(FieldError(path, "TooLong", value, f"may not be longer than {schema['maxLength']}"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(
                FieldError(
                    path,
                    "Invalid",
                    value,
                    f"{shown} in body should be at least {schema['minLength']} chars long",
                )
            )
        if "pattern" in schema and not _compile(schema["pattern"]).search(value):
            errors.append(
                FieldError(path, "Invalid", value, f"{shown} in body should match '{schema['pattern']}'")
            )

    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            minimum = schema["minimum"]
            if schema.get("exclusiveMinimum") is True and value <= minimum:
                errors.append(
                    FieldError(
                        path, "Invalid", value, f"{shown} in body should be greater than {_num(minimum)}"
                    )
                )
            elif value < minimum:
                errors.append(
                    FieldError(
                        path,
                        "Invalid",
                        value,
                        f"{shown} in body should be greater than or equal to {_num(minimum)}",
                    )
                )
        if "maximum" in schema:
            maximum = schema["maximum"]
            if schema.get("exclusiveMaximum") is True and value >= maximum:
                errors.append(
                    FieldError(path, "Invalid", value, f"{shown} in body should be less than {_num(maximum)}")
                )
            elif value > maximum:
                errors.append(
                    FieldError(
                        path,
                        "Invalid",
                        value,
                        f"{shown} in body should be less than or equal to {_num(maximum)}",
                    )
                )
        multiple = schema.get("multipleOf")
        if multiple and (value / multiple) != int(value / multiple):
            errors.append(
                FieldError(
                    path, "Invalid", value, f"{shown} in body should be a multiple of {_num(multiple)}"
                )
            )

    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(
                FieldError(path, "TooMany", len(value), f"must have at most {schema['maxItems']} items")
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(
                FieldError(
                    path,
                    "Invalid",
                    len(value),
                    f"{shown} in body should have at least {schema['minItems']} items",
                )
            )
        list_type = schema.get("x-kubernetes-list-type")
        if schema.get("uniqueItems") or list_type == "set":
            seen: set[str] = set()
            for index, item in enumerate(value):
                if _canonical(item) in seen:
                    errors.append(FieldError(f"{path}[{index}]", "Duplicate", item))
                seen.add(_canonical(item))
        if list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen_keys: set[str] = set()
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    ident = {k: item.get(k) for k in keys}
                    if _canonical(ident) in seen_keys:
                        errors.append(FieldError(f"{path}[{index}]", "Duplicate", ident))
                    seen_keys.add(_canonical(ident))
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                _validate(item, items, f"{path}[{index}]", errors, old=_old_item(old, value, index, schema))

    if isinstance(value, dict):
        for key in schema.get("required") or []:
            if key not in value:
                errors.append(FieldError(_child(path, key), "Required"))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(
                FieldError(path, "TooMany", len(value), f"must have at most {schema['maxProperties']} items")
            )
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            errors.append(
                FieldError(
                    path,
                    "Invalid",
                    len(value),
                    f"{shown} in body should have at least {schema['minProperties']} properties",
                )
            )
        properties: Mapping[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                continue  # validated by the generic machinery, not by the schema
            previous = old[key] if isinstance(old, dict) and key in old else _NO_OLD
            if key in properties:
                _validate(item, properties[key], _child(path, key), errors, old=previous)
            elif isinstance(additional, Mapping):
                _validate(item, additional, _child(path, key), errors, old=previous)

    for sub in schema.get("allOf") or []:
        _validate(value, sub, path, errors, old=old)
    if schema.get("anyOf") and not any(not validate(value, sub, path) for sub in schema["anyOf"]):
        errors.append(
            FieldError(path, "Invalid", value, f"{shown} in body must validate at least one schema (anyOf)")
        )
    if schema.get("oneOf"):
        passing = sum(1 for sub in schema["oneOf"] if not validate(value, sub, path))
        if passing != 1:
            errors.append(
                FieldError(
                    path, "Invalid", value, f"{shown} in body must validate one and only one schema (oneOf)"
                )
            )
    if isinstance(schema.get("not"), Mapping) and not validate(value, schema["not"], path):
        errors.append(
            FieldError(path, "Invalid", value, f"{shown} in body must not validate the schema (not)")
        )

    errors.extend(cel.evaluate_rules(value, old, schema, path, has_old=old is not _NO_OLD))


# -------------------------------------------------------------------------------- unknown fields


def resolve(schema: Schema, definitions: Mapping[str, Schema]) -> Schema:
    """Follow a ``$ref`` (v2 ``#/definitions/`` or v3 ``#/components/schemas/``) and ``allOf: [ref]``."""
    seen = 0
    while seen < 32:
        seen += 1
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            all_of = schema.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
                ref = all_of[0].get("$ref")
            if not isinstance(ref, str):
                return schema
        target = definitions.get(ref.rsplit("/", 1)[-1])
        if target is None:
            return {}
        schema = target
    return schema


def unknown_fields(
    value: Any,
    schema: Schema | None,
    *,
    definitions: Mapping[str, Schema] | None = None,
    metadata: Schema | None = None,
    path: str = "",
) -> list[str]:
    """The fields of ``value`` the schema does not declare, as the API server names them in
    ``strict decoding error: unknown field "spec.targetLvel"`` (``spec.levels[0].modulez``).

    Works for structural schemas of custom resources (honouring
    ``x-kubernetes-preserve-unknown-fields``, ``additionalProperties`` and embedded resources)
    and for built-in definitions with ``$ref``s (``definitions``). ``metadata``: the schema the
    root's ``metadata`` is checked against (ObjectMeta), since a CRD's schema leaves it open.
    """
    if schema is None:
        return []
    defs = definitions or {}
    found: list[str] = []
    # A built-in definition's ``type: object`` without properties is opaque (FieldsV1, JSON);
    # in a structural schema of a CRD it is an object without fields.
    structural = "x-kubernetes-group-version-kind" not in schema
    _unknown(value, schema, defs, metadata, path, found, root=True, structural=structural)
    return found


def _unknown(  # noqa: PLR0917 -- one recursive walk, its state passed along
    value: Any,
    schema: Schema,
    defs: Mapping[str, Schema],
    metadata: Schema | None,
    path: str,
    found: list[str],
    *,
    root: bool = False,
    structural: bool = True,
) -> None:
    if "$ref" in schema or "allOf" in schema:
        structural = False
    schema = resolve(schema, defs)
    if _preserves(schema):
        return
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        if not properties and additional is None and (not structural or schema.get("type") != "object"):
            return  # an untyped or opaque value (RawExtension, FieldsV1, JSON): anything goes
        for key, item in value.items():
            child = _child(path, key)
            if (root or embedded) and key in ("apiVersion", "kind"):
                continue
            if (root or embedded) and key == "metadata":
                target = metadata if metadata is not None else properties.get("metadata")
                if isinstance(target, Mapping):
                    _unknown(
                        item, target, defs, None, child, found, structural=metadata is None and structural
                    )
                continue
            if key in properties:
                _unknown(item, properties[key], defs, None, child, found, structural=structural)
            elif isinstance(additional, Mapping):
                _unknown(item, additional, defs, None, child, found, structural=structural)
            elif additional is True:
                continue
            else:
                found.append(child)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                _unknown(item, items, defs, None, f"{path}[{index}]", found, structural=structural)
