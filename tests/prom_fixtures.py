"""A real Prometheus and simulated Jeffrey modules for tests (a pytest plugin module).

Use it from a test module with ``pytest_plugins = ["prom_fixtures"]`` (or import the fixtures in a
conftest). It gives:

* ``prometheus`` (module scope): a :class:`PrometheusServer` — the ``prometheus`` binary from
  ``$JEFFREY_PROMETHEUS_BIN``, ``PATH`` or ``/usr/bin/prometheus`` on a free loopback port, a temp
  TSDB, ``scrape_interval: 1s``. Targets come from a ``file_sd`` file, so simulators can be added
  at any time (Prometheus picks them up in under a second; only its very first discovery takes
  ~5 s). ``.url``, ``.stop()``, ``.start()`` (same port, same storage), ``.query()``.
* ``simulators`` (module scope): a :class:`SimulatorFleet` that starts ``jeffrey-module-sim``
  processes with module/namespace labels, registers them as targets, waits until Prometheus has
  two samples of each (so ``rate``/``irate`` answer), and lets tests change faults over HTTP.

When the binary is missing the tests are skipped, unless ``JEFFREY_REQUIRE_ALL=1`` (CI), which
turns that into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPERATOR_SRC = ROOT / "operator"


def free_port() -> int:
    """A TCP port nothing listens on right now (loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_prometheus() -> str | None:
    for candidate in (
        os.environ.get("JEFFREY_PROMETHEUS_BIN"),
        shutil.which("prometheus"),
        "/usr/bin/prometheus",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_prometheus() -> str:
    """The binary's path; skip (locally) or fail (``JEFFREY_REQUIRE_ALL=1``) when it is missing."""
    binary = find_prometheus()
    if binary is None:
        message = "prometheus binary not found (PATH, /usr/bin/prometheus or $JEFFREY_PROMETHEUS_BIN)"
        if os.environ.get("JEFFREY_REQUIRE_ALL") == "1":
            pytest.fail(message + " and JEFFREY_REQUIRE_ALL=1")
        pytest.skip(message)
    return binary


def _http(url: str, *, data: bytes | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def wait_until(
    check: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError) as err:
            last_error = err
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")
        time.sleep(interval)


# ------------------------------------------------------------------------------------ Prometheus


@dataclass
class PrometheusServer:
    """One real Prometheus process, restartable on the same port and storage."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    scrape_interval: str = "1s"
    process: subprocess.Popen[bytes] | None = None
    #: Seconds from the first start to the first successful scrape (measured by ``wait_scraped``).
    first_scrape_seconds: float | None = None
    started_at: float = 0.0
    _targets: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.workdir / "tsdb"

    @property
    def targets_file(self) -> Path:
        return self.workdir / "targets.json"

    @property
    def log_file(self) -> Path:
        return self.workdir / "prometheus.log"

    def _write_config(self) -> Path:
        config = self.workdir / "prometheus.yml"
        # JSON is YAML: no PyYAML needed.
        document = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "jeffrey-modules",
                    # The simulators export namespace/module themselves; the target labels only
                    # fill them in on `up` and on targets that do not.
                    "honor_labels": True,
                    "scrape_timeout": self.scrape_interval,
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }
        config.write_text(json.dumps(document, indent=2))
        if not self.targets_file.exists():
            self._write_targets()
        return config

    def _write_targets(self) -> None:
        groups = [
            {"targets": [address], "labels": labels} for address, labels in sorted(self._targets.items())
        ]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        os.replace(tmp, self.targets_file)

    def add_target(self, address: str, labels: dict[str, str]) -> None:
        self._targets[address] = dict(labels)
        self._write_targets()

    def remove_target(self, address: str) -> None:
        self._targets.pop(address, None)
        self._write_targets()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        """Start (or restart) on the same port and storage; return once it answers ``/-/ready``."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if not self.started_at:
            self.started_at = time.monotonic()

        def ready() -> bool:
            if not self.running:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise AssertionError(
                    f"prometheus exited with {self.process and self.process.returncode}:\n{tail}"
                )
            return _http(f"{self.url}/-/ready", timeout=1.0)[0] == 200

        wait_until(ready, timeout=timeout, interval=0.05, what=f"prometheus on {self.url} to be ready")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (by PID), then SIGKILL if it does not exit within ``timeout``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The ``result`` list of an instant query (raises on an error answer)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, body = _http(url)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise ValueError(f"query {promql!r} failed: HTTP {status} {doc}")
        result = doc["data"]["result"]
        return list(result) if isinstance(result, list) else [{"metric": {}, "value": result}]

    def value(self, promql: str) -> float | None:
        """The single value of a query (``None`` when empty)."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def query_api_requests(self) -> int:
        """How many ``/api/v1/query`` requests Prometheus has served (from its own /metrics)."""
        _, body = _http(f"{self.url}/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


# ------------------------------------------------------------------------------------ simulators


@dataclass
class Simulator:
    """One ``jeffrey-module-sim`` process."""

    module: str
    namespace: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def selector(self) -> str:
        return f'{{namespace="{self.namespace}",module="{self.module}"}}'

    def set_fault(self, kind: str, value: float | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": kind}
        if value is not None:
            doc["value"] = value
        status, body = _http(f"{self.url}/fault", data=json.dumps(doc).encode())
        if status >= 300:
            raise AssertionError(f"POST /fault {doc} -> {status} {body!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def fault(self) -> dict[str, Any]:
        status, body = _http(f"{self.url}/fault")
        assert status == 200, body
        result: dict[str, Any] = json.loads(body)
        return result

    def metrics_text(self) -> str:
        return _http(f"{self.url}/metrics")[1].decode()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.process.returncode


def spawn_simulator(module: str, namespace: str, *extra: str, port: int | None = None) -> Simulator:
    """Start one simulator process (not yet waited for; see :func:`wait_healthy`)."""
    port = port or free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(OPERATOR_SRC), env.get("PYTHONPATH", "")) if p)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jeffrey_operator.sim.main",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--module={module}",
            f"--namespace={namespace}",
            *extra,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Simulator(module=module, namespace=namespace, port=port, process=process)


def wait_healthy(sims: Iterable[Simulator], timeout: float = 15.0) -> None:
    pending = list(sims)

    def all_up() -> bool:
        for sim in list(pending):
            if not sim.alive:
                raise AssertionError(
                    f"simulator {sim.namespace}/{sim.module} exited with {sim.process.returncode}"
                )
            try:
                if _http(f"{sim.url}/healthz", timeout=0.5)[0] == 200:
                    pending.remove(sim)
            except OSError:
                pass
        return not pending

    wait_until(all_up, timeout=timeout, interval=0.05, what="simulators to answer /healthz")


@dataclass
class SimulatorFleet:
    """Starts simulators, registers them with Prometheus, stops them all at teardown."""

    prometheus: PrometheusServer | None
    sims: list[Simulator] = field(default_factory=list)

    def start(
        self, modules: Iterable[str], namespace: str, *extra: str, wait_scraped: bool = True
    ) -> list[Simulator]:
        """Start one simulator per module name in ``namespace``; by default wait until scraped twice."""
        started = [spawn_simulator(module, namespace, *extra) for module in modules]
        self.sims.extend(started)
        wait_healthy(started)
        if self.prometheus is not None:
            for sim in started:
                self.prometheus.add_target(sim.address, {"namespace": sim.namespace, "module": sim.module})
            if wait_scraped:
                self.wait_scraped(started)
        return started

    def wait_scraped(self, sims: Iterable[Simulator], timeout: float = 20.0) -> None:
        """Until Prometheus can compute ``irate`` for each (two samples), i.e. gates can judge them."""
        assert self.prometheus is not None
        prometheus = self.prometheus
        wanted = {(s.namespace, s.module) for s in sims}
        namespaces = "|".join(sorted({ns for ns, _ in wanted}))
        promql = (
            "count by (namespace, module) "
            f'(irate(jeffrey_bus_messages_published_total{{namespace=~"{namespaces}"}}[1m]))'
        )

        def scraped() -> bool:
            seen = {
                (r["metric"].get("namespace"), r["metric"].get("module")) for r in prometheus.query(promql)
            }
            return wanted <= seen

        wait_until(
            scraped, timeout=timeout, interval=0.1, what=f"Prometheus to scrape {sorted(wanted)} twice"
        )
        if prometheus.first_scrape_seconds is None:
            prometheus.first_scrape_seconds = time.monotonic() - prometheus.started_at

    def stop(self, sim: Simulator) -> None:
        sim.stop()
        if self.prometheus is not None:
            self.prometheus.remove_target(sim.address)

    def stop_all(self) -> None:
        for sim in self.sims:
            sim.stop()
        self.sims.clear()


# -------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return require_prometheus()


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(binary=prometheus_binary, workdir=tmp_path_factory.mktemp("prometheus"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def simulators(prometheus: PrometheusServer) -> Iterator[SimulatorFleet]:
    fleet = SimulatorFleet(prometheus)
    try:
        yield fleet
    finally:
        fleet.stop_all()
