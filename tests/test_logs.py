"""``jeffrey-operator run --log-format json|text`` as a process: what ``kubectl logs`` shows.

The operator runs as a subprocess against the emulated API (KUBECONFIG), climbs, and meets an
invalid object; the test reads everything the process wrote and parses every line.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jeffrey_emulator import BackgroundEmulator, DeploymentBehaviour, Emulator, deployment_manifest, load_crds
from operator_fixtures import FAST, example, wait_for

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(name="emu")
def emu_fixture() -> Iterator[Emulator]:
    bg = BackgroundEmulator(
        crds=load_crds(ROOT / "crds"),
        default_behaviour=DeploymentBehaviour(delay=0.05),
        namespaces=("default", "jeffrey"),  # namespaces are real objects in the emulator
    )
    emu = bg.start()
    try:
        yield emu
    finally:
        bg.stop()


def run_operator(emu: Emulator, tmp_path: pathlib.Path, log_format: str) -> list[str]:
    """Start the operator, climb one integration, create an invalid one, stop; every output line."""
    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    out = (tmp_path / "operator.log").open("w+b")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jeffrey_operator.runtime.cli",
            "run",
            f"--log-format={log_format}",
            "--namespace=jeffrey",
            "--health-port=0",
            "--metrics-port=0",
            "--standalone",
        ],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        ji = example()
        ji["metadata"]["namespace"] = "jeffrey"
        ji["spec"]["promotion"] = dict(FAST)
        ji["spec"]["defaultGates"] = False
        for level in ji["spec"]["levels"]:
            for module in level["modules"]:
                emu.create(deployment_manifest(module["deployment"], "jeffrey", replicas=0))
        emu.create(copy.deepcopy(ji))
        bad = copy.deepcopy(ji)
        bad["metadata"]["name"] = "broken"
        bad["spec"]["levels"] = [{"level": "CORE", "modules": [{"deployment": "ghost"}]}]
        bad["spec"]["targetLevel"] = "CORE"
        emu.create(bad)

        def phase(name: str) -> str:
            return str((emu.get("jeffreyintegrations", "jeffrey", name).get("status") or {}).get("phase"))

        wait_for(
            lambda: phase("jeffrey") == "Stable" and phase("broken") == "Invalid", 30, "Stable and Invalid"
        )
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    out.seek(0)
    lines = out.read().decode().splitlines()
    out.close()
    assert lines, "the operator wrote nothing"
    return lines


def test_json_every_line_is_json_and_each_decision_has_its_fields(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    lines = run_operator(emu, tmp_path, "json")
    docs: list[dict[str, Any]] = []
    for line in lines:
        try:
            docs.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not JSON: {line!r}")
    assert all({"timestamp", "severity", "logger", "message"} <= set(d) for d in docs)
    assert any(d["logger"].startswith("kopf") for d in docs), "kopf's own lines go through the same formatter"
    decisions = [d for d in docs if d["logger"] == "jeffrey_operator.decisions"]
    for d in decisions:
        assert {"event", "namespace", "name", "level", "phase", "reason"} <= set(d), d
    climb = [d for d in decisions if d["name"] == "jeffrey" and d["event"] == "transition"]
    assert climb[-1]["phase"] == "Stable" and climb[-1]["level"] == "PRODUCTION"
    assert [d["reason"] for d in climb].count("LevelValidated") == 5
    (invalid,) = [d for d in decisions if d["name"] == "broken"]
    assert (invalid["event"], invalid["phase"], invalid["reason"]) == (
        "hold",
        "Invalid",
        "DeploymentNotFound",
    )
    assert "'ghost'" in invalid["message"] and invalid["severity"] == "warning"


def test_text_decisions_carry_key_value_fields(emu: Emulator, tmp_path: pathlib.Path) -> None:
    lines = run_operator(emu, tmp_path, "text")
    decisions = [line for line in lines if "jeffrey_operator.dec" in line]
    assert decisions
    for line in decisions:
        fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
        assert {"event", "namespace", "name", "level", "phase", "reason"} <= set(fields), line
    assert any(
        "event=transition namespace=jeffrey name=jeffrey level=PRODUCTION phase=Stable" in x for x in lines
    )
    assert any(
        "event=hold namespace=jeffrey name=broken" in x and "reason=DeploymentNotFound" in x for x in lines
    )


def test_json_mode_turns_warnings_and_uncaught_exceptions_into_json_lines() -> None:
    script = """
import logging, threading, warnings
from jeffrey_operator.runtime import logs
logs.configure("json")
logging.getLogger("aiohttp.client").warning("a library speaks")
warnings.warn("something is deprecated", DeprecationWarning, stacklevel=1)
def fail():
    raise RuntimeError("in a thread")
t = threading.Thread(target=fail, name="worker")
t.start(); t.join()
raise ValueError("at the top")
"""
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).splitlines()
    docs = [json.loads(line) for line in lines]  # every line, or this raises
    messages = {d["logger"]: d for d in docs}
    assert messages["aiohttp.client"]["message"] == "a library speaks"
    assert "something is deprecated" in messages["py.warnings"]["message"]
    crashes = [d for d in docs if d["severity"] == "critical"]
    assert [("RuntimeError: in a thread" in d["exc_info"]) for d in crashes] == [True, False]
    assert "ValueError: at the top" in crashes[1]["exc_info"] and "worker" in crashes[0]["message"]
