"""CEL validation rules (``x-kubernetes-validations``) of custom resources, with a real CEL
implementation (``cel-python``) instead of recognising rule shapes.

What the API server does, and this module too:

* ``rule`` is evaluated with ``self`` bound to the value at the schema node (and ``oldSelf`` to the
  previous value on updates); a rule that mentions ``oldSelf`` is a *transition rule*: evaluated
  only on updates where the old value exists;
* a rule that is false fails with ``messageExpression`` (evaluated, must be a non-empty string), or
  ``message``, or ``failed rule: <rule>``; ``reason`` (FieldValueInvalid, FieldValueForbidden,
  FieldValueRequired, FieldValueDuplicate) and ``fieldPath`` shape the error;
* a rule that fails at run time (``no such key: team evaluating rule: <message or rule>``, a type
  error) is an Invalid error, worded as the API server words it; a rule that does not compile
  makes the CRD itself invalid.

Differences: the Kubernetes CEL libraries are only partly there (``lowerAscii``, ``upperAscii``,
``trim``, ``split``, ``join``, ``indexOf``, ``lastIndexOf``, ``replace``, ``isSorted``, ``sum``,
``min``, ``max`` are; ``quantity``, ``url``, ``ip``, ``format``, optional types are not): a rule using
a missing function is skipped with a log line (never a refusal the real server would not make);
no cost budget; no type checking at CRD creation beyond parsing. Escaped property names
(``self.__for__``, ``self.a__dash__b``) are rewritten into index expressions first.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from .errors import FieldError

__all__ = ["CelRule", "compile_error", "evaluate_rules"]

logger = logging.getLogger("jeffrey_emulator.cel")

_OLD_SELF = re.compile(r"\boldSelf\b")
_REASONS = {
    "FieldValueInvalid": "Invalid",
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required",
    "FieldValueDuplicate": "Duplicate",
}


# ------------------------------------------------------------------ Kubernetes CEL extensions


def _string_fn(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        result = fn(*args)
        if isinstance(result, str):
            return celtypes.StringType(result)
        if isinstance(result, bool):
            return celtypes.BoolType(result)
        if isinstance(result, int):
            return celtypes.IntType(result)
        if isinstance(result, list):
            return celtypes.ListType([celtypes.StringType(r) if isinstance(r, str) else r for r in result])
        return result

    return wrapper


def _split(text: str, sep: str, limit: int = -1) -> list[str]:
    return text.split(sep, int(limit) - 1 if int(limit) > 0 else -1)


def _index_of(value: Any, item: Any) -> int:
    try:
        return int(value.index(item))
    except ValueError:
        return -1


def _last_index_of(value: Any, item: Any) -> int:
    if isinstance(value, str):
        return value.rfind(item)
    positions = [i for i, v in enumerate(value) if v == item]
    return positions[-1] if positions else -1


EXTENSIONS: dict[str, Callable[..., Any]] = {
    "lowerAscii": _string_fn(lambda s: s.lower()),
    "upperAscii": _string_fn(lambda s: s.upper()),
    "trim": _string_fn(lambda s: s.strip()),
    "split": _string_fn(_split),
    "join": _string_fn(lambda items, sep="": str(sep).join(str(i) for i in items)),
    "indexOf": _string_fn(_index_of),
    "lastIndexOf": _string_fn(_last_index_of),
    "replace": _string_fn(lambda s, old, new, n=-1: s.replace(old, new, int(n))),
    "isSorted": lambda items: celtypes.BoolType(list(items) == sorted(items)),
    "sum": lambda items: functools.reduce(lambda a, b: a + b, items, celtypes.IntType(0)),
    "min": min,
    "max": max,
}


# ----------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class CelRule:
    """One compiled ``x-kubernetes-validations`` entry."""

    rule: str
    program: Any
    message: str | None
    message_program: Any
    transition: bool
    reason: str
    field_path: str

    @property
    def name(self) -> str:
        """How the API server names a rule in errors (``ruleErrorString``): its message, or itself."""
        return self.message.strip() if self.message else self.rule.strip()

    def default_message(self) -> str:
        return self.message.strip() if self.message else f"failed rule: {self.rule.strip()}"


_ENV = celpy.Environment()

#: Kubernetes' escaping of property names in CEL (``self.__for__``, ``self.a__dash__b``).
_ESCAPES = {"underscores": "__", "dot": ".", "dash": "-", "slash": "/"}
_ESCAPED_HAS = re.compile(r"has\(\s*([A-Za-z_][\w.]*)\.([A-Za-z_]\w*__\w*)\s*\)")
_ESCAPED_FIELD = re.compile(r"\.([A-Za-z_]\w*__\w*)")
_ESCAPE_PART = re.compile(r"__(underscores|dot|dash|slash)__")
_RESERVED = re.compile(r"^__([a-z]+)__$")


def _unescape(name: str) -> str:
    reserved = _RESERVED.match(name)
    if reserved and reserved[1] not in _ESCAPES:
        return reserved[1]  # a CEL keyword: __for__, __in__, __namespace__ ...
    return _ESCAPE_PART.sub(lambda m: _ESCAPES[m[1]], name)


def _kubernetes_names(text: str) -> str:
    """Rewrite escaped property names into what cel-python evaluates: ``self.__for__`` →
    ``self["for"]``, ``has(self.__for__)`` → ``("for" in self)``."""
    if "__" not in text:
        return text
    text = _ESCAPED_HAS.sub(lambda m: f"({json.dumps(_unescape(m[2]))} in {m[1]})", text)
    return _ESCAPED_FIELD.sub(lambda m: f"[{json.dumps(_unescape(m[1]))}]", text)


@functools.lru_cache(maxsize=1024)
def _program(text: str) -> Any:
    return _ENV.program(_ENV.compile(_kubernetes_names(text)), functions=EXTENSIONS)


def compile_error(text: str) -> str | None:
    """Why a rule (or a messageExpression) does not compile; None when it does."""
    try:
        _program(text)
    except CELParseError as e:
        return f"compilation failed: {str(e).strip()}"
    return None


def _rule(spec: Mapping[str, Any]) -> CelRule | None:
    text = str(spec.get("rule", ""))
    try:
        program = _program(text)
        message_program = _program(str(spec["messageExpression"])) if spec.get("messageExpression") else None
    except CELParseError:
        return None  # refused when the CRD was registered (see store._prepare_crd)
    return CelRule(
        rule=text,
        program=program,
        message=spec.get("message"),
        message_program=message_program,
        transition=bool(_OLD_SELF.search(text)),
        reason=_REASONS.get(str(spec.get("reason") or "FieldValueInvalid"), "Invalid"),
        field_path=str(spec.get("fieldPath") or ""),
    )


def _evaluate(program: Any, activation: Mapping[str, Any]) -> Any:
    result = program.evaluate(dict(activation))
    if isinstance(result, CELEvalError):
        raise result
    return result


def _go_error(error: CELEvalError) -> str:
    """A run-time error as cel-go words it (``no such key: team``)."""
    args = error.args
    if len(args) >= 3 and args[1] is KeyError and args[2]:
        return f"no such key: {args[2][0] if isinstance(args[2], tuple) else args[2]}"
    message = str(args[0] if args else error)
    found = re.search(r"no such member in mapping: '([^']*)'", message)
    return f"no such key: {found[1]}" if found else message


def _unsupported(error: Exception) -> bool:
    return "undeclared reference" in str(error.args[0] if error.args else error)


def evaluate_rules(
    value: Any, old: Any, schema: Mapping[str, Any], path: str, *, has_old: bool
) -> list[FieldError]:
    """The failures of the CEL rules at one schema node (``old`` only counts when ``has_old``)."""
    specs = schema.get("x-kubernetes-validations") or []
    if not specs or value is None:
        return []
    shown_type = str(schema.get("type") or "object")
    activation: dict[str, Any] = {"self": json_to_cel(value)}
    if has_old:
        activation["oldSelf"] = json_to_cel(old)
    problems: list[FieldError] = []
    for spec in specs:
        if not isinstance(spec, Mapping):
            continue
        rule = _rule(spec)
        if rule is None or (rule.transition and not has_old):
            continue
        field = path + rule.field_path if rule.field_path else path
        try:
            passed = _evaluate(rule.program, activation)
        except CELEvalError as e:
            if _unsupported(e):
                logger.warning(
                    "CEL rule %r skipped: %s is not available in the emulator", rule.rule, e.args[-1]
                )
                continue
            problems.append(
                FieldError(field, "Invalid", shown_type, f"{_go_error(e)} evaluating rule: {rule.name}")
            )
            continue
        if bool(passed):
            continue
        message = rule.default_message()
        if rule.message_program is not None:
            try:
                evaluated = _evaluate(rule.message_program, activation)
                if isinstance(evaluated, str) and evaluated.strip():
                    message = str(evaluated)
            except CELEvalError:
                pass  # the API server falls back to message too
        if rule.reason == "Invalid":
            problems.append(FieldError(field, "Invalid", shown_type, message))
        else:
            problems.append(FieldError(field, rule.reason, None, message))
    return problems
