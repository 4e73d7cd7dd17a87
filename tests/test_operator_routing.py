"""Routing against the emulated API: the operator labels what it manages, watches only that,
releases what it no longer manages, and an unrelated Deployment costs it no reconcile."""

from __future__ import annotations

import time

from jeffrey_emulator import deployment_manifest
from jeffrey_operator.core.models import INTEGRATION_LABEL
from operator_fixtures import FAST, Cluster, example, wait_for

SELECTOR = f"{INTEGRATION_LABEL}=jeffrey"


def labelled(cluster: Cluster) -> set[str]:
    """``kubectl get deploy -l jeffreyos.io/integration=jeffrey``."""
    return {
        d["metadata"]["name"] for d in cluster.emu.list("deployments", "jeffrey", label_selector=SELECTOR)
    }


def test_managed_deployments_are_labelled_and_released(cluster: Cluster) -> None:
    ctx = cluster.start_operator()
    ji = cluster.apply_example()
    listed = {m["deployment"] for level in ji["spec"]["levels"] for m in level["modules"]}
    cluster.wait_phase("Stable")
    assert wait_for(lambda: labelled(cluster) == listed, what="every listed Deployment labelled")
    assert {n for (_, n) in ctx.deployments.owners()} == listed  # only managed ones in memory

    # an unrelated Deployment in the same namespace: not in memory, no reconcile
    cluster.emu.create(deployment_manifest("unrelated", "jeffrey", replicas=0))
    time.sleep(0.5)
    assert ctx.queue is not None
    before = ctx.queue.processed
    for replicas in (1, 0, 1):
        cluster.emu.patch("deployments", "jeffrey", "unrelated", {"spec": {"replicas": replicas}})
    time.sleep(1.0)
    assert ctx.queue.processed == before
    assert ctx.deployments.get("jeffrey", "unrelated") is None

    # a module dropped from the spec is released (the label goes, the Deployment stays)
    levels = [
        {**level, "modules": [m for m in level["modules"] if m["deployment"] != "curiosity-loop"]}
        for level in ji["spec"]["levels"]
    ]
    cluster.patch_spec({"levels": levels})
    wait_for(lambda: "curiosity-loop" not in labelled(cluster), what="curiosity-loop released")
    assert cluster.emu.get("deployments", "jeffrey", "curiosity-loop")

    # deleting the integration releases the rest
    cluster.emu.delete("ji", "jeffrey", "jeffrey")
    wait_for(lambda: not labelled(cluster), what="every Deployment released")
    assert ("jeffrey", "jeffrey") not in ctx.loops


def test_a_deployment_created_after_the_integration_is_found(cluster: Cluster) -> None:
    cluster.start_operator()
    ji = example()
    ji["spec"]["levels"] = ji["spec"]["levels"][:1]
    ji["spec"]["targetLevel"] = "CORE"
    names = [m["deployment"] for m in ji["spec"]["levels"][0]["modules"]]
    cluster.emu.create(deployment_manifest(names[0], "jeffrey", replicas=0))
    ji["metadata"]["namespace"] = "jeffrey"
    ji["spec"]["defaultGates"] = False
    ji["spec"]["promotion"] = dict(FAST)
    cluster.emu.create(ji)
    cluster.wait_phase("Invalid")  # a required module is missing (and not watched: unlabelled)
    for name in names[1:]:
        cluster.emu.create(deployment_manifest(name, "jeffrey", replicas=0))
    cluster.wait_phase("Stable", within=20)
