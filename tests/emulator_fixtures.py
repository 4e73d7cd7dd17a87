"""Pytest fixtures & helpers for the emulated Kubernetes API (:mod:`jeffrey_emulator`).

Use them from a conftest (or a test module that does not import this module otherwise) with::

    pytest_plugins = ["emulator_fixtures"]

or import the fixture functions explicitly; the fixtures are named without the ``_fixture``
suffix, so the test parameters do not shadow the imports::

    from emulator_fixtures import emulator_fixture, eventually, run_kopf  # noqa: F401

    async def test_something(emulator: Emulator) -> None: ...

Fixtures:

* ``emulator`` — an :class:`Emulator` running in the test's event loop (async tests; kopf);
* ``threaded_emulator`` — an :class:`Emulator` in a background thread (sync tests, the
  ``kubernetes`` client); ``k8s_api_client`` & ``kubeconfig`` are configured for it;
* ``emulator_options`` — override it in a module to pass options to both emulators;
* ``jeffrey_crd`` — the JeffreyIntegration CRD from ``crds/`` (or a minimal hand-written one
  with the same names while the generated file does not exist);
* ``minimal_jeffrey_crd`` — always the hand-written one (status preserves unknown fields).

Every emulator fixture fails the test at teardown if the emulated API answered with a 5xx.
Namespaces are real objects: the emulators start with ``default`` (pass ``namespaces=(...)`` in
``emulator_options`` or call ``emu.ensure_namespace(name)`` for others; a write into a missing
namespace answers 404 as on a cluster). ``require_kubectl()`` gives the real kubectl 1.31
(``.tools/bin/kubectl``), skipping locally and failing under ``JEFFREY_REQUIRE_ALL=1`` without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import pathlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from jeffrey_emulator import BackgroundEmulator, Emulator, load_crds

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRDS_DIR = ROOT / "crds"
JEFFREY_CRD_NAME = "jeffreyintegrations.jeffreyos.io"

_LEVELS = ["CORE", "COGNITIVE", "EMOTIONAL", "CONSCIOUS", "LOOPS", "PRODUCTION"]

_DURATION = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"
_MODULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["deployment"],
    "properties": {
        "deployment": {
            "type": "string",
            "minLength": 1,
            "maxLength": 253,
            "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        },
        "replicas": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 1},
        "optional": {"type": "boolean", "default": False},
    },
}
_LEVEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["level", "modules"],
    "properties": {
        "level": {"type": "string", "enum": _LEVELS},
        "modules": {"type": "array", "minItems": 1, "items": _MODULE_SCHEMA},
    },
}
_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["levels"],
    "properties": {
        "targetLevel": {"type": "string", "enum": _LEVELS, "default": "PRODUCTION"},
        "paused": {"type": "boolean", "default": False},
        "levels": {
            "type": "array",
            "minItems": 1,
            "maxItems": 6,
            "items": _LEVEL_SCHEMA,
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(x, self.exists_one(y, y.level == x.level))",
                    "message": "each level may appear at most once in spec.levels",
                }
            ],
        },
        "promotion": {
            "type": "object",
            "default": {},
            "properties": {"cooldown": {"type": "string", "default": "2s", "pattern": _DURATION}},
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

#: A small hand-written JeffreyIntegration CRD: the same names as the real one, a schema that
#: exercises every validation keyword the emulator implements, and a status that keeps unknown
#: fields (so that kopf may store its progress there).
MINIMAL_JEFFREY_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": JEFFREY_CRD_NAME},
    "spec": {
        "group": "jeffreyos.io",
        "scope": "Namespaced",
        "names": {
            "kind": "JeffreyIntegration",
            "listKind": "JeffreyIntegrationList",
            "plural": "jeffreyintegrations",
            "singular": "jeffreyintegration",
            "shortNames": ["ji"],
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "required": ["spec"],
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": _SPEC_SCHEMA,
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def jeffrey_crd_dict() -> dict[str, Any]:
    """The JeffreyIntegration CRD from ``crds/`` if generated already, else the minimal one."""
    if CRDS_DIR.is_dir():
        for crd in load_crds(CRDS_DIR):
            if crd.get("metadata", {}).get("name") == JEFFREY_CRD_NAME:
                return crd
    return copy.deepcopy(MINIMAL_JEFFREY_CRD)


def jeffrey_integration(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A valid JeffreyIntegration body (one CORE level with one module unless overridden)."""
    body_spec: dict[str, Any] = {"levels": [{"level": "CORE", "modules": [{"deployment": "core"}]}]}
    body_spec.update(spec)
    return {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body_spec,
    }


async def eventually(predicate: Callable[[], Any], within: float = 3.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Condition not met within {within}s: {predicate}")
        await asyncio.sleep(interval)


def eventually_sync(predicate: Callable[[], Any], within: float = 3.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Condition not met within {within}s: {predicate}")
        time.sleep(interval)


@contextlib.asynccontextmanager
async def run_kopf(
    emu: Emulator,
    registry: Any,
    *,
    namespaces: list[str] | None = None,
    settings: Any = None,
    startup_timeout: float = 5.0,
    stop_timeout: float = 10.0,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run a kopf operator (in the current loop) against the emulator until the block exits.

    Adds an ``@kopf.on.login`` handler to ``registry`` and runs standalone (no peering).
    """
    import kopf

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> Any:
        return emu.connection_info()

    if settings is None:
        settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.posting.level = logging.INFO
    settings.networking.request_timeout = 10
    stop_flag = asyncio.Event()
    ready_flag = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=namespaces is None,
            namespaces=namespaces or (),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    )
    # NB: no helper tasks here: kopf cancels every task created after its start when it exits.
    try:
        deadline = time.monotonic() + startup_timeout
        while not ready_flag.is_set() and not task.done() and time.monotonic() < deadline:
            await asyncio.wait([task], timeout=0.01)
        if task.done():
            task.result()  # re-raise the failure of the operator's startup
            raise AssertionError("kopf exited during the startup")
        if not ready_flag.is_set():
            raise AssertionError("kopf did not become ready")
        yield task
    finally:
        stop_flag.set()
        # kopf waits up to 5 s for all tasks spawned while it ran, including the emulator's
        # per-connection tasks of its keep-alive connections: close those to exit promptly.
        deadline = time.monotonic() + stop_timeout
        while not task.done() and time.monotonic() < deadline:
            await asyncio.wait([task], timeout=0.05)
            emu.close_idle_connections()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(name="emulator_options")
def emulator_options_fixture() -> dict[str, Any]:
    """Keyword arguments for the emulators; override this fixture in a module to change them."""
    return {}


@pytest.fixture(name="jeffrey_crd")
def jeffrey_crd_fixture() -> dict[str, Any]:
    return jeffrey_crd_dict()


@pytest.fixture(name="minimal_jeffrey_crd")
def minimal_jeffrey_crd_fixture() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL_JEFFREY_CRD)


def _options(options: dict[str, Any], crd: dict[str, Any]) -> dict[str, Any]:
    result = dict(options)
    result.setdefault("crds", [crd])
    return result


@pytest_asyncio.fixture(name="emulator")
async def emulator_fixture(
    emulator_options: dict[str, Any], jeffrey_crd: dict[str, Any]
) -> AsyncIterator[Emulator]:
    """An emulated API server in the test's event loop."""
    async with Emulator(**_options(emulator_options, jeffrey_crd)) as emu:
        yield emu
    emu.assert_no_server_errors()


@pytest.fixture(name="threaded_emulator")
def threaded_emulator_fixture(
    emulator_options: dict[str, Any], jeffrey_crd: dict[str, Any]
) -> Iterator[Emulator]:
    """An emulated API server in a background thread (for the sync ``kubernetes`` client)."""
    with BackgroundEmulator(**_options(emulator_options, jeffrey_crd)) as emu:
        yield emu
    emu.assert_no_server_errors()


@pytest.fixture(name="kubeconfig")
def kubeconfig_fixture(threaded_emulator: Emulator, tmp_path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig file pointing at ``threaded_emulator``."""
    return threaded_emulator.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture(name="k8s_api_client")
def k8s_api_client_fixture(threaded_emulator: Emulator) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` configured for ``threaded_emulator``."""
    client = threaded_emulator.api_client()
    try:
        yield client
    finally:
        client.close()


# ------------------------------------------------------------------------------------ kubectl

#: The real kubectl 1.31 (``hack/get-kubectl.sh``), never the ``kubectl`` on PATH: on some
#: machines that one is a wrapper that is not kubectl at all.
KUBECTL = ROOT / ".tools" / "bin" / "kubectl"


def require_kubectl() -> pathlib.Path:
    """The real kubectl; skip (locally) or fail (``JEFFREY_REQUIRE_ALL=1``) when it is missing."""
    binary = pathlib.Path(os.environ.get("JEFFREY_KUBECTL_BIN") or KUBECTL)
    if not os.access(binary, os.X_OK):
        message = f"kubectl not found at {binary} (bash hack/get-kubectl.sh installs it)"
        if os.environ.get("JEFFREY_REQUIRE_ALL") == "1":
            pytest.fail(message + " and JEFFREY_REQUIRE_ALL=1")
        pytest.skip(message)
    return binary
