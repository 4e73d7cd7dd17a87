"""``/openapi/v2`` in protobuf, the form client-go asks for (``openapi_v2.Document`` of
gnostic's ``openapiv2/OpenAPIv2.proto``); kubectl reads it for ``explain
--output=plaintext-openapiv2`` and as the fallback of its ``fieldValidation`` probe.

A small protobuf writer for the messages the document uses: Document, Info, Paths, PathItem,
Operation, parameters, responses, Definitions and Schema. Schema keywords Swagger 2.0 cannot express
(``nullable``, ``anyOf``, ``oneOf``, ``not``) are left out, as the API server leaves them out of v2;
``x-`` keywords become vendor extensions (YAML values, as gnostic stores them).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["MEDIA_TYPES", "encode_document"]

#: What client-go sends in ``Accept`` for the protobuf form, and what the server answers with.
MEDIA_TYPES = (
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _message(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _string(field: int, value: Any) -> bytes:
    return _message(field, str(value).encode("utf-8")) if value not in (None, "") else b""


def _strings(field: int, values: Any) -> bytes:
    return b"".join(_string(field, v) for v in values or ())


def _bool(field: int, value: Any) -> bytes:
    return _varint(field << 3) + b"\x01" if value is True else b""


def _int(field: int, value: Any) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return b""
    return _varint(field << 3) + _varint(value)


def _double(field: int, value: Any) -> bytes:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return b""
    return _varint(field << 3 | 1) + struct.pack("<d", float(value))


def _any(value: Any) -> bytes:
    """gnostic's ``Any``: the value as YAML (field 2)."""
    return _string(2, yaml.safe_dump(value, default_flow_style=False).rstrip("\n") or "null")


def _extensions(field: int, node: Mapping[str, Any]) -> bytes:
    return b"".join(
        _message(field, _string(1, key) + _message(2, _any(value)))
        for key, value in node.items()
        if key.startswith("x-")
    )


def schema(node: Mapping[str, Any]) -> bytes:
    """One ``Schema`` message."""
    out = bytearray()
    out += _string(1, node.get("$ref"))
    out += _string(2, node.get("format"))
    out += _string(3, node.get("title"))
    out += _string(4, node.get("description"))
    if "default" in node:
        out += _message(5, _any(node["default"]))
    out += _double(6, node.get("multipleOf"))
    out += _double(7, node.get("maximum"))
    out += _bool(8, node.get("exclusiveMaximum"))
    out += _double(9, node.get("minimum"))
    out += _bool(10, node.get("exclusiveMinimum"))
    out += _int(11, node.get("maxLength"))
    out += _int(12, node.get("minLength"))
    out += _string(13, node.get("pattern"))
    out += _int(14, node.get("maxItems"))
    out += _int(15, node.get("minItems"))
    out += _bool(16, node.get("uniqueItems"))
    out += _int(17, node.get("maxProperties"))
    out += _int(18, node.get("minProperties"))
    out += _strings(19, node.get("required"))
    for value in node.get("enum") or ():
        out += _message(20, _any(value))
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        out += _message(21, _message(1, schema(additional)))
    elif additional is True:
        out += _message(21, _bool(2, True))
    kinds = node.get("type")
    if kinds:
        out += _message(22, _strings(1, [kinds] if isinstance(kinds, str) else kinds))
    items = node.get("items")
    if isinstance(items, Mapping):
        out += _message(23, _message(1, schema(items)))
    elif isinstance(items, list):
        out += _message(23, b"".join(_message(1, schema(i)) for i in items if isinstance(i, Mapping)))
    for sub in node.get("allOf") or ():
        if isinstance(sub, Mapping):
            out += _message(24, schema(sub))
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        named = b"".join(_message(1, _string(1, k) + _message(2, schema(v))) for k, v in properties.items())
        out += _message(25, named)
    out += _bool(27, node.get("readOnly"))
    out += _extensions(31, node)
    return bytes(out)


def _parameter(param: Mapping[str, Any]) -> bytes:
    if param.get("in") == "body":
        body = (
            _string(1, param.get("description"))
            + _string(2, param.get("name"))
            + _string(3, "body")
            + _bool(4, param.get("required"))
            + _message(5, schema(param.get("schema") or {}))
        )
        return _message(1, _message(1, body))  # ParametersItem.parameter.body_parameter
    if param.get("in") == "path":
        sub = (
            _bool(1, param.get("required"))
            + _string(2, "path")
            + _string(3, param.get("description"))
            + _string(4, param.get("name"))
            + _string(5, param.get("type"))
            + _bool(19, param.get("uniqueItems"))
        )
        return _message(1, _message(2, _message(4, sub)))  # ...non_body_parameter.path_parameter_sub_schema
    sub = (
        _bool(1, param.get("required"))
        + _string(2, "query")
        + _string(3, param.get("description"))
        + _string(4, param.get("name"))
        + _string(6, param.get("type"))
        + _bool(20, param.get("uniqueItems"))
    )
    return _message(1, _message(2, _message(3, sub)))  # ...non_body_parameter.query_parameter_sub_schema


def _operation(op: Mapping[str, Any]) -> bytes:
    out = bytearray()
    out += _strings(1, op.get("tags"))
    out += _string(3, op.get("description"))
    out += _string(5, op.get("operationId"))
    out += _strings(6, op.get("produces"))
    out += _strings(7, op.get("consumes"))
    for param in op.get("parameters") or ():
        out += _message(8, _parameter(param))
    responses = b""
    for code, response in (op.get("responses") or {}).items():
        value = _string(1, response.get("description"))
        if isinstance(response.get("schema"), Mapping):
            value += _message(2, _message(1, schema(response["schema"])))
        responses += _message(1, _string(1, code) + _message(2, _message(1, value)))
    out += _message(9, responses)
    out += _strings(10, op.get("schemes"))
    out += _extensions(13, op)
    return bytes(out)


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}


def encode_document(document: Mapping[str, Any]) -> bytes:
    """A Swagger 2.0 document (as :func:`~.openapi.v2_document` builds it) as protobuf."""
    info = document.get("info") or {}
    out = bytearray()
    out += _string(1, document.get("swagger", "2.0"))
    out += _message(2, _string(1, info.get("title")) + _string(2, info.get("version")))
    paths = b""
    for path, item in (document.get("paths") or {}).items():
        encoded = bytearray()
        for method, field in _METHODS.items():
            if method in item:
                encoded += _message(field, _operation(item[method]))
        for param in item.get("parameters") or ():
            encoded += _message(9, _parameter(param))
        paths += _message(2, _string(1, path) + _message(2, bytes(encoded)))
    out += _message(8, paths)
    definitions = b"".join(
        _message(1, _string(1, name) + _message(2, schema(node)))
        for name, node in (document.get("definitions") or {}).items()
    )
    out += _message(9, definitions)
    return bytes(out)
