"""Evaluating the generated CRD's CEL rules with a real CEL implementation (cel-python).

One copy for every test of ``x-kubernetes-validations``: the ``cel`` fixture (skips locally,
fails under ``JEFFREY_REQUIRE_ALL=1`` when cel-python is missing), the CRD's spec schema, and
:func:`violations`, which evaluates rules as the API server does (numbers as doubles,
``messageExpression`` when there is one).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from jeffrey_operator.core import crdgen

ROOT = pathlib.Path(__file__).resolve().parent.parent

try:
    import celpy
except ModuleNotFoundError:  # pragma: no cover - CI installs it (pyproject dev extra)
    celpy = None


@pytest.fixture(scope="module")
def cel() -> Any:
    if celpy is None:
        message = "cel-python is not installed (pip install cel-python)"
        if os.environ.get("JEFFREY_REQUIRE_ALL") == "1":
            pytest.fail(message + " and JEFFREY_REQUIRE_ALL=1")
        pytest.skip(message)
    return celpy


def spec_schema() -> dict[str, Any]:
    """The ``spec`` schema of the CRD in ``crds/`` (what users install)."""
    crd = yaml.safe_load((ROOT / "crds" / crdgen.CRD_FILENAME).read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def typed(schema: dict[str, Any], value: Any) -> Any:
    """JSON as the API server hands it to CEL: ``type: number`` fields are doubles."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: typed(props.get(k, {}), v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(schema.get("items", {}), v) for v in value]
    if schema.get("type") == "number" and isinstance(value, int | float):
        return float(value)
    return value


def violations(cel: Any, schema: dict[str, Any], value: Any) -> Iterator[str]:
    """The messages of every rule that ``value`` breaks, anywhere below ``schema``."""
    env = cel.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        activation = {"self": cel.json_to_cel(typed(schema, value))}
        if not env.program(env.compile(rule["rule"])).evaluate(activation):
            expression = rule.get("messageExpression")
            yield (
                str(env.program(env.compile(expression)).evaluate(activation))
                if expression
                else rule["message"]
            )
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in schema.get("properties", {}):
                yield from violations(cel, schema["properties"][key], sub)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from violations(cel, schema["items"], item)
