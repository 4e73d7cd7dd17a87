"""The Helm chart, rendered for real with helm and scanned with checkov.

helm comes from ``.tools/bin/helm`` (``bash hack/get-helm.sh``) or PATH; checkov from
``.tools/checkov/bin/checkov`` (``make ship-tools``) or PATH. Missing tools skip these tests on a
developer machine and fail them when ``JEFFREY_REQUIRE_ALL=1`` (CI sets it).

The values files in ``charts/jeffrey-operator/ci/`` are the scenarios: default, namespaced, HA,
built-in Redis, existing Redis Secret, monitoring.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "jeffrey-operator"
CI_VALUES = CHART / "ci"
CRD_NAME = "jeffreyintegrations.jeffreyos.io.yaml"
ROOT_CRD = ROOT / "crds" / CRD_NAME
CHART_CRD = CHART / "crds" / CRD_NAME
NAMESPACE = "jeffrey-system"
RELEASE = "jeffrey"
FULLNAME = "jeffrey-jeffrey-operator"
SCENARIOS = ["default", "namespaced", "ha", "redis-builtin", "redis-existing-secret", "monitoring"]
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/component",
    "helm.sh/chart",
)


def require_all() -> bool:
    return os.environ.get("JEFFREY_REQUIRE_ALL") == "1"


def missing(what: str, how: str) -> None:
    message = f"{what} is not available ({how})"
    if require_all():
        pytest.fail(f"{message}; JEFFREY_REQUIRE_ALL=1 makes this an error")
    pytest.skip(message)


def find_tool(name: str, *local: Path) -> str | None:
    for path in local:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


@functools.cache
def helm_path() -> str | None:
    return find_tool("helm", ROOT / ".tools" / "bin" / "helm")


@pytest.fixture(scope="session")
def helm() -> str:
    path = helm_path()
    if path is None:
        missing("helm", "run `bash hack/get-helm.sh`")
    assert path is not None
    return path


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    path = helm_path()
    assert path is not None
    proc = subprocess.run([path, *args], capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def values_file(scenario: str) -> Path:
    return CI_VALUES / f"{scenario}-values.yaml"


def template_args(scenario: str | None, sets: Iterable[str], chart: Path = CHART) -> list[str]:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    if scenario is not None:
        args += ["-f", str(values_file(scenario))]
    for item in sets:
        args += ["--set", item]
    return args


@functools.cache
def render_text(scenario: str | None = "default", sets: tuple[str, ...] = ()) -> str:
    return run_helm(*template_args(scenario, sets)).stdout


def render(scenario: str | None = "default", *sets: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(scenario, sets)) if doc]


def render_error(*sets: str) -> str:
    proc = run_helm(*template_args(None, sets), check=False)
    assert proc.returncode != 0, f"helm accepted {sets}"
    return proc.stderr


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def operator_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", FULLNAME)


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = operator_deployment(docs)["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def rules_by_resource(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


# What the operator and kopf need, and nothing more (see _helpers.tpl for who needs what).
NAMESPACED_RULES = {
    ("jeffreyos.io", "jeffreyintegrations"): {"get", "list", "watch", "patch", "update"},
    ("jeffreyos.io", "jeffreyintegrations/status"): {"get", "patch", "update"},
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("", "events"): {"create", "patch"},
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
    ("", "secrets"): {"get"},
}
CRD_RULE = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
CLUSTER_WIDE_KOPF_RULES = {("", "namespaces"): {"list", "watch"}}
LEASE_RULE = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
LEASE_ROLE = f"{FULLNAME}-leader-election"


# ------------------------------------------------------------------------------------ lint


def test_ci_scenarios_exist() -> None:
    assert sorted(p.name for p in CI_VALUES.glob("*-values.yaml")) == sorted(
        f"{s}-values.yaml" for s in SCENARIOS
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(helm: str, scenario: str) -> None:
    proc = run_helm("lint", "--strict", str(CHART), "-f", str(values_file(scenario)), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


# ------------------------------------------------------------------------------------ every object


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_has_the_standard_labels_and_a_namespace(helm: str, scenario: str) -> None:
    docs = render(scenario)
    assert docs
    for doc in docs:
        meta = doc["metadata"]
        labels = meta.get("labels", {})
        what = f"{doc['kind']}/{meta['name']}"
        for label in STANDARD_LABELS:
            assert labels.get(label), f"{what} lacks {label}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/name"] == "jeffrey-operator"
        assert labels["helm.sh/chart"] == "jeffrey-operator-0.1.0"
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, what
        else:
            assert meta.get("namespace"), f"{what} has no namespace"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_wildcards_in_any_rule(helm: str, scenario: str) -> None:
    roles = by_kind(render(scenario), "ClusterRole") + by_kind(render(scenario), "Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
            assert "resourceNames" not in rule or rule["resourceNames"]
            assert "nonResourceURLs" not in rule


@pytest.mark.parametrize("scenario", ["default", "namespaced"])
def test_every_rule_says_who_needs_it(helm: str, scenario: str) -> None:
    """Each rule is preceded by a comment naming kopf or the operator's logic as the reason."""
    for document in render_text(scenario).split("\n---"):
        if not re.search(r"^kind: (Cluster)?Role$", document, re.MULTILINE):
            continue
        lines = document.splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                comments = []
                j = i - 1
                while j >= 0 and lines[j].strip().startswith("#"):
                    comments.insert(0, lines[j].strip())
                    j -= 1
                reason = " ".join(comments)
                assert re.search(r"# (kopf|operator):", reason), f"rule without a reason: {lines[i : i + 3]}"


# ------------------------------------------------------------------------------------ operator pod


def test_operator_pod_is_locked_down(helm: str) -> None:
    docs = render()
    pod = operator_deployment(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(docs)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # The read-only root filesystem gets a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["serviceAccountName"] == FULLNAME


def test_operator_probes_use_the_health_port(helm: str) -> None:
    container = operator_container(render("default", "health.port=8181"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8181, "metrics": 9090}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "health"}
        assert container[probe]["periodSeconds"] > 0
    assert "--health-port=8181" in container["args"]


def test_operator_args_default(helm: str) -> None:
    container = operator_container(render())
    assert container["image"] == "ghcr.io/jeffreyos/jeffrey-operator:0.1.0"
    assert container["args"] == [
        "run",
        "--all-namespaces",
        "--health-port=8080",
        "--metrics-port=9090",
        "--log-format=json",
        f"--peering={FULLNAME}",
    ]
    env = env_of(container)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert "JEFFREY_REDIS_URL" not in env and "JEFFREY_REDIS_PASSWORD" not in env


def test_egress_allow_list_and_default_sinks_reach_the_operator(helm: str) -> None:
    from jeffrey_operator.runtime.settings import OperatorSettings, env_defaults

    container = operator_container(
        render(
            "default",
            "egress.allow={*.svc.cluster.local,10.0.0.0/8,hooks.slack.com}",
            "notifications.defaults[0].name=platform",
            "notifications.defaults[0].alertmanager.url=http://am.monitoring.svc.cluster.local:9093",
        )
    )
    env = env_of(container)
    assert "JEFFREY_EGRESS_ALLOW" not in env_of(operator_container(render()))
    plain = {k: v["value"] for k, v in env.items() if "value" in v}
    # What the chart renders is what the operator's own settings parser accepts.
    settings = OperatorSettings(**env_defaults({**plain, "POD_NAMESPACE": NAMESPACE}))  # type: ignore[arg-type]
    assert settings.egress_allow == ("*.svc.cluster.local", "10.0.0.0/8", "hooks.slack.com")
    assert [(s.name, s.kind) for s in settings.default_notifications] == [("platform", "alertmanager")]
    assert settings.egress_policy.refusal("http://169.254.169.254/") is not None
    assert "egress" in render_error("egress.allow[0]=two words")


def test_image_digest_wins_over_the_tag(helm: str) -> None:
    digest = "sha256:" + "a" * 64
    container = operator_container(render("default", f"image.digest={digest}", "image.tag=9.9.9"))
    assert container["image"] == f"ghcr.io/jeffreyos/jeffrey-operator@{digest}"


def test_metrics_service_is_on_by_default(helm: str) -> None:
    docs = render()
    service = one(docs, "Service", f"{FULLNAME}-metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == operator_deployment(docs)["spec"]["selector"]["matchLabels"]
    assert not by_kind(render("default", "metrics.service.enabled=false"), "Service")


def test_network_policy_admits_only_the_operator_ports(helm: str) -> None:
    docs = render()
    policy = one(docs, "NetworkPolicy", FULLNAME)
    assert (
        policy["spec"]["podSelector"]["matchLabels"]
        == operator_deployment(docs)["spec"]["selector"]["matchLabels"]
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["metrics", "health"]
    assert not by_kind(render("default", "networkPolicy.enabled=false"), "NetworkPolicy")


# ------------------------------------------------------------------------------------ RBAC


def test_rbac_cluster_wide_by_default(helm: str) -> None:
    docs = render()
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == [LEASE_ROLE]
    assert [r["metadata"]["name"] for r in by_kind(docs, "RoleBinding")] == [LEASE_ROLE]
    role = one(docs, "ClusterRole", FULLNAME)
    assert rules_by_resource(role) == {**NAMESPACED_RULES, **CRD_RULE, **CLUSTER_WIDE_KOPF_RULES}
    binding = one(docs, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert one(docs, "ServiceAccount", FULLNAME)["metadata"]["namespace"] == NAMESPACE


def test_rbac_namespaced_is_a_role_per_watched_namespace(helm: str) -> None:
    docs = render("namespaced")
    watched = ["jeffrey", "jeffrey-staging"]
    roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] != LEASE_ROLE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == watched
    for role in roles:
        assert role["metadata"]["name"] == FULLNAME
        assert rules_by_resource(role) == NAMESPACED_RULES
    lease_role = one(docs, "Role", LEASE_ROLE)
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert rules_by_resource(lease_role) == LEASE_RULE
    bindings = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] != LEASE_ROLE]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == watched
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # Cluster scope keeps only what kopf cannot do without: listing and watching CRDs.
    assert rules_by_resource(one(docs, "ClusterRole", FULLNAME)) == CRD_RULE
    assert one(docs, "ClusterRoleBinding", FULLNAME)["roleRef"]["kind"] == "ClusterRole"
    args = operator_container(docs)["args"]
    assert "--namespace=jeffrey" in args and "--namespace=jeffrey-staging" in args
    assert "--all-namespaces" not in args
    assert "--log-format=text" in args


def test_rbac_secrets_can_be_left_out(helm: str) -> None:
    role = one(render("default", "rbac.readSecrets=false"), "ClusterRole", FULLNAME)
    assert ("", "secrets") not in rules_by_resource(role)


def test_rbac_can_be_left_to_someone_else(helm: str) -> None:
    docs = render("default", "rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=ops")
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}]
    assert not by_kind(docs, "ServiceAccount")
    assert operator_deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# ------------------------------------------------------------------------------------ HA, peering


def test_single_replica_has_leader_election_but_no_pdb(helm: str) -> None:
    docs = render()
    assert operator_deployment(docs)["spec"]["replicas"] == 1
    assert not by_kind(docs, "PodDisruptionBudget")
    assert f"--peering={FULLNAME}" in operator_container(docs)["args"]
    assert rules_by_resource(one(docs, "Role", LEASE_ROLE)) == LEASE_RULE


def test_ha_two_replicas_one_active(helm: str) -> None:
    docs = render("ha")
    deployment = operator_deployment(docs)
    assert deployment["spec"]["replicas"] == 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    pdb = one(docs, "PodDisruptionBudget", FULLNAME)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    # Leader election: every replica competes for the same Lease, only its holder acts.
    args = operator_container(docs)["args"]
    assert f"--peering={FULLNAME}" in args and "--standalone" not in args
    lease_role = one(docs, "Role", LEASE_ROLE)
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    binding = one(docs, "RoleBinding", LEASE_ROLE)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LEASE_ROLE}
    # Each pod has its own identity in the Lease (its name), and finds the Lease in its namespace.
    pod_name = env_of(operator_container(docs))["POD_NAME"]
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["labelSelector"]["matchLabels"] == selector
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 1}


def test_namespaced_leader_election_is_one_lease_in_the_release_namespace(helm: str) -> None:
    docs = render("namespaced", "replicaCount=2")
    (lease_role,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == LEASE_ROLE]
    assert lease_role["metadata"]["namespace"] == NAMESPACE


def test_peering_off_means_standalone(helm: str) -> None:
    docs = render("default", "peering.enabled=false")
    args = operator_container(docs)["args"]
    assert "--standalone" in args and not any(a.startswith("--peering") for a in args)
    assert not [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == LEASE_ROLE]
    assert ("coordination.k8s.io", "leases") not in rules_by_resource(one(docs, "ClusterRole", FULLNAME))


def test_peering_names_the_lease(helm: str) -> None:
    docs = render("default", "peering.name=jeffrey-ha")
    assert "--peering=jeffrey-ha" in operator_container(docs)["args"]


def test_several_replicas_without_peering_are_refused(helm: str) -> None:
    error = render_error("replicaCount=2", "peering.enabled=false")
    assert "replicaCount is 2 but peering.enabled is false" in error
    assert "Set peering.enabled=true or replicaCount=1" in error


# ------------------------------------------------------------------------------------ Redis


def test_built_in_redis_wiring(helm: str) -> None:
    docs = render("redis-builtin")
    secret_name = f"{FULLNAME}-redis"
    secret = one(docs, "Secret", secret_name)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "redis-url": f"redis://{FULLNAME}-redis.{NAMESPACE}.svc:6379/0",
        "redis-password": "ci-only-not-a-secret",
    }
    env = env_of(operator_container(docs))
    assert env["JEFFREY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": "redis-url"}
    assert env["JEFFREY_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": secret_name,
        "key": "redis-password",
    }
    assert "--redis-key-prefix=jeffrey" in operator_container(docs)["args"]
    # The password never appears in the operator's arguments or plain env values.
    assert "ci-only-not-a-secret" not in json.dumps(operator_deployment(docs))

    redis = one(docs, "Deployment", f"{FULLNAME}-redis")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "redis:7-alpine"
    assert container["args"][:4] == ["--port", "6379", "--requirepass", "$(REDIS_PASSWORD)"]
    assert env_of(container)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": secret_name,
        "key": "redis-password",
    }
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert redis["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert redis["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"

    service = one(docs, "Service", f"{FULLNAME}-redis")
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 6379
    # Only the operator may talk to the built-in Redis.
    policy = one(docs, "NetworkPolicy", f"{FULLNAME}-redis")
    (rule,) = policy["spec"]["ingress"]
    operator_selector = operator_deployment(docs)["spec"]["selector"]["matchLabels"]
    assert rule["from"] == [{"podSelector": {"matchLabels": operator_selector}}]
    # The operator pods roll when the Secret changes.
    assert "checksum/redis-secret" in operator_deployment(docs)["spec"]["template"]["metadata"]["annotations"]


def test_existing_redis_secret_wiring(helm: str) -> None:
    docs = render("redis-existing-secret")
    assert not by_kind(docs, "Secret")
    assert not [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-redis")]
    env = env_of(operator_container(docs))
    assert env["JEFFREY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "my-redis", "key": "url"}
    assert env["JEFFREY_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-redis",
        "key": "password",
    }


def test_existing_secret_for_the_password_only(helm: str) -> None:
    docs = render(
        None, "redis.enabled=true", "redis.url=redis://redis.data:6379/1", "redis.auth.existingSecret=creds"
    )
    env = env_of(operator_container(docs))
    assert env["JEFFREY_REDIS_URL"] == {"name": "JEFFREY_REDIS_URL", "value": "redis://redis.data:6379/1"}
    assert env["JEFFREY_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "creds",
        "key": "redis-password",
    }


def test_generated_redis_password(helm: str) -> None:
    docs = render(None, "redis.enabled=true", "redis.url=redis://redis.data:6379/0")
    secret = one(docs, "Secret", f"{FULLNAME}-redis")
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("redis.enabled=true",), "redis.enabled is true but no Redis URL is set"),
        (
            ("redis.enabled=true", "redis.url=redis://:hunter2@redis:6379/0"),
            "redis.url must not contain credentials",
        ),
        (
            ("redis.enabled=true", "redis.auth.existingSecretUrlKey=url"),
            "redis.auth.existingSecretUrlKey needs redis.auth.existingSecret",
        ),
        (
            ("metrics.service.enabled=false", "metrics.serviceMonitor.enabled=true"),
            "needs metrics.service.enabled",
        ),
    ],
)
def test_inconsistent_values_are_refused_with_a_reason(
    helm: str, sets: tuple[str, ...], message: str
) -> None:
    assert message in render_error(*sets)


def test_kind_demo_values(helm: str) -> None:
    """examples/kind/values-kind.yaml, as hack/kind-demo.sh installs it."""
    kind_values = ROOT / "examples" / "kind" / "values-kind.yaml"
    args = ["template", "jeffrey-operator", str(CHART), "--namespace", NAMESPACE, "-f", str(kind_values)]
    docs = [d for d in yaml.safe_load_all(run_helm(*args).stdout) if d]
    (operator,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jeffrey-operator"]
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "jeffrey-operator:dev"
    assert "--namespace=jeffrey" in container["args"]
    assert "--peering=jeffrey-operator" in container["args"]
    assert operator["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    assert one(docs, "Role", "jeffrey-operator")["metadata"]["namespace"] == "jeffrey"
    assert one(docs, "Deployment", "jeffrey-operator-redis")


# ------------------------------------------------------------------------------------ monitoring


ALERTS = {
    "JeffreyNoDreamRuns": "jeffrey_dream_last_run_timestamp_seconds",
    "JeffreyDeadLetterQueueHigh": "jeffrey_dead_letter_queue_size",
    "JeffreyBusLatencyHigh": "jeffrey_bus_publish_latency_seconds_bucket",
    "JeffreyBusQueueSaturated": "jeffrey_bus_queue_capacity",
    "JeffreyModuleDown": "up{",
    "JeffreyOperatorDown": f'up{{job="{FULLNAME}-metrics"',
    "JeffreyIntegrationRolledBack": "jeffrey_rollbacks_total",
    "JeffreyPromotionStuck": "jeffrey_phase_since_seconds",
    "JeffreyPrometheusUnreachable": "jeffrey_prometheus_errors_total",
    "JeffreyStateStoreDown": "jeffrey_state_store_up",
    "JeffreyNotificationsFailing": "jeffrey_notification_sink_failures",
}


def alerts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rule = one(docs, "PrometheusRule", FULLNAME)
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_monitoring_objects(helm: str) -> None:
    docs = render("monitoring")
    monitor = one(docs, "ServiceMonitor", FULLNAME)
    service = one(docs, "Service", f"{FULLNAME}-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    found = alerts(docs)
    assert set(found) == set(ALERTS)
    for name, metric in ALERTS.items():
        assert metric in found[name]["expr"], name
        assert found[name]["labels"]["severity"] in {"warning", "critical"}
        assert found[name]["annotations"]["summary"]
    # The design documents' thresholds.
    assert found["JeffreyNoDreamRuns"]["expr"].endswith("> 86400")
    assert found["JeffreyDeadLetterQueueHigh"]["expr"].endswith("> 10")
    assert found["JeffreyBusLatencyHigh"]["expr"].endswith("> 0.5")
    assert found["JeffreyBusQueueSaturated"]["expr"].endswith("> 0.85")
    assert "> 1800" in found["JeffreyPromotionStuck"]["expr"]
    # Alert templates reach Prometheus unrendered by Helm.
    assert "{{ $labels.namespace }}" in found["JeffreyNoDreamRuns"]["annotations"]["summary"]


@functools.cache
def promtool_path() -> str | None:
    return find_tool("promtool")


def write_rules(tmp_path: Path) -> Path:
    rule = one(render("monitoring"), "PrometheusRule", FULLNAME)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def test_alert_rules_pass_promtool(helm: str, tmp_path: Path) -> None:
    promtool = promtool_path()
    if promtool is None:
        missing("promtool", "apt-get install prometheus")
    assert promtool is not None
    proc = subprocess.run(
        [promtool, "check", "rules", str(write_rules(tmp_path))], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Whether each alert fires (and stays quiet) is tested in test_alerts.py, on series built from
# real scrapes of the operator and the module simulator.


def test_alerts_are_tunable(helm: str) -> None:
    docs = render(
        "monitoring",
        "metrics.prometheusRule.thresholds.deadLetterQueueSize=25",
        "metrics.prometheusRule.disabledAlerts={JeffreyNoDreamRuns}",
        "metrics.prometheusRule.alertLabels.team=jeffrey",
    )
    found = alerts(docs)
    assert "JeffreyNoDreamRuns" not in found
    assert found["JeffreyDeadLetterQueueHigh"]["expr"].endswith("> 25")
    assert all(a["labels"]["team"] == "jeffrey" for a in found.values())
    # Without Redis there is no state store to alert on.
    assert "JeffreyStateStoreDown" not in alerts(render("monitoring", "redis.enabled=false"))


def test_grafana_dashboard(helm: str) -> None:
    docs = render("monitoring")
    cm = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Jeffrey"}
    dashboard = json.loads(cm["data"]["jeffrey-operator.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "jeffrey-operator.json").read_text())
    assert dashboard["uid"] == "jeffrey-operator"
    titles = {p["title"] for p in dashboard["panels"]}
    assert {
        "Current level",
        "Phase",
        "Level over time",
        "Phase over time",
        "Gate values",
        "Transitions",
    } <= titles
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in (
        "jeffrey_integration_level",
        "jeffrey_integration_target_level",
        "jeffrey_integration_phase",
        "jeffrey_gate_value",
        "jeffrey_transitions_total",
        "jeffrey_rollbacks_total",
        "jeffrey_check_runs_total",
    ):
        assert metric in exprs, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_monitoring_is_off_by_default(helm: str) -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


# ------------------------------------------------------------------------------------ values


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("replicaCount=-1",), "replicaCount: Must be greater than or equal to 0"),
        (("logFormat=xml",), 'logFormat: logFormat must be one of the following: "text", "json"'),
        (("watchNamespaces=foo",), "watchNamespaces: Invalid type. Expected: array, given: string"),
        (("watchNamespaces={Not_A_Namespace}",), "watchNamespaces.0: Does not match pattern"),
        (("image.pullPolicy=Sometimes",), "image.pullPolicy: image.pullPolicy must be one of the following"),
        (("replicaCounts=2",), "Additional property replicaCounts is not allowed"),
        (
            ("podAntiAffinityPreset=maybe",),
            'podAntiAffinityPreset must be one of the following: "soft", "hard"',
        ),
        (
            ("metrics.prometheusRule.disabledAlerts={NoSuchAlert}",),
            'metrics.prometheusRule.disabledAlerts.0 must be one of the following: "JeffreyNoDreamRuns"',
        ),
    ],
)
def test_schema_rejects_bad_values_readably(helm: str, sets: tuple[str, ...], message: str) -> None:
    error = render_error(*sets)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def _value_keys(text: str) -> list[tuple[int, str, bool, bool]]:
    """(indent, key, is_leaf, documented) for each key of values.yaml, helm-docs style."""
    lines = text.splitlines()
    out = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):(.*)$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(match[1]), match[2], match[3].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j = i - 1
        comment = []
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.insert(0, lines[j].strip())
            j -= 1
        documented = any(c.startswith("# --") for c in comment) or any(doc for _, doc in stack)
        following = next((ln for ln in lines[i + 1 :] if ln.strip() and not ln.strip().startswith("#")), "")
        deeper = len(following) - len(following.lstrip()) > indent
        is_leaf = bool(rest) or not deeper
        out.append((indent, key, is_leaf, documented))
        stack.append((indent, documented))
    return out


def test_every_value_is_documented_where_it_is_defined() -> None:
    keys = _value_keys((CHART / "values.yaml").read_text())
    assert len(keys) > 50
    undocumented = [key for indent, key, leaf, doc in keys if leaf and not doc]
    assert not undocumented, f"values without a `# --` comment: {undocumented}"


def test_schema_knows_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], schema_node: dict[str, Any], path: str) -> None:
        props = schema_node.get("properties")
        if props is None:
            return
        for key, value in node.items():
            assert key in props, f"{path}{key} is not in values.schema.json"
            assert props[key].get("description") or props[key].get("properties"), f"{path}{key}"
            if isinstance(value, dict):
                walk(value, props[key], f"{path}{key}.")

    assert schema["additionalProperties"] is False
    walk(values, schema, "")


# ------------------------------------------------------------------------------------ NOTES.txt


def render_notes(tmp_path: Path, *sets: str) -> str:
    """helm template does not print NOTES.txt: render it through a throwaway template."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes.yaml").write_text(
        'notes: {{ include (print $.Template.BasePath "/NOTES.txt") . | toJson }}\n'
    )
    args = [*template_args(None, sets, chart), "--show-only", "templates/zz-notes.yaml"]
    return str(yaml.safe_load(run_helm(*args).stdout)["notes"])


def test_notes_tell_what_to_do_next(helm: str, tmp_path: Path) -> None:
    notes = render_notes(tmp_path)
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{FULLNAME}" in notes
    assert "kubectl get jeffreyintegrations -A -w" in notes
    assert "jeffreyos.io/retry" in notes
    assert f"port-forward service/{FULLNAME}-metrics" in notes
    assert "helm show crds" in notes
    namespaced = render_notes(tmp_path / "n", "watchNamespaces={jeffrey}", "redis.builtin.enabled=true")
    assert "namespaces jeffrey (a Role in each)" in namespaced
    assert "built-in Redis has one replica and no persistence" in namespaced
    assert "password was generated" in namespaced


# ------------------------------------------------------------------------------------ CRDs


def test_chart_crd_matches() -> None:
    """The chart ships the very CRD generated from the models (`make chart-crds` copies it)."""
    if not ROOT_CRD.exists():
        missing(f"crds/{CRD_NAME}", "generate it with `make crds`")
    assert CHART_CRD.exists(), f"charts/jeffrey-operator/crds/{CRD_NAME} is missing: run `make chart-crds`"
    assert CHART_CRD.read_bytes() == ROOT_CRD.read_bytes(), "the chart's CRD is stale: run `make chart-crds`"


def test_crds_come_from_the_crds_directory_not_templates(helm: str) -> None:
    """crds/ is installed before the templates and never deleted by `helm uninstall`."""
    assert not by_kind(render(), "CustomResourceDefinition")
    with_crds = [
        d for d in yaml.safe_load_all(run_helm(*template_args(None, ()), "--include-crds").stdout) if d
    ]
    names = {d["metadata"]["name"] for d in by_kind(with_crds, "CustomResourceDefinition")}
    assert not {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} & names  # leases, not kopf peering
    if CHART_CRD.exists():
        assert "jeffreyintegrations.jeffreyos.io" in names
    assert not list((CHART / "templates").glob("*crd*"))


# ------------------------------------------------------------------------------------ schemas


def test_rendered_objects_match_the_kubernetes_schemas(helm: str, tmp_path: Path) -> None:
    """Strict OpenAPI validation (unknown fields rejected) against the kind cluster's Kubernetes.

    Uses kubernetes-validate (`make ship-tools` installs it next to checkov); custom resources of
    other projects (ServiceMonitor, PrometheusRule, kopf peerings) have no schema there.
    """
    tool = find_tool("kubernetes-validate", ROOT / ".tools" / "checkov" / "bin" / "kubernetes-validate")
    if tool is None:
        missing("kubernetes-validate", "make ship-tools installs it next to checkov")
    render_all(tmp_path / "rendered")
    files = sorted(str(p) for p in (tmp_path / "rendered").glob("*.yaml"))
    files += [str(ROOT / "examples" / "kind" / n) for n in ("modules.yaml", "prometheus.yaml")]
    proc = subprocess.run(
        [tool, "--kubernetes-version", "1.32.0", "--strict", "--quiet", "--no-warn", *files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------ checkov


@functools.cache
def checkov_path() -> str | None:
    return find_tool("checkov", ROOT / ".tools" / "checkov" / "bin" / "checkov")


def run_checkov(directory: Path) -> tuple[dict[str, Any], float]:
    path = checkov_path()
    if path is None:
        missing("checkov", "run `make ship-tools` or `pip install checkov`")
    assert path is not None
    env = {
        **os.environ,
        # Offline: no guideline download, no SCA package scan, no platform upload.
        "BC_SKIP_MAPPING": "TRUE",
        "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
        "CKV_NO_UPDATE_CHECK": "true",
        "ANSI_COLORS_DISABLED": "1",
    }
    cmd = [path, "--config-file", str(ROOT / ".checkov.yaml"), "-d", str(directory), "-o", "json"]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    elapsed = time.monotonic() - start
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    (kubernetes,) = [r for r in reports if r.get("check_type") == "kubernetes"]
    return kubernetes, elapsed


def render_all(directory: Path, *extra: str) -> None:
    directory.mkdir(parents=True)
    for scenario in SCENARIOS:
        (directory / f"{scenario}.yaml").write_text(run_helm(*template_args(scenario, extra)).stdout)


def test_checkov_rendered_chart(helm: str, tmp_path: Path) -> None:
    render_all(tmp_path / "rendered")
    report, elapsed = run_checkov(tmp_path / "rendered")
    print(f"checkov: {report['summary']} in {elapsed:.1f}s")
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']}, {Path(c['file_path']).name})"
        for c in report["results"].get("failed_checks", [])
    ]
    assert not failed, "checkov findings:\n" + "\n".join(failed)
    assert report["summary"]["passed"] > 100
    assert report["summary"]["parsing_errors"] == 0
    # Every check skipped on an object carries its reason.
    for check in report["results"].get("skipped_checks", []):
        assert (check.get("check_result", {}).get("suppress_comment") or "").strip(), check["check_id"]
    assert elapsed < 120, f"checkov took {elapsed:.0f}s"


def test_checkov_skips_are_documented() -> None:
    """Each check skipped in .checkov.yaml is preceded by a comment that gives the reason."""
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    skipped = [i for i, line in enumerate(lines) if re.match(r"^\s*-\s*CKV", line)]
    assert skipped
    for i in skipped:
        assert lines[i - 1].strip().startswith("#"), lines[i]
    annotations = re.findall(
        r"checkov\.io/skip\d+: (CKV\w+)=(.*)",
        "\n".join(p.read_text() for p in (CHART / "templates").glob("*.yaml")),
    )
    assert annotations
    for check, reason in annotations:
        assert len(reason.split()) >= 5, check


def test_checkov_would_catch_a_privileged_operator(helm: str, tmp_path: Path) -> None:
    """The scan is not vacuous: a privileged, root, writable operator fails it."""
    out = tmp_path / "bad"
    out.mkdir()
    (out / "bad.yaml").write_text(
        run_helm(
            *template_args(
                None,
                (
                    "securityContext.privileged=true",
                    "securityContext.allowPrivilegeEscalation=true",
                    "securityContext.readOnlyRootFilesystem=false",
                    "securityContext.runAsNonRoot=false",
                    "securityContext.runAsUser=0",
                    "podSecurityContext.runAsNonRoot=false",
                    "podSecurityContext.runAsUser=0",
                ),
            )
        ).stdout
    )
    report, _ = run_checkov(out)
    failed = {c["check_id"] for c in report["results"].get("failed_checks", [])}
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_22"} <= failed, failed


# ------------------------------------------------------------------------------------ docs/helm.md

HELM_DOC = ROOT / "docs" / "helm.md"
TABLE_START = "<!-- values-table:start (generated by `python tests/test_chart.py --write-docs`) -->"
TABLE_END = "<!-- values-table:end -->"


def values_table() -> str:
    """The values reference of docs/helm.md, from the `# --` comments of values.yaml."""
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if not match:
            continue
        indent, key = len(match[1]), match[2]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        j, comment = i - 1, []
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.insert(0, lines[j].strip())
            j -= 1
        start = next((k for k, c in enumerate(comment) if c.startswith("# --")), None)
        if start is None:
            continue
        description = " ".join(c.lstrip("#").strip() for c in comment[start:]).removeprefix("--").strip()
        path = [k for _, k in stack]
        default: Any = values
        for part in path:
            default = default[part]
        kind = {dict: "object", list: "list", bool: "bool", int: "int", float: "float", str: "string"}[
            type(default)
        ]
        shown = json.dumps(default, separators=(", ", ": "))
        cell = description.replace("|", "\\|")
        rows.append(f"| `{'.'.join(path)}` | {kind} | `{shown}` | {cell} |")
    return "\n".join(rows) + "\n"


def test_helm_doc_values_table_is_current() -> None:
    text = HELM_DOC.read_text()
    assert TABLE_START in text and TABLE_END in text
    current = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip("\n") + "\n"
    assert current == values_table(), "docs/helm.md is stale: run `python tests/test_chart.py --write-docs`"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write-docs"]:
        sys.exit("usage: python tests/test_chart.py --write-docs")
    text = HELM_DOC.read_text()
    head, rest = text.split(TABLE_START, 1)
    tail = rest.split(TABLE_END, 1)[1]
    HELM_DOC.write_text(f"{head}{TABLE_START}\n{values_table()}{TABLE_END}{tail}")
    print(f"wrote {HELM_DOC.relative_to(ROOT)}")
