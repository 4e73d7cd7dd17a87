"""The playground (``make demo``): the non-interactive run CI makes, its summary, and its cleanup.

The full runs need the ``prometheus`` and ``redis-server`` binaries: they skip without them,
except with ``JEFFREY_REQUIRE_ALL=1`` (CI), where they fail.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jeffrey_operator.core.crdgen import crd
from jeffrey_operator.core.models import JeffreyIntegrationSpec
from jeffrey_playground.main import (
    FALLBACK_LEVELS,
    PlaygroundOptions,
    demo_spec,
    render_compact,
    run,
)
from jeffrey_playground.services import ManagedProcess, find_binary

REQUIRE_ALL = os.environ.get("JEFFREY_REQUIRE_ALL") == "1"
COMMAND = [sys.executable, "-m", "jeffrey_operator.runtime.cli", "playground", "--non-interactive"]


def require(name: str, env: str) -> str:
    binary = find_binary(name, env)
    if binary is None:
        message = f"{name} is not installed (apt-get install --no-install-recommends {name})"
        if REQUIRE_ALL:
            pytest.fail(f"{message}; JEFFREY_REQUIRE_ALL=1 requires it")
        pytest.skip(message)
    return binary


def alive(pid: int, name: str) -> bool:
    """Whether ``pid`` is still a running ``name`` process (not a zombie, not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return name.encode() in cmdline and state != "Z"


def started_pids(output: str) -> dict[str, int]:
    """The PIDs the playground says it started (``real  Prometheus (2.42.0) at URL, pid N``)."""
    found = re.findall(r"real\s+(Prometheus|Redis) \(.*?\) at \S+, pid (\d+)", output)
    return {name.lower(): int(pid) for name, pid in found}


# ------------------------------------------------------------------------------------------ fast


def test_demo_spec_is_the_example_ladder_with_demo_timings() -> None:
    spec = demo_spec(speed=1.0, prometheus_url="http://127.0.0.1:9")
    parsed = JeffreyIntegrationSpec.model_validate(spec)
    assert [ls.level.value for ls in parsed.levels] == [
        "CORE",
        "COGNITIVE",
        "EMOTIONAL",
        "CONSCIOUS",
        "LOOPS",
        "PRODUCTION",
    ]
    assert spec["levels"] == FALLBACK_LEVELS  # the same ladder as examples/jeffrey-full-ladder.yaml
    assert spec["promotion"] == {"readinessTimeout": "8s", "validationWindow": "3s", "cooldown": "1s"}
    assert spec["analysis"] == {
        "interval": "1s",
        "prometheus": {"url": "http://127.0.0.1:9", "timeout": "2s"},
    }
    assert spec["defaultGates"] is True and spec["targetLevel"] == "PRODUCTION"

    fast = demo_spec(speed=4.0, prometheus_url=None)
    assert fast["promotion"] == {"readinessTimeout": "2s", "validationWindow": "750ms", "cooldown": "250ms"}
    assert fast["defaultGates"] is False and "prometheus" not in fast["analysis"]


def test_speed_must_be_positive() -> None:
    err = io.StringIO()
    assert run(PlaygroundOptions(non_interactive=True, speed=0), out=err) == 2
    assert "--speed must be greater than 0" in err.getvalue()


def test_compact_view_shows_the_ladder_and_the_bus() -> None:
    now = datetime.datetime(2026, 11, 21, 9, 0, 10, tzinfo=datetime.UTC)
    body = {
        "metadata": {"name": "jeffrey", "namespace": "jeffrey", "generation": 1},
        "spec": demo_spec(speed=1.0, prometheus_url="http://p:9090"),
        "status": {
            "phase": "Validating",
            "reason": "Validating",
            "message": "LOOPS is ready; validating health for 3s",
            "currentLevel": "CONSCIOUS",
            "activeLevel": "LOOPS",
            "phaseSince": "2026-11-21T09:00:09.000Z",
            "gates": [
                {
                    "name": "rollback-bus-rate",
                    "value": 450.0,
                    "max": 1000,
                    "result": "Pass",
                    "since": "2026-11-21T09:00:00.000Z",
                },
                {
                    "name": "loops-bus-headroom",
                    "value": 450.0,
                    "max": 700,
                    "result": "Pass",
                    "since": "2026-11-21T09:00:00.000Z",
                },
            ],
        },
    }
    text = render_compact(body, now, 12.5)
    assert text.startswith("t+ 12.5s  phase Validating: LOOPS is ready")
    assert "validation of LOOPS: 2.0s left of 3s" in text
    assert re.search(r" > CONSCIOUS\s+up", text) and re.search(r"LOOPS\s+validating", text)
    assert "gates: 2/2 pass; bus 450 msg/s (<= 1000)" in text


def test_managed_process_is_stopped_by_pid(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "log")
    proc.start()
    assert proc.running and proc.pid is not None
    proc.stop(timeout=5)
    assert not proc.running and proc.process is not None and proc.process.returncode == -signal.SIGTERM


def test_the_crd_the_playground_serves_is_the_generated_one() -> None:
    assert crd()["metadata"]["name"] == "jeffreyintegrations.jeffreyos.io"


# ------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_non_interactive_run_climbs_rolls_back_and_summarises() -> None:
    require("prometheus", "JEFFREY_PROMETHEUS_BIN")
    require("redis-server", "REDIS_SERVER")
    started = time.monotonic()
    done = subprocess.run(COMMAND, capture_output=True, text=True, timeout=150, check=False)
    seconds = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert seconds < 90, f"the playground took {seconds:.0f}s"
    assert "Traceback" not in out + done.stderr

    # Honest about what is real and what is emulated, from the first lines on.
    assert "emulated  Kubernetes API at http://127.0.0.1:" in out and "(NOT a cluster)" in out
    assert "real      Prometheus (" in out and "real      Redis (" in out
    assert "real      the operator: jeffrey_operator (kopf, the engine, its adapters), unchanged" in out

    # The climb, live, level by level; then the fault and the rollback with its reason.
    promoted = re.findall(r"Promoting\s+current \S+\s+Promoting: promoting (\w+)", out)
    assert promoted == ["CORE", "COGNITIVE", "EMOTIONAL", "CONSCIOUS", "LOOPS", "PRODUCTION"]
    assert re.search(r"Stable\s+current PRODUCTION TargetReached", out)
    assert "FAULT: curiosity-loop floods the bus at 5000 msg/s (limit 1000)" in out
    assert re.search(
        r"RollingBack\s+current CORE\s+GateBreach: rolling back to CORE from PRODUCTION: "
        r"gate rollback-bus-rate",
        out,
    )
    assert "$ jeffreyctl status jeffrey" in out and "PHASE     RolledBack (RolledBack" in out
    if "real      Alertmanager (" in out:  # installed: the rollback reached a real Alertmanager
        assert re.search(
            r"NOTIFIED: Alertmanager holds JeffreyIntegrationRolledBack \(namespace=\S+, name=jeffrey", out
        )
    # The web dashboard was served all along, and shows what jeffreyctl shows.
    assert re.search(
        r"real      the dashboard \(jeffreyctl dashboard, in this process\): open http://127", out
    )
    assert re.search(
        r"dashboard at http://127\.0\.0\.1:\d+/ shows: jeffrey/jeffrey RolledBack \(Degraded\), current CORE",
        out,
    )

    summary = out[out.index("SUMMARY") :]
    climb = float(re.search(r"time to reach PRODUCTION:\s+([\d.]+)s", summary)[1])  # type: ignore[index]
    assert 6 * 3 < climb < 75  # six validation windows of 3 s at least
    rollback = re.search(
        r"rollback:\s+GateBreach from PRODUCTION, gate rollback-bus-rate: value (\d+) > "
        r"threshold 1000",
        summary,
    )
    assert rollback is not None and int(rollback[1]) > 1000
    timing = re.search(
        r"fault -> rollback:\s+([\d.]+)s to the decision \(RollingBack\), ([\d.]+)s to RolledBack", summary
    )
    assert timing is not None and 0 < float(timing[1]) <= float(timing[2]) < 15
    transitions = re.search(
        r"transitions:\s+(\d+) \(status.transitionSeq\), (\d+) in the Redis history", summary
    )
    assert transitions is not None and int(transitions[1]) == int(transitions[2]) >= 20
    assert re.search(r"real:\s+the operator .*Prometheus \(\d.*Redis \(\d", summary)
    assert re.search(r"emulated/simulated:\s+the Kubernetes API .*not a cluster.*pods .*the modules", summary)
    assert (
        "result:                    OK: climbed to PRODUCTION and rolled back to CORE as expected" in summary
    )

    # Every process it started is gone.
    pids = started_pids(out)
    assert set(pids) == {"prometheus", "redis"}
    assert f"stopped: prometheus pid {pids['prometheus']}, redis pid {pids['redis']}" in out
    for name, pid in pids.items():
        assert not alive(pid, name)


@pytest.mark.slow
def test_ctrl_c_stops_everything_it_started() -> None:
    require("prometheus", "JEFFREY_PROMETHEUS_BIN")
    require("redis-server", "REDIS_SERVER")
    proc = subprocess.Popen(COMMAND, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "Promoting: promoting CORE" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    pids = started_pids(seen)
    assert set(pids) == {"prometheus", "redis"}, seen
    assert all(alive(pid, name) for name, pid in pids.items())
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    out = seen + rest
    assert proc.returncode == 130, out
    assert "interrupted: stopping everything the playground started" in out
    assert "Traceback" not in out
    for name, pid in pids.items():
        assert not alive(pid, name)


@pytest.mark.slow
def test_without_prometheus_and_redis_it_says_so_and_still_rolls_back() -> None:
    out = io.StringIO()
    options = PlaygroundOptions(non_interactive=True, speed=4.0, prometheus=None, redis=None)
    assert run(options, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "missing   Prometheus: not installed, so NO health gates this run" in text
    assert "apt-get install --no-install-recommends prometheus" in text
    assert "missing   Redis: not installed, so no state store this run" in text
    assert "apt-get install --no-install-recommends redis-server" in text
    assert "no gates (no Prometheus)" in text
    assert "FAULT: curiosity-loop crashes" in text
    summary = text[text.index("SUMMARY") :]
    assert re.search(r"rollback:\s+ModuleUnready from PRODUCTION", summary)
    assert "required modules not ready for 2s: curiosity-loop" in summary
    assert re.search(r"transitions:\s+\d+ \(status.transitionSeq\)\n", summary)  # no Redis history
    assert "note:                      no Prometheus: no health gates" in summary
    assert "result:                    OK" in summary
