"""Label selectors and field selectors, parsed and matched as the API server does."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

__all__ = [
    "FieldSelector",
    "LabelSelector",
    "label_selector_from_dict",
    "parse_field_selector",
    "parse_label_selector",
]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_KEY_RE = re.compile(rf"^{_KEY}$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "=":
            return present and value == self.values[0]
        if self.operator == "!=":
            return not present or value != self.values[0]
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("gt", "lt"):
            try:
                number = int(value) if value is not None else None
            except ValueError:
                return False
            if number is None:
                return False
            bound = int(self.values[0])
            return number > bound if self.operator == "gt" else number < bound
        return False  # pragma: no cover


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def __str__(self) -> str:
        parts: list[str] = []
        for r in self.requirements:
            if r.operator in ("=", "!="):
                parts.append(f"{r.key}{r.operator}{r.values[0]}")
            elif r.operator in ("in", "notin"):
                parts.append(f"{r.key} {r.operator} ({','.join(r.values)})")
            elif r.operator == "exists":
                parts.append(r.key)
            elif r.operator == "!":
                parts.append(f"!{r.key}")
            else:
                parts.append(f"{r.key}{'>' if r.operator == 'gt' else '<'}{r.values[0]}")
        return ",".join(parts)


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _check_key(key: str, text: str) -> str:
    if not _KEY_RE.match(key) or len(key.rsplit("/", maxsplit=1)[-1]) > 63:
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if not _VALUE_RE.match(value) or len(value) > 63:
        raise bad_request(f"unable to parse requirement: invalid label value {value!r} in {text!r}")
    return value


_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``a=b,c!=d,e,!f,g in (x,y),h notin (z)`` (and ``==``, ``>``, ``<``)."""
    if text is None or not text.strip():
        return LabelSelector()
    requirements: list[Requirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise bad_request(f"unable to parse requirement: empty requirement in {text!r}")
        match = _SET_RE.match(part)
        if match:
            key, op, values = match.groups()
            items = tuple(_check_value(v.strip(), text) for v in values.split(",")) if values.strip() else ()
            if not items:
                raise bad_request(
                    f"unable to parse requirement: for 'in', 'notin' operators, values set "
                    f"can't be empty in {text!r}"
                )
            requirements.append(Requirement(_check_key(key, text), op, items))
        elif part.startswith("!"):
            requirements.append(Requirement(_check_key(part[1:].strip(), text), "!"))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append(
                Requirement(_check_key(key.strip(), text), "!=", (_check_value(value.strip(), text),))
            )
        elif "==" in part:
            key, value = part.split("==", 1)
            requirements.append(
                Requirement(_check_key(key.strip(), text), "=", (_check_value(value.strip(), text),))
            )
        elif "=" in part:
            key, value = part.split("=", 1)
            requirements.append(
                Requirement(_check_key(key.strip(), text), "=", (_check_value(value.strip(), text),))
            )
        elif ">" in part or "<" in part:
            op = ">" if ">" in part else "<"
            key, value = part.split(op, 1)
            if not value.strip().lstrip("-").isdigit():
                raise bad_request(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                    f"an integer in {text!r}"
                )
            requirements.append(
                Requirement(_check_key(key.strip(), text), "gt" if op == ">" else "lt", (value.strip(),))
            )
        else:
            requirements.append(Requirement(_check_key(part, text), "exists"))
    return LabelSelector(tuple(requirements))


def label_selector_from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (``matchLabels`` + ``matchExpressions``) as a selector."""
    if not selector:
        return LabelSelector()
    requirements: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        requirements.append(Requirement(key, "=", (str(value),)))
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = operators.get(expr.get("operator", ""))
        if op is None:
            raise bad_request(f"invalid label selector operator: {expr.get('operator')!r}")
        requirements.append(Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ())))
    return LabelSelector(tuple(requirements))


def _lookup(obj: Mapping[str, Any], path: str) -> str | None:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, dict):  # e.g. core events' `source`: {component, host}
        return str(node.get("component", ""))
    return str(node)


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, str, str], ...] = ()  # (field, "=" or "!=", value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for field_path, op, value in self.terms:
            actual = _lookup(obj, field_path)
            if field_path == "metadata.namespace" and actual is None:
                actual = ""
            equal = (actual if actual is not None else "") == value
            if (op == "=") != equal:
                return False
        return True

    def __bool__(self) -> bool:
        return bool(self.terms)

    def names(self) -> set[str] | None:
        """If the selector pins ``metadata.name=x``, the pinned names (a fast path for lookups)."""
        pinned = {
            value for field_path, op, value in self.terms if field_path == "metadata.name" and op == "="
        }
        return pinned or None


def parse_field_selector(text: str | None, allowed: Iterable[str] = ()) -> FieldSelector:
    """Parse ``metadata.name=x,metadata.namespace!=y``; unknown fields are a 400 like the real server."""
    if text is None or not text.strip():
        return FieldSelector()
    supported = {"metadata.name", "metadata.namespace", *allowed}
    terms: list[tuple[str, str, str]] = []
    for raw in text.split(","):
        part = raw.strip()
        if "!=" in part:
            key, value = part.split("!=", 1)
            op = "!="
        elif "==" in part:
            key, value = part.split("==", 1)
            op = "="
        elif "=" in part:
            key, value = part.split("=", 1)
            op = "="
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key = key.strip()
        if key not in supported:
            raise bad_request(f"field label not supported: {key}")
        terms.append((key, op, value.strip()))
    return FieldSelector(tuple(terms))


Matcher = Callable[[Mapping[str, Any]], bool]


def make_matcher(namespace: str | None, labels: LabelSelector, fields: FieldSelector) -> Matcher:
    """A predicate over objects for a namespace (None: all) and selectors."""

    def matcher(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if namespace is not None and meta.get("namespace") != namespace:
            return False
        if labels and not labels.matches(meta.get("labels")):
            return False
        return not fields or fields.matches(obj)

    return matcher
