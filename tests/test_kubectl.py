"""The real kubectl 1.31 against the emulator running the unchanged operator.

What an engineer types on a cluster must work the same here: ``apply`` with validation (OpenAPI
v3, ``fieldValidation=Strict``), ``get`` with the CRD's printer columns, ``-o yaml``, ``explain``,
``apply --server-side`` and its conflicts, ``wait --for=condition=Ready``, ``annotate``, ``patch``,
``delete``, ``get events``. kubectl comes from ``hack/get-kubectl.sh`` (``.tools/bin/kubectl``):
skipped when missing, failing under ``JEFFREY_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from emulator_fixtures import require_kubectl
from jeffrey_emulator import BackgroundEmulator, DeploymentBehaviour, load_crds
from operator_fixtures import ROOT, Cluster

CORE_ONLY = ROOT / "examples" / "jeffrey-core-only.yaml"
FULL = ROOT / "examples" / "jeffrey-full-ladder.yaml"


class Kubectl:
    """``kubectl`` with a kubeconfig for the emulator and a cache of its own."""

    def __init__(self, binary: pathlib.Path, kubeconfig: pathlib.Path, cache: pathlib.Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.cache = cache

    def run(self, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if ok and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture(name="world", scope="module")
def world_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Kubectl]]:
    binary = require_kubectl()
    tmp = tmp_path_factory.mktemp("kubectl")
    background = BackgroundEmulator(
        crds=load_crds(ROOT / "crds"), default_behaviour=DeploymentBehaviour(delay=0.05)
    )
    emu = background.start()
    cluster = Cluster(emu=emu)
    try:
        cluster.start_operator()
        yield cluster, Kubectl(binary, emu.write_kubeconfig(tmp / "kubeconfig"), tmp / "cache")
    finally:
        cluster.stop_operator()
        background.stop()
    emu.assert_no_server_errors()


def manifest(path: pathlib.Path, namespace: str, **spec: Any) -> str:
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    body["metadata"]["namespace"] = namespace
    body["spec"].update(spec)
    return yaml.safe_dump(body)


def prepare(kubectl: Kubectl, namespace: str, *deployments: str) -> None:
    """A namespace and the module Deployments (0 replicas), created with kubectl."""
    kubectl.run("create", "namespace", namespace)
    for name in deployments:
        kubectl.run(
            "create", "deployment", name, "--image=jeffreyos/module:1", "--replicas=0", "-n", namespace
        )


FAST = {"promotion": {"readinessTimeout": "20s", "validationWindow": "0s", "cooldown": "0s"}}


def test_the_real_kubectl_is_1_31(world: tuple[Cluster, Kubectl]) -> None:
    _, kubectl = world
    version = kubectl.json("version")
    assert version["clientVersion"]["gitVersion"].startswith("v1.31.")
    assert version["serverVersion"]["minor"] == "31"


def test_apply_validates_waits_ready_and_get_shows_the_printer_columns(
    world: tuple[Cluster, Kubectl],
) -> None:
    _, kubectl = world
    prepare(kubectl, "k-apply", "memory", "neural-bus")
    applied = kubectl.run("apply", "-f", "-", stdin=manifest(CORE_ONLY, "k-apply", **FAST))
    assert "jeffreyintegration.jeffreyos.io/jeffrey-core created" in applied.stdout
    assert not applied.stderr  # validated against the served OpenAPI: no "failed to download openapi"

    kubectl.run("wait", "--for=condition=Ready", "ji/jeffrey-core", "-n", "k-apply", "--timeout=60s")
    table = kubectl.run("get", "ji", "-n", "k-apply").stdout.splitlines()
    assert table[0].split() == ["NAME", "TARGET", "CURRENT", "PHASE", "REASON", "AGE"]
    assert table[1].split()[:4] == ["jeffrey-core", "CORE", "CORE", "Stable"]
    wide = kubectl.run("get", "ji", "-A", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[0] == "NAMESPACE" and wide[0].split()[-1] == "MESSAGE"

    deployments = kubectl.run("get", "deployments", "-n", "k-apply").stdout.splitlines()
    assert deployments[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    rows = {line.split()[0]: line.split()[1] for line in deployments[1:]}
    assert rows == {"memory": "1/1", "neural-bus": "2/2"}  # scaled by the operator, ready
    namespaces = kubectl.run("get", "namespace", "k-apply").stdout.split()
    assert namespaces[:5] == ["NAME", "STATUS", "AGE", "k-apply", "Active"]


def test_get_yaml_and_explain(world: tuple[Cluster, Kubectl]) -> None:
    _, kubectl = world
    prepare(kubectl, "k-yaml", "memory", "neural-bus")
    kubectl.run("apply", "-f", "-", stdin=manifest(CORE_ONLY, "k-yaml", **FAST))
    kubectl.run("wait", "--for=condition=Ready", "ji/jeffrey-core", "-n", "k-yaml", "--timeout=60s")
    body = yaml.safe_load(kubectl.run("get", "ji", "jeffrey-core", "-n", "k-yaml", "-o", "yaml").stdout)
    assert body["spec"]["targetLevel"] == "CORE" and body["status"]["phase"] == "Stable"
    assert "managedFields" not in body["metadata"]  # kubectl hides them, as on a cluster

    levels = kubectl.run("explain", "ji.spec.levels").stdout
    assert "KIND:       JeffreyIntegration" in levels
    assert "level\t<string> -required-" in levels and "modules\t<[]Object> -required-" in levels
    replicas = kubectl.run("explain", "deployment.spec.replicas").stdout
    assert "FIELD: replicas <integer>" in replicas
    # The OpenAPI v2 (protobuf) too, as kubectl reads it for the v2 output.
    v2 = kubectl.run("explain", "ji.spec.levels", "--output=plaintext-openapiv2").stdout
    assert "RESOURCE: levels <[]Object>" in v2 and "level\t<string> -required-" in v2


def test_a_typo_is_refused_under_strict_and_warned_about_under_warn(world: tuple[Cluster, Kubectl]) -> None:
    _, kubectl = world
    kubectl.run("create", "namespace", "k-typo")
    typo = manifest(CORE_ONLY, "k-typo").replace("targetLevel:", "targetLvel:")
    refused = kubectl.run("apply", "-f", "-", stdin=typo, ok=False)
    assert refused.returncode == 1
    assert 'strict decoding error: unknown field "spec.targetLvel"' in refused.stderr
    assert "No resources found" in kubectl.run("get", "ji", "-n", "k-typo").stderr

    warned = kubectl.run("apply", "--validate=warn", "-f", "-", stdin=typo)
    assert 'Warning: unknown field "spec.targetLvel"' in warned.stderr
    assert kubectl.json("get", "ji", "jeffrey-core", "-n", "k-typo")["spec"]["targetLevel"] == "PRODUCTION"


def test_a_missing_namespace_is_not_found(world: tuple[Cluster, Kubectl]) -> None:
    _, kubectl = world
    result = kubectl.run("apply", "-f", "-", stdin=manifest(CORE_ONLY, "k-nowhere"), ok=False)
    assert 'namespaces "k-nowhere" not found' in result.stderr


def test_server_side_apply_conflicts_with_another_manager(world: tuple[Cluster, Kubectl]) -> None:
    _, kubectl = world
    prepare(kubectl, "k-ssa", "memory", "neural-bus")
    body = manifest(CORE_ONLY, "k-ssa", **FAST)
    applied = kubectl.run("apply", "--server-side", "-f", "-", stdin=body)
    assert "jeffreyintegration.jeffreyos.io/jeffrey-core serverside-applied" in applied.stdout

    kubectl.run(
        "patch", "ji", "jeffrey-core", "-n", "k-ssa", "--type=merge", "-p", '{"spec":{"paused":true}}'
    )
    # The applied configuration now says paused: false where kubectl-patch owns paused: true.
    conflicting = manifest(CORE_ONLY, "k-ssa", paused=False, **FAST)
    refused = kubectl.run("apply", "--server-side", "-f", "-", stdin=conflicting, ok=False)
    assert refused.returncode == 1
    expected = 'conflict with "kubectl-patch" using jeffreyos.io/v1alpha1: .spec.paused'
    assert f"Apply failed with 1 conflict: {expected}" in refused.stderr
    forced = kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=conflicting)
    assert "serverside-applied" in forced.stdout
    obj = kubectl.json("get", "ji", "jeffrey-core", "-n", "k-ssa", "--show-managed-fields")
    assert obj["spec"]["paused"] is False
    managers = {
        (e["manager"], e["operation"], e.get("subresource")) for e in obj["metadata"]["managedFields"]
    }
    assert ("kubectl", "Apply", None) in managers
    patch_entries = [e for e in obj["metadata"]["managedFields"] if e["manager"] == "kubectl-patch"]
    assert all("f:paused" not in e["fieldsV1"].get("f:spec", {}) for e in patch_entries)  # forced away


def test_annotate_patch_events_and_delete(world: tuple[Cluster, Kubectl]) -> None:
    _, kubectl = world
    prepare(kubectl, "k-life", "memory", "neural-bus")
    kubectl.run("apply", "-f", "-", stdin=manifest(CORE_ONLY, "k-life", **FAST))
    kubectl.run("wait", "--for=condition=Ready", "ji/jeffrey-core", "-n", "k-life", "--timeout=60s")

    kubectl.run("annotate", "ji", "jeffrey-core", "-n", "k-life", "team=platform")
    kubectl.run(
        "patch", "ji", "jeffrey-core", "-n", "k-life", "--type=merge", "-p", '{"spec":{"paused":true}}'
    )
    obj = kubectl.json("get", "ji", "jeffrey-core", "-n", "k-life")
    assert obj["metadata"]["annotations"]["team"] == "platform" and obj["spec"]["paused"] is True
    kubectl.run(
        "wait", "--for=jsonpath={.status.phase}=Paused", "ji/jeffrey-core", "-n", "k-life", "--timeout=60s"
    )

    events = kubectl.run("get", "events", "-n", "k-life").stdout.splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    objects = {line.split()[3] for line in events[1:]}
    assert "jeffreyintegration/jeffrey-core" in objects

    kubectl.run("delete", "ji", "jeffrey-core", "-n", "k-life", "--timeout=60s")
    assert "No resources found" in kubectl.run("get", "ji", "-n", "k-life").stderr


# ------------------------------------------------------------------------- the kept playground

KEEP = [sys.executable, "-m", "jeffrey_operator.runtime.cli", "playground", "--keep", "--speed", "4"]


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_the_kept_playground_reconciles_what_kubectl_creates_in_a_new_namespace(
    tmp_path: pathlib.Path,
) -> None:
    binary = require_kubectl()
    proc = subprocess.Popen(KEEP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = ""
    try:
        deadline = time.monotonic() + 90
        while "Created JeffreyIntegration" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        lines = seen.splitlines()
        # First, before anything else: the lines to paste.
        assert lines[0].startswith("Jeffrey OS playground, kept running until Ctrl-C")
        kubeconfig = pathlib.Path(lines[1].strip().removeprefix("export KUBECONFIG="))
        assert kubeconfig.is_file(), seen
        pasted = "\n".join(lines[1:8])
        assert "kubectl get ji -A -w" in pasted and "jeffreyctl status jeffrey -w" in pasted
        assert re.search(r"curl -XPOST http://127\.0\.0\.1:\d+/fault -d '\{\"kind\": \"flood\"\}'", pasted)
        assert "Prometheus" in pasted and "Redis" in pasted
        pids = [int(p) for p in re.findall(r"pid (\d+)", seen)]

        kubectl = Kubectl(binary, kubeconfig, tmp_path / "cache")
        assert "jeffrey" in kubectl.run("get", "ji", "-A").stdout
        prepare(kubectl, "mine", "web")
        mine = {
            "apiVersion": "jeffreyos.io/v1alpha1",
            "kind": "JeffreyIntegration",
            "metadata": {"name": "mine", "namespace": "mine"},
            "spec": {
                "targetLevel": "CORE",
                "defaultGates": False,
                "levels": [{"level": "CORE", "modules": [{"deployment": "web"}]}],
                **FAST,
            },
        }
        kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(mine))
        kubectl.run("wait", "--for=condition=Ready", "ji/mine", "-n", "mine", "--timeout=60s")
        assert kubectl.json("get", "deployment", "web", "-n", "mine")["spec"]["replicas"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    out = seen + rest
    assert proc.returncode == 0, out
    assert "stopping everything the playground started" in out and "Traceback" not in out
    assert not kubeconfig.parent.exists()  # its temp files are gone
    assert not any(_alive(pid) for pid in pids)


def test_the_crd_upgrade_of_the_helm_docs_and_argo_cds_server_side_apply(
    world: tuple[Cluster, Kubectl],
) -> None:
    """docs/helm.md: ``helm show crds charts/jeffrey-operator | kubectl apply --server-side -f -``;
    examples/argocd: ``ServerSideApply=true`` (Argo CD's own field manager, forcing)."""
    _, kubectl = world
    helm = ROOT / ".tools" / "bin" / "helm"
    if not helm.exists():
        message = "helm not found at .tools/bin/helm (bash hack/get-helm.sh)"
        if os.environ.get("JEFFREY_REQUIRE_ALL") == "1":
            pytest.fail(message + " and JEFFREY_REQUIRE_ALL=1")
        pytest.skip(message)
    chart = ROOT / "charts" / "jeffrey-operator"
    crds = subprocess.run(
        [str(helm), "show", "crds", str(chart)], capture_output=True, text=True, check=True
    ).stdout
    for _ in range(2):  # idempotent
        applied = kubectl.run("apply", "--server-side", "-f", "-", stdin=crds).stdout.splitlines()
        # the chart ships the JeffreyIntegration CRD only (leader election uses built-in Leases)
        assert len(applied) == 1 and all(line.endswith(" serverside-applied") for line in applied)
    argo = ["apply", "--server-side", "--field-manager=argocd-controller", "--force-conflicts", "-f", "-"]
    assert "serverside-applied" in kubectl.run(*argo, stdin=crds).stdout
    crd = kubectl.json("get", "crd", "jeffreyintegrations.jeffreyos.io", "--show-managed-fields")
    appliers = {e["manager"] for e in crd["metadata"]["managedFields"] if e["operation"] == "Apply"}
    assert {"kubectl", "argocd-controller"} <= appliers
    assert "jeffreyintegrations" in kubectl.run("api-resources", "--api-group=jeffreyos.io").stdout


def test_the_emulator_alone_serves_kubectl_until_sigterm() -> None:
    binary = require_kubectl()
    command = [
        sys.executable,
        "-m",
        "jeffrey_emulator",
        "--crds",
        str(ROOT / "crds"),
        "--namespace",
        "jeffrey",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()
        assert first.startswith("export KUBECONFIG="), first
        kubeconfig = pathlib.Path(first.strip().removeprefix("export KUBECONFIG="))
        kubectl = Kubectl(binary, kubeconfig, kubeconfig.parent / "cache")
        assert kubectl.run("apply", "-f", str(FULL)).stdout.startswith(
            "jeffreyintegration.jeffreyos.io/jeffrey"
        )
        assert kubectl.json("get", "ji", "jeffrey")["spec"]["promotion"]["cooldown"]  # defaulted, stored
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0 and not kubeconfig.parent.exists()


def test_a_gitops_apply_of_replicas_conflicts_with_the_operators_scaling(
    world: tuple[Cluster, Kubectl],
) -> None:
    """Why docs/gitops.md tells Argo CD to ignore the replicas: once the operator has scaled a module,
    a server-side apply of the Deployment's manifest (replicas: 0) conflicts on .spec.replicas."""
    _, kubectl = world
    kubectl.run("create", "namespace", "k-gitops")
    deployment = yaml.safe_load(
        kubectl.run(
            "create",
            "deployment",
            "memory",
            "--image=jeffreyos/module:1",
            "--replicas=0",
            "-n",
            "k-gitops",
            "--dry-run=client",
            "-o",
            "yaml",
        ).stdout
    )
    argo = ["apply", "--server-side", "--field-manager=argocd-controller", "-f", "-"]
    kubectl.run(*argo, stdin=yaml.safe_dump(deployment))
    kubectl.run(
        "create", "deployment", "neural-bus", "--image=jeffreyos/module:1", "--replicas=0", "-n", "k-gitops"
    )
    kubectl.run("apply", "-f", "-", stdin=manifest(CORE_ONLY, "k-gitops", **FAST))
    kubectl.run("wait", "--for=condition=Ready", "ji/jeffrey-core", "-n", "k-gitops", "--timeout=60s")
    assert kubectl.json("get", "deployment", "memory", "-n", "k-gitops")["spec"]["replicas"] == 1

    refused = kubectl.run(*argo, stdin=yaml.safe_dump(deployment), ok=False)
    assert refused.returncode == 1
    # The conflict names the operator: its writes carry fieldManager=jeffrey-operator.
    assert 'conflict with "jeffrey-operator" using apps/v1: .spec.replicas' in refused.stderr
    managed = kubectl.json("get", "deployment", "memory", "-n", "k-gitops", "--show-managed-fields")
    owners = {entry["manager"]: entry["operation"] for entry in managed["metadata"]["managedFields"]}
    # … as on a cluster: Argo CD applied it, the operator scaled it, the controller wrote status.
    assert owners == {
        "argocd-controller": "Apply",
        "jeffrey-operator": "Update",
        "kube-controller-manager": "Update",
    }
    status = kubectl.json("get", "ji", "jeffrey-core", "-n", "k-gitops", "--show-managed-fields")
    status_writers = {
        entry["manager"]
        for entry in status["metadata"]["managedFields"]
        if entry.get("subresource") == "status"
    }
    assert status_writers == {"jeffrey-operator"}
