"""A real Alertmanager and a local webhook receiver for the notification tests (a pytest plugin).

* ``alertmanager`` (module scope): an :class:`AlertmanagerServer` — ``prometheus-alertmanager``
  (Debian's name; ``alertmanager`` upstream, or ``$JEFFREY_ALERTMANAGER_BIN``) on a free loopback
  port with temp storage, routing every alert to a :class:`Receiver` (``.routed``) with
  ``send_resolved``, so a test sees what on-call would be told. Skipped when the binary is
  missing, a failure with ``JEFFREY_REQUIRE_ALL=1`` (CI).
* ``receiver``: a :class:`Receiver`, an HTTP server in a thread that records every request,
  checks the webhook signature against the secret it is given, and answers as told (``fail``
  with a status for the next N requests, ``hang`` seconds before answering).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from prom_fixtures import free_port, wait_until


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    #: The status the receiver answered.
    answered: int
    #: True/False when the receiver knows the secret and a signature header came; None otherwise.
    signature_ok: bool | None = None
    received: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records requests; answers 200 unless told otherwise."""

    secret: str = ""
    requests: list[Request] = field(default_factory=list)
    #: Answer this status to the next ``fail_count`` requests (whatever their path).
    fail_status: int = 500
    fail_count: int = 0
    #: Seconds to wait before answering the next ``hang_count`` requests.
    hang: float = 0.0
    hang_count: int = 0
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    hang = receiver.hang if receiver.hang_count > 0 else 0.0
                    receiver.hang_count = max(0, receiver.hang_count - 1)
                    failing = receiver.fail_count > 0
                    receiver.fail_count = max(0, receiver.fail_count - 1)
                if hang:
                    time.sleep(hang)
                status = receiver.fail_status if failing else 200
                signature = self.headers.get("X-Jeffrey-Signature-256")
                ok = None
                if receiver.secret and signature is not None:
                    digest = hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                    ok = hmac.compare_digest(signature, "sha256=" + digest)
                with receiver._lock:
                    receiver.requests.append(Request(self.path, dict(self.headers), body, status, ok))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port or 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def at(self, path: str, *, ok_only: bool = True) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path and (r.answered == 200 or not ok_only)]


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    rec = Receiver(secret="hmac-key-for-tests")
    rec.start()
    try:
        yield rec
    finally:
        rec.stop()


# ---------------------------------------------------------------------------------- Alertmanager


def find_alertmanager() -> str | None:
    for candidate in (
        os.environ.get("JEFFREY_ALERTMANAGER_BIN"),
        shutil.which("prometheus-alertmanager"),
        shutil.which("alertmanager"),
        "/usr/bin/prometheus-alertmanager",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_alertmanager() -> str:
    binary = find_alertmanager()
    if binary is None:
        message = (
            "alertmanager binary not found (prometheus-alertmanager, alertmanager, $JEFFREY_ALERTMANAGER_BIN)"
        )
        if os.environ.get("JEFFREY_REQUIRE_ALL") == "1":
            pytest.fail(message + " and JEFFREY_REQUIRE_ALL=1")
        pytest.skip(message)
    return binary


@dataclass
class AlertmanagerServer:
    binary: str
    workdir: Path
    routed: Receiver
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        # JSON is YAML. Short group timings so that a test sees the routed notification quickly.
        config.write_text(
            json.dumps(
                {
                    "route": {
                        "receiver": "test",
                        "group_by": ["alertname", "namespace", "name"],
                        "group_wait": "100ms",
                        "group_interval": "1s",
                        "repeat_interval": "1h",
                    },
                    "receivers": [
                        {
                            "name": "test",
                            "webhook_configs": [{"url": self.routed.url + "/routed", "send_resolved": True}],
                        }
                    ],
                }
            )
        )
        log = (self.workdir / "alertmanager.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip: a single, private instance
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"alertmanager exited: {(self.workdir / 'alertmanager.log').read_text()}"
                )
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                return int(response.status) == 200

        wait_until(ready, timeout=timeout, what="alertmanager ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds as active now, filtered by labels."""
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as response:
            items = json.loads(response.read())
        return [a for a in items if all(a["labels"].get(k) == v for k, v in labels.items())]


@pytest.fixture(name="alertmanager", scope="module")
def alertmanager_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerServer]:
    binary = require_alertmanager()
    routed = Receiver()
    routed.start()
    server = AlertmanagerServer(binary, tmp_path_factory.mktemp("alertmanager"), routed)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        routed.stop()
