"""What real clients ask of an API server, answered by the emulator as a real one would (issue 11):
OpenAPI v2/v3, Table responses, server-side apply and managed fields, ``fieldValidation``,
``dryRun``, CEL rules, namespaces as objects. Over HTTP, with the shapes kubectl depends on;
tests/test_kubectl.py runs the real kubectl against the same features.
"""

from __future__ import annotations

import copy
import datetime
import doctest
import importlib.util
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from emulator_fixtures import MINIMAL_JEFFREY_CRD, jeffrey_crd_dict, jeffrey_integration
from jeffrey_emulator import Emulator, ObjectStore, ResourceType, deployment_manifest, openapi
from jeffrey_emulator.cel import evaluate_rules
from jeffrey_emulator.managed import render_path
from jeffrey_emulator.tables import human_duration, jsonpath, table
from operator_fixtures import ROOT

JI = "/apis/jeffreyos.io/v1alpha1/namespaces/default/jeffreyintegrations"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
TABLE = (  # what kubectl get sends
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
    "application/json"
)
APPLY = "application/apply-patch+yaml"

#: The hand-written CRD with printer columns and CEL rules of every kind this module tests.
COLUMNS = [
    {"name": "Target", "type": "string", "jsonPath": ".spec.targetLevel"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.levels[0].modules[0].replicas"},
    {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def fidelity_crd() -> dict[str, Any]:
    crd = copy.deepcopy(MINIMAL_JEFFREY_CRD)
    version = crd["spec"]["versions"][0]
    version["additionalPrinterColumns"] = COLUMNS
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [
        {
            "rule": "!self.paused || self.targetLevel == oldSelf.targetLevel",
            "messageExpression": "'targetLevel cannot change to ' + self.targetLevel + ' while paused'",
        },
        {"rule": "self.levels.size() <= 6", "reason": "FieldValueForbidden", "message": "too many levels"},
        {"rule": "self.labels.team != ''", "message": "a team"},  # a run-time error without labels
        {"rule": "self.targetLevel.lowerAscii() != 'supreme'"},  # a Kubernetes CEL extension
        {"rule": "self.promotion.cooldown.indexOf('x') < 0 || self.promotion.cooldown.url() != ''"},
    ]
    return crd


@pytest.fixture(name="jeffrey_crd")
def fidelity_crd_fixture() -> dict[str, Any]:
    return fidelity_crd()


@pytest_asyncio.fixture()
async def http(emulator: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(emulator.url) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    accept: str | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any, list[str]]:
    """Status, body and the ``Warning`` headers of one request."""
    data = body if isinstance(body, str) else json.dumps(body) if body is not None else None
    headers = {"Content-Type": content_type} if data is not None else {}
    if accept:
        headers["Accept"] = accept
    async with http.request(method, path, data=data, headers=headers, params=params) as response:
        text = await response.text()
        parsed = json.loads(text) if text.strip().startswith(("{", "[")) else text
        return response.status, parsed, response.headers.getall("Warning", [])


def labelled(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body = jeffrey_integration(name, namespace, **spec)
    body["spec"].setdefault("labels", {"team": "platform"})
    return body


# ------------------------------------------------------------------------------------ OpenAPI


async def test_openapi_v3_lists_every_group_version_and_its_documents_say_what_kubectl_checks(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    status, root, _ = await call(http, "GET", "/openapi/v3")
    assert status == 200
    paths = root["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/jeffreyos.io/v1alpha1", "apis/coordination.k8s.io/v1"} <= set(
        paths
    )
    url = paths["apis/jeffreyos.io/v1alpha1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/jeffreyos.io/v1alpha1?hash=")

    async with http.get(url) as response:
        assert response.headers["Cache-Control"] == "public, immutable"
        document = await response.json()
    schemas = document["components"]["schemas"]
    ji = schemas["io.jeffreyos.v1alpha1.JeffreyIntegration"]
    assert ji["x-kubernetes-group-version-kind"] == [
        {"group": "jeffreyos.io", "kind": "JeffreyIntegration", "version": "v1alpha1"}
    ]
    assert ji["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas  # every ref resolves
    item = document["paths"]["/apis/jeffreyos.io/v1alpha1/namespaces/{namespace}/jeffreyintegrations/{name}"]
    patch = item["patch"]
    # kubectl's QueryParamVerifierV3: a PATCH for the GVK with a fieldValidation query parameter.
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "jeffreyos.io",
        "kind": "JeffreyIntegration",
        "version": "v1alpha1",
    }
    assert {"fieldValidation", "fieldManager", "force", "dryRun"} <= {
        p["name"] for p in patch["parameters"] if p["in"] == "query"
    }
    assert "application/apply-patch+yaml" in patch["requestBody"]["content"]

    # A CRD created later is in the documents at once (with a new hash).
    crd = copy.deepcopy(MINIMAL_JEFFREY_CRD)
    crd["metadata"]["name"] = "widgets.example.com"
    crd["spec"]["group"] = "example.com"
    crd["spec"]["names"] = {"kind": "Widget", "plural": "widgets", "singular": "widget"}
    emulator.register_crd(crd)
    _, root, _ = await call(http, "GET", "/openapi/v3")
    assert "apis/example.com/v1alpha1" in root["paths"]


async def test_openapi_built_in_kinds_carry_the_kubernetes_1_31_schemas(http: aiohttp.ClientSession) -> None:
    _, document, _ = await call(http, "GET", "/openapi/v3/apis/apps/v1")
    deployment = document["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    spec = document["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    assert (
        spec["required"] == ["selector", "template"] and spec["properties"]["replicas"]["type"] == "integer"
    )
    scale = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"]["kind"] == "Scale"

    status, v2, _ = await call(http, "GET", "/openapi/v2", accept="application/json")
    assert status == 200 and v2["swagger"] == "2.0"
    assert "io.k8s.api.core.v1.Namespace" in v2["definitions"]
    lease = v2["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]["patch"]
    assert lease["x-kubernetes-action"] == "patch" and "fieldValidation" in {
        p["name"] for p in lease["parameters"]
    }
    # client-go asks for protobuf (gnostic's openapi_v2.Document): field 1 is "swagger".
    proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    async with http.get("/openapi/v2", headers={"Accept": proto}) as response:
        assert response.status == 200
        assert response.content_type == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        assert (await response.read()).startswith(b"\n\x032.0\x12")
    status, body, _ = await call(http, "GET", "/openapi/v2", accept="application/vnd.kubernetes.protobuf")
    assert status == 406 and body["reason"] == "NotAcceptable"


async def test_aggregated_discovery_is_served_to_who_asks_for_it_first(http: aiohttp.ClientSession) -> None:
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    async with http.get("/apis", headers={"Accept": f"{aggregated},application/json"}) as response:
        assert response.headers["Content-Type"] == aggregated  # how client-go tells the formats apart
        body = await response.json()
    assert body["kind"] == "APIGroupDiscoveryList" and body["apiVersion"] == "apidiscovery.k8s.io/v2"
    apps = next(i for i in body["items"] if i["metadata"]["name"] == "apps")
    (deployments,) = [r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments"]
    assert deployments["responseKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert deployments["scope"] == "Namespaced" and deployments["shortNames"] == ["deploy"]
    assert [s["subresource"] for s in deployments["subresources"]] == ["status", "scale"]
    assert apps["versions"][0]["freshness"] == "Current"
    _, core, _ = await call(http, "GET", "/api", accept=aggregated)
    assert [i["metadata"]["name"] for i in core["items"]] == [""]
    _, legacy, _ = await call(http, "GET", "/apis", accept="application/json")
    assert legacy["kind"] == "APIGroupList"  # everybody else: the classic documents


# ------------------------------------------------------------------------------------- tables


def test_jsonpath_and_ages_are_those_of_kubectl() -> None:
    obj = {"status": {"conditions": [{"type": "A", "status": "x"}, {"type": "Ready", "status": "True"}]}}
    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath(obj, ".status.conditions[*].type") == ["A", "Ready"]
    assert jsonpath(obj, "{.status.conditions[1].type}") == ["Ready"]
    assert jsonpath(obj, ".status.missing") == []
    table = {0: "0s", 119: "119s", 120: "2m", 303: "5m3s", 3600: "60m", 5 * 3600: "5h", 30 * 3600: "30h"}
    assert {s: human_duration(s) for s in table} == table
    assert human_duration(9 * 86400) == "9d" and human_duration(3 * 365 * 86400 + 86400) == "3y1d"


async def test_a_crd_table_has_its_printer_columns_with_typed_cells(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    emulator.create(labelled("one", targetLevel="CORE"))
    emulator.store.set_status("ji", "default", "one", {"conditions": [{"type": "Ready", "status": "True"}]})
    status, table, _ = await call(http, "GET", JI, accept=TABLE)
    assert status == 200 and table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    columns = [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]]
    assert columns == [
        ("Name", "string", 0),
        ("Target", "string", 0),
        ("Ready", "string", 0),
        ("Replicas", "integer", 0),
        ("Paused", "boolean", 1),
        ("Age", "date", 0),
    ]
    (row,) = table["rows"]
    assert row["cells"][:5] == ["one", "CORE", "True", 1, False]
    assert row["cells"][5].endswith("s")  # an age, as kubectl shows it
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["name"] == "one"
    assert table["metadata"]["resourceVersion"].isdigit()

    _, full, _ = await call(http, "GET", f"{JI}/one", accept=TABLE, params={"includeObject": "Object"})
    assert full["rows"][0]["object"]["spec"]["targetLevel"] == "CORE"
    _, plain, _ = await call(http, "GET", f"{JI}/one", accept="application/json")
    assert plain["kind"] == "JeffreyIntegration"  # only a client that asks gets a Table


async def test_built_in_tables_have_the_api_servers_columns(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    emulator.create(deployment_manifest("web", "default", replicas=2))
    await emulator.deployments.wait_idle()
    _, table, _ = await call(http, "GET", DEPLOY, accept=TABLE)
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    cells = table["rows"][0]["cells"]
    assert cells[:4] == ["web", "2/2", 2, 2] and cells[7] == "app=web"
    _, namespaces, _ = await call(http, "GET", "/api/v1/namespaces", accept=TABLE)
    assert [r["cells"][:2] for r in namespaces["rows"]] == [["default", "Active"]]
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "JeffreyIntegration", "name": "one", "namespace": "default"},
            "reason": "Promoting",
            "message": " promoting CORE ",
            "type": "Normal",
            "count": 3,
            "source": {"component": "jeffrey-operator"},
        }
    )
    _, events, _ = await call(http, "GET", "/api/v1/namespaces/default/events", accept=TABLE)
    heads = [c["name"] for c in events["columnDefinitions"]]
    assert heads[:7] == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message"]
    cells = events["rows"][0]["cells"]
    assert cells[1:4] == ["Normal", "Promoting", "jeffreyintegration/one"]
    assert cells[5:7] == ["jeffrey-operator", "promoting CORE"] and cells[8] == 3
    emulator.create(
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e2", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "regarding": {"kind": "Deployment", "name": "web", "namespace": "default"},
            "reason": "Scaled",
            "note": "scaled to 2",
            "type": "Normal",
            "action": "Scale",
            "reportingController": "jeffrey-operator",
            "reportingInstance": "pod-1",
        }
    )
    _, new_events, _ = await call(
        http, "GET", "/apis/events.k8s.io/v1/namespaces/default/events", accept=TABLE
    )
    cells = new_events["rows"][0]["cells"]
    assert cells[1:7] == ["Normal", "Scaled", "deployment/web", "", "jeffrey-operator, pod-1", "scaled to 2"]
    _, crds, _ = await call(
        http, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", accept=TABLE
    )
    assert [c["name"] for c in crds["columnDefinitions"]] == ["Name", "Created At"]  # the server's default


async def test_a_table_watch_sends_the_columns_with_the_first_event_only(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    emulator.create(labelled("one"))
    emulator.create(labelled("two"))
    events = []
    async with http.get(
        JI, params={"watch": "true", "timeoutSeconds": "1"}, headers={"Accept": TABLE}
    ) as response:
        async for line in response.content:
            if line.strip():
                events.append(json.loads(line))
    assert [e["type"] for e in events] == ["ADDED", "ADDED"]
    assert all(e["object"]["kind"] == "Table" for e in events)
    assert events[0]["object"]["columnDefinitions"][1]["name"] == "Target"
    assert events[1]["object"]["columnDefinitions"] is None
    assert events[1]["object"]["rows"][0]["cells"][0] == "two"


# ---------------------------------------------------------------------------- field validation


async def test_field_validation_strict_warn_and_ignore(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    typo = labelled("typo")
    typo["spec"]["targetLvel"] = "CORE"
    status, body, _ = await call(http, "POST", JI, typo, params={"fieldValidation": "Strict"})
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == (
        'JeffreyIntegration in version "v1alpha1" cannot be handled as a JeffreyIntegration: '
        'strict decoding error: unknown field "spec.targetLvel"'
    )
    assert emulator.store.try_get("ji", "default", "typo") is None

    status, created, warnings = await call(http, "POST", JI, typo)  # no parameter: Warn
    assert status == 201 and warnings == ['299 - "unknown field \\"spec.targetLvel\\""']
    assert "targetLvel" not in created["spec"] and created["spec"]["targetLevel"] == "PRODUCTION"
    assert [r.warnings for r in emulator.requests.warned()] == [['unknown field "spec.targetLvel"']]

    patch = {"spec": {"pausd": True}, "metadata": {"labelz": {}}}
    status, body, _ = await call(
        http,
        "PATCH",
        f"{JI}/typo",
        patch,
        content_type="application/merge-patch+json",
        params={"fieldValidation": "Strict"},
    )
    assert status == 400
    assert (
        body["message"]
        == 'strict decoding error: unknown field "metadata.labelz", unknown field "spec.pausd"'
    )
    status, _, warnings = await call(
        http,
        "PATCH",
        f"{JI}/typo",
        patch,
        content_type="application/merge-patch+json",
        params={"fieldValidation": "Ignore"},
    )
    assert status == 200 and warnings == []

    # Built-in kinds too, down to the pod template; the object's own status and metadata pass.
    deployment = deployment_manifest("web", "default", replicas=1)
    deployment["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    status, body, _ = await call(http, "POST", DEPLOY, deployment, params={"fieldValidation": "Strict"})
    assert status == 400 and 'unknown field "spec.template.spec.containers[0].imagee"' in body["message"]
    status, body, _ = await call(http, "POST", JI, labelled("x"), params={"fieldValidation": "Bogus"})
    assert status == 400 and "fieldValidation" in body["message"]


async def test_annotations_are_limited_to_256_kib(http: aiohttp.ClientSession) -> None:
    """Why big CRDs need server-side apply: kubectl's last-applied annotation would not fit."""
    body = labelled("big")
    body["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "x" * 262144}
    status, answer, _ = await call(http, "POST", JI, body)
    assert status == 422
    assert answer["message"].endswith("metadata.annotations: Too long: must have at most 262144 bytes")


async def test_duplicate_fields_are_strict_decoding_errors_too(http: aiohttp.ClientSession) -> None:
    body = json.dumps(labelled("dup"))[:-2] + ', "targetLevel": "CORE", "paused": false, "paused": true}}'
    status, answer, _ = await call(http, "POST", JI, body, params={"fieldValidation": "Strict"})
    assert status == 400 and answer["message"].endswith(
        'strict decoding error: duplicate field "spec.paused"'
    )
    status, created, warnings = await call(http, "POST", JI, body)
    assert status == 201 and created["spec"]["paused"] is True  # the last one wins, as in Go
    assert warnings == ['299 - "duplicate field \\"spec.paused\\""']


async def test_dry_run_answers_but_stores_nothing(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    before = emulator.store.resource_version
    status, body, _ = await call(http, "POST", JI, labelled("dry"), params={"dryRun": "All"})
    assert status == 201 and body["metadata"]["name"] == "dry"
    config = json.dumps(labelled("dry-apply"))
    status, body, _ = await call(
        http,
        "PATCH",
        f"{JI}/dry-apply",
        config,
        content_type=APPLY,
        params={"dryRun": "All", "fieldManager": "me"},
    )
    assert status == 201 and body["metadata"]["managedFields"][0]["manager"] == "me"
    assert emulator.store.try_get("ji", "default", "dry") is None
    assert emulator.store.try_get("ji", "default", "dry-apply") is None
    assert emulator.store.resource_version == before


# --------------------------------------------------------------------------- server-side apply


def managers(obj: dict[str, Any]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    return {
        (e["manager"], e["operation"], e.get("subresource")): e["fieldsV1"]
        for e in obj["metadata"]["managedFields"]
    }


async def test_server_side_apply_creates_owns_conflicts_and_forces(http: aiohttp.ClientSession) -> None:
    config = labelled("ssa", targetLevel="CORE", paused=False, labels={"team": "platform", "extra": "x"})
    status, created, _ = await call(
        http, "PATCH", f"{JI}/ssa", json.dumps(config), content_type=APPLY, params={"fieldManager": "helm"}
    )
    assert status == 201 and created["spec"]["targetLevel"] == "CORE"
    fields = managers(created)[("helm", "Apply", None)]
    assert fields["f:spec"]["f:targetLevel"] == {} and fields["f:spec"]["f:labels"] == {
        "f:extra": {},
        "f:team": {},
    }
    assert "f:status" not in fields and "f:uid" not in fields.get("f:metadata", {})

    # Another manager's update takes the field it changes (updates never conflict) ...
    status, updated, _ = await call(
        http,
        "PATCH",
        f"{JI}/ssa",
        {"spec": {"targetLevel": "LOOPS"}},
        content_type="application/merge-patch+json",
        params={"fieldManager": "kubectl-edit"},
    )
    assert status == 200
    owners = managers(updated)
    assert "f:targetLevel" not in owners[("helm", "Apply", None)]["f:spec"]
    assert owners[("kubectl-edit", "Update", None)] == {"f:spec": {"f:targetLevel": {}}}

    # ... so applying CORE again is a conflict, with the API server's message and causes.
    status, body, _ = await call(
        http, "PATCH", f"{JI}/ssa", json.dumps(config), content_type=APPLY, params={"fieldManager": "helm"}
    )
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        "Apply failed with 1 conflict: "
        'conflict with "kubectl-edit" using jeffreyos.io/v1alpha1: .spec.targetLevel'
    )
    assert body["details"]["causes"] == [
        {
            "type": "FieldManagerConflict",
            "message": 'conflict with "kubectl-edit" using jeffreyos.io/v1alpha1',
            "field": ".spec.targetLevel",
        }
    ]
    # The same value is no conflict: both own it.
    same = copy.deepcopy(config)
    same["spec"]["targetLevel"] = "LOOPS"
    status, shared, _ = await call(
        http, "PATCH", f"{JI}/ssa", json.dumps(same), content_type=APPLY, params={"fieldManager": "helm"}
    )
    assert status == 200 and "f:targetLevel" in managers(shared)[("helm", "Apply", None)]["f:spec"]

    status, forced, _ = await call(
        http,
        "PATCH",
        f"{JI}/ssa",
        json.dumps(config),
        content_type=APPLY,
        params={"fieldManager": "helm", "force": "true"},
    )
    assert status == 200 and forced["spec"]["targetLevel"] == "CORE"
    assert ("kubectl-edit", "Update", None) not in managers(forced)  # its only field was taken

    # Leaving a field out of the configuration removes it (nobody else owns it).
    config["spec"]["labels"] = {"team": "platform"}
    status, pruned, _ = await call(
        http, "PATCH", f"{JI}/ssa", json.dumps(config), content_type=APPLY, params={"fieldManager": "helm"}
    )
    assert status == 200 and pruned["spec"]["labels"] == {"team": "platform"}


async def test_apply_conflicts_list_each_manager_and_path(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    emulator.create(deployment_manifest("web", "default", replicas=1))
    apply_a = deployment_manifest("web", "default", replicas=3)
    status, _, _ = await call(
        http,
        "PATCH",
        f"{DEPLOY}/web",
        json.dumps(apply_a),
        content_type=APPLY,
        params={"fieldManager": "a", "force": "true"},
    )
    assert status == 200
    apply_b = deployment_manifest("web", "default", replicas=5)
    apply_b["spec"]["template"]["spec"]["containers"][0]["image"] = "other:2"
    status, body, _ = await call(
        http, "PATCH", f"{DEPLOY}/web", json.dumps(apply_b), content_type=APPLY, params={"fieldManager": "b"}
    )
    assert status == 409
    assert body["message"] == (
        'Apply failed with 2 conflicts: conflicts with "a":\n'
        '- .spec.replicas\n- .spec.template.spec.containers[name="main"].image'
    )
    # Containers are an associative list keyed by name (from the built-in schema).
    assert render_path(("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}', "f:image")) == (
        '.spec.template.spec.containers[name="web"].image'
    )


async def test_status_writers_own_only_the_status(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    emulator.create(labelled("st"))
    status, body, _ = await call(
        http,
        "PATCH",
        f"{JI}/st/status",
        {"status": {"phase": "Stable"}},
        content_type="application/merge-patch+json",
        params={"fieldManager": "jeffrey-operator"},
    )
    assert status == 200
    assert managers(body)[("jeffrey-operator", "Update", "status")] == {"f:status": {"f:phase": {}}}
    # A user may clear the managed fields, as on a cluster.
    status, cleared, _ = await call(
        http,
        "PATCH",
        f"{JI}/st",
        [{"op": "replace", "path": "/metadata/managedFields", "value": [{}]}],
        content_type="application/json-patch+json",
    )
    assert status == 200 and "managedFields" not in cleared["metadata"]


async def test_apply_needs_a_field_manager_and_force_only_applies(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    status, body, _ = await call(
        http, "PATCH", f"{JI}/x", json.dumps(labelled("x")), content_type=APPLY, params={"fieldManager": ""}
    )
    # Without fieldManager, the User-Agent names the manager (Python/aiohttp here): it works.
    assert status == 201 and body["metadata"]["managedFields"][0]["manager"] == "Python"
    status, body, _ = await call(
        http,
        "PATCH",
        f"{JI}/x",
        {"spec": {}},
        content_type="application/merge-patch+json",
        params={"force": "true"},
    )
    assert status == 422 and body["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch'
    )
    typo = labelled("x")
    typo["spec"]["targetLvel"] = "CORE"
    status, body, _ = await call(
        http,
        "PATCH",
        f"{JI}/x",
        json.dumps(typo),
        content_type=APPLY,
        params={"fieldManager": "me", "fieldValidation": "Strict"},
    )
    assert status == 400 and body["message"] == (
        "failed to create typed patch object (default/x; jeffreyos.io/v1alpha1, Kind=JeffreyIntegration): "
        ".spec.targetLvel: field not declared in schema"
    )


# ------------------------------------------------------------------------------------------ CEL


async def test_cel_rules_are_evaluated_for_real(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    status, _, _ = await call(http, "POST", JI, labelled("cel", paused=True, targetLevel="CORE"))
    assert status == 201
    # A transition rule (oldSelf) with a messageExpression.
    status, body, _ = await call(
        http,
        "PATCH",
        f"{JI}/cel",
        {"spec": {"targetLevel": "LOOPS"}},
        content_type="application/merge-patch+json",
    )
    assert status == 422
    assert body["message"] == (
        'JeffreyIntegration.jeffreyos.io "cel" is invalid: spec: Invalid value: "object": '
        "targetLevel cannot change to LOOPS while paused"
    )
    # The list rule of the hand-written CRD, evaluated by CEL now (not recognised by its shape).
    twice = labelled("twice", levels=[{"level": "CORE", "modules": [{"deployment": "a"}]}] * 2)
    status, body, _ = await call(http, "POST", JI, twice)
    assert (
        status == 422
        and 'spec.levels: Invalid value: "array": each level may appear at most once' in body["message"]
    )
    # A run-time error names the rule, as the API server does.
    bare = jeffrey_integration("bare")
    status, body, _ = await call(http, "POST", JI, bare)
    assert (
        status == 422
        and 'spec: Invalid value: "object": no such key: labels evaluating rule: a team' in body["message"]
    )
    # lowerAscii (a Kubernetes CEL library function) works; url() is not available: skipped.
    assert emulator.store.try_get("ji", "default", "cel") is not None


async def test_validation_ratchets_values_an_update_leaves_alone(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    emulator.create(labelled("old", targetLevel="LOOPS"))
    stricter = fidelity_crd()
    spec = stricter["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["targetLevel"]["enum"] = ["CORE", "COGNITIVE"]  # LOOPS is not allowed any more
    emulator.register_crd(stricter)
    merge = "application/merge-patch+json"
    status, _, _ = await call(
        http, "PATCH", f"{JI}/old", {"spec": {"labels": {"team": "sre"}}}, content_type=merge
    )
    assert status == 200  # targetLevel: LOOPS is kept as it was (ratcheting, as since Kubernetes 1.30)
    status, body, _ = await call(
        http, "PATCH", f"{JI}/old", {"spec": {"targetLevel": "PRODUCTION"}}, content_type=merge
    )
    assert status == 422 and 'spec.targetLevel: Unsupported value: "PRODUCTION"' in body["message"]


async def test_a_crd_whose_rules_do_not_compile_is_refused(http: aiohttp.ClientSession) -> None:
    crd = copy.deepcopy(MINIMAL_JEFFREY_CRD)
    crd["metadata"]["name"] = "widgets.example.com"
    crd["spec"]["group"] = "example.com"
    crd["spec"]["names"] = {"kind": "Widget", "plural": "widgets"}
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "x-kubernetes-validations"
    ] = [{"rule": "self.levels.all(x,"}]
    status, body, _ = await call(http, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 422
    assert body["details"]["causes"][0]["field"] == (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    )
    assert "compilation failed" in body["message"]


def test_the_generated_crds_rules_compile_and_pass_on_the_examples() -> None:
    store = ObjectStore()
    store.register_crd(jeffrey_crd_dict())
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        namespace = store.ensure_namespace(path.stem)["metadata"]["name"]  # one per file: names repeat
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "JeffreyIntegration":
                doc["metadata"]["namespace"] = namespace
                store.create("ji", doc)  # no CEL rule of the real CRD refuses an example


# ------------------------------------------------------------------------------------ namespaces


async def test_namespaces_are_objects(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    status, body, _ = await call(
        http, "POST", JI.replace("/default/", "/elsewhere/"), labelled("x", "elsewhere")
    )
    assert (status, body["message"]) == (404, 'namespaces "elsewhere" not found')
    emulator.ensure_namespace("elsewhere")
    held = labelled("held", namespace="elsewhere")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    emulator.create(held)
    emulator.delete("namespaces", None, "elsewhere")
    status, body, _ = await call(
        http, "POST", JI.replace("/default/", "/elsewhere/"), labelled("y", "elsewhere")
    )
    assert (status, body["reason"]) == (403, "Forbidden")
    assert "because it is being terminated" in body["message"]


def test_resource_types_other_engineers_add_are_served_in_openapi() -> None:
    jobs = ResourceType(
        group="batch",
        version="v1",
        plural="jobs",
        kind="Job",
        singular="job",
        namespaced=True,
        status_subresource=True,
    )
    odd = ResourceType(
        group="example.com", version="v1", plural="things", kind="Thing", singular="thing", namespaced=False
    )
    document = openapi.v3_document([jobs], "v1.31.0")
    assert "io.k8s.api.batch.v1.JobSpec" in document["components"]["schemas"]
    assert "/apis/batch/v1/namespaces/{namespace}/jobs/{name}/status" in document["paths"]
    other = openapi.v3_document([odd], "v1.31.0")["components"]["schemas"]["com.example.v1.Thing"]
    assert other["x-kubernetes-preserve-unknown-fields"] is True  # unknown to us: open, but listed


async def test_a_scale_writer_owns_the_replicas(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    """What an HPA (or ``kubectl scale``) does to a Deployment someone applies."""
    config = json.dumps(deployment_manifest("web", "default", replicas=1))
    status, _, _ = await call(
        http, "PATCH", f"{DEPLOY}/web", config, content_type=APPLY, params={"fieldManager": "argocd"}
    )
    assert status == 201
    scale = {"spec": {"replicas": 4}}
    status, _, _ = await call(
        http,
        "PATCH",
        f"{DEPLOY}/web/scale",
        scale,
        content_type="application/merge-patch+json",
        params={"fieldManager": "horizontal-pod-autoscaler"},
    )
    assert status == 200
    await emulator.deployments.wait_idle()
    owners = managers(emulator.get("deployments", "default", "web"))
    assert owners[("horizontal-pod-autoscaler", "Update", "scale")] == {"f:spec": {"f:replicas": {}}}
    controller = owners[("kube-controller-manager", "Update", "status")]["f:status"]
    assert {"f:readyReplicas", "f:conditions", "f:observedGeneration"} <= set(controller)
    status, body, _ = await call(
        http, "PATCH", f"{DEPLOY}/web", config, content_type=APPLY, params={"fieldManager": "argocd"}
    )
    assert status == 409
    assert body["message"] == (
        "Apply failed with 1 conflict: "
        'conflict with "horizontal-pod-autoscaler" with subresource "scale" using apps/v1: .spec.replicas'
    )


async def test_apply_to_the_status_subresource_owns_the_status_only(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    emulator.create(labelled("st"))
    config = {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegration",
        "metadata": {"name": "st", "namespace": "default"},
        "spec": {"targetLevel": "CORE"},  # ignored on /status
        "status": {"phase": "Stable"},
    }
    status, body, _ = await call(
        http,
        "PATCH",
        f"{JI}/st/status",
        json.dumps(config),
        content_type=APPLY,
        params={"fieldManager": "ctrl"},
    )
    assert status == 200 and body["status"]["phase"] == "Stable"
    assert body["spec"]["targetLevel"] == "PRODUCTION"
    assert managers(body)[("ctrl", "Apply", "status")] == {"f:status": {"f:phase": {}}}


async def test_built_in_defaults_show_as_on_a_cluster(emulator: Emulator) -> None:
    created = emulator.create(deployment_manifest("web", "default", replicas=1, image="example/web"))
    pod = created["spec"]["template"]["spec"]
    assert (pod["restartPolicy"], pod["dnsPolicy"], pod["terminationGracePeriodSeconds"]) == (
        "Always",
        "ClusterFirst",
        30,
    )
    assert pod["containers"][0]["imagePullPolicy"] == "Always"  # no tag: latest
    pinned = emulator.create(deployment_manifest("pinned", "default", replicas=1, image="example/web:1.2"))
    assert pinned["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    namespace = emulator.ensure_namespace("labelled")
    assert namespace["metadata"]["labels"] == {"kubernetes.io/metadata.name": "labelled"}
    assert namespace["spec"] == {"finalizers": ["kubernetes"]}


def test_a_job_table_has_the_api_servers_columns_once_jobs_are_served() -> None:
    jobs = ResourceType(
        group="batch", version="v1", plural="jobs", kind="Job", singular="job", namespaced=True
    )
    now = datetime.datetime(2026, 1, 1, 0, 10, tzinfo=datetime.UTC)
    job = {
        "metadata": {"name": "check", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {
            "succeeded": 1,
            "startTime": "2026-01-01T00:00:00Z",
            "completionTime": "2026-01-01T00:00:07Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    rendered = table(jobs, [job, {"metadata": {"name": "new"}, "spec": {}}], metadata={}, now=now)
    assert [c["name"] for c in rendered["columnDefinitions"]][:5] == [
        "Name",
        "Status",
        "Completions",
        "Duration",
        "Age",
    ]
    assert rendered["rows"][0]["cells"][:6] == ["check", "Complete", "1/1", "7s", "10m", "c"]
    assert rendered["rows"][1]["cells"][:5] == ["new", "Running", "0/1", "", "<unknown>"]


def test_the_worked_examples_in_the_docstrings_hold() -> None:
    from jeffrey_emulator import tables as tables_module  # the module, not the function imported above

    result = doctest.testmod(tables_module)
    assert result.attempted >= 2 and result.failed == 0


def test_the_built_in_schemas_are_those_the_generator_makes() -> None:
    """``builtin_schemas.json`` is generated (tools/emulator/scripts/gen_builtin_schemas.py) from the
    Kubernetes 1.31 definitions in kubernetes-validate (installed in .tools/checkov by make deps)."""
    sources = sorted(
        (ROOT / ".tools" / "checkov").glob(
            "lib/python*/site-packages/kubernetes_validate/kubernetes-json-schema/v1.31.0-local/_definitions.json"
        )
    )
    if not sources:
        message = "kubernetes-validate is not installed in .tools/checkov (make deps)"
        if os.environ.get("JEFFREY_REQUIRE_ALL") == "1":
            pytest.fail(message + " and JEFFREY_REQUIRE_ALL=1")
        pytest.skip(message)
    script = ROOT / "tools" / "emulator" / "scripts" / "gen_builtin_schemas.py"
    spec = importlib.util.spec_from_file_location("gen_builtin_schemas", script)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    expected = generator.build(json.loads(sources[0].read_text(encoding="utf-8")))
    vendored = ROOT / "tools" / "emulator" / "jeffrey_emulator" / "builtin_schemas.json"
    assert json.loads(vendored.read_text(encoding="utf-8")) == expected, (
        f"stale: run python {script} {sources[0]}"
    )


def test_cel_escaped_property_names_as_kubernetes_escapes_them() -> None:
    """A gate's ``for`` is a CEL keyword: Kubernetes rules write it ``self.__for__``."""
    schema = {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "!has(self.__for__) || self.__for__.endsWith('s')", "message": "for: seconds"},
            {"rule": "!has(self.max__dash__rate) || self.max__dash__rate > 0"},
        ],
    }
    assert evaluate_rules({"for": "5s", "max-rate": 1}, None, schema, "g", has_old=False) == []
    assert evaluate_rules({}, None, schema, "g", has_old=False) == []
    (failed, other) = evaluate_rules({"for": "5m", "max-rate": 0}, None, schema, "g", has_old=False)
    assert failed.detail == "for: seconds"
    assert other.detail == "failed rule: !has(self.max__dash__rate) || self.max__dash__rate > 0"
