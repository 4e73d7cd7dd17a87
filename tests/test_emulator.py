"""Tests of the emulated Kubernetes API (jeffrey_emulator): protocol-level semantics over
HTTP, the direct store API, the simulated Deployment controller, the ``kubernetes`` sync client,
and kopf running a small operator against it."""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import logging
import pathlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf
import kubernetes
import pytest
import pytest_asyncio
import yaml

from emulator_fixtures import (  # noqa: F401  # the *_fixture imports register the fixtures
    MINIMAL_JEFFREY_CRD,
    emulator_fixture,
    emulator_options_fixture,
    eventually,
    eventually_sync,
    jeffrey_crd_dict,
    jeffrey_integration,
    kubeconfig_fixture,
    run_kopf,
    threaded_emulator_fixture,
)
from jeffrey_emulator import (
    BackgroundEmulator,
    DeploymentBehaviour,
    Emulator,
    deployment_manifest,
    load_crds,
)
from jeffrey_emulator.patches import apply_json_patch, apply_merge_patch
from jeffrey_emulator.selectors import parse_field_selector, parse_label_selector

JI = "/apis/jeffreyos.io/v1alpha1/namespaces/default/jeffreyintegrations"
CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
FINALIZER = "example.com/hold"
LEVELS = ["CORE", "COGNITIVE", "EMOTIONAL", "CONSCIOUS", "LOOPS", "PRODUCTION"]


@pytest.fixture(name="jeffrey_crd")
def minimal_crd_for_these_tests() -> dict[str, Any]:
    """Most tests here use the hand-written CRD (deterministic schema, status keeps unknowns)."""
    return copy.deepcopy(MINIMAL_JEFFREY_CRD)


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
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = json.dumps(body) if body is not None else None
    headers = {"Content-Type": content_type} if data is not None else {}
    async with http.request(method, path, data=data, headers=headers, params=params) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text.strip().startswith(("{", "[")) else text)


async def read_watch(
    http: aiohttp.ClientSession, path: str, params: dict[str, str], *, count: int, within: float = 3.0
) -> list[dict[str, Any]]:
    """Read ``count`` events of a watch-stream (or until the server ends it)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(within), http.get(path, params={"watch": "true", **params}) as response:
        assert response.status == 200
        async for line in response.content:
            if line.strip():
                events.append(json.loads(line))
            if len(events) >= count:
                break
    return events


def cm_body(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data,
    }


# ---------------------------------------------------------------------------------- discovery


async def test_discovery_lists_served_resources(http: aiohttp.ClientSession) -> None:
    status, api = await call(http, "GET", "/api")
    assert status == 200 and api["versions"] == ["v1"]

    _, core = await call(http, "GET", "/api/v1")
    assert core["groupVersion"] == "v1"
    names = {r["name"]: r for r in core["resources"]}
    assert {"namespaces", "events", "secrets", "configmaps", "namespaces/status"} <= set(names)
    assert names["namespaces"]["namespaced"] is False and names["configmaps"]["namespaced"] is True

    _, apis = await call(http, "GET", "/apis")
    groups = {g["name"]: g for g in apis["groups"]}
    assert {
        "apps",
        "events.k8s.io",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "kopf.dev",
        "jeffreyos.io",
    } <= set(groups)
    assert groups["jeffreyos.io"]["preferredVersion"]["version"] == "v1alpha1"

    _, ji = await call(http, "GET", "/apis/jeffreyos.io/v1alpha1")
    resources = {r["name"]: r for r in ji["resources"]}
    assert resources["jeffreyintegrations"] == {
        "name": "jeffreyintegrations",
        "singularName": "jeffreyintegration",
        "namespaced": True,
        "kind": "JeffreyIntegration",
        "shortNames": ["ji"],
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    }
    assert resources["jeffreyintegrations/status"]["verbs"] == ["get", "patch", "update"]

    _, apps = await call(http, "GET", "/apis/apps/v1")
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["kind"]) == ("autoscaling", "Scale")

    _, kopf_dev = await call(http, "GET", "/apis/kopf.dev/v1")
    assert {(r["name"], r["namespaced"]) for r in kopf_dev["resources"]} == {
        ("kopfpeerings", True),
        ("clusterkopfpeerings", False),
    }

    status, missing = await call(http, "GET", "/apis/nothing.example.com/v1")
    assert status == 404 and missing["kind"] == "Status" and missing["reason"] == "NotFound"
    status, _ = await call(http, "GET", "/version")
    assert status == 200


async def test_kopf_resource_scanning(emulator: Emulator) -> None:
    """kopf's own discovery code understands the emulator's discovery documents."""
    from kopf._cogs.clients import auth, scanning
    from kopf._cogs.structs.credentials import Vault

    vault = Vault()
    await vault.populate({"emulator": emulator.connection_info()})
    token = auth.vault_var.set(vault)
    try:
        resources = await scanning.scan_resources(
            settings=kopf.OperatorSettings(), logger=logging.getLogger("test")
        )
    finally:
        auth.vault_var.reset(token)
        await vault.close()
    by_name = {(r.group, r.plural): r for r in resources}
    ji = by_name[("jeffreyos.io", "jeffreyintegrations")]
    assert ji.namespaced and ji.kind == "JeffreyIntegration" and ji.subresources == {"status"}
    assert "ji" in ji.shortcuts and ji.preferred
    assert by_name[("apps", "deployments")].subresources == {"status", "scale"}
    assert not by_name[("", "configmaps")].subresources
    assert not by_name[("kopf.dev", "clusterkopfpeerings")].namespaced


# ---------------------------------------------------------------------------- create & errors


async def test_create_sets_metadata_and_returns_201(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    status, first = await call(http, "POST", JI, jeffrey_integration("first"))
    assert status == 201
    meta = first["metadata"]
    assert meta["namespace"] == "default" and meta["generation"] == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["resourceVersion"].isdigit()
    assert first["apiVersion"] == "jeffreyos.io/v1alpha1" and first["kind"] == "JeffreyIntegration"

    status, second = await call(http, "POST", JI, jeffrey_integration("second"))
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    # The namespace comes from the URL, and must exist (namespaces are real objects).
    body = jeffrey_integration("x")
    del body["metadata"]["namespace"]
    status, missing = await call(http, "POST", JI.replace("/default/", "/other/"), body)
    assert (status, missing["reason"], missing["message"]) == (
        404,
        "NotFound",
        'namespaces "other" not found',
    )
    assert missing["details"] == {"name": "other", "kind": "namespaces"}
    status, _ = await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    assert status == 201
    assert emulator.get("namespaces", None, "other")["status"]["phase"] == "Active"
    status, created = await call(http, "POST", JI.replace("/default/", "/other/"), body)
    assert status == 201 and created["metadata"]["namespace"] == "other"

    status, generated = await call(http, "POST", CM, {"metadata": {"generateName": "cm-"}, "data": {}})
    assert status == 201 and re.fullmatch(r"cm-[a-z0-9]{5}", generated["metadata"]["name"])

    status, mismatch = await call(http, "POST", CM, {"metadata": {"name": "x", "namespace": "elsewhere"}})
    assert status == 400 and mismatch["reason"] == "BadRequest"


async def test_error_statuses_are_shaped_like_kubernetes(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", JI, jeffrey_integration("dup"))
    status, body = await call(http, "POST", JI, jeffrey_integration("dup"))
    assert status == 409
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'jeffreyintegrations.jeffreyos.io "dup" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "dup", "group": "jeffreyos.io", "kind": "jeffreyintegrations"},
        "code": 409,
    }
    status, body = await call(http, "GET", f"{CM}/absent")
    assert status == 404
    assert (body["reason"], body["code"], body["message"]) == (
        "NotFound",
        404,
        'configmaps "absent" not found',
    )
    assert body["details"] == {"name": "absent", "kind": "configmaps"}
    status, body = await call(
        http, "PATCH", f"{CM}/absent", {"data": {}}, content_type="application/merge-patch+json"
    )
    assert status == 404
    status, body = await call(
        http, "PATCH", f"{JI}/dup", {"spec": {}}, content_type="application/apply-patch+yaml"
    )
    # Server-side apply needs apiVersion and kind in the configuration (tests/test_kubectl.py
    # and the apply tests below cover the rest of it).
    assert status == 400 and body["reason"] == "BadRequest" and "'Kind' is missing" in body["message"]
    status, body = await call(http, "GET", "/api/v1/namespaces/default/widgets")
    assert status == 404 and body["reason"] == "NotFound"
    status, body = await call(http, "POST", CM, {"metadata": {"name": "Not_Valid"}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.name"


# ----------------------------------------------------------------------- concurrency & patches


async def test_optimistic_concurrency_and_json_patch_test(http: aiohttp.ClientSession) -> None:
    _, obj = await call(http, "POST", CM, cm_body("cc", a="1"))
    rv = obj["metadata"]["resourceVersion"]

    # PUT with the current rv succeeds and bumps it; a stale rv is 409 Conflict.
    obj["data"]["a"] = "2"
    status, updated = await call(http, "PUT", f"{CM}/cc", obj)
    assert status == 200 and int(updated["metadata"]["resourceVersion"]) > int(rv)
    status, conflict = await call(http, "PUT", f"{CM}/cc", obj)
    assert status == 409 and conflict["reason"] == "Conflict"
    assert "the object has been modified" in conflict["message"]
    status, _ = await call(
        http,
        "PATCH",
        f"{CM}/cc",
        {"metadata": {"resourceVersion": rv}, "data": {"b": "1"}},
        content_type="application/merge-patch+json",
    )
    assert status == 409

    # JSON patch: a matching `test` on resourceVersion passes, a failing one is 422 (not 500).
    rv = updated["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        {"op": "replace", "path": "/data/a", "value": "3"},
        {"op": "add", "path": "/data/c", "value": "x"},
        {"op": "remove", "path": "/data/c"},
    ]
    status, patched = await call(http, "PATCH", f"{CM}/cc", ops, content_type="application/json-patch+json")
    assert status == 200
    assert patched["data"] == {"a": "3"} and patched["metadata"]["finalizers"] == [FINALIZER]
    status, failed = await call(http, "PATCH", f"{CM}/cc", ops, content_type="application/json-patch+json")
    assert status == 422 and failed["reason"] == "Invalid" and failed["kind"] == "Status"
    status, _ = await call(
        http,
        "PATCH",
        f"{CM}/cc",
        [{"op": "remove", "path": "/data/nope"}],
        content_type="application/json-patch+json",
    )
    assert status == 422
    status, _ = await call(
        http, "PATCH", f"{CM}/cc", {"not": "a list"}, content_type="application/json-patch+json"
    )
    assert status == 400


async def test_merge_and_strategic_merge_patches(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CM, cm_body("mp", {"app": "x", "tier": "web"}, a="1", b="2"))
    status, obj = await call(
        http,
        "PATCH",
        f"{CM}/mp",
        {"metadata": {"labels": {"tier": None}}, "data": {"a": None}},
        content_type="application/merge-patch+json",
    )
    assert status == 200 and obj["data"] == {"b": "2"} and obj["metadata"]["labels"] == {"app": "x"}

    deployment = deployment_manifest("smp")
    deployment["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "side:1"})
    await call(http, "POST", DEPLOY, deployment)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "side:2"}]}}}}
    status, obj = await call(
        http, "PATCH", f"{DEPLOY}/smp", patch, content_type="application/strategic-merge-patch+json"
    )
    assert status == 200
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("main", "registry.example/jeffrey/module:latest"),
        ("sidecar", "side:2"),
    ]
    # The same as a merge patch replaces the whole list.
    status, obj = await call(
        http, "PATCH", f"{DEPLOY}/smp", patch, content_type="application/merge-patch+json"
    )
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["sidecar"]


def test_patch_functions() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    assert apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "move", "from": "/c", "path": "/d"},
            {"op": "copy", "from": "/d", "path": "/e"},
            {"op": "test", "path": "/a/b/0", "value": 1.0},
        ],
    ) == {"a": {"b": [1, 2, 3]}, "d": "x", "e": "x"}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}  # not modified
    with pytest.raises(Exception, match="testing value"):
        apply_json_patch(doc, [{"op": "test", "path": "/a/b/0", "value": True}])
    assert apply_merge_patch(
        {"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None}, "d": [2], "e": {"f": None}}
    ) == {"a": {"c": 2}, "d": [2], "e": {}}


# ----------------------------------------------------------------- status & generation & delete


async def test_status_subresource_and_generation(http: aiohttp.ClientSession) -> None:
    body = jeffrey_integration("st")
    body["status"] = {"phase": "ignored on create"}
    _, obj = await call(http, "POST", JI, body)
    assert "status" not in obj and obj["metadata"]["generation"] == 1

    # /status changes only the status (and resourceVersion).
    status_patch = {
        "status": {"phase": "Promoting"},
        "spec": {"paused": True},
        "metadata": {"labels": {"x": "y"}},
    }
    status, after = await call(
        http, "PATCH", f"{JI}/st/status", status_patch, content_type="application/merge-patch+json"
    )
    assert status == 200
    assert after["status"] == {"phase": "Promoting"}
    assert after["spec"]["paused"] is False and "labels" not in after["metadata"]
    assert after["metadata"]["generation"] == 1
    assert int(after["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])

    # Writes to the main resource ignore the status.
    status, after = await call(
        http,
        "PATCH",
        f"{JI}/st",
        {"status": {"phase": "Hacked"}},
        content_type="application/merge-patch+json",
    )
    assert after["status"] == {"phase": "Promoting"}

    # Metadata changes do not bump the generation; spec changes do.
    meta_patch = {"metadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}, "finalizers": [FINALIZER]}}
    _, after = await call(http, "PATCH", f"{JI}/st", meta_patch, content_type="application/merge-patch+json")
    assert after["metadata"]["generation"] == 1 and after["metadata"]["finalizers"] == [FINALIZER]
    _, after = await call(
        http, "PATCH", f"{JI}/st", {"spec": {"paused": True}}, content_type="application/merge-patch+json"
    )
    assert after["metadata"]["generation"] == 2
    # A no-op write keeps the resourceVersion (and emits no watch event).
    _, again = await call(
        http, "PATCH", f"{JI}/st", {"spec": {"paused": True}}, content_type="application/merge-patch+json"
    )
    assert again["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
    # PUT to /status with the full object.
    after["status"] = {"phase": "Stable"}
    status, put = await call(http, "PUT", f"{JI}/st/status", after)
    assert status == 200 and put["status"] == {"phase": "Stable"}
    status, _ = await call(http, "PATCH", f"{CM}/x/status", {}, content_type="application/merge-patch+json")
    assert status == 404  # configmaps have no status subresource


async def test_finalizers_and_deletion(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    body = cm_body("fin")
    body["metadata"]["finalizers"] = [FINALIZER]
    _, obj = await call(http, "POST", CM, body)
    watcher = asyncio.create_task(
        read_watch(http, CM, {"resourceVersion": obj["metadata"]["resourceVersion"]}, count=2)
    )
    await asyncio.sleep(0.05)

    status, deleting = await call(http, "DELETE", f"{CM}/fin")
    assert status == 200
    assert (
        deleting["metadata"]["deletionTimestamp"] and deleting["metadata"]["deletionGracePeriodSeconds"] == 0
    )
    status, again = await call(http, "DELETE", f"{CM}/fin")  # idempotent while finalizing
    assert status == 200 and again["metadata"]["resourceVersion"] == deleting["metadata"]["resourceVersion"]
    status, still = await call(http, "GET", f"{CM}/fin")
    assert status == 200 and still["metadata"]["deletionTimestamp"]

    status, forbidden = await call(
        http,
        "PATCH",
        f"{CM}/fin",
        {"metadata": {"finalizers": [FINALIZER, "other/x"]}},
        content_type="application/merge-patch+json",
    )
    assert status == 422 and "no new finalizers can be added" in forbidden["message"]

    status, final = await call(
        http,
        "PATCH",
        f"{CM}/fin",
        [{"op": "remove", "path": "/metadata/finalizers"}],
        content_type="application/json-patch+json",
    )
    assert status == 200 and "finalizers" not in final["metadata"]
    status, _ = await call(http, "GET", f"{CM}/fin")
    assert status == 404
    events = await watcher
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["deletionTimestamp"]

    # Without finalizers: removed at once; the response is the object.
    await call(http, "POST", CM, cm_body("plain"))
    status, gone = await call(http, "DELETE", f"{CM}/plain")
    assert status == 200 and gone["metadata"]["name"] == "plain"
    assert emulator.store.try_get("configmaps", "default", "plain") is None


async def test_owner_references_cascade_and_namespace_deletion(emulator: Emulator) -> None:
    owner = emulator.create(jeffrey_integration("owner"))
    child = cm_body("child")
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "jeffreyos.io/v1alpha1",
            "kind": "JeffreyIntegration",
            "name": "owner",
            "uid": owner["metadata"]["uid"],
        }
    ]
    emulator.create(child, "default")
    emulator.delete("ji", "default", "owner")
    assert emulator.store.try_get("configmaps", "default", "child") is None

    emulator.ensure_namespace("doomed")
    emulator.create(cm_body("a"), "doomed")
    held = cm_body("held")
    held["metadata"]["finalizers"] = [FINALIZER]
    emulator.create(held, "doomed")
    ns = emulator.delete("namespaces", None, "doomed")
    assert ns["status"]["phase"] == "Terminating"
    assert emulator.list("configmaps", "doomed")[0]["metadata"]["name"] == "held"
    emulator.patch("configmaps", "doomed", "held", {"metadata": {"finalizers": None}})
    assert emulator.store.try_get("namespaces", None, "doomed") is None


# ------------------------------------------------------------------------------ lists & watches


async def test_list_with_selectors_and_pagination(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    emulator.create(cm_body("a", {"app": "web", "tier": "front"}), "default")
    emulator.create(cm_body("b", {"app": "web", "tier": "back"}), "default")
    emulator.create(cm_body("c", {"app": "db"}), "default")
    emulator.ensure_namespace("other")
    emulator.create(cm_body("d", {"app": "web"}), "other")

    async def names(path: str, **params: str) -> list[str]:
        status, body = await call(http, "GET", path, params=params)
        assert status == 200, body
        return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in body["items"]]

    assert await names(CM, labelSelector="app=web") == ["default/a", "default/b"]
    assert await names(CM, labelSelector="app==web,tier!=back") == ["default/a"]
    assert await names(CM, labelSelector="tier") == ["default/a", "default/b"]
    assert await names(CM, labelSelector="!tier") == ["default/c"]
    assert await names(CM, labelSelector="app in (db, web),tier notin (front)") == ["default/b", "default/c"]
    assert await names(CM, fieldSelector="metadata.name=b") == ["default/b"]
    assert await names(CM, fieldSelector="metadata.name!=b") == ["default/a", "default/c"]
    assert await names("/api/v1/configmaps", labelSelector="app=web") == ["default/a", "default/b", "other/d"]
    assert await names("/api/v1/configmaps", fieldSelector="metadata.namespace=other") == ["other/d"]

    _, body = await call(http, "GET", "/api/v1/configmaps")
    assert body["kind"] == "ConfigMapList" and body["apiVersion"] == "v1"
    assert body["metadata"]["resourceVersion"] == str(emulator.store.resource_version)
    status, bad = await call(http, "GET", CM, params={"fieldSelector": "spec.foo=bar"})
    assert status == 400 and bad["message"] == "field label not supported: spec.foo"
    status, _ = await call(http, "GET", CM, params={"labelSelector": "a in ()"})
    assert status == 400

    _, page = await call(http, "GET", "/api/v1/configmaps", params={"limit": "2"})
    assert len(page["items"]) == 2 and page["metadata"]["remainingItemCount"] == 2
    _, rest = await call(
        http, "GET", "/api/v1/configmaps", params={"limit": "2", "continue": page["metadata"]["continue"]}
    )
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c", "d"] and "continue" not in rest["metadata"]


def test_selector_parsing() -> None:
    selector = parse_label_selector("a=b, c!=d, e, !f, g in (x,y), h notin (z)")
    assert selector.matches({"a": "b", "e": "", "g": "x"})
    assert not selector.matches({"a": "b", "e": "", "g": "x", "f": "1"})
    assert not selector.matches({"a": "b", "e": "", "g": "x", "h": "z"})
    assert str(parse_label_selector("a=b,c in (x,y)")) == "a=b,c in (x,y)"
    assert parse_field_selector("metadata.name=x").matches({"metadata": {"name": "x"}})


async def test_watch_initial_state_replay_and_selectors(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    emulator.create(cm_body("w1", {"app": "web"}), "default")
    initial = await read_watch(http, CM, {"timeoutSeconds": "0.2"}, count=100)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in initial] == [("ADDED", "w1")]
    assert initial[0]["object"]["apiVersion"] == "v1" and initial[0]["object"]["kind"] == "ConfigMap"

    rv = emulator.store.resource_version
    emulator.create(cm_body("w2"), "default")
    emulator.patch("configmaps", "default", "w1", {"data": {"x": "1"}})
    emulator.delete("configmaps", "default", "w2")
    replay = await read_watch(http, CM, {"resourceVersion": str(rv)}, count=3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in replay] == [
        ("ADDED", "w2"),
        ("MODIFIED", "w1"),
        ("DELETED", "w2"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in replay]
    assert rvs == sorted(rvs) and rvs[0] > rv

    # Selector-aware: leaving the selection is DELETED, entering it is ADDED.
    rv = emulator.store.resource_version
    watcher = asyncio.create_task(
        read_watch(http, CM, {"resourceVersion": str(rv), "labelSelector": "app=web"}, count=3)
    )
    await asyncio.sleep(0.05)
    emulator.patch("configmaps", "default", "w1", {"metadata": {"labels": {"app": "db"}}})
    emulator.create(cm_body("ignored", {"app": "db"}), "default")
    emulator.patch("configmaps", "default", "w1", {"metadata": {"labels": {"app": "web"}}})
    emulator.patch("configmaps", "default", "w1", {"data": {"y": "2"}})
    events = await watcher
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("DELETED", "w1"),
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
    ]

    # A single-object watch (by name in the field selector).
    named = await read_watch(
        http, CM, {"fieldSelector": "metadata.name=ignored", "timeoutSeconds": "0.2"}, count=9
    )
    assert [e["object"]["metadata"]["name"] for e in named] == ["ignored"]


async def test_watch_bookmarks_timeouts_and_gone(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    emulator.api.bookmark_interval = 0.1
    rv = emulator.store.resource_version
    events = await read_watch(
        http,
        CM,
        {"resourceVersion": str(rv), "allowWatchBookmarks": "true", "timeoutSeconds": "0.35"},
        count=100,
    )
    assert events and all(e["type"] == "BOOKMARK" for e in events)
    assert events[0]["object"] == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(rv)},
    }

    emulator.create(cm_body("g"), "default")
    initial = await read_watch(
        http,
        CM,
        {"sendInitialEvents": "true", "allowWatchBookmarks": "true", "resourceVersionMatch": "NotOlderThan"},
        count=2,
    )
    assert initial[0]["type"] == "ADDED"
    assert initial[1]["type"] == "BOOKMARK"
    assert initial[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}

    emulator.store.compact()
    expired = await read_watch(http, CM, {"resourceVersion": str(rv)}, count=5)
    assert len(expired) == 1 and expired[0]["type"] == "ERROR"
    assert expired[0]["object"]["code"] == 410 and expired[0]["object"]["reason"] == "Expired"

    # A bounded history: too many events make old resource versions expire.
    small = Emulator(history_size=3)
    rv = small.store.resource_version
    for index in range(5):
        small.create(cm_body(f"h{index}"), "default")
    with pytest.raises(Exception, match="too old resource version"):
        small.store.events_after("configmaps", rv)
    events, _ = small.store.events_after("configmaps", small.store.resource_version - 2)
    assert [e.obj["metadata"]["name"] for e in events] == ["h3", "h4"]


async def test_crds_served_dynamically_and_other_builtins(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    crd = copy.deepcopy(MINIMAL_JEFFREY_CRD)
    crd["metadata"]["name"] = "widgets.example.com"
    crd["spec"].update(group="example.com", scope="Cluster")
    crd["spec"]["names"] = {"kind": "Widget", "plural": "widgets", "singular": "widget"}
    status, created = await call(http, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 201
    assert {c["type"] for c in created["status"]["conditions"]} == {"NamesAccepted", "Established"}
    _, discovery = await call(http, "GET", "/apis/example.com/v1alpha1")
    assert {r["name"] for r in discovery["resources"]} == {"widgets", "widgets/status"}
    status, widget = await call(
        http,
        "POST",
        "/apis/example.com/v1alpha1/widgets",
        {**jeffrey_integration("w"), "apiVersion": "example.com/v1alpha1", "kind": "Widget"},
    )
    assert status == 201 and "namespace" not in widget["metadata"]
    status, _ = await call(
        http, "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
    )
    assert status == 200
    status, _ = await call(http, "GET", "/apis/example.com/v1alpha1/widgets/w")
    assert status == 404
    assert emulator.requests[-1].reason == "NotFound"

    # Secrets: stringData is encoded into data; dryRun does not persist; deletecollection.
    status, secret = await call(
        http,
        "POST",
        "/api/v1/namespaces/default/secrets",
        {"metadata": {"name": "s"}, "stringData": {"token": "abc"}},
    )
    assert status == 201 and secret["data"] == {"token": "YWJj"} and secret["type"] == "Opaque"
    status, dry = await call(http, "POST", CM, cm_body("dry"), params={"dryRun": "All"})
    assert status == 201 and dry["metadata"]["name"] == "dry"
    assert emulator.store.try_get("configmaps", "default", "dry") is None
    for name in ("x1", "x2", "keep"):
        await call(http, "POST", CM, cm_body(name, {"drop": "yes" if name != "keep" else "no"}))
    status, result = await call(http, "DELETE", CM, params={"labelSelector": "drop=yes"})
    assert status == 200 and result["status"] == "Success"
    assert [c["metadata"]["name"] for c in emulator.list("configmaps", "default")] == ["keep"]

    # Leases and events.k8s.io events are plain namespaced resources.
    lease = {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}}
    status, lease = await call(http, "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", lease)
    assert status == 201 and lease["kind"] == "Lease"
    lease["spec"]["holderIdentity"] = "you"
    status, lease = await call(
        http, "PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/leader", lease
    )
    assert status == 200 and lease["spec"]["holderIdentity"] == "you"
    status, event = await call(
        http,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        {"metadata": {"generateName": "ev-"}, "reason": "Test", "note": "hello"},
    )
    assert status == 201 and event["apiVersion"] == "events.k8s.io/v1"


# ------------------------------------------------------------------------------------ schemas


async def test_schema_validation_rejects_like_the_api_server(http: aiohttp.ClientSession) -> None:
    body = jeffrey_integration("bad", levels=[{"level": "FOO", "modules": [{"deployment": "core"}]}])
    status, error = await call(http, "POST", JI, body)
    assert status == 422 and error["reason"] == "Invalid"
    supported = ", ".join(f'"{level}"' for level in LEVELS)
    assert error["message"] == (
        f'JeffreyIntegration.jeffreyos.io "bad" is invalid: '
        f'spec.levels[0].level: Unsupported value: "FOO": supported values: {supported}'
    )
    assert error["details"]["causes"] == [
        {
            "reason": "FieldValueNotSupported",
            "field": "spec.levels[0].level",
            "message": f'Unsupported value: "FOO": supported values: {supported}',
        }
    ]

    cases: list[tuple[dict[str, Any], str]] = [
        ({"levels": []}, "spec.levels: Invalid value: 0: spec.levels in body should have at least 1 items"),
        ({"levels": [{"level": "CORE"}]}, "spec.levels[0].modules: Required value"),
        (
            {"levels": [{"level": "CORE", "modules": [{"deployment": "Bad_Name"}]}]},
            'spec.levels[0].modules[0].deployment: Invalid value: "Bad_Name": '
            "spec.levels[0].modules[0].deployment in body should match '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'",
        ),
        (
            {"levels": [{"level": "CORE", "modules": [{"deployment": ""}]}]},
            "spec.levels[0].modules[0].deployment in body should be at least 1 chars long",
        ),
        (
            {"levels": [{"level": "CORE", "modules": [{"deployment": "x" * 254}]}]},
            "spec.levels[0].modules[0].deployment: Too long: may not be longer than 253",
        ),
        (
            {"levels": [{"level": "CORE", "modules": [{"deployment": "a", "replicas": -1}]}]},
            "spec.levels[0].modules[0].replicas: Invalid value: -1: "
            "spec.levels[0].modules[0].replicas in body should be greater than or equal to 0",
        ),
        (
            {"levels": [{"level": "CORE", "modules": [{"deployment": "a", "replicas": 1001}]}]},
            "spec.levels[0].modules[0].replicas in body should be less than or equal to 1000",
        ),
        (
            {"levels": [{"level": "CORE", "modules": [{"deployment": "a", "replicas": "two"}]}]},
            'spec.levels[0].modules[0].replicas: Invalid value: "two": '
            'spec.levels[0].modules[0].replicas in body must be of type integer: "string"',
        ),
        (
            {"levels": [{"level": level, "modules": [{"deployment": "a"}]} for level in [*LEVELS, "CORE"]]},
            "spec.levels: Too many: 7: must have at most 6 items",
        ),
        (
            {"levels": [{"level": "CORE", "modules": [{"deployment": "a"}]}] * 2},
            'spec.levels: Invalid value: "array": each level may appear at most once in spec.levels',
        ),
        (
            {"levels": [{"level": "CORE", "modules": [{"deployment": "a"}]}], "labels": {"a": 1}},
            'spec.labels.a: Invalid value: 1: spec.labels.a in body must be of type string: "integer"',
        ),
    ]
    for spec, message in cases:
        status, error = await call(http, "POST", JI, {**jeffrey_integration("bad"), "spec": spec})
        assert status == 422, spec
        assert message in error["message"], (message, error["message"])
    status, error = await call(
        http, "POST", JI, {**jeffrey_integration("bad"), "spec": {"targetLevel": "NOPE"}}
    )
    assert "[" in error["message"] and len(error["details"]["causes"]) == 2  # several errors at once
    status, error = await call(http, "POST", JI, {"metadata": {"name": "nospec"}})
    assert status == 422 and "spec: Required value" in error["message"]


async def test_schema_defaulting_and_pruning(http: aiohttp.ClientSession) -> None:
    body = jeffrey_integration("defaults")
    body["spec"]["unknownField"] = "dropped"
    body["spec"]["targetLevel"] = None  # nulls of non-nullable fields are pruned, then defaulted
    status, obj = await call(http, "POST", JI, body)
    assert status == 201
    assert obj["spec"] == {
        "levels": [{"level": "CORE", "modules": [{"deployment": "core", "replicas": 1, "optional": False}]}],
        "targetLevel": "PRODUCTION",
        "paused": False,
        "promotion": {"cooldown": "2s"},
    }
    status, obj = await call(
        http,
        "PATCH",
        f"{JI}/defaults",
        {"spec": {"promotion": {"cooldown": "1m"}}},
        content_type="application/merge-patch+json",
    )
    assert obj["spec"]["promotion"] == {"cooldown": "1m"}
    status, error = await call(
        http,
        "PATCH",
        f"{JI}/defaults",
        {"spec": {"promotion": {"cooldown": "soon"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 422 and "spec.promotion.cooldown" in error["message"]


async def test_the_generated_crd_from_the_repository() -> None:
    crd = jeffrey_crd_dict()
    if crd == MINIMAL_JEFFREY_CRD:
        pytest.skip("crds/ has no generated JeffreyIntegration CRD yet")
    assert load_crds(jeffrey_crd_dict.__globals__["CRDS_DIR"])
    emu = Emulator(crds=[crd])
    created = emu.create(jeffrey_integration("real"))
    assert created["spec"]["levels"][0]["modules"][0]["deployment"] == "core"
    assert created["spec"]["targetLevel"] == "PRODUCTION"  # defaulted
    with pytest.raises(Exception, match=r'spec\.levels\[0\]\.level: Unsupported value: "FOO"'):
        emu.create(jeffrey_integration("bad", levels=[{"level": "FOO", "modules": [{"deployment": "core"}]}]))


# -------------------------------------------------------------------------------- deployments


async def test_deployment_controller_behaviours(emulator: Emulator) -> None:
    def status(name: str) -> dict[str, Any]:
        return dict(emulator.get("deployments", "default", name).get("status") or {})

    emulator.create(deployment_manifest("fast", replicas=2))
    await eventually(lambda: status("fast").get("readyReplicas") == 2)
    assert status("fast")["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status("fast")["conditions"]} == {
        "Available": "True",
        "Progressing": "True",
    }
    # Scaling changes the generation; the controller follows.
    emulator.patch("deployments", "default", "fast", {"spec": {"replicas": 3}})
    await eventually(lambda: status("fast").get("availableReplicas") == 3)
    assert status("fast")["observedGeneration"] == 2
    emulator.patch("deployments", "default", "fast", {"spec": {"replicas": 0}})
    await eventually(lambda: status("fast").get("observedGeneration") == 3)
    assert not {"replicas", "readyReplicas", "availableReplicas", "updatedReplicas"} & set(status("fast"))

    emulator.deployments.set_behaviour("default", "slow", delay=0.3)
    emulator.deployments.set_behaviour("default", "broken", ready=False)
    emulator.deployments.set_behaviour("default", "flaky", fail_after=0.6)
    emulator.deployments.set_behaviour("default", "half", ready_replicas=1)
    emulator.deployments.set_behaviour("default", "frozen", mode="ignore")
    for name in ("slow", "broken", "flaky", "half", "frozen"):
        emulator.create(deployment_manifest(name, replicas=2))
    await asyncio.sleep(0.1)
    assert "observedGeneration" not in status("slow")
    assert status("flaky").get("readyReplicas") == 2
    await eventually(lambda: status("slow").get("readyReplicas") == 2)
    broken = status("broken")
    assert broken["observedGeneration"] == 1 and "readyReplicas" not in broken
    assert broken["unavailableReplicas"] == 2
    await eventually(lambda: "readyReplicas" not in status("flaky"))
    assert status("half")["readyReplicas"] == 1
    assert status("frozen") == {}
    assert emulator.deployments.behaviour("default", "slow") == DeploymentBehaviour(delay=0.3)
    # A changed behaviour re-runs the rollout.
    emulator.deployments.set_behaviour("default", "broken", ready=True)
    await eventually(lambda: status("broken").get("readyReplicas") == 2)
    await emulator.deployments.wait_idle()


async def test_the_controller_reconciles_only_what_changed(emulator: Emulator) -> None:
    """A write of one Deployment costs the controller that Deployment, not a pass over all of
    them; after the history it needs is compacted (410) it lists everything once and goes on."""
    seen: list[tuple[int, int, bool]] = []
    controller = emulator.deployments
    original = controller.reconcile

    def spy(changed: Any, deleted: Any, *, complete: bool) -> None:
        seen.append((len(changed), len(deleted), complete))
        original(changed, deleted, complete=complete)

    controller.reconcile = spy  # type: ignore[method-assign]
    for i in range(40):
        emulator.create(deployment_manifest(f"d{i}"))
    await controller.wait_idle()
    await eventually(
        lambda: all(emulator.get("deployments", "default", f"d{i}").get("status") for i in range(40))
    )
    seen.clear()
    emulator.patch("deployments", "default", "d7", {"spec": {"replicas": 3}})
    await eventually(lambda: emulator.get("deployments", "default", "d7")["status"].get("readyReplicas") == 3)
    await controller.wait_idle()
    assert seen and all(changed <= 1 and not complete for changed, _, complete in seen), seen
    emulator.delete("deployments", "default", "d8")
    await eventually(lambda: any(deleted == 1 for _, deleted, _ in seen))
    seen.clear()
    emulator.store.compact()
    emulator.patch("deployments", "default", "d9", {"spec": {"replicas": 2}})
    await eventually(lambda: emulator.get("deployments", "default", "d9")["status"].get("readyReplicas") == 2)
    assert any(complete and changed == 39 for changed, _, complete in seen), seen


@pytest.mark.looptime
async def test_deployment_delays_in_fake_time(emulator: Emulator) -> None:
    """With looptime, a minute-long rollout takes no real time (the delays are loop timers)."""
    loop = asyncio.get_running_loop()
    emulator.deployments.set_behaviour("default", "slow", delay=60)
    start = loop.time()
    emulator.create(deployment_manifest("slow"))
    await asyncio.sleep(59)
    assert "readyReplicas" not in emulator.get("deployments", "default", "slow").get("status", {})
    await asyncio.sleep(2)
    assert emulator.get("deployments", "default", "slow")["status"]["readyReplicas"] == 1
    assert loop.time() - start == pytest.approx(61)
    applied = emulator.apply({**deployment_manifest("slow", replicas=3), "status": {"readyReplicas": 7}})
    assert applied["spec"]["replicas"] == 3 and applied["status"]["readyReplicas"] == 7


async def test_scale_subresource(http: aiohttp.ClientSession, emulator: Emulator) -> None:
    emulator.deployments.set_behaviour("default", "sc", mode="ignore")  # no status writes to race with
    await call(http, "POST", DEPLOY, deployment_manifest("sc", replicas=2))
    status, scale = await call(http, "GET", f"{DEPLOY}/sc/scale")
    assert status == 200 and scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"]["selector"] == "app=sc"
    status, scale = await call(
        http,
        "PATCH",
        f"{DEPLOY}/sc/scale",
        {"spec": {"replicas": 4}},
        content_type="application/merge-patch+json",
    )
    assert status == 200 and scale["spec"]["replicas"] == 4
    scale["spec"]["replicas"] = 1
    status, updated = await call(http, "PUT", f"{DEPLOY}/sc/scale", scale)
    assert status == 200 and updated["spec"]["replicas"] == 1
    status, _ = await call(http, "PUT", f"{DEPLOY}/sc/scale", scale)  # stale resourceVersion
    assert status == 409
    deployment = emulator.get("deployments", "default", "sc")
    assert deployment["spec"]["replicas"] == 1 and deployment["metadata"]["generation"] == 3
    status, invalid = await call(
        http,
        "POST",
        DEPLOY,
        {"metadata": {"name": "nosel"}, "spec": {"template": {"spec": {"containers": []}}}},
    )
    assert status == 422 and "spec.selector: Required value" in invalid["message"]


# ------------------------------------------------------------------ direct access & accounting


async def test_direct_access_counters_and_kmock_integration(
    http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    seeded = emulator.create(cm_body("seed", a="1"), "default")
    mark = emulator.requests.mark()
    await call(http, "PATCH", f"{CM}/seed", {"data": {"b": "2"}}, content_type="application/merge-patch+json")
    await call(http, "POST", JI, jeffrey_integration("counted"))
    await call(
        http,
        "PATCH",
        f"{JI}/counted/status",
        {"status": {"phase": "Stable"}},
        content_type="application/merge-patch+json",
    )
    await call(http, "GET", f"{JI}/counted")
    await call(http, "POST", JI, jeffrey_integration("counted"))  # 409: not a successful write

    assert emulator.requests.count_writes(since=mark) == 3
    assert emulator.requests.write_counts(since=mark) == {
        ("patch", "configmaps"): 1,
        ("create", "jeffreyintegrations.jeffreyos.io"): 1,
        ("patch", "jeffreyintegrations.jeffreyos.io/status"): 1,
    }
    assert (
        emulator.requests.count_writes(since=mark, resource="jeffreyintegrations", subresource="status") == 1
    )
    assert emulator.requests.count_writes(since=mark, successful=False) == 1
    last = emulator.requests[-1]
    assert (last.verb, last.status, last.name) == ("create", 409, None)

    # Direct changes go through the same machinery: rv bumps, history in kmock's objects array.
    changed = emulator.store.modify("configmaps", "default", "seed", lambda o: o["data"].update(c="3"))
    assert int(changed["metadata"]["resourceVersion"]) > int(seeded["metadata"]["resourceVersion"])
    versions = emulator.objects["v1/configmaps", "default", "seed"].history
    assert len(versions) == 3 and versions[0] >= {"data": {"a": "1"}}
    assert emulator.objects["v1/configmaps", "default", "seed"] >= {"data": {"a": "1", "b": "2", "c": "3"}}
    paused = emulator.store.set_status("ji", "default", "counted", {"phase": "Paused"})
    assert paused["status"] == {"phase": "Paused"} and paused["metadata"]["generation"] == 1

    # kmock reactions injected by a test take precedence over the emulated API.
    emulator.kmock["get", re.compile(r".*/configmaps/seed")] << 429 << {"kind": "Status", "code": 429}
    status, _ = await call(http, "GET", f"{CM}/seed")
    assert status == 429 and emulator.requests[-1].intercepted
    assert len(emulator.kmock["get"]) >= 1
    status, _ = await call(http, "GET", f"{JI}/counted")
    assert status == 200


async def test_start_stop_many_times_and_kubeconfig(tmp_path: pathlib.Path) -> None:
    urls = set()
    for _ in range(3):
        async with Emulator() as emu:
            urls.add(emu.url)
            async with aiohttp.ClientSession() as session, session.get(f"{emu.url}/api") as response:
                assert response.status == 200
    assert urls  # a fresh server (and a free port) every time
    async with Emulator(require_token=True, token="secret") as emu:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{emu.url}/api/v1/namespaces") as response:
                assert response.status == 401
            headers = {"Authorization": "Bearer secret"}
            async with session.get(f"{emu.url}/api/v1/namespaces", headers=headers) as response:
                assert response.status == 200
        path = emu.write_kubeconfig(tmp_path / "kube" / "config")
        loaded = kubernetes.config.kube_config.KubeConfigLoader(config_dict=yaml.safe_load(path.read_text()))
        assert loaded.current_context["context"]["cluster"] == "emulator"


# ------------------------------------------------------------------------- the sync client


def test_kubernetes_sync_client(threaded_emulator: Emulator, kubeconfig: pathlib.Path) -> None:
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    custom = kubernetes.client.CustomObjectsApi(client)
    ApiException = kubernetes.client.ApiException

    created = core.create_namespaced_config_map("default", cm_body("one", {"app": "web"}, k="v"))
    assert created.metadata.resource_version and created.metadata.uid
    core.create_namespaced_config_map("default", cm_body("two", {"app": "db"}))
    with pytest.raises(ApiException) as error:
        core.create_namespaced_config_map("default", cm_body("one"))
    assert error.value.status == 409 and json.loads(error.value.body)["reason"] == "AlreadyExists"

    patched = core.patch_namespaced_config_map("one", "default", {"data": {"k2": "v2"}})  # strategic merge
    assert patched.data == {"k": "v", "k2": "v2"}
    assert [
        c.metadata.name for c in core.list_namespaced_config_map("default", label_selector="app=web").items
    ] == ["one"]
    assert [
        c.metadata.name
        for c in core.list_config_map_for_all_namespaces(field_selector="metadata.name=two").items
    ] == ["two"]

    stale = core.read_namespaced_config_map("one", "default")
    core.patch_namespaced_config_map("one", "default", {"data": {"k3": "v3"}})
    stale.data = {"lost": "update"}
    with pytest.raises(ApiException) as error:
        core.replace_namespaced_config_map("one", "default", stale)
    assert error.value.status == 409 and json.loads(error.value.body)["reason"] == "Conflict"

    apps.create_namespaced_deployment("default", deployment_manifest("web", replicas=2))
    eventually_sync(
        lambda: apps.read_namespaced_deployment_status("web", "default").status.ready_replicas == 2
    )
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
    deployment = eventually_sync(
        lambda: (d := apps.read_namespaced_deployment("web", "default")).status.ready_replicas == 3 and d
    )
    assert deployment.metadata.generation == 2 and deployment.status.observed_generation == 2

    ji = custom.create_namespaced_custom_object(
        "jeffreyos.io", "v1alpha1", "default", "jeffreyintegrations", jeffrey_integration("sync")
    )
    assert ji["metadata"]["generation"] == 1
    status = custom.patch_namespaced_custom_object_status(
        "jeffreyos.io", "v1alpha1", "default", "jeffreyintegrations", "sync", {"status": {"phase": "Stable"}}
    )
    assert status["status"] == {"phase": "Stable"} and status["metadata"]["generation"] == 1
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object(
            "jeffreyos.io",
            "v1alpha1",
            "default",
            "jeffreyintegrations",
            jeffrey_integration("bad", levels=[{"level": "FOO", "modules": [{"deployment": "x"}]}]),
        )
    assert error.value.status == 422 and "spec.levels[0].level" in json.loads(error.value.body)["message"]

    events = [
        (e["type"], e["object"].metadata.name)
        for e in kubernetes.watch.Watch().stream(
            core.list_namespaced_config_map, "default", timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "one"), ("ADDED", "two")]
    client.close()

    writes = threaded_emulator.requests.write_counts()
    assert writes[("patch", "deployments.apps/scale")] == 1
    assert writes[("create", "configmaps")] == 2


def test_background_emulator_restarts() -> None:
    for _ in range(3):
        background = BackgroundEmulator()
        emu = background.start()
        api = kubernetes.client.CoreV1Api(emu.api_client())
        assert [ns.metadata.name for ns in api.list_namespace().items] == ["default"]
        emu.deployments.set_behaviour("default", "x", delay=0.01)
        background.run(emu.deployments.wait_idle())
        background.stop()


# ------------------------------------------------------------------------------------ kopf


async def test_kopf_operator_against_the_emulator(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    registry = kopf.OperatorRegistry()
    calls: collections.Counter[str] = collections.Counter()
    daemon_stopped = asyncio.Event()
    resource = ("jeffreyos.io", "v1alpha1", "jeffreyintegrations")

    @kopf.on.create(*resource, id="created", registry=registry)
    async def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> dict[str, str]:
        calls["create"] += 1
        kopf.info(body, reason="Accepted", message="Integration accepted.")  # a core v1 Event
        patch.status["phase"] = "Promoting"
        return {"message": "created"}

    @kopf.on.delete(*resource, registry=registry)
    async def deleted(**_: Any) -> None:
        calls["delete"] += 1

    @kopf.timer(*resource, interval=0.2, registry=registry)
    async def tick(patch: kopf.Patch, status: kopf.Status, **_: Any) -> None:
        calls["timer"] += 1
        patch.status["ticks"] = int(status.get("ticks") or 0) + 1

    @kopf.daemon(*resource, registry=registry)
    async def daemon(stopped: kopf.DaemonStopped, **_: Any) -> None:
        calls["daemon"] += 1
        await stopped.wait()
        daemon_stopped.set()

    async with run_kopf(emulator, registry):
        status, _ = await call(http, "POST", JI, jeffrey_integration("kopf-ji"))
        assert status == 201
        await eventually(lambda: calls["create"] == 1 and calls["daemon"] == 1, within=4)

        def current() -> dict[str, Any]:
            return emulator.get("ji", "default", "kopf-ji")

        await eventually(lambda: int(current().get("status", {}).get("ticks", 0)) >= 2, within=4)
        obj = current()
        assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"]["finalizers"]
        assert obj["status"]["phase"] == "Promoting"
        assert obj["status"]["created"] == {"message": "created"}  # the handler's result
        assert obj["metadata"]["generation"] == 1  # kopf's metadata & status writes do not bump it

        # Status went through /status; the finalizer through a JSON patch guarded by a `test` op.
        assert emulator.requests.count_writes(resource="jeffreyintegrations", subresource="status") >= 2
        json_patches = [
            r
            for r in emulator.requests.writes(resource="jeffreyintegrations")
            if r.content_type == "application/json-patch+json" and isinstance(r.body, list)
        ]
        assert any(
            op == {"op": "test", "path": "/metadata/resourceVersion", "value": op.get("value")}
            for r in json_patches
            for op in r.body
        )

        status, deleting = await call(http, "DELETE", f"{JI}/kopf-ji")
        assert status == 200 and deleting["metadata"]["deletionTimestamp"]
        await eventually(lambda: emulator.store.try_get("ji", "default", "kopf-ji") is None, within=4)
        assert calls["delete"] == 1
        await asyncio.wait_for(daemon_stopped.wait(), timeout=3)

    assert not emulator.requests.server_errors()
    assert not emulator.kmock.errors
    assert any(r.verb == "watch" and r.plural == "jeffreyintegrations" for r in emulator.requests)
    assert any(e.get("reason") == "Accepted" for e in emulator.list("events", "default"))


async def test_kopf_survives_watch_reconnects_and_expired_versions(jeffrey_crd: dict[str, Any]) -> None:
    """Watch-streams end every 0.3 s and the history is compacted once: kopf reconnects, relists
    after the 410 Gone, and still sees every change exactly once."""
    registry = kopf.OperatorRegistry()
    created: list[str] = []
    paused: list[str] = []
    resource = ("jeffreyos.io", "v1alpha1", "jeffreyintegrations")

    @kopf.on.create(*resource, registry=registry)
    async def on_create(name: str, **_: Any) -> None:
        created.append(name)

    @kopf.on.field(*resource, field="spec.paused", new=True, registry=registry)
    async def on_pause(name: str, **_: Any) -> None:
        paused.append(name)

    async with Emulator(crds=[jeffrey_crd], max_watch_seconds=0.3, bookmark_interval=0.1) as emu:
        async with run_kopf(emu, registry):
            for index in range(4):
                emu.create(jeffrey_integration(f"ji-{index}"))
                await asyncio.sleep(0.2)
                if index == 1:
                    emu.store.compact()
                await asyncio.sleep(0.2)
            emu.patch("ji", "default", "ji-0", {"spec": {"paused": True}})
            await eventually(lambda: len(created) == 4 and paused == ["ji-0"], within=4)
        watches = emu.requests.filter(verb="watch", resource="jeffreyintegrations")
        lists = emu.requests.filter(verb="list", resource="jeffreyintegrations")
        assert len(watches) >= 4 and len(lists) >= 2  # reconnected, and re-listed after the 410
        assert sorted(created) == ["ji-0", "ji-1", "ji-2", "ji-3"]
        emu.assert_no_server_errors()
