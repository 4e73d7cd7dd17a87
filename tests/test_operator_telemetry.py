"""What on-call sees of a running operator: its ``/metrics`` and its probes, read over HTTP.

* Every operator metric documented in ``docs/metrics.md`` exists in a running operator's
  ``/metrics`` and moves when it should: the state store gauge follows Redis (1, 0 when Redis is
  stopped, 1 again), API writes are counted, reconcile durations observed, Prometheus trouble
  counted, transitions and rollbacks counted.
* ``/healthz`` fails once the operator has not reached the Kubernetes API for longer than the
  liveness grace (a refused API), and stays healthy against a working one; ``/readyz`` is separate.
"""

from __future__ import annotations

import copy
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from jeffrey_emulator import deployment_manifest
from jeffrey_operator.adapters.kube import Kube
from jeffrey_operator.adapters.redis.store import RedisStateStore
from jeffrey_operator.adapters.telemetry import OperatorTelemetry
from jeffrey_operator.runtime.app import BackgroundOperator, build_context, serve_metrics
from jeffrey_operator.runtime.settings import OperatorSettings
from operator_fixtures import FAST, ROOT, Cluster, example, wait_for
from prom_fixtures import free_port
from redis_fixtures import RedisServer


def documented_operator_metrics() -> list[str]:
    """The metric names of section 3 of docs/metrics.md (the operator's own)."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    section = text.split("## 3. The operator's own metrics", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(jeffrey_[a-z_]+)` \|", section, flags=re.MULTILINE)


def scrape(port: int) -> dict[str, float]:
    """``name{labels}`` → value, and ``name`` → sum over its label sets."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        out[series] = float(value)
        if "{" in series:
            name = series.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + (0.0 if value == "NaN" else float(value))
    return out


def family(samples: dict[str, float], name: str) -> bool:
    return any(k == name or k.startswith(name + "{") or k.startswith(name + "_") for k in samples)


SINK_FAILURES = (
    "jeffrey_notification_sink_failures"
    '{kind="alertmanager",name="never-ready",namespace="jeffrey",sink="oncall"}'
)


def test_every_documented_metric_exists_and_moves(cluster: Cluster, redis_server: RedisServer) -> None:
    documented = documented_operator_metrics()
    assert "jeffrey_state_store_up" in documented and len(documented) >= 13
    port = free_port()
    settings = OperatorSettings(
        health_port=0, metrics_port=port, redis_url=redis_server.url, state_store_probe=0.3
    )
    telemetry = OperatorTelemetry()
    store = RedisStateStore.from_settings(redis_server.url, redis_server.password, telemetry=telemetry)
    ctx = build_context(settings, kube=Kube(cluster.emu.api_client()), store=store, telemetry=telemetry)
    serve_metrics(settings, ctx)
    emu = cluster.emu

    def login(**_: Any) -> Any:
        return emu.connection_info()

    operator = BackgroundOperator(settings, ctx, login=login)
    operator.start()
    try:
        # one that climbs, one whose readiness times out (a rollback), one whose gates ask a
        # Prometheus that is not there (errors, inconclusive gate evaluations)
        smoke = example("jeffrey-checks.yaml")["spec"]["checks"][0]  # a Job check, run for real
        cluster.apply_example(checks=[smoke])
        never = example()
        never["metadata"]["name"] = "never-ready"
        for level in never["spec"]["levels"]:
            for module in level["modules"]:
                module["deployment"] = f"nr-{module['deployment']}"
                emu.create(deployment_manifest(module["deployment"], "jeffrey", replicas=0))
        emu.deployments.set_behaviour("jeffrey", "nr-memory", ready=False)
        never["spec"].update(promotion={**FAST, "readinessTimeout": "1s"}, defaultGates=False)
        # … whose rollback is told to an Alertmanager that is not there (the sink failures gauge)
        oncall = {"name": "oncall", "alertmanager": {"url": f"http://127.0.0.1:{free_port()}"}}
        never["spec"]["notifications"] = [oncall]
        emu.create(copy.deepcopy(never))
        gated = example()
        gated["metadata"]["name"] = "gated"
        for level in gated["spec"]["levels"]:
            for module in level["modules"]:
                module["deployment"] = f"g-{module['deployment']}"
                emu.create(deployment_manifest(module["deployment"], "jeffrey", replicas=0))
        gated["spec"]["promotion"] = dict(FAST)
        gated["spec"]["analysis"] = {
            "interval": "1s",
            "prometheus": {"url": f"http://127.0.0.1:{free_port()}"},
        }
        emu.create(copy.deepcopy(gated))

        cluster.wait_phase("Stable", within=30)
        cluster.wait_phase("RolledBack", within=30, name="never-ready")
        samples = wait_for(
            lambda: (
                (s := scrape(port)).get("jeffrey_prometheus_errors_total", 0) > 0
                and s.get("jeffrey_state_store_up") == 1
                # metrics follow the status write by a moment (the reconcile records them last)
                and s.get("jeffrey_rollbacks_total", 0) >= 1
                and s.get(SINK_FAILURES, 0) >= 1
                and s
            ),
            30,
            "Prometheus errors and the store up",
        )
        for name in documented:
            assert family(samples, name), f"{name} is documented but not exported"
        assert samples['jeffrey_integration_level{name="jeffrey",namespace="jeffrey"}'] == 5
        assert samples["jeffrey_transitions_total"] >= 18
        assert samples["jeffrey_rollbacks_total"] >= 1
        assert samples["jeffrey_gate_evaluations_total"] >= 1
        passed = [k for k in samples if k.startswith("jeffrey_check_runs_total{") and 'result="Pass"' in k]
        assert [samples[k] for k in passed] == [1.0]
        assert samples["jeffrey_reconcile_duration_seconds_count"] > 0
        assert samples["jeffrey_prometheus_query_duration_seconds_count"] > 0
        writes = samples['jeffrey_api_writes_total{resource="deployments",verb="patch"}']
        assert writes == sum(v for (verb, res), v in ctx.kube.writes.items() if res == "deployments")
        assert samples['jeffrey_api_writes_total{resource="jeffreyintegrations/status",verb="patch"}'] > 0

        redis_server.stop()
        wait_for(lambda: scrape(port)["jeffrey_state_store_up"] == 0, 15, "jeffrey_state_store_up 0")
        redis_server.start()
        wait_for(lambda: scrape(port)["jeffrey_state_store_up"] == 1, 30, "jeffrey_state_store_up 1 again")
    finally:
        operator.stop()


# ---------------------------------------------------------------------------------- probes


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def run_operator(kubeconfig: pathlib.Path, health: int, log: Any, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jeffrey_operator.runtime.cli",
            "run",
            f"--health-port={health}",
            "--metrics-port=0",
            "--liveness-grace=2",
            *extra,
        ],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_healthz_fails_after_the_grace_when_the_api_refuses(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: nowhere, cluster: {{server: "http://127.0.0.1:{free_port()}"}}}}]
users: [{{name: nowhere, user: {{token: t}}}}]
contexts: [{{name: nowhere, context: {{cluster: nowhere, user: nowhere}}}}]
current-context: nowhere
"""
    )
    health = free_port()
    with (tmp_path / "operator.log").open("w") as log:
        proc = run_operator(kubeconfig, health, log)
        try:
            status, _ = wait_for(
                lambda: (r := get(f"http://127.0.0.1:{health}/healthz"))[0] and r, 20, "probes"
            )
            started = time.monotonic()
            assert status == 200 or time.monotonic() - started > 2  # within the grace: still alive
            status, why = wait_for(
                lambda: (r := get(f"http://127.0.0.1:{health}/healthz"))[0] == 500 and r, 20, "/healthz 500"
            )
            assert "has not been reached" in why and "grace 2s" in why
            code, why = get(f"http://127.0.0.1:{health}/readyz")
            assert code == 503 and why.startswith("not listed yet: deployments in "), why
            assert "jobs in " in why  # the check Job list too
            assert proc.poll() is None  # it keeps trying; Kubernetes restarts it
        finally:
            proc.terminate()
            proc.wait(15)


def test_healthz_stays_200_against_a_working_api(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    kubeconfig = cluster.emu.write_kubeconfig(tmp_path / "kubeconfig")
    health = free_port()
    with (tmp_path / "operator.log").open("w") as log:
        proc = run_operator(kubeconfig, health, log)
        try:
            wait_for(lambda: get(f"http://127.0.0.1:{health}/readyz")[0] == 200, 30, "/readyz 200")
            time.sleep(3)  # longer than the grace: the watch keeps the contact fresh
            assert get(f"http://127.0.0.1:{health}/healthz")[0] == 200
        finally:
            proc.terminate()
            proc.wait(15)
