"""High availability: two real operator processes against the emulated API, one Lease.

Exactly one replica acts; after ``kill -9`` of the leader the standby acts within 15 s (the
Lease's design bound is 12 s: lease 8 s + twice the 2 s retry period). The measured fail-over
time is printed. The pure bookkeeping of the elector is tested on its own below, with a fake
clock and a fake Lease API.
"""

from __future__ import annotations

import copy
import datetime
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from jeffrey_emulator import BackgroundEmulator, DeploymentBehaviour, Emulator, deployment_manifest, load_crds
from jeffrey_operator.adapters.kube import KubeError
from jeffrey_operator.runtime.leader import LeaderElector
from operator_fixtures import FAST, ROOT, example, wait_for
from prom_fixtures import free_port

NS = "jeffrey"
LEASE = "jeffrey-ha"


@pytest.fixture(name="emu")
def emu_fixture() -> Iterator[Emulator]:
    bg = BackgroundEmulator(crds=load_crds(ROOT / "crds"), default_behaviour=DeploymentBehaviour(delay=0.05))
    emu = bg.start()
    emu.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    try:
        yield emu
    finally:
        bg.stop()


class Replica:
    """``jeffrey-operator run --peering`` in a process of its own."""

    def __init__(self, emu: Emulator, tmp: pathlib.Path, name: str) -> None:
        self.metrics_port = free_port()
        kubeconfig = emu.write_kubeconfig(tmp / f"kubeconfig-{name}")
        self.log = (tmp / f"{name}.log").open("w")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAME": name}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jeffrey_operator.runtime.cli",
                "run",
                "-n",
                NS,
                f"--peering={LEASE}",
                "--health-port=0",
                f"--metrics-port={self.metrics_port}",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def deployment_writes(self) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return -1.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith("jeffrey_api_writes_total{") and 'resource="deployments"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def holder(emu: Emulator) -> str:
    try:
        lease = emu.get("leases", NS, LEASE)
    except Exception:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def test_two_replicas_one_acts_and_the_standby_takes_over_after_kill_9(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ji = example()
    ji["metadata"]["namespace"] = NS
    ji["spec"]["promotion"] = dict(FAST)
    ji["spec"]["defaultGates"] = False
    for level in ji["spec"]["levels"]:
        for module in level["modules"]:
            emu.create(deployment_manifest(module["deployment"], NS, replicas=0))
    emu.create(copy.deepcopy(ji))
    a = Replica(emu, tmp_path, "replica-a")
    b: Replica | None = None
    try:
        wait_for(lambda: holder(emu).startswith("replica-a-"), 30, "replica-a to lead")
        b = Replica(emu, tmp_path, "replica-b")
        stable = wait_for(
            lambda: (s := emu.get("ji", NS, "jeffrey").get("status") or {}).get("phase") == "Stable" and s,
            60,
            "Stable",
        )
        assert stable["currentLevel"] == "PRODUCTION"
        wait_for(lambda: b is not None and b.deployment_writes() >= 0, 30, "replica-b to serve metrics")
        assert a.deployment_writes() > 0
        assert b.deployment_writes() == 0  # the standby never acted
        assert holder(emu).startswith("replica-a-")

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        killed = time.monotonic()
        emu.patch("ji", NS, "jeffrey", {"spec": {"targetLevel": "CORE"}})
        generation = int(emu.get("ji", NS, "jeffrey")["metadata"]["generation"])

        def acted() -> bool:
            status = emu.get("ji", NS, "jeffrey").get("status") or {}
            return int(status.get("observedGeneration") or 0) >= generation

        wait_for(acted, 30, "replica-b to act")
        failover = time.monotonic() - killed
        print(f"\nfail-over after kill -9: {failover:.1f} s (target ≤ 15 s)")
        assert holder(emu).startswith("replica-b-")
        assert b.deployment_writes() > 0 or wait_for(lambda: b is not None and b.deployment_writes() > 0, 15)
        assert failover <= 15.0
        lease = emu.get("leases", NS, LEASE)
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        a.stop()
        if b is not None:
            b.stop()
    for name in ("replica-a", "replica-b"):
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text(), name


def test_a_clean_stop_releases_the_lease(emu: Emulator, tmp_path: pathlib.Path) -> None:
    a = Replica(emu, tmp_path, "replica-a")
    try:
        wait_for(lambda: holder(emu).startswith("replica-a-"), 30, "replica-a to lead")
    finally:
        a.stop()
    assert holder(emu) == ""  # released: a standby takes it at its next attempt


# ------------------------------------------------------------------------- the elector alone


class FakeLeases:
    """The three Lease calls the elector makes, with resourceVersion conflicts."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.down = False

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.down:
            raise KubeError(0, "Unreachable", "connection refused")
        return copy.deepcopy(self.lease)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.lease is not None:
            raise KubeError(409, "AlreadyExists", "exists")
        return self._store(body)

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.down:
            raise KubeError(0, "Unreachable", "connection refused")
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.lease)


async def test_the_standby_waits_a_lease_duration_of_silence_then_takes_over() -> None:
    api = FakeLeases()
    now = [0.0]

    def elector(identity: str) -> LeaderElector:
        return LeaderElector(
            api,  # type: ignore[arg-type]
            NS,
            LEASE,
            identity=identity,
            lease_duration=8,
            renew_deadline=6,
            retry_period=2,
            clock=lambda: now[0],
        )

    a, b = elector("a"), elector("b")
    assert await a.try_acquire_or_renew()  # created
    assert not await b.try_acquire_or_renew()  # held by a
    for t in (2, 4, 6):  # a renews: b never sees 8 s without a change
        now[0] = t
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
    # a dies after its renewal at t=6; b saw that change at t=6
    for t in (8, 10, 12, 14):
        now[0] = t
        assert not await b.try_acquire_or_renew(), t
    now[0] = 14.1
    assert await b.try_acquire_or_renew()
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1
    # a comes back: it must not take the Lease while b renews
    now[0] = 16
    assert await b.try_acquire_or_renew()
    assert not await a.try_acquire_or_renew()


async def test_a_released_lease_is_taken_at_once_and_stamps_are_micro_times() -> None:
    api = FakeLeases()
    a = LeaderElector(api, NS, LEASE, identity="a")  # type: ignore[arg-type]
    b = LeaderElector(api, NS, LEASE, identity="b")  # type: ignore[arg-type]
    assert await a.try_acquire_or_renew()
    await a.release()
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == ""
    assert await b.try_acquire_or_renew()
    renew = api.lease["spec"]["renewTime"]
    assert datetime.datetime.strptime(renew, "%Y-%m-%dT%H:%M:%S.%fZ")


async def test_an_unreachable_api_is_no_leadership() -> None:
    api = FakeLeases()
    api.down = True
    a = LeaderElector(api, NS, LEASE, identity="a")  # type: ignore[arg-type]
    assert not await a.try_acquire_or_renew()


def test_settings_refuse_an_inconsistent_lease() -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        LeaderElector(FakeLeases(), NS, LEASE, lease_duration=5, renew_deadline=6)  # type: ignore[arg-type]


def test_cli_lease_settings_are_typed_and_checked() -> None:
    from jeffrey_operator.runtime.cli import _parser, settings_from_args
    from jeffrey_operator.runtime.settings import SettingsError

    args = _parser().parse_args(["run", "--peering", "ha", "-n", "team-a", "--lease-duration", "10"])
    settings = settings_from_args(args, env={})
    assert (settings.peering, settings.standalone, settings.lease_namespace) == ("ha", False, "team-a")
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (10.0, 6.0, 2.0)
    in_pod = settings_from_args(
        _parser().parse_args(["run", "--peering", "ha"]), env={"POD_NAMESPACE": "ops"}
    )
    assert in_pod.lease_namespace == "ops"
    with pytest.raises(SettingsError, match="--lease-duration > --renew-deadline > --retry-period"):
        settings_from_args(_parser().parse_args(["run", "--peering", "ha", "--renew-deadline", "9"]), env={})
    with pytest.raises(SettingsError, match="--liveness-grace must be positive"):
        settings_from_args(_parser().parse_args(["run", "--liveness-grace", "0"]), env={})
