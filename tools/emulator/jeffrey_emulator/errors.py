"""Kubernetes-shaped API errors (``kind: Status``) raised by the emulated API server.

Every failure the emulator reports is an :class:`ApiError` which renders to the same ``Status``
object a real kube-apiserver would send: ``code``, ``reason``, ``message`` and ``details``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .resources import ResourceType

__all__ = [
    "ApiError",
    "FieldError",
    "already_exists",
    "bad_request",
    "conflict",
    "forbidden",
    "gone",
    "invalid",
    "method_not_allowed",
    "not_found",
    "unsupported_media_type",
]


class ApiError(Exception):
    """An error response of the API server, rendered as a ``kind: Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``Status`` object exactly as the API server would send it."""
        result: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            result["details"] = self.details
        return result


def _format_value(value: Any) -> str:
    """Render a bad value the way ``field.Error`` does (Go's %q for strings, %v for scalars)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error`` of apimachinery: a field path, an error type, a bad value, a detail."""

    field: str
    type: str  # "Required", "Invalid", "Unsupported", "Forbidden", "TooLong", "TooMany", "Duplicate"
    value: Any = None
    detail: str = ""
    supported: Sequence[str] = dataclasses.field(default_factory=tuple)

    @property
    def cause_reason(self) -> str:
        return {
            "Required": "FieldValueRequired",
            "Invalid": "FieldValueInvalid",
            "Unsupported": "FieldValueNotSupported",
            "Forbidden": "FieldValueForbidden",
            "TooLong": "FieldValueTooLong",
            "TooMany": "FieldValueTooMany",
            "Duplicate": "FieldValueDuplicate",
        }.get(self.type, "FieldValueInvalid")

    @property
    def body(self) -> str:
        """The message without the field path, e.g. ``Unsupported value: "FOO": supported values: ...``."""
        if self.type == "Required":
            text = "Required value"
        elif self.type == "Forbidden":
            text = "Forbidden"
        elif self.type == "TooLong":
            text = "Too long"
        elif self.type == "TooMany":
            text = f"Too many: {_format_value(self.value)}"
        elif self.type == "Duplicate":
            text = f"Duplicate value: {_format_value(self.value)}"
        elif self.type == "Unsupported":
            text = f"Unsupported value: {_format_value(self.value)}"
            if self.supported:
                quoted = ", ".join(json.dumps(s, ensure_ascii=False) for s in self.supported)
                text += f": supported values: {quoted}"
        else:
            text = f"Invalid value: {_format_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body}" if self.field else self.body

    def cause(self) -> dict[str, Any]:
        return {"reason": self.cause_reason, "message": self.body, "field": self.field}


def _details(rt: ResourceType | None, name: str | None, *, kind: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rt is not None and rt.group:
        details["group"] = rt.group
    if kind is not None:
        details["kind"] = kind
    elif rt is not None:
        details["kind"] = rt.plural
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.group_resource} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str, detail: str | None = None) -> ApiError:
    detail = (
        detail
        or "the object has been modified; please apply your changes to the latest version and try again"
    )
    message = f'Operation cannot be fulfilled on {rt.group_resource} "{name}": {detail}'
    return ApiError(409, "Conflict", message, _details(rt, name))


def invalid(rt: ResourceType, name: str, errors: Sequence[FieldError]) -> ApiError:
    qualified_kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    texts = [str(error) for error in errors]
    summary = texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
    details = _details(rt, name, kind=rt.kind)
    details["causes"] = [error.cause() for error in errors]
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(message: str, rt: ResourceType | None = None, name: str | None = None) -> ApiError:
    return ApiError(403, "Forbidden", message, _details(rt, name) if rt is not None else None)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def endpoint_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def unprocessable(message: str, field_path: str | None = None) -> ApiError:
    """A 422 for patches that cannot be applied (e.g. a failed JSON-patch ``test`` operation)."""
    causes = [{"reason": "FieldValueInvalid", "message": message, "field": field_path or ""}]
    return ApiError(
        422,
        "Invalid",
        f"the server rejected our request due to an error in our request: {message}",
        {"causes": causes},
    )
