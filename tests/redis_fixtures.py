"""A real ``redis-server`` for tests: started on a free loopback port, stopped by PID.

Use the fixtures from a test module with ``pytest_plugins = ["redis_fixtures"]``::

    async def test_something(redis_server: RedisServer) -> None:
        store = RedisStateStore.from_settings(redis_server.url, redis_server.password)
        ...
        redis_server.stop()          # Redis goes away (SIGTERM; ``stop(kill=True)``: SIGKILL)
        ...
        redis_server.start()         # and comes back, empty, on the same port

Nothing is persisted (``--save "" --appendonly no``): a restart loses the data set, like a Redis
without persistence that crashed, which is the harder case for the back-fill.

If ``redis-server`` is not installed the tests are skipped, unless ``JEFFREY_REQUIRE_ALL=1``
(CI), where they fail instead. ``bench/bench_state.py`` uses :class:`RedisServer` directly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from jeffrey_operator.adapters.redis import RedisStateStore

__all__ = [
    "RedisServer",
    "find_redis_server",
    "redis_server",
    "redis_server_with_password",
    "redis_server_with_unix_socket",
    "require_redis_server",
    "running_redis",
]

REQUIRE_ALL_ENV = "JEFFREY_REQUIRE_ALL"


def find_redis_server() -> str | None:
    """The path of ``redis-server`` (``$REDIS_SERVER`` first), or None."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit and os.access(explicit, os.X_OK):
        return explicit
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def require_redis_server() -> str:
    """The ``redis-server`` binary; skips the test if it is missing (fails under CI)."""
    return _require_binary()


def _require_binary() -> str:
    binary = find_redis_server()
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get(REQUIRE_ALL_ENV) == "1":
            pytest.fail(f"{message}; {REQUIRE_ALL_ENV}=1 requires every test to run")
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ping(port: int, password: str | None, timeout: float) -> bool:
    """One raw RESP PING (with AUTH first when a password is set); True on +PONG."""
    request = b""
    if password is not None:
        pw = password.encode()
        request += b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw)
    request += b"*1\r\n$4\r\nPING\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request)
            answer = b""
            while b"PONG" not in answer and b"-" not in answer[:1]:
                chunk = s.recv(256)
                if not chunk:
                    break
                answer += chunk
            return b"+PONG" in answer
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port`` that can be stopped and restarted."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        password: str | None = None,
        port: int | None = None,
        unix_socket: bool = False,
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.port = port or _free_port()
        self.unix_socket = unix_socket
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (no password in it: pass :attr:`password` separately)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """``unix:///.../redis.sock?db=0`` (only with ``unix_socket=True``)."""
        return f"unix://{self.workdir / 'redis.sock'}?db=0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, deadline: float = 10.0) -> None:
        """Start (or restart) on the same port and wait until it answers PING."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--logfile",
            str(self.workdir / "redis.log"),
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.unix_socket:
            args += ["--unixsocket", str(self.workdir / "redis.sock"), "--unixsocketperm", "700"]
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            if self._process.poll() is not None:
                break
            if _ping(self.port, self.password, timeout=0.2):
                return
            time.sleep(0.01)
        log = self.workdir / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self.stop(kill=True)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {deadline}s\n{tail}")

    def stop(self, *, kill: bool = False, deadline: float = 10.0) -> None:
        """Stop by PID: SIGTERM and wait (``kill=True``: SIGKILL, like a crash)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=deadline)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_redis(password: str | None = None) -> Iterator[RedisServer]:
    """A started server in a temporary directory, for scripts (``bench/``); raises if the
    binary is missing."""
    binary = find_redis_server()
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="jeffrey-redis-") as tmp:
        server = RedisServer(binary, Path(tmp), password=password)
        with server:
            yield server


def _started(binary: str, workdir: Path, password: str | None, unix_socket: bool = False) -> RedisServer:
    for _ in range(3):  # the free port may be taken between choosing and binding it
        server = RedisServer(binary, workdir, password=password, unix_socket=unix_socket)
        try:
            server.start()
        except RuntimeError:
            continue
        return server
    raise RuntimeError("could not start redis-server")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` without password for one test."""
    server = _started(_require_binary(), tmp_path / "redis", None)
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def redis_server_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server --requirepass`` for one test (the password is :attr:`password`)."""
    server = _started(_require_binary(), tmp_path / "redis-auth", "s3cret-Pa55word")
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def redis_server_with_unix_socket(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` that also listens on ``unix_url``."""
    server = _started(_require_binary(), tmp_path / "redis-unix", None, unix_socket=True)
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture(name="store")
async def store_fixture(redis_server: RedisServer) -> AsyncIterator[RedisStateStore]:
    """A :class:`RedisStateStore` on ``redis_server``, closed after the test."""
    from jeffrey_operator.adapters.redis import RedisStateStore

    s = RedisStateStore.from_settings(redis_server.url, redis_server.password)
    yield s
    await s.aclose()
