"""The moving parts of the playground (:mod:`jeffrey_playground.main`), each cleaned up for sure.

* :class:`ManagedProcess` — a child process (Prometheus, Redis) in its own session, that dies
  with us even on SIGKILL (Linux ``PR_SET_PDEATHSIG``) and is stopped by PID, never by name;
* :func:`start_prometheus` / :func:`start_redis` — the real servers on free loopback ports, in a
  temporary directory;
* :class:`SimulatorFleet` — the module simulators (:mod:`jeffrey_operator.sim`), served in-process
  on fixed loopback ports, started and stopped as their emulated Deployments scale up and down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ManagedProcess",
    "SimulatorFleet",
    "binary_version",
    "find_binary",
    "free_port",
    "http_json",
    "start_prometheus",
    "start_redis",
]

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, env: str) -> str | None:
    """``$env``, else ``PATH``, else ``/usr/bin/<name>``; None when none is executable."""
    for candidate in (os.environ.get(env), shutil.which(name), f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def binary_version(binary: str) -> str:
    """The version ``binary --version`` prints: ``2.42.0+ds`` (Prometheus), ``7.0.15`` (Redis)."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown version"
    text = (done.stdout or done.stderr).strip()
    found = re.search(r"(?:version\s+|\bv=)v?([0-9][^\s,]*)", text)
    if found:
        return found.group(1)
    return text.splitlines()[0][:40] if text else "unknown version"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the playground dies, however it dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def http_json(url: str, body: Mapping[str, Any] | None = None, timeout: float = 2.0) -> Any:
    """GET (or POST ``body``) and decode the JSON answer; raise :class:`OSError` on failure."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        raise OSError(f"{url}: HTTP {err.code}") from err
    except ValueError as err:
        raise OSError(f"{url}: not JSON") from err


@dataclass
class ManagedProcess:
    """A child process the playground started and must stop."""

    name: str
    argv: Sequence[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                list(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal Ctrl-C reaches us, and we stop it in order
                preexec_fn=_die_with_parent,  # noqa: PLW1509  # prctl only; no locks are taken
            )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; by PID, waited for (no zombie)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout)

    def tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _wait(check: Callable[[], bool], timeout: float, proc: ManagedProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running:
            raise RuntimeError(f"{proc.name} exited at start: {proc.tail()}")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not become ready within {timeout:g}s: {proc.tail()}")


def start_alertmanager(binary: str, workdir: Path) -> tuple[ManagedProcess, str]:
    """A real Alertmanager (no receivers, no gossip) for the operator's notification sink."""
    port = free_port()
    config = workdir / "alertmanager.yml"
    config.write_text(json.dumps({"route": {"receiver": "none"}, "receivers": [{"name": "none"}]}))
    proc = ManagedProcess(
        "alertmanager",
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        workdir / "alertmanager.log",
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return int(response.status) == 200

    _wait(ready, 30.0, proc)
    return proc, url


def start_prometheus(
    binary: str, workdir: Path, targets: Mapping[str, Mapping[str, str]], *, scrape_interval: str = "1s"
) -> tuple[ManagedProcess, str]:
    """A real Prometheus scraping ``targets`` (``host:port`` → labels); returns it and its URL."""
    port = free_port()
    config = workdir / "prometheus.yml"
    document = {  # JSON is YAML
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "jeffrey-modules",
                "honor_labels": True,  # the simulators export namespace/module themselves
                "scrape_timeout": scrape_interval,
                "static_configs": [
                    {"targets": [address], "labels": dict(labels)} for address, labels in targets.items()
                ],
            }
        ],
    }
    config.write_text(json.dumps(document, indent=2))
    proc = ManagedProcess(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return int(response.status) == 200

    _wait(ready, 30.0, proc)
    return proc, url


def start_redis(binary: str, workdir: Path) -> tuple[ManagedProcess, str]:
    """A real Redis without persistence on a free loopback port; returns it and its URL."""
    port = free_port()
    proc = ManagedProcess(
        "redis",
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--daemonize", "no",
        ],
        workdir / "redis.log",
    )  # fmt: skip
    proc.start()

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return b"+PONG" in sock.recv(64)

    _wait(ready, 15.0, proc)
    return proc, f"redis://127.0.0.1:{port}/0"


# ------------------------------------------------------------------------------------ simulators


@dataclass
class _Sim:
    module: str
    port: int
    runner: Any = None
    sim: Any = None
    starts: int = 0


@dataclass
class SimulatorFleet:
    """One :mod:`jeffrey_operator.sim` HTTP server per module, in one background event loop.

    A module's server runs while its Deployment wants pods (``spec.replicas > 0``): the "pods" of
    the emulated Deployment controller. Ports are fixed for the run, so Prometheus scrapes a stable
    target list and simply sees a target down while its module is scaled to zero.
    """

    namespace: str
    modules: Sequence[str]
    #: Called (from the fleet's thread) when a simulator is told to crash (``POST /fault crash``).
    on_crash: Callable[[str], None] | None = None
    sims: dict[str, _Sim] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.sims = {m: _Sim(m, free_port()) for m in self.modules}

    def targets(self) -> dict[str, dict[str, str]]:
        return {
            f"127.0.0.1:{s.port}": {"namespace": self.namespace, "module": s.module}
            for s in self.sims.values()
        }

    def url(self, module: str) -> str:
        return f"http://127.0.0.1:{self.sims[module].port}"

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="module-simulators", daemon=True)
        self._thread.start()
        ready.wait(10)

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        if self._loop is None:
            raise RuntimeError("the simulator fleet is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def running(self, module: str) -> bool:
        return self.sims[module].runner is not None

    def set_running(self, module: str, running: bool) -> None:
        """Start or stop one module's simulator (idempotent)."""
        if running != self.running(module):
            self._run(self._up(module) if running else self._down(module))

    async def _up(self, module: str) -> None:
        from aiohttp import web

        from jeffrey_operator.sim.main import ModuleSim, create_app

        entry = self.sims[module]
        if entry.runner is not None:
            return
        entry.sim = ModuleSim(module, self.namespace)

        def crash(_code: int) -> None:
            # An in-process "process exit": this pod's server goes away, and the emulated
            # Deployment is told its pod died.
            assert self._loop is not None
            self._loop.create_task(self._down(module))
            if self.on_crash is not None:
                self.on_crash(module)

        runner = web.AppRunner(create_app(entry.sim, exit_process=crash), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", entry.port, reuse_address=True)
        await site.start()
        entry.runner = runner
        entry.starts += 1

    async def _down(self, module: str) -> None:
        entry = self.sims[module]
        runner, entry.runner = entry.runner, None
        if runner is not None:
            await runner.cleanup()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def down_all() -> None:
            for module in list(self.sims):
                with contextlib.suppress(Exception):
                    await self._down(module)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(down_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
