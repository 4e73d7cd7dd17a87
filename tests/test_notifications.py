"""Notifications end to end: the operator on the emulated API, a real Alertmanager (which routes to
a receiver, as it would to on-call), a local webhook receiver that checks the HMAC signature, and
a Slack-shaped receiver. Restarts, a receiver answering 500, and egress refusals."""

from __future__ import annotations

import base64
import datetime
import time
from collections import Counter
from typing import Any

import pytest

from jeffrey_emulator import deployment_manifest
from jeffrey_operator.adapters.kube import Kube
from jeffrey_operator.adapters.notify import Senders
from jeffrey_operator.adapters.telemetry import OperatorTelemetry
from jeffrey_operator.core.egress import EgressPolicy
from jeffrey_operator.core.models import RETRY_ANNOTATION, GateResult, GateStatus
from jeffrey_operator.core.ports import GateContext, GateReport, GateVerdict
from jeffrey_operator.runtime.app import BackgroundOperator, build_context
from jeffrey_operator.runtime.notifications import Notifier
from jeffrey_operator.runtime.reconciler import OperatorContext
from jeffrey_operator.runtime.settings import OperatorSettings
from notify_fixtures import AlertmanagerServer, Receiver
from operator_fixtures import FAST, ROOT, Cluster, example, wait_for

pytestmark = pytest.mark.slow

NS = "jeffrey"
SECRET = "hmac-key-for-tests"
LEVELS = {"CORE": ["memory", "neural-bus"], "COGNITIVE": ["auto-learner"], "LOOPS": ["awareness-loop"]}


def start_operator(cluster: Cluster, settings: OperatorSettings | None = None) -> OperatorContext:
    """The operator with retries and Alertmanager re-posts shortened for tests."""
    settings = settings or OperatorSettings(health_port=0, metrics_port=0)
    kube = Kube(cluster.emu.api_client())
    ctx = build_context(settings, kube=kube, gates=cluster.gates, store=cluster.store)
    ctx.notifier = Notifier(
        kube,
        Senders(settings.egress_policy, secret_reader=kube.read_secret_key, timeout=5.0),
        clock=ctx.clock,
        defaults=settings.default_notifications,
        operator_namespace=settings.operator_namespace,
        telemetry=ctx.telemetry,
        wake=ctx.wake,
        retry_base=0.1,
        retry_cap=0.5,
        resend=1.0,
    )
    emu = cluster.emu

    def login(**_: Any) -> Any:
        return emu.connection_info()

    cluster.operator = BackgroundOperator(settings, ctx, login=login)
    cluster.operator.start()
    cluster.ctx = ctx
    return ctx


def namespace(cluster: Cluster, name: str) -> None:
    try:
        cluster.emu.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except Exception as exc:  # already there
        if "AlreadyExists" not in str(exc) and "409" not in str(exc):
            raise


def secret(cluster: Cluster, name: str, ns: str = NS, **data: str) -> None:
    namespace(cluster, ns)
    cluster.emu.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


def integration(sinks: list[dict[str, Any]], ns: str = NS, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegration",
        "metadata": {"name": "jeffrey", "namespace": ns},
        "spec": {
            "targetLevel": "LOOPS",
            "levels": [
                {"level": lv, "modules": [{"deployment": d} for d in ds]} for lv, ds in LEVELS.items()
            ],
            "promotion": {**FAST, "readinessTimeout": "1s"},
            "notifications": sinks,
            **spec,
        },
    }


def deployments(cluster: Cluster, ns: str = NS, *, never_ready: str = "") -> None:
    namespace(cluster, ns)
    for ds in LEVELS.values():
        for d in ds:
            cluster.emu.create(deployment_manifest(d, ns, replicas=0))
    if never_ready:
        cluster.emu.deployments.set_behaviour(ns, never_ready, ready=False)


def webhook_sink(receiver: Receiver, name: str = "audit", on: list[str] | None = None) -> dict[str, Any]:
    sink: dict[str, Any] = {
        "name": name,
        "webhook": {"url": receiver.url + f"/{name}", "secretRef": {"name": "jeffrey-hooks", "key": "hmac"}},
    }
    if on is not None:
        sink["on"] = on
    return sink


def events_at(receiver: Receiver, path: str) -> list[str]:
    return [r.json["transition"] for r in receiver.at(path)]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


def counter(cluster: Cluster, sink: str, result: str) -> float:
    """The operator's own ``jeffrey_notifications_total`` child: its telemetry is per operator, so
    before the operator starts there is nothing counted yet."""
    if cluster.ctx is None:
        return 0.0
    return cluster.ctx.telemetry.sample("jeffrey_notifications_total", sink=sink, result=result) or 0.0


def failures(cluster: Cluster, namespace: str, sink: str, kind: str) -> float | None:
    """``jeffrey_notification_sink_failures`` of one sink (None: no such series)."""
    assert cluster.ctx is not None
    return cluster.ctx.telemetry.sample(
        "jeffrey_notification_sink_failures", namespace=namespace, name="jeffrey", sink=sink, kind=kind
    )


# ------------------------------------------------------------------------------------------ tests


def test_a_rollback_is_told_to_every_sink_and_resolved_when_stable(
    cluster: Cluster, alertmanager: AlertmanagerServer, receiver: Receiver
) -> None:
    deployments(cluster, never_ready="awareness-loop")
    secret(cluster, "jeffrey-hooks", hmac=SECRET)
    secret(cluster, "jeffrey-slack", url=receiver.url + "/slack")
    start_operator(cluster)
    every = ["RolledBack", "TargetReached", "Invalid", "Stalled", "Recovered"]
    cluster.emu.create(
        integration(
            [
                {"name": "oncall", "alertmanager": {"url": alertmanager.url}},
                webhook_sink(receiver, on=every),
                {"name": "team", "slack": {"urlSecretRef": {"name": "jeffrey-slack", "key": "url"}}},
            ]
        )
    )
    status = cluster.wait_phase("RolledBack", within=20)
    seq = next(t["seq"] for t in status["transitions"] if t["phase"] == "RollingBack")

    # The webhook: the documented payload, signed, with its idempotency key.
    (hook,) = wait_for(lambda: receiver.at("/audit"), within=10, what="the webhook delivery")
    decided = datetime.datetime.fromisoformat(hook.json["time"].replace("Z", "+00:00"))
    print(f"rollback decided -> webhook received: {(hook.received - decided).total_seconds() * 1000:.0f} ms")
    assert hook.signature_ok is True
    body = hook.json
    assert body["transition"] == "RolledBack" and body["seq"] == seq
    assert body["integration"]["namespace"] == NS and body["integration"]["name"] == "jeffrey"
    assert body["reason"] == "ReadinessTimeout" and body["level"] == "LOOPS"
    assert "awareness-loop" in body["message"]
    assert (
        hook.headers["Idempotency-Key"]
        == body["idempotencyKey"]
        == f"{body['integration']['uid']}/{seq}/RolledBack"
    )

    # Slack: a short message with the reason and a jeffreyctl hint.
    (slack,) = wait_for(lambda: receiver.at("/slack"), within=10, what="the Slack message")
    assert "RolledBack from LOOPS (ReadinessTimeout)" in slack.json["text"]
    assert "jeffreyctl status jeffrey -n jeffrey" in slack.json["text"]

    # Alertmanager holds the alert and routes it to its receiver, as it would to on-call.
    (alert,) = wait_for(
        lambda: alertmanager.alerts(alertname="JeffreyIntegrationRolledBack", namespace=NS), within=10
    )
    assert alert["labels"] | {} == {
        "alertname": "JeffreyIntegrationRolledBack",
        "namespace": NS,
        "name": "jeffrey",
        "level": "LOOPS",
        "reason": "ReadinessTimeout",
        "severity": "critical",
    }
    assert "awareness-loop" in alert["annotations"]["description"]
    assert alert["status"]["state"] == "active"
    routed = wait_for(
        lambda: alertmanager.routed.at("/routed"), within=15, what="Alertmanager routing the alert"
    )
    assert routed[0].json["status"] == "firing"
    assert routed[0].json["alerts"][0]["labels"]["name"] == "jeffrey"

    # Each sink's cursor is in status; the condition says all is delivered.
    def cursors() -> dict[str, tuple[int, str]]:
        return {d["name"]: (d["seq"], d["event"]) for d in cluster.status().get("notifications", [])}

    # (written right after each delivery: the three sinks were told independently)
    got = wait_for(
        lambda: (
            (c := cursors()) and all(c.get(n, (0, ""))[0] >= seq for n in ("audit", "team", "oncall")) and c
        ),
        what="every sink's cursor at the rollback",
    )
    assert got["audit"] == (seq, "RolledBack") and got["team"] == (seq, "RolledBack")
    status = wait_for(
        lambda: (
            (s := cluster.status())
            and any(c["type"] == "NotificationsDelivered" for c in s.get("conditions", []))
            and s
        ),
        what="NotificationsDelivered",
    )
    assert condition(status, "NotificationsDelivered")["status"] == "True"

    # Healthy again: TargetReached and Recovered for the webhook; the alert resolves.
    cluster.emu.deployments.set_behaviour(NS, "awareness-loop", ready=True)
    cluster.annotate(RETRY_ANNOTATION, "1")
    cluster.wait_phase("Stable", within=20)
    wait_for(lambda: events_at(receiver, "/audit") == ["RolledBack", "TargetReached", "Recovered"], within=10)
    assert all(r.signature_ok for r in receiver.at("/audit"))
    assert len(receiver.at("/slack")) == 1  # Slack asked for the defaults only
    wait_for(
        lambda: not alertmanager.alerts(alertname="JeffreyIntegrationRolledBack", namespace=NS), within=10
    )
    wait_for(
        lambda: any(r.json["status"] == "resolved" for r in alertmanager.routed.at("/routed")),
        within=15,
        what="Alertmanager telling its receiver the alert resolved",
    )


def test_a_receiver_answering_500_is_retried_and_holds_no_other_sink(
    cluster: Cluster, alertmanager: AlertmanagerServer, receiver: Receiver
) -> None:
    ns = "failing-hook"
    deployments(cluster, ns, never_ready="awareness-loop")
    secret(cluster, "jeffrey-hooks", ns, hmac=SECRET)
    receiver.fail_count = 10**6
    failed_before = counter(cluster, "webhook", "failed")
    started = time.monotonic()
    start_operator(cluster)
    cluster.emu.create(
        integration(
            [{"name": "oncall", "alertmanager": {"url": alertmanager.url}}, webhook_sink(receiver)], ns
        )
    )
    cluster.wait_phase("RolledBack", within=20, namespace=ns)
    ladder_seconds = time.monotonic() - started
    # Alertmanager got the alert while the webhook keeps failing.
    wait_for(lambda: alertmanager.alerts(alertname="JeffreyIntegrationRolledBack", namespace=ns), within=10)
    wait_for(lambda: len(receiver.at("/audit", ok_only=False)) >= 3, within=10, what="three attempts")
    assert not receiver.at("/audit")
    status = wait_for(
        lambda: (
            (s := cluster.status(namespace=ns))
            and condition(s, "NotificationsDelivered")["status"] == "False"
            and s
        ),
        what="NotificationsDelivered=False",
    )
    cond = condition(status, "NotificationsDelivered")
    assert cond["reason"] == "NotificationFailing"
    assert "audit (webhook): HTTP 500" in cond["message"]
    assert counter(cluster, "webhook", "failed") >= failed_before + 3
    # What JeffreyNotificationsFailing alerts on: the failing sink by name, the other at 0.
    assert failures(cluster, ns, "audit", "webhook") >= 3
    assert failures(cluster, ns, "oncall", "alertmanager") == 0
    print(f"ladder to RolledBack in {ladder_seconds:.1f}s with a failing webhook")

    receiver.fail_count = 0
    wait_for(lambda: receiver.at("/audit"), within=10, what="the delivery after the receiver recovered")
    wait_for(
        lambda: condition(cluster.status(namespace=ns), "NotificationsDelivered")["status"] == "True",
        what="NotificationsDelivered=True again",
    )
    assert failures(cluster, ns, "audit", "webhook") == 0
    assert [r.json["transition"] for r in receiver.at("/audit")] == ["RolledBack"]
    # Deleting the integration resolves its alert in Alertmanager at once.
    cluster.emu.delete("ji", ns, "jeffrey")
    wait_for(
        lambda: not alertmanager.alerts(alertname="JeffreyIntegrationRolledBack", namespace=ns),
        within=15,
        what="the alert resolved after the deletion",
    )
    # … and its series leave /metrics with it.
    wait_for(lambda: failures(cluster, ns, "audit", "webhook") is None, what="the gauge removed")


def test_a_restart_in_the_middle_of_a_delivery_loses_nothing(cluster: Cluster, receiver: Receiver) -> None:
    ns = "restart"
    deployments(cluster, ns)
    secret(cluster, "jeffrey-hooks", ns, hmac=SECRET)
    receiver.hang, receiver.hang_count = 3.0, 1  # the first delivery is in flight for 3 s
    start_operator(cluster)
    cluster.emu.create(integration([webhook_sink(receiver, on=["TargetReached", "Invalid"])], ns))
    cluster.wait_phase("Stable", within=20, namespace=ns)
    time.sleep(0.5)  # the delivery is in flight now
    cluster.stop_operator()
    assert not cluster.status(namespace=ns).get("notifications", [{}])[0].get("seq")
    # While the operator is away, the spec breaks: one more notification to make.
    cluster.emu.delete("deployments", ns, "auto-learner")
    start_operator(cluster)
    cluster.wait_phase("Invalid", within=20, namespace=ns)
    wait_for(lambda: "Invalid" in events_at(receiver, "/audit"), within=15, what="the Invalid notification")
    keys = Counter(r.headers["Idempotency-Key"] for r in receiver.at("/audit"))
    transitions = [r.json["transition"] for r in receiver.at("/audit")]
    assert set(transitions) == {"TargetReached", "Invalid"}  # nothing lost
    # At least once: the delivery cut by the restart may come twice, always with the same key.
    assert all(n <= 2 for n in keys.values()) and len(keys) == 2
    assert all(r.signature_ok for r in receiver.at("/audit"))
    status = wait_for(
        lambda: (
            (s := cluster.status(namespace=ns))
            and s.get("notifications", [{}])[0].get("event") == "Invalid"
            and s
        ),
        what="the cursor at Invalid",
    )
    assert status["notifications"][0]["seq"] == status["transitionSeq"]


def test_a_stall_is_told_after_stalled_after(cluster: Cluster, receiver: Receiver) -> None:
    class Inconclusive:
        async def evaluate(self, ctx: GateContext) -> GateReport:
            gate = GateStatus(name="health", query="up", result=GateResult.INCONCLUSIVE, message="down")
            return GateReport(
                verdict=GateVerdict.INCONCLUSIVE,
                gates=(gate,),
                source_available=False,
                message="Prometheus down",
            )

    ns = "stall"
    deployments(cluster, ns)
    secret(cluster, "jeffrey-hooks", ns, hmac=SECRET)
    cluster.gates = Inconclusive()
    start_operator(cluster)
    spec = integration(
        [webhook_sink(receiver)], ns, stalledAfter="1s", gates=[{"name": "health", "query": "up", "min": 1}]
    )
    cluster.emu.create(spec)
    (hook,) = wait_for(lambda: receiver.at("/audit"), within=15, what="the Stalled notification")
    body = hook.json
    assert body["transition"] == "Stalled" and body["level"] == "CORE"
    assert body["reason"] == "PrometheusUnavailable"
    assert "held for more than 1s" in body["message"]
    assert cluster.status(namespace=ns)["phase"] == "Validating"  # held, never rolled back
    time.sleep(1.5)
    assert len(receiver.at("/audit")) == 1  # told once per held transition


def test_egress_refusals(cluster: Cluster, receiver: Receiver) -> None:
    # The operator allows 127.0.0.2 only: the receiver at 127.0.0.1 and "localhost" are refused.
    settings = OperatorSettings(health_port=0, metrics_port=0, egress_allow=("127.0.0.2/32", "*.example"))
    ns = "egress"
    deployments(cluster, ns)
    secret(cluster, "jeffrey-hooks", ns, hmac=SECRET)
    secret(cluster, "jeffrey-slack", ns, url="http://169.254.169.254/latest/meta-data/")
    refused_before = counter(cluster, "slack", "refused")
    start_operator(cluster, settings)
    cases = {
        "metadata": ("http://169.254.169.254/hook", "169.254.169.254 is a link-local address"),
        "literal": (receiver.url + "/hook", "127.0.0.1 is not in the operator's egress allow-list"),
        "dns": (f"http://localhost:{receiver.port}/hook", "localhost resolves to"),
    }
    for name, (url, _) in cases.items():
        ji = integration(
            [
                {
                    "name": "audit",
                    "webhook": {"url": url, "secretRef": {"name": "jeffrey-hooks", "key": "hmac"}},
                }
            ],
            ns,
        )
        ji["metadata"]["name"] = name
        ji["spec"]["levels"] = [{"level": "CORE", "modules": [{"deployment": "memory"}]}]
        ji["spec"]["targetLevel"] = "CORE"
        ji["spec"]["analysis"] = {"prometheus": {"url": "http://prometheus.example:9090"}}
        cluster.emu.create(ji)
    for name, (url, why) in cases.items():
        status = cluster.wait_phase("Invalid", within=15, name=name, namespace=ns)
        assert status["reason"] == "EgressRefused"
        assert f"spec.notifications[0].webhook.url: {url} is refused" in status["message"]
        assert why in status["message"]
    # The Prometheus URL passes the same policy.
    prom = integration([], ns, targetLevel="CORE")
    prom["metadata"]["name"] = "prometheus"
    prom["spec"]["levels"] = [{"level": "CORE", "modules": [{"deployment": "memory"}]}]
    prom["spec"]["analysis"] = {"prometheus": {"url": "http://[::ffff:169.254.169.254]:9090"}}
    prom["spec"]["defaultGates"] = True
    cluster.emu.create(prom)
    status = cluster.wait_phase("Invalid", within=15, name="prometheus", namespace=ns)
    assert status["reason"] == "EgressRefused"
    assert (
        "spec.analysis.prometheus.url: http://[::ffff:169.254.169.254]:9090 is refused" in status["message"]
    )
    wait_for(
        lambda: any(
            e["reason"] == "EgressRefused"
            and e["type"] == "Warning"
            and "spec.analysis.prometheus.url" in e["message"]
            for e in cluster.events(ns)
        ),
        what="the EgressRefused Warning Event",
    )
    time.sleep(0.3)
    assert set(cluster.replicas(ns).values()) == {0}  # a refused URL scales nothing
    assert not receiver.requests
    # A Slack URL comes from a Secret, so only the delivery can refuse it: a condition and a metric.
    ji = integration(
        [{"name": "team", "slack": {"urlSecretRef": {"name": "jeffrey-slack", "key": "url"}}}], ns
    )
    ji["metadata"]["name"] = "slack"
    ji["spec"]["levels"] = [{"level": "CORE", "modules": [{"deployment": "memory"}]}]
    ji["spec"]["targetLevel"] = "CORE"
    ji["spec"]["analysis"] = {"prometheus": {"url": "http://prometheus.example:9090"}}
    # Invalid (a Deployment that does not exist): one notification to deliver.
    ji["spec"]["levels"] = [{"level": "CORE", "modules": [{"deployment": "no-such-deployment"}]}]
    cluster.emu.create(ji)
    status = wait_for(
        lambda: (
            (s := cluster.status(name="slack", namespace=ns))
            and any(
                c["type"] == "NotificationsDelivered" and c["status"] == "False"
                for c in s.get("conditions", [])
            )
            and s
        ),
        within=15,
        what="NotificationsDelivered=False",
    )
    cond = condition(status, "NotificationsDelivered")
    assert cond["reason"] == "NotificationRefused"
    assert "169.254.169.254" in cond["message"]
    assert counter(cluster, "slack", "refused") > refused_before


def test_a_sink_whose_secret_is_missing_says_so(cluster: Cluster, receiver: Receiver) -> None:
    ns = "no-secret"
    deployments(cluster, ns)
    start_operator(cluster)
    ji = integration([webhook_sink(receiver, on=["TargetReached"])], ns)
    cluster.emu.create(ji)
    cluster.wait_phase("Stable", within=20, namespace=ns)
    status = wait_for(
        lambda: (
            (s := cluster.status(namespace=ns))
            and any(
                c["type"] == "NotificationsDelivered" and c["status"] == "False"
                for c in s.get("conditions", [])
            )
            and s
        ),
        within=15,
        what="NotificationsDelivered=False",
    )
    assert f"Secret {ns}/jeffrey-hooks" in condition(status, "NotificationsDelivered")["message"]
    assert not receiver.requests
    secret(cluster, "jeffrey-hooks", ns, hmac=SECRET)
    (hook,) = wait_for(lambda: receiver.at("/audit"), within=15, what="the delivery once the Secret exists")
    assert hook.signature_ok and hook.json["transition"] == "TargetReached"


def test_the_schema_refuses_a_sink_without_its_secret(cluster: Cluster) -> None:
    from jeffrey_emulator import ApiError

    namespace(cluster, NS)
    for sink, message in (
        ({"name": "a", "webhook": {"url": "http://h/"}}, "secretRef"),
        ({"name": "a", "slack": {}}, "urlSecretRef"),
    ):
        with pytest.raises(ApiError) as exc:
            cluster.emu.create(integration([sink]))
        assert exc.value.code == 422
        assert message in str(exc.value)


def test_default_sinks_from_the_operator_settings(cluster: Cluster, receiver: Receiver) -> None:
    ns = "defaults"
    deployments(cluster, ns)
    secret(cluster, "operator-hooks", "jeffrey-system", hmac=SECRET)
    default = {
        "name": "platform",
        "on": ["TargetReached"],
        "webhook": {
            "url": receiver.url + "/platform",
            "secretRef": {"name": "operator-hooks", "key": "hmac"},
        },
    }
    from jeffrey_operator.runtime.settings import parse_notifications

    settings = OperatorSettings(
        health_port=0,
        metrics_port=0,
        default_notifications=parse_notifications(__import__("json").dumps([default])),
        operator_namespace="jeffrey-system",
    )
    start_operator(cluster, settings)
    cluster.emu.create(integration([], ns))
    cluster.wait_phase("Stable", within=20, namespace=ns)
    (hook,) = wait_for(lambda: receiver.at("/platform"), within=10, what="the default sink's delivery")
    assert hook.signature_ok and hook.json["integration"]["namespace"] == ns


def test_the_delivery_counter_is_born_at_zero() -> None:
    text = OperatorTelemetry().exposition()
    for sink in ("alertmanager", "webhook", "slack"):
        for result in ("delivered", "failed", "refused"):
            assert f'jeffrey_notifications_total{{result="{result}",sink="{sink}"}}' in text


EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.yaml") if "notifications:" in p.read_text())


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_with_notifications_is_applied_and_its_sinks_are_tracked(
    cluster: Cluster, alertmanager: AlertmanagerServer, receiver: Receiver, name: str
) -> None:
    ji = example(name)
    ns = ji["metadata"]["namespace"]
    sinks = ji["spec"]["notifications"]
    assert any("alertmanager" in s for s in sinks), "the example shows an Alertmanager sink"
    for sink in sinks:  # the example's own URLs pass the default egress policy
        for kind in ("alertmanager", "webhook"):
            if kind in sink:
                assert EgressPolicy().refusal(sink[kind]["url"]) is None
                sink[kind]["url"] = alertmanager.url if kind == "alertmanager" else receiver.url + "/example"
    deployments_for_example(cluster, ji)
    for sink in sinks:
        for ref in (sink.get("webhook", {}).get("secretRef"), sink.get("slack", {}).get("urlSecretRef")):
            if ref:
                secret(
                    cluster, ref["name"], ns, **{ref["key"]: SECRET if "webhook" in sink else receiver.url}
                )
    ji["spec"]["promotion"] = dict(FAST)
    start_operator(cluster)
    cluster.emu.create(ji)
    wait_for(
        lambda: (
            (s := cluster.status(ji["metadata"]["name"], ns))
            and {d["name"] for d in s.get("notifications", [])} == {x["name"] for x in sinks}
            and any(
                c["type"] == "NotificationsDelivered" and c["status"] == "True"
                for c in s.get("conditions", [])
            )
        ),
        within=20,
        what="every sink of the example tracked in status.notifications, NotificationsDelivered=True",
    )


def deployments_for_example(cluster: Cluster, ji: dict[str, Any]) -> None:
    ns = ji["metadata"]["namespace"]
    namespace(cluster, ns)
    for level in ji["spec"]["levels"]:
        for module in level["modules"]:
            cluster.emu.create(deployment_manifest(module["deployment"], ns, replicas=0))
