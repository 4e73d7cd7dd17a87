"""API-contract tests: kopf + our handlers against the emulated Kubernetes API over real HTTP."""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest

from jeffrey_emulator import deployment_manifest
from jeffrey_operator.core.models import RETRY_ANNOTATION
from operator_fixtures import FAST, Cluster, example, wait_for

LEVELS = ["CORE", "COGNITIVE", "EMOTIONAL", "CONSCIOUS", "LOOPS", "PRODUCTION"]


def validated_levels(status: dict[str, Any]) -> list[str]:
    return [
        t["toLevel"]
        for t in status.get("transitions", [])
        if t["reason"] in ("LevelValidated", "TargetReached") and t["phase"] in ("CoolingDown", "Stable")
    ]


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_full_climb_to_production(cluster: Cluster) -> None:
    cluster.start_operator()
    ji = cluster.apply_example()
    status = cluster.wait_phase("Stable")
    assert status["currentLevel"] == "PRODUCTION"
    assert status["observedGeneration"] == cluster.ji()["metadata"]["generation"]
    assert validated_levels(status) == LEVELS
    expected = {m["deployment"]: m.get("replicas", 1) for lv in ji["spec"]["levels"] for m in lv["modules"]}
    assert cluster.replicas() == expected
    assert condition(status, "Ready")["status"] == "True"
    assert all(m["state"] == "Ready" and m["ready"] == m["desired"] for m in status["modules"])
    # Events are posted asynchronously by kopf's queue: wait for them.
    reasons = wait_for(
        lambda: (r := collections.Counter(e["reason"] for e in cluster.events()))["TargetReached"] and r,
        what="the TargetReached event",
    )
    assert reasons["LevelValidated"] == 5 and reasons["TargetReached"] == 1
    # the status schema kept everything the operator wrote (nothing pruned)
    assert [t["seq"] for t in status["transitions"]] == list(range(1, status["transitionSeq"] + 1))


def test_steady_state_makes_no_api_writes(cluster: Cluster) -> None:
    cluster.start_operator()
    cluster.apply_example()
    cluster.wait_phase("Stable")
    time.sleep(0.3)
    before = cluster.writes()
    rv = cluster.ji()["metadata"]["resourceVersion"]
    time.sleep(1.5)
    assert cluster.writes() == before
    assert cluster.ji()["metadata"]["resourceVersion"] == rv


def test_lowering_the_target_demotes_highest_first(cluster: Cluster) -> None:
    cluster.start_operator()
    cluster.apply_example()
    cluster.wait_phase("Stable")
    order: list[str] = []
    cluster.patch_spec({"targetLevel": "EMOTIONAL"})

    def drained() -> bool:
        for name, replicas in cluster.replicas().items():
            if replicas == 0 and name not in order:
                order.append(name)
        status = cluster.status()
        return status.get("phase") == "Stable" and status.get("currentLevel") == "EMOTIONAL"

    wait_for(drained, what="stable at EMOTIONAL")
    loops = {"awareness-loop", "memory-consolidation-loop"}
    production = {"curiosity-loop", "emotional-decay-loop", "ml-clustering-loop"}
    assert set(order[:3]) == production and set(order[3:5]) == loops and order[5:] == ["consciousness"]
    status = cluster.status()
    assert "lastRollback" not in status
    assert any(t["phase"] == "Demoting" for t in status["transitions"])


def test_readiness_timeout_rolls_back_to_core_then_retry(cluster: Cluster) -> None:
    cluster.start_operator()
    ji = example()
    cluster.deployments_for(ji, "jeffrey")
    cluster.emu.deployments.set_behaviour("jeffrey", "awareness-loop", ready=False)
    cluster.apply_example(create_deployments=False, promotion={**FAST, "readinessTimeout": "1s"})
    status = cluster.wait_phase("RolledBack")
    assert status["currentLevel"] == "CORE"
    assert status["lastRollback"]["reason"] == "ReadinessTimeout"
    assert status["lastRollback"]["fromLevel"] == "LOOPS"
    assert "awareness-loop" in status["lastRollback"]["message"]
    replicas = cluster.replicas()
    assert replicas["memory"] == 1 and replicas["neural-bus"] == 1
    assert all(v == 0 for k, v in replicas.items() if k not in ("memory", "neural-bus"))
    assert condition(status, "Stalled")["status"] == "True"
    assert any(e["reason"] == "ReadinessTimeout" and e["type"] == "Warning" for e in cluster.events())
    # holding: nothing moves without a retry
    time.sleep(1.5)
    assert cluster.status()["phase"] == "RolledBack"
    cluster.emu.deployments.set_behaviour("jeffrey", "awareness-loop", ready=True)
    cluster.annotate(RETRY_ANNOTATION, "1")
    status = cluster.wait_phase("Stable")
    assert status["currentLevel"] == "PRODUCTION"
    assert status["lastRetryToken"] == "1"


def test_pause_freezes_and_resume_continues(cluster: Cluster) -> None:
    cluster.start_operator()
    cluster.apply_example(paused=True)
    status = cluster.wait_phase("Paused")
    time.sleep(0.5)
    assert set(cluster.replicas().values()) == {0}
    assert condition(status, "Ready")["status"] == "False"
    cluster.patch_spec({"paused": False})
    assert cluster.wait_phase("Stable")["currentLevel"] == "PRODUCTION"


def test_operator_killed_mid_climb_resumes_without_repeating(cluster: Cluster) -> None:
    cluster.start_operator()
    cluster.apply_example(promotion={**FAST, "validationWindow": "300ms"})
    wait_for(lambda: cluster.status().get("currentLevel") in ("COGNITIVE", "EMOTIONAL"), what="mid climb")
    cluster.stop_operator()
    frozen = cluster.status()
    time.sleep(0.5)
    assert cluster.status() == frozen
    cluster.start_operator()
    status = cluster.wait_phase("Stable", within=20)
    assert validated_levels(status) == LEVELS
    assert [t["seq"] for t in status["transitions"]] == list(range(1, status["transitionSeq"] + 1))
    assert status["transitions"][: len(frozen["transitions"])] == frozen["transitions"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["levels"][0].update(level="SUPREME"), 'Unsupported value: "SUPREME"'),
        (lambda s: s["levels"][0]["modules"][0].update(replicas=-1), "should be greater than or equal to 0"),
        (lambda s: s["promotion"].update(cooldown="2 minutes"), "spec.promotion.cooldown"),
        (lambda s: s["levels"].append(dict(s["levels"][0])), "spec.levels"),
    ],
)
def test_the_schema_rejects_what_it_can(cluster: Cluster, mutate: Any, message: str) -> None:
    from jeffrey_emulator import ApiError

    ji = example()
    ji["spec"]["promotion"] = dict(FAST)
    mutate(ji["spec"])
    with pytest.raises(ApiError) as exc:
        cluster.emu.create(ji)
    assert exc.value.code == 422
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("case", "reason", "field"),
    [
        ("missing", "DeploymentNotFound", "spec.levels[1].modules[0].deployment"),
        ("duplicate", "DuplicateDeployment", "spec.levels[1].modules[0].deployment"),
        ("claimed", "DeploymentClaimed", "spec.levels[0].modules[0].deployment"),
    ],
)
def test_bad_input_is_invalid_and_touches_nothing(
    cluster: Cluster, case: str, reason: str, field: str
) -> None:
    cluster.start_operator()
    ji = example()
    cluster.deployments_for(ji, "jeffrey")
    if case == "missing":
        cluster.emu.delete("deployments", "jeffrey", "auto-learner")
    if case == "duplicate":
        ji["spec"]["levels"][1]["modules"][0]["deployment"] = "memory"
    if case == "claimed":
        other = {
            "apiVersion": "jeffreyos.io/v1alpha1",
            "kind": "JeffreyIntegration",
            "metadata": {"name": "a-older", "namespace": "jeffrey"},
            "spec": {
                "targetLevel": "CORE",
                "paused": True,
                "levels": [{"level": "CORE", "modules": [{"deployment": "memory"}]}],
            },
        }
        cluster.emu.create(other)
        cluster.wait_phase("Paused", name="a-older")
        time.sleep(0.05)
    ji["spec"]["promotion"] = dict(FAST)
    ji["spec"]["defaultGates"] = False
    cluster.emu.create(ji)
    status = cluster.wait_phase("Invalid")
    assert status["reason"] == reason
    assert field in status["message"] and "fix:" in status["message"]
    assert condition(status, "Stalled")["status"] == "True"
    time.sleep(0.5)
    assert set(cluster.replicas().values()) == {0}
    warnings = [e for e in cluster.events() if e["type"] == "Warning" and e["reason"] == reason]
    assert warnings and field in warnings[0]["message"]
    if case == "missing":  # the fix: create the Deployment, and the climb starts by itself
        cluster.emu.create(deployment_manifest("auto-learner", "jeffrey", replicas=0))
        assert cluster.wait_phase("Stable")["currentLevel"] == "PRODUCTION"


@pytest.mark.parametrize("name", ["jeffrey-full-ladder.yaml", "jeffrey-core-only.yaml"])
def test_every_example_is_applied_and_reaches_its_target(cluster: Cluster, name: str) -> None:
    cluster.start_operator()
    ji = example(name)
    namespace = ji["metadata"]["namespace"]
    cluster.apply_example(name, namespace=namespace)
    status = cluster.wait_phase("Stable", name=ji["metadata"]["name"], namespace=namespace)
    assert status["currentLevel"] == ji["spec"]["targetLevel"]


def test_a_failing_scale_is_an_event_and_is_retried(cluster: Cluster) -> None:
    import re

    forbidden = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'deployments.apps "auto-learner" is forbidden',
    }
    # the first two attempts are forbidden (kmock reactions take precedence over the emulated API)
    _ = cluster.emu.kmock["patch", re.compile(r".*/deployments/auto-learner$")][:2] << 403 << forbidden
    cluster.start_operator()
    cluster.apply_example()
    wait_for(lambda: any(e["reason"] == "ScaleFailed" for e in cluster.events()), what="a ScaleFailed event")
    status = cluster.status()
    assert status["phase"] == "Promoting" and status["activeLevel"] == "COGNITIVE"
    event = next(e for e in cluster.events() if e["reason"] == "ScaleFailed")
    assert event["type"] == "Warning" and "auto-learner" in event["message"] and "403" in event["message"]
    assert cluster.wait_phase("Stable", within=15)["currentLevel"] == "PRODUCTION"
