"""The CRD is generated from the models: it must not drift and must be a structural schema."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from jeffrey_operator.core import crdgen
from jeffrey_operator.core.models import JeffreyIntegrationSpec

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "crds" / crdgen.CRD_FILENAME


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def test_committed_crd_matches_the_models() -> None:
    assert CRD_PATH.read_text() == crdgen.render(), "crds/ is stale: run `make crds`"


def test_crd_names_and_subresources() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    assert crd["metadata"]["name"] == "jeffreyintegrations.jeffreyos.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "JeffreyIntegration",
        "jeffreyintegrations",
        ["ji"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Target"] == ".spec.targetLevel"
    assert columns["Current"] == ".status.currentLevel"
    assert columns["Phase"] == ".status.phase"
    assert columns["Reason"] == ".status.reason"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_schema_is_structural() -> None:
    schema = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        for banned in ("$ref", "anyOf", "allOf", "oneOf", "title", "$defs"):
            assert banned not in node, f"{path} has {banned}"
        if "properties" in node:
            assert node.get("type") == "object", f"{path} lacks type: object"
            assert node.get("additionalProperties") is None, (
                f"{path} mixes properties and additionalProperties"
            )
        if path.endswith(".properties") or path.endswith("]"):
            continue
    spec = schema["properties"]["spec"]["properties"]
    level = spec["levels"]["items"]["properties"]["level"]
    assert level["enum"] == ["CORE", "COGNITIVE", "EMOTIONAL", "CONSCIOUS", "LOOPS", "PRODUCTION"]
    replicas = spec["levels"]["items"]["properties"]["modules"]["items"]["properties"]["replicas"]
    assert (replicas["minimum"], replicas["default"]) == (0, 1)
    assert spec["promotion"]["properties"]["readinessTimeout"]["default"] == "120s"
    assert spec["promotion"]["default"] == {}
    assert "x-kubernetes-validations" in spec["levels"]
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid_resources(path: pathlib.Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "JeffreyIntegration":
            assert doc["apiVersion"] == "jeffreyos.io/v1alpha1"
            JeffreyIntegrationSpec.model_validate(doc["spec"])
