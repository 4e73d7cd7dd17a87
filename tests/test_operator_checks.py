"""Level checks end to end: the unchanged operator against the emulated API (with its simulated
Job controller) and a local HTTP server, over real HTTP. Applies ``examples/jeffrey-checks.yaml``."""

from __future__ import annotations

import asyncio
import copy
import datetime
import http.server
import io
import json
import pathlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jeffrey_emulator import DELAY_ANNOTATION, OUTCOME_ANNOTATION, deployment_manifest
from jeffrey_operator.adapters.kube import Kube, WatchEvent, observe_job
from jeffrey_operator.adapters.telemetry import OperatorTelemetry
from jeffrey_operator.ctl.main import main as jeffreyctl
from jeffrey_operator.ctl.plan import make_plan
from jeffrey_operator.ctl.render import render_plan
from jeffrey_operator.runtime.handlers import job_watch_event
from jeffrey_operator.runtime.reconciler import IntegrationLoop, OperatorContext
from jeffrey_playground.main import demo_spec, render_compact
from operator_fixtures import Cluster, example, wait_for
from test_argocd_lua import HEALTH, ArgoLua

EXAMPLE = "jeffrey-checks.yaml"


class Answers(http.server.BaseHTTPRequestHandler):
    """``/readyz`` answers what the test sets (status code and JSON body)."""

    answer: tuple[int, dict[str, Any]] = (200, {"status": "ok"})
    requests: list[str] = []
    tokens: list[str] = []

    def do_GET(self) -> None:
        code, body = type(self).answer
        type(self).requests.append(self.path)
        type(self).tokens.append(self.headers.get("X-Token", ""))
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(name="readyz")
def readyz_fixture() -> Iterator[type[Answers]]:
    handler = type("Handler", (Answers,), {"answer": (200, {"status": "ok"}), "requests": [], "tokens": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/readyz"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def checks(readyz: type[Answers], *, outcome: str, delay: str = "0.3") -> list[dict[str, Any]]:
    """The example's checks, with the smoke Job's outcome chosen for the emulator's Job
    controller (pod template annotation) and the HTTP check pointed at the local server."""
    out = copy.deepcopy(example(EXAMPLE)["spec"]["checks"])
    smoke, ready = out
    template = smoke["job"]["spec"]["template"]
    template["metadata"] = {"annotations": {OUTCOME_ANNOTATION: outcome, DELAY_ANNOTATION: delay}}
    ready["http"]["url"] = readyz.url  # type: ignore[attr-defined]
    return out


def start(cluster: Cluster, namespace: str, spec_checks: list[dict[str, Any]], **spec: Any) -> None:
    cluster.emu.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    cluster.start_operator()
    cluster.apply_example(EXAMPLE, namespace=namespace, checks=spec_checks, **spec)


def runs(cluster: Cluster, namespace: str, check: str, result: str) -> float | None:
    """A sample of the running operator's own registry (one per operator)."""
    assert cluster.ctx is not None and isinstance(cluster.ctx.telemetry, OperatorTelemetry)
    labels = {"namespace": namespace, "name": "jeffrey", "check": check, "result": result}
    return cluster.ctx.telemetry.sample("jeffrey_check_runs_total", **labels)


def ctl(cluster: Cluster, tmp: pathlib.Path, *argv: str) -> str:
    """``jeffreyctl`` itself (the console script's entry point) against the emulated API."""
    kubeconfig = cluster.emu.write_kubeconfig(tmp / "kubeconfig")
    out, err = io.StringIO(), io.StringIO()
    code = jeffreyctl(["--kubeconfig", str(kubeconfig), *argv], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    return out.getvalue()


def check(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in status.get("checks") or [] if c["name"] == name)


def jobs(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return [dict(j) for j in cluster.emu.list("jobs", namespace)]


def test_a_passing_smoke_job_and_http_check_let_the_climb_reach_production(
    cluster: Cluster, readyz: type[Answers]
) -> None:
    ns = "checks-pass"
    start(cluster, ns, checks(readyz, outcome="Complete"))
    status = cluster.wait_phase("Stable", within=30, namespace=ns)
    assert status["currentLevel"] == "PRODUCTION"
    smoke, ready = check(status, "core-smoke"), check(status, "loops-ready")
    assert (smoke["result"], smoke["attempt"], smoke["job"]) == ("Pass", 1, "jeffrey-core-smoke-1")
    assert (ready["result"], ready["value"]) == ("Pass", "ok")
    [job] = jobs(cluster, ns)
    labels = job["metadata"]["labels"]
    assert labels["jeffreyos.io/integration"] == "jeffrey" and labels["jeffreyos.io/attempt"] == "1"
    assert labels["jeffreyos.io/level"] == "CORE" and labels["jeffreyos.io/check"] == "core-smoke"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == (
        "JeffreyIntegration",
        cluster.ji(namespace=ns)["metadata"]["uid"],
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["ChecksHealthy"]["status"] == "True"
    reasons = wait_for(
        lambda: (r := [e["reason"] for e in cluster.events(ns)]).count("CheckPassed") == 2 and r,
        what="two CheckPassed Events",
    )
    assert "CheckStarted" in reasons
    assert readyz.requests
    assert (runs(cluster, ns, "core-smoke", "Pass"), runs(cluster, ns, "core-smoke", "Fail")) == (1, 0)
    assert runs(cluster, ns, "loops-ready", "Pass") == 1


def test_a_failing_smoke_job_rolls_back_and_names_the_check(
    cluster: Cluster, readyz: type[Answers], tmp_path: pathlib.Path
) -> None:
    ns = "checks-fail"
    start(cluster, ns, checks(readyz, outcome="Failed"))
    status = cluster.wait_phase("RolledBack", within=30, namespace=ns)
    rollback = status["lastRollback"]
    assert (rollback["reason"], rollback["check"]) == ("CheckFailed", "core-smoke")
    assert "Job jeffrey-core-smoke-1 failed: BackoffLimitExceeded" in rollback["message"]
    assert check(status, "core-smoke")["result"] == "Fail"
    replicas = cluster.replicas(ns)
    assert replicas["auto-learner"] == 0 and replicas["awareness-loop"] == 0  # nothing above CORE
    warnings = wait_for(  # kopf posts Events from its own queue, a moment later
        lambda: [e for e in cluster.events(ns) if e["reason"] == "CheckFailed"], what="a CheckFailed Event"
    )
    assert warnings[0]["type"] == "Warning"
    assert {c["type"]: c["status"] for c in status["conditions"]}["ChecksHealthy"] == "False"
    # born at 0
    assert (runs(cluster, ns, "core-smoke", "Fail"), runs(cluster, ns, "loops-ready", "Fail")) == (1, 0)
    out = ctl(cluster, tmp_path, "status", "jeffrey", "-n", ns)
    assert "CheckFailed (check core-smoke) - check core-smoke failed: Job jeffrey-core-smoke-1 failed" in out
    assert re.search(r"core-smoke\s+CORE\s+validation\s+Fail\s+1\s", out)
    # Argo CD's health check on the live object the operator wrote.
    argo = ArgoLua("lua51").run(HEALTH, cluster.ji(namespace=ns))
    assert argo["status"] == "Degraded" and "(check core-smoke)" in argo["message"]


def test_a_restart_mid_check_finds_its_job_and_starts_no_second_one(
    cluster: Cluster, readyz: type[Answers], tmp_path: pathlib.Path
) -> None:
    ns = "checks-restart"
    start(cluster, ns, checks(readyz, outcome="Running"))
    wait_for(lambda: jobs(cluster, ns), within=20, what="the smoke Job")
    assert check(cluster.status(namespace=ns), "core-smoke")["result"] == "Running"
    cluster.stop_operator()
    cluster.start_operator()
    # Let the new operator reconcile (it rewrites nothing while the Job runs), then finish the Job.
    wait_for(lambda: cluster.ctx is not None and cluster.ctx.loops, within=10, what="the new loop")
    [job] = jobs(cluster, ns)
    assert job["metadata"]["name"] == "jeffrey-core-smoke-1"
    out = ctl(cluster, tmp_path, "status", "jeffrey", "-n", ns)
    assert re.search(r"core-smoke\s+CORE\s+validation\s+Running\s+1\s", out)
    text = ctl(cluster, tmp_path, "plan", "jeffrey", "-n", ns)
    assert (
        "CHECKS\n  core-smoke (CORE validation): Running\n  loops-ready (LOOPS validation): Pending\n" in text
    )
    plan = json.loads(ctl(cluster, tmp_path, "plan", "jeffrey", "-n", ns, "-o", "json"))
    assert [(c["name"], c["result"], c["starts"]) for c in plan["checks"]] == [
        ("core-smoke", "Running", False),
        ("loops-ready", "Pending", False),
    ]
    cluster.emu.store.set_status(
        "jobs",
        ns,
        job["metadata"]["name"],
        {
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}],
        },
    )
    status = cluster.wait_phase("Stable", within=30, namespace=ns)
    assert check(status, "core-smoke")["attempt"] == 1
    assert [j["metadata"]["name"] for j in jobs(cluster, ns)] == ["jeffrey-core-smoke-1"]
    assert len(cluster.emu.jobs.seen) == 1  # the emulator saw one Job created, ever
    creates = [r.status for r in cluster.emu.requests if r.verb == "create" and r.plural == "jobs"]
    assert creates.count(201) == 1 and set(creates) <= {201, 409}  # a 409 is the same run's Job


def test_an_http_check_answering_500_rolls_back_and_a_timeout_holds(
    cluster: Cluster, readyz: type[Answers]
) -> None:
    ns = "checks-http"
    spec_checks = [checks(readyz, outcome="Complete")[1]]
    spec_checks[0]["http"]["url"] = "http://127.0.0.1:9/readyz"  # nothing listens: inconclusive
    start(cluster, ns, spec_checks)
    status = wait_for(
        lambda: (
            (s := cluster.status(namespace=ns)).get("reason") == "WaitingForChecks"
            and check(s, "loops-ready")["result"] == "Inconclusive"
            and s
        ),
        within=30,
        what="LOOPS holding on an inconclusive check",
    )
    assert status["phase"] == "Validating" and status["activeLevel"] == "LOOPS"
    assert "lastRollback" not in status
    readyz.answer = (500, {"status": "broken"})
    cluster.patch_spec(
        {"checks": [{**spec_checks[0], "http": {**spec_checks[0]["http"], "url": readyz.url}}]},  # type: ignore[attr-defined]
        namespace=ns,
    )
    status = cluster.wait_phase("RolledBack", within=30, namespace=ns)
    assert status["lastRollback"]["check"] == "loops-ready"
    assert "HTTP 500, expected 200" in status["lastRollback"]["message"]
    assert "broken" not in json.dumps(status)  # the body is never copied beyond the compared field


def test_before_promotion_keeps_the_level_at_zero_until_the_job_passed(
    cluster: Cluster, readyz: type[Answers]
) -> None:
    ns = "checks-before"
    smoke = checks(readyz, outcome="Complete", delay="1.5")[0]
    smoke.update(level="COGNITIVE", when="beforePromotion")
    start(cluster, ns, [smoke], targetLevel="COGNITIVE")
    holding = wait_for(
        lambda: (s := cluster.status(namespace=ns)).get("reason") == "WaitingForChecks" and s,
        within=20,
        what="COGNITIVE waiting for its beforePromotion check",
    )
    assert (holding["phase"], holding["activeLevel"]) == ("Promoting", "COGNITIVE")
    assert check(holding, "core-smoke")["result"] == "Running"
    assert cluster.replicas(ns)["auto-learner"] == 0  # not scaled while the check runs
    status = cluster.wait_phase("Stable", within=30, namespace=ns)
    assert status["currentLevel"] == "COGNITIVE" and cluster.replicas(ns)["auto-learner"] == 1


def test_retries_keep_a_bounded_history_of_jobs(cluster: Cluster, readyz: type[Answers]) -> None:
    ns = "checks-history"
    smoke = checks(readyz, outcome="Failed", delay="0")[0]
    smoke["job"]["historyLimit"] = 1
    start(cluster, ns, [smoke])
    for attempt in (1, 2, 3):
        wait_for(
            lambda a=attempt: (
                (s := cluster.status(namespace=ns)).get("phase") == "RolledBack"
                and check(s, "core-smoke")["attempt"] == a
            ),
            within=20,
            what=f"rollback after run {attempt}",
        )
        if attempt < 3:
            cluster.annotate("jeffreyos.io/retry", str(attempt), namespace=ns)
    names = wait_for(
        lambda: (
            (n := sorted(j["metadata"]["name"] for j in jobs(cluster, ns))) == ["jeffrey-core-smoke-3"] and n
        ),
        within=20,
        what="only the newest finished Job kept",
    )
    assert names == ["jeffrey-core-smoke-3"]


def test_the_playground_runs_the_example_smoke_job_and_shows_it() -> None:
    spec = demo_spec(speed=2.0, prometheus_url=None)
    [smoke] = spec["checks"]
    assert smoke["name"] == "core-smoke" and smoke["level"] == "CORE"
    notes = smoke["job"]["spec"]["template"]["metadata"]["annotations"]
    assert notes == {OUTCOME_ANNOTATION: "Complete", DELAY_ANNOTATION: "0.5"}
    body = {
        "metadata": {"name": "jeffrey", "namespace": "jeffrey", "generation": 1},
        "spec": spec,
        "status": {
            "phase": "Validating",
            "activeLevel": "CORE",
            "checks": [
                {
                    "name": "core-smoke",
                    "level": "CORE",
                    "result": "Pass",
                    "attempt": 1,
                    "job": "jeffrey-core-smoke-1",
                }
            ],
        },
    }
    text = render_compact(body, datetime.datetime.now(datetime.UTC), 1.0)
    assert "checks: core-smoke Pass (jeffrey-core-smoke-1)" in text


def test_an_http_header_from_a_missing_secret_is_invalid_until_the_secret_exists(
    cluster: Cluster, readyz: type[Answers]
) -> None:
    ns = "checks-secret"
    ready = checks(readyz, outcome="Complete")[1]
    ready["http"]["headers"] = [
        {"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "loops", "key": "token"}}}
    ]
    start(cluster, ns, [ready])
    status = wait_for(
        lambda: (
            (s := cluster.status(namespace=ns)).get("checks")
            and check(s, "loops-ready")["result"] == "Invalid"
            and s
        ),
        within=30,
        what="the check Invalid for want of its Secret",
    )
    assert status["phase"] == "Validating" and "lastRollback" not in status  # holds, never rolls back
    assert "Secret loops key token" in check(status, "loops-ready")["message"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["ChecksHealthy"]["status"], conditions["ChecksHealthy"]["reason"]) == (
        "False",
        "InvalidCheck",
    )
    assert not readyz.requests  # nothing was sent without the header
    cluster.emu.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "loops", "namespace": ns},
            "stringData": {"token": "s3cret"},
        }
    )
    status = cluster.wait_phase("Stable", within=40, namespace=ns)
    assert check(status, "loops-ready")["result"] == "Pass"
    assert set(readyz.tokens) == {"s3cret"}
    assert "s3cret" not in json.dumps(status) + json.dumps(cluster.events(ns))


def test_jobs_of_a_deleted_namesake_are_not_this_integrations_runs() -> None:
    def body(name: str, owner: str) -> dict[str, Any]:
        labels = {"jeffreyos.io/integration": "ji", "jeffreyos.io/check": "a", "jeffreyos.io/attempt": "1"}
        owners = [
            {"apiVersion": "jeffreyos.io/v1alpha1", "kind": "JeffreyIntegration", "name": "ji", "uid": owner}
        ]
        return {"metadata": {"name": name, "labels": labels, "ownerReferences": owners}, "status": {}}

    mine, old = observe_job(body("ji-a-1", "uid-new")), observe_job(body("ji-a-1-old", "uid-old"))
    assert (mine.owner, mine.check, mine.attempt) == ("uid-new", "a", 1)
    ctx = OperatorContext(kube=Kube(object()))
    ctx.jobs[("ns", "ji")] = {j.name: j for j in (mine, old)}
    loop = IntegrationLoop(ctx=ctx, namespace="ns", name="ji")
    loop.uid = "uid-new"
    assert [j.name for j in loop.check_jobs()] == ["ji-a-1"]


def test_plan_says_which_check_run_it_would_start_and_scales_nothing_before_it() -> None:
    body = {
        "metadata": {"name": "ji", "namespace": "ns", "generation": 1},
        "spec": {
            "levels": [{"level": "CORE", "modules": [{"deployment": "memory"}]}],
            "checks": [{**example(EXAMPLE)["spec"]["checks"][0], "when": "beforePromotion"}],
        },
    }
    plan = make_plan(
        body, {"memory": deployment_manifest("memory", "ns", replicas=0)}, datetime.datetime.now(datetime.UTC)
    )
    assert [(c.name, c.result, c.starts, c.job) for c in plan.checks] == [
        ("core-smoke", "Running", True, "ji-core-smoke-1")
    ]
    assert plan.scalings == ()  # the level waits for its beforePromotion check
    assert (
        "core-smoke (CORE beforePromotion): Running -> would start run 1 (Job ji-core-smoke-1)"
        in render_plan(plan)
    )


def test_a_job_the_api_refuses_is_an_invalid_check_that_holds(
    cluster: Cluster, readyz: type[Answers]
) -> None:
    ns = "checks-refused"
    smoke = checks(readyz, outcome="Complete")[0]
    smoke["job"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"  # Jobs take Never/OnFailure
    start(cluster, ns, [smoke])
    status = wait_for(
        lambda: (
            (s := cluster.status(namespace=ns)).get("checks")
            and check(s, "core-smoke")["result"] == "Invalid"
            and s
        ),
        within=30,
        what="an Invalid check",
    )
    assert "creating Job jeffrey-core-smoke-1 failed: 422" in check(status, "core-smoke")["message"]
    assert status["phase"] == "Validating" and "lastRollback" not in status
    assert cluster.replicas(ns)["auto-learner"] == 0  # the climb holds at CORE
    wait_for(
        lambda: [
            e for e in cluster.events(ns) if e["reason"] == "CheckJobCreateFailed" and e["type"] == "Warning"
        ],
        what="a CheckJobCreateFailed Warning",
    )
    time.sleep(2)  # no tight retry loop on a refusal: at most one more create in this time
    refused = [
        r for r in cluster.emu.requests if r.verb == "create" and r.plural == "jobs" and r.namespace == ns
    ]
    assert 1 <= len(refused) <= 2 and {r.status for r in refused} == {422}


def test_an_after_promotion_failure_rolls_back_a_stable_ladder(
    cluster: Cluster, readyz: type[Answers]
) -> None:
    ns = "checks-after"
    smoke = checks(readyz, outcome="Failed", delay="1.5")[0]
    smoke["when"] = "afterPromotion"
    start(cluster, ns, [smoke], targetLevel="COGNITIVE")
    stable = cluster.wait_phase("Stable", within=20, namespace=ns)  # the check does not hold the climb
    assert stable["currentLevel"] == "COGNITIVE" and check(stable, "core-smoke")["result"] == "Running"
    status = cluster.wait_phase("RolledBack", within=20, namespace=ns)
    assert (status["lastRollback"]["check"], status["lastRollback"]["fromLevel"]) == (
        "core-smoke",
        "COGNITIVE",
    )
    assert cluster.replicas(ns)["auto-learner"] == 0 and cluster.replicas(ns)["memory"] == 1


def unrelated_job(name: str, namespace: str) -> dict[str, Any]:
    """A Job nobody labelled for an integration (a CronJob's, say); the emulator's Job controller
    completes it at once, one more MODIFIED on the wire."""
    template = {
        "metadata": {"annotations": {OUTCOME_ANNOTATION: "Complete", DELAY_ANNOTATION: "0.05"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
    }
    meta = {"name": name, "namespace": namespace, "labels": {"app": "cron"}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"template": template}}


def settled(ctx: OperatorContext, quiet: float = 1.0, within: float = 15.0) -> int:
    """The work queue's ``processed`` once it has not moved for ``quiet`` seconds."""
    assert ctx.queue is not None
    deadline = time.monotonic() + within
    last, since = ctx.queue.processed, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if ctx.queue.processed != last:
            last, since = ctx.queue.processed, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
    raise AssertionError(f"the work queue did not settle within {within}s")


def test_unrelated_jobs_are_never_sent_and_cost_no_reconcile(cluster: Cluster, readyz: type[Answers]) -> None:
    ns = "checks-unrelated"
    cluster.emu.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for i in range(10):  # there before the operator: not in its first list either
        cluster.emu.create(unrelated_job(f"cron-early-{i}", ns))
    ctx = cluster.start_operator()
    cluster.apply_example(EXAMPLE, namespace=ns, checks=checks(readyz, outcome="Complete"))
    status = cluster.wait_phase("Stable", within=30, namespace=ns)
    assert check(status, "core-smoke")["result"] == "Pass"  # the check Job still drives the climb

    # (a) the operator's own Job list+watch, selected on the server by the integration label
    requests = [r for r in cluster.emu.requests if r.plural == "jobs" and r.verb in ("list", "watch")]
    assert {r.verb for r in requests} == {"list", "watch"}
    assert {r.query.get("labelSelector") for r in requests} == {"jeffreyos.io/integration"}

    # (b) many unrelated Jobs created and updated: nothing in memory, no reconcile
    before = settled(ctx)
    names = [f"cron-{i}" for i in range(40)]
    for name in names:
        cluster.emu.create(unrelated_job(name, ns))
    for name in names:
        cluster.emu.patch("jobs", ns, name, {"metadata": {"annotations": {"touched": "1"}}})
    wait_for(
        lambda: all(j.get("status", {}).get("succeeded") for j in jobs(cluster, ns)),
        what="every unrelated Job completed",
    )
    time.sleep(1.0)
    assert ctx.queue is not None and ctx.queue.processed == before
    assert list(ctx.jobs) == [(ns, "jeffrey")]
    assert list(ctx.jobs[(ns, "jeffrey")]) == ["jeffrey-core-smoke-1"]


def test_a_relisted_job_watch_replaces_what_the_scope_holds() -> None:
    def body(namespace: str, name: str, integration: str, *, complete: bool = False) -> dict[str, Any]:
        labels = {
            "jeffreyos.io/integration": integration,
            "jeffreyos.io/check": "a",
            "jeffreyos.io/attempt": "1",
        }
        status = {"conditions": [{"type": "Complete", "status": "True"}]} if complete else {}
        return {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "status": status}

    async def scenario() -> tuple[list[Any], dict[Any, list[str]]]:
        ctx = OperatorContext(kube=Kube(object()))
        queue = ctx.start_queue()  # no workers: waking only queues (they start from a kopf handler)
        for b in (body("a", "x-1", "x"), body("a", "y-1", "y"), body("b", "z-1", "z")):
            job_watch_event(ctx, None, WatchEvent("ADDED", b))
        assert ctx.start_workers is None and queue.processed == 0
        drained = [await queue.get() for _ in range(len(queue))]
        for key in drained:
            queue.done(key)
        # 410 Gone, listed again in namespace "a": y-1 went, x-1 completed; "b" is another scope
        job_watch_event(ctx, "a", WatchEvent("LISTED", {"items": [body("a", "x-1", "x", complete=True)]}))
        woken = [await queue.get() for _ in range(len(queue))]
        for key in woken:
            queue.done(key)
        # the same list again: nothing changed, nothing queued
        job_watch_event(ctx, "a", WatchEvent("LISTED", {"items": [body("a", "x-1", "x", complete=True)]}))
        assert len(queue) == 0
        # a status change a check run does not read (a pod came and went): nothing queued
        job_watch_event(ctx, "a", WatchEvent("MODIFIED", body("a", "x-1", "x", complete=True)))
        assert len(queue) == 0
        job_watch_event(ctx, "a", WatchEvent("DELETED", body("a", "x-1", "x", complete=True)))
        assert len(queue) == 1  # its integration learns that the Job is gone
        await queue.get()
        queue.done(("a", "x"))
        job_watch_event(ctx, "a", WatchEvent("DELETED", body("a", "x-1", "x", complete=True)))
        assert len(queue) == 0  # a Job it never held (deleted twice, or before the list)
        return sorted(woken), {k: sorted(v) for k, v in ctx.jobs.items()}

    woken, held = asyncio.run(scenario())
    assert woken == [("a", "x"), ("a", "y")]
    assert held == {("b", "z"): ["z-1"]}
