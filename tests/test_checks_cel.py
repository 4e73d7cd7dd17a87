"""The CEL rules the CRD carries for ``spec.checks``, evaluated by a real CEL implementation
(cel-python), and the schema rules the emulated API server enforces on create."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from cel_fixtures import spec_schema, violations
from jeffrey_emulator import ApiError, load_crds

ROOT = pathlib.Path(__file__).resolve().parent.parent

JOB = {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}}}


def checks_schema() -> dict[str, Any]:
    schema: dict[str, Any] = spec_schema()["properties"]["checks"]
    return schema


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
