"""The emulator's batch/v1 Jobs and its simulated Job controller, through the kubernetes client."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from emulator_fixtures import eventually_sync
from jeffrey_emulator import DELAY_ANNOTATION, OUTCOME_ANNOTATION, Emulator


def job(name: str, *, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "jobs"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "busybox"}]},
            },
            **spec,
        },
    }


def conditions(emu: Emulator, name: str) -> dict[str, str]:
    status = emu.get("jobs", "jobs", name).get("status") or {}
    return {c["type"]: c["reason"] for c in status.get("conditions") or [] if c["status"] == "True"}


@pytest.fixture(name="batch")
def batch_fixture(threaded_emulator: Emulator, k8s_api_client: Any) -> Any:
    kubernetes.client.CoreV1Api(k8s_api_client).create_namespace({"metadata": {"name": "jobs"}})
    return kubernetes.client.BatchV1Api(k8s_api_client)


def test_a_job_completes_and_is_listed_by_label(threaded_emulator: Emulator, batch: Any) -> None:
    body = job("ok")
    body["metadata"]["labels"] = {"jeffreyos.io/integration": "ji"}
    created = batch.create_namespaced_job("jobs", body)
    assert created.spec.backoff_limit == 6  # defaulted like the real API
    eventually_sync(lambda: conditions(threaded_emulator, "ok").get("Complete") == "CompletionsReached")
    status = threaded_emulator.get("jobs", "jobs", "ok")["status"]
    assert status["succeeded"] == 1 and status["startTime"] and status["completionTime"]
    listed = batch.list_namespaced_job("jobs", label_selector="jeffreyos.io/integration=ji")
    assert [j.metadata.name for j in listed.items] == ["ok"]


def test_the_pod_template_annotation_fails_the_job_after_its_delay(
    threaded_emulator: Emulator, batch: Any
) -> None:
    batch.create_namespaced_job(
        "jobs",
        job("bad", annotations={OUTCOME_ANNOTATION: "Failed", DELAY_ANNOTATION: "0.3"}, backoffLimit=1),
    )
    eventually_sync(lambda: threaded_emulator.get("jobs", "jobs", "bad").get("status", {}).get("active") == 1)
    assert "Failed" not in conditions(threaded_emulator, "bad")
    eventually_sync(lambda: conditions(threaded_emulator, "bad").get("Failed") == "BackoffLimitExceeded")
    assert threaded_emulator.get("jobs", "jobs", "bad")["status"]["failed"] == 2


def test_active_deadline_shorter_than_the_run_is_deadline_exceeded(
    threaded_emulator: Emulator, batch: Any
) -> None:
    batch.create_namespaced_job(
        "jobs", job("slow", annotations={DELAY_ANNOTATION: "60"}, activeDeadlineSeconds=1)
    )
    eventually_sync(
        lambda: conditions(threaded_emulator, "slow").get("Failed") == "DeadlineExceeded", within=5
    )


def test_a_running_job_never_finishes(threaded_emulator: Emulator, batch: Any) -> None:
    batch.create_namespaced_job("jobs", job("forever", annotations={OUTCOME_ANNOTATION: "Running"}))
    eventually_sync(lambda: threaded_emulator.get("jobs", "jobs", "forever").get("status", {}).get("active"))
    assert not conditions(threaded_emulator, "forever")


def test_a_job_without_containers_is_refused(batch: Any) -> None:
    body = job("empty")
    body["spec"]["template"]["spec"]["containers"] = []
    with pytest.raises(kubernetes.client.ApiException) as err:
        batch.create_namespaced_job("jobs", body)
    assert err.value.status == 422 and "spec.template.spec.containers" in err.value.body


def test_a_job_with_restart_policy_always_is_refused(batch: Any) -> None:
    body = job("always")
    body["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(kubernetes.client.ApiException) as err:
        batch.create_namespaced_job("jobs", body)
    assert err.value.status == 422 and "restartPolicy" in err.value.body


def test_jobs_are_garbage_collected_with_their_owner(threaded_emulator: Emulator, batch: Any) -> None:
    owner = threaded_emulator.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": "jobs"}}
    )
    body = job("owned")
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    ]
    batch.create_namespaced_job("jobs", body)
    threaded_emulator.delete("configmaps", "jobs", "owner")
    eventually_sync(lambda: not threaded_emulator.list("jobs", "jobs"))


def test_a_job_watch_sends_only_what_the_label_selector_selects(
    threaded_emulator: Emulator, batch: Any
) -> None:
    batch.create_namespaced_job("jobs", job("other"))
    mine = job("mine")
    mine["metadata"]["labels"] = {"jeffreyos.io/integration": "ji"}
    batch.create_namespaced_job("jobs", mine)
    seen: list[tuple[str, str]] = []
    stream = kubernetes.watch.Watch().stream(
        batch.list_namespaced_job, "jobs", label_selector="jeffreyos.io/integration", timeout_seconds=1
    )
    for event in stream:
        seen.append((event["type"], event["object"].metadata.name))
    assert seen and {name for _, name in seen} == {"mine"}
