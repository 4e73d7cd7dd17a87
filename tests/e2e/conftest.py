"""End-to-end tests against the kind cluster of ``make kind-demo`` (context ``kind-jeffrey``).

Opt-in twice over: the tests carry the ``e2e`` marker and are skipped unless pytest runs with
``--e2e``; and then they refuse to start unless the current kube context is ``kind-jeffrey``
and points at a local kind API server. Every kubectl call names the context explicitly.

    make kind-demo WATCH=0        # the cluster, the image, Prometheus, modules, the chart
    PYTHONPATH=operator python -m pytest tests/e2e --e2e -v

(``--e2e`` is defined in ``tests/conftest.py``.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

CONTEXT = "kind-jeffrey"
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--e2e", default=False):
        return
    skip = pytest.mark.skip(reason=f"end-to-end test against kind ({CONTEXT}): opt in with --e2e")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


@dataclass(frozen=True)
class Kube:
    """kubectl, always with ``--context kind-jeffrey``."""

    context: str = CONTEXT

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
        cmd = ["kubectl", "--context", self.context, *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def apply(self, path: Path) -> None:
        self.run("apply", "-f", str(path))


def wait_for(probe: Callable[[], T | None], *, timeout: float, interval: float = 5.0, what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The guard: only ever the local kind cluster ``jeffrey``."""
    if shutil.which("kubectl") is None:
        pytest.exit("e2e: kubectl is not installed", returncode=3)
    current = subprocess.run(
        ["kubectl", "config", "current-context"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if current != CONTEXT:
        pytest.exit(
            f"e2e: refusing to run against kube context {current!r}: only {CONTEXT!r} "
            f"(make kind-demo creates it; kubectl config use-context {CONTEXT})",
            returncode=3,
        )
    server = subprocess.run(
        [
            "kubectl",
            "config",
            "view",
            "--minify",
            "--context",
            CONTEXT,
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not server.startswith(("https://127.0.0.1:", "https://localhost:", "https://[::1]:")):
        pytest.exit(f"e2e: context {CONTEXT} points at {server!r}, not a local kind cluster", returncode=3)
    yield Kube()
