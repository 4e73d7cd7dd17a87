"""The CEL rules the CRD carries for ``spec.checks``, evaluated by a real CEL implementation
(cel-python), and the schema rules the emulated API server enforces on create."""

from __future__ import annotations

import copy
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from jeffrey_emulator import ApiError, load_crds
from jeffrey_operator.core import crdgen

ROOT = pathlib.Path(__file__).resolve().parent.parent

try:
    import celpy
except ModuleNotFoundError:  # pragma: no cover - CI installs it (pyproject dev extra)
    celpy = None

JOB = {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}}}


@pytest.fixture(scope="module")
def cel() -> Any:
    if celpy is None:
        message = "cel-python is not installed (pip install cel-python)"
        if os.environ.get("JEFFREY_REQUIRE_ALL") == "1":
            pytest.fail(message + " and JEFFREY_REQUIRE_ALL=1")
        pytest.skip(message)
    return celpy


def checks_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / crdgen.CRD_FILENAME).read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    schema: dict[str, Any] = spec["properties"]["checks"]
    return schema


def violations(cel: Any, schema: dict[str, Any], value: Any) -> Iterator[str]:
    """The message of every rule ``value`` breaks, anywhere below ``schema``."""
    env = cel.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        if not env.program(env.compile(rule["rule"])).evaluate({"self": cel.json_to_cel(value)}):
            yield rule["message"]
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in schema.get("properties", {}):
                yield from violations(cel, schema["properties"][key], sub)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from violations(cel, schema["items"], item)


HTTP = {"url": "http://awareness-loop:8000/readyz"}


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ([{"name": "a", "level": "CORE", "job": JOB}], []),
        ([{"name": "a", "level": "CORE", "http": HTTP}], []),
        ([{"name": "a", "level": "CORE"}], ["set exactly one of job or http"]),
        ([{"name": "a", "level": "CORE", "job": JOB, "http": HTTP}], ["set exactly one of job or http"]),
        (
            [{"name": "a", "level": "CORE", "http": {**HTTP, "jsonPath": "$.status"}}],
            ["jsonPath and equals go together: set both or neither"],
        ),
        ([{"name": "a", "level": "CORE", "http": {**HTTP, "jsonPath": "$.status", "equals": "ok"}}], []),
        (
            [{"name": "a", "level": "CORE", "http": {**HTTP, "headers": [{"name": "X"}]}}],
            ["set exactly one of value or valueFrom"],
        ),
        (
            [
                {
                    "name": "a",
                    "level": "CORE",
                    "http": {
                        **HTTP,
                        "headers": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                    },
                }
            ],
            [],
        ),
        (
            [{"name": "a", "level": "CORE", "job": JOB}, {"name": "a", "level": "LOOPS", "http": HTTP}],
            ["check names must be unique"],
        ),
    ],
)
def test_check_rules(cel: Any, checks: list[dict[str, Any]], expected: list[str]) -> None:
    assert list(violations(cel, checks_schema(), checks)) == expected


def test_the_example_passes_every_check_rule(cel: Any) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "jeffrey-checks.yaml").read_text())
    assert list(violations(cel, checks_schema(), doc["spec"]["checks"])) == []


# ------------------------------------------------------------------ refused by the API server


def ji(check: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegration",
        "metadata": {"name": "bad", "namespace": "checks-schema"},
        "spec": {"levels": [{"level": "CORE", "modules": [{"deployment": "memory"}]}], "checks": [check]},
    }


@pytest.mark.parametrize(
    ("check", "field"),
    [
        (
            {"name": "a", "level": "CORE", "job": {"spec": {"template": {"spec": {"containers": []}}}}},
            "spec.checks[0].job.spec.template.spec.containers",
        ),
        ({"name": "a", "level": "CORE", "http": {"method": "GET"}}, "spec.checks[0].http.url"),
        ({"name": "a", "level": "CORE", "when": "sometimes", "http": HTTP}, "spec.checks[0].when"),
        ({"name": "a", "level": "CORE", "onFailure": "ignore", "http": HTTP}, "spec.checks[0].onFailure"),
        ({"name": "A_B", "level": "CORE", "http": HTTP}, "spec.checks[0].name"),
        ({"name": "a", "level": "CORE", "http": {"url": "file:///etc/passwd"}}, "spec.checks[0].http.url"),
    ],
)
def test_the_api_server_refuses_bad_checks(threaded_emulator: Any, check: dict[str, Any], field: str) -> None:
    for crd in load_crds(ROOT / "crds"):
        threaded_emulator.register_crd(crd)
    threaded_emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "checks-schema"}})
    with pytest.raises(ApiError) as err:
        threaded_emulator.create(copy.deepcopy(ji(check)))
    assert err.value.code == 422 and field in err.value.message
