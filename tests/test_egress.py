"""Pure tables for the egress URL policy (jeffrey_operator.core.egress)."""

from __future__ import annotations

import doctest
import json

import pytest

from jeffrey_operator.core import egress
from jeffrey_operator.core.egress import EGRESS_REFUSED, EgressPolicy, EgressPolicyError, redirect_allowed
from jeffrey_operator.runtime.cli import _parser, main, settings_from_args
from jeffrey_operator.runtime.settings import OperatorSettings, SettingsError

OPEN = EgressPolicy()  # the default: any host, link-local and metadata refused
NAMES = EgressPolicy.parse(["prometheus.monitoring", "*.svc.cluster.local", "hooks.slack.com"])
CIDRS = EgressPolicy.parse(["10.0.0.0/8", "fd00:1::/64"])
MIXED = EgressPolicy.parse(["*.example.com", "10.0.0.0/8"])
METADATA_OPENED = EgressPolicy.parse(["169.254.169.254/32"])
EVERYTHING = EgressPolicy.parse(["0.0.0.0/0", "::/0"])


def test_doctests() -> None:
    result = doctest.testmod(egress, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    ("policy", "url", "refused_because"),
    [
        # The default policy: any host except link-local / metadata.
        (OPEN, "http://prometheus-operated.monitoring:9090", None),
        (OPEN, "https://hooks.example/jeffrey", None),
        (OPEN, "http://10.1.2.3:9093", None),
        (OPEN, "http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        (OPEN, "http://169.254.1.1:80/", "169.254.1.1 is a link-local address"),
        (OPEN, "http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is the AWS IPv6 metadata address"),
        (OPEN, "http://[fe80::1]:9090/", "fe80::1 is an IPv6 link-local address"),
        (OPEN, "http://[::ffff:169.254.169.254]/", "169.254.169.254 is a link-local address"),
        # Numeric notations a C resolver turns into 169.254.169.254.
        (OPEN, "http://2852039166/", "169.254.169.254 is a link-local address"),
        (OPEN, "http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254 is a link-local address"),
        (OPEN, "http://169.254.43518/", "169.254.169.254 is a link-local address"),
        (OPEN, "http://metadata.google.internal/computeMetadata/v1/", "is a cloud metadata service"),
        (OPEN, "http://METADATA.google.internal./", "is a cloud metadata service"),
        # Shapes refused whatever the list says.
        (OPEN, "ftp://files.example/", "scheme 'ftp' is not http or https"),
        (OPEN, "file:///etc/passwd", "scheme 'file' is not http or https"),
        (OPEN, "prometheus:9090", "is not http or https"),
        (OPEN, "http:///path", "the URL has no host"),
        (OPEN, "http://user:pw@hooks.example/", "credentials in the URL are not accepted"),
        (OPEN, "http://hooks.example@169.254.169.254/", "credentials in the URL are not accepted"),
        (OPEN, "http://169.254.169.254\\@hooks.example/", "backslash"),
        (OPEN, "http://hooks.example/a b", "whitespace"),
        (OPEN, "http://hooks.example:99999/", "cannot be parsed"),
        # Host names.
        (NAMES, "http://prometheus.monitoring:9090/api", None),
        (NAMES, "http://PROMETHEUS.monitoring./", None),
        (NAMES, "http://am.monitoring.svc.cluster.local:9093", None),
        (
            NAMES,
            "http://svc.cluster.local/",
            "host svc.cluster.local is not in",
        ),
        (NAMES, "http://evilsvc.cluster.local/", "is not in the operator's egress allow-list"),
        (NAMES, "https://hooks.slack.com/services/T/B/X", None),
        (NAMES, "https://hooks.slack.com.evil.example/", "is not in the operator's egress allow-list"),
        (NAMES, "http://10.1.2.3/", "10.1.2.3 is not in the operator's egress allow-list"),
        (NAMES, "http://169.254.169.254/", "link-local"),
        # CIDRs: a literal is judged at once, a host name waits for its addresses.
        (CIDRS, "http://10.200.0.1:9090", None),
        (CIDRS, "http://[fd00:1::5]:9090", None),
        (
            CIDRS,
            "http://192.168.0.1:9090",
            "192.168.0.1 is not in the operator's",
        ),
        (CIDRS, "http://alertmanager:9093", None),
        (MIXED, "http://a.example.com/", None),
        # Only an entry inside a refused range opens it; a catch-all does not.
        (METADATA_OPENED, "http://169.254.169.254/", None),
        (METADATA_OPENED, "http://169.254.169.253/", "link-local"),
        (EVERYTHING, "http://169.254.169.254/", "link-local"),
        (EVERYTHING, "http://8.8.8.8/", None),
    ],
)
def test_refusal_as_written(policy: EgressPolicy, url: str, refused_because: str | None) -> None:
    refusal = policy.refusal(url)
    if refused_because is None:
        assert refusal is None, str(refusal)
    else:
        assert refusal is not None, f"{url} should be refused"
        assert refused_because in str(refusal)
        assert str(refusal).startswith(f"{url} is refused: ")


@pytest.mark.parametrize(
    ("policy", "url", "addresses", "refused_because"),
    [
        (OPEN, "http://am.example:9093", ["93.184.216.34"], None),
        (
            OPEN,
            "http://rebind.example/",
            ["10.0.0.1", "169.254.169.254"],
            "to 169.254.169.254, which is a link-",
        ),
        (OPEN, "http://rebind.example/", ["::ffff:169.254.169.254"], "which is a link-local"),
        (OPEN, "http://v6.example/", ["fd00:ec2::254"], "AWS IPv6 metadata"),
        (NAMES, "http://prometheus.monitoring/", ["10.96.0.10"], None),
        (NAMES, "http://prometheus.monitoring/", ["169.254.169.254"], "link-local"),
        (CIDRS, "http://alertmanager:9093", ["10.96.0.10"], None),
        (
            CIDRS,
            "http://alertmanager:9093",
            ["10.96.0.10", "192.168.1.1"],
            "to 192.168.1.1, which is not",
        ),
        (CIDRS, "http://alertmanager:9093", ["fd00:1::7"], None),
        (CIDRS, "http://alertmanager:9093", ["not-an-ip"], "which is not an IP address"),
        (MIXED, "http://a.example.com/", ["192.168.1.1"], None),  # allowed by name
        (MIXED, "http://other.example.org/", ["192.168.1.1"], "not in the operator's egress allow-list"),
        (MIXED, "http://other.example.org/", ["10.0.0.9"], None),
    ],
)
def test_refusal_after_resolution(
    policy: EgressPolicy, url: str, addresses: list[str], refused_because: str | None
) -> None:
    refusal = policy.refusal(url, addresses)
    if refused_because is None:
        assert refusal is None, str(refusal)
    else:
        assert refusal is not None
        assert refused_because in str(refusal)


def test_a_refusal_is_an_invalid_problem_naming_the_field_and_url() -> None:
    problem = OPEN.check("http://169.254.169.254/x", "spec.notifications[0].webhook.url")
    assert problem is not None
    assert problem.reason == EGRESS_REFUSED
    assert problem.field == "spec.notifications[0].webhook.url"
    assert "http://169.254.169.254/x" in problem.render()
    assert "egress" in problem.fix
    assert OPEN.check("http://fine.example/", "f") is None


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        (["*"], "leave the allow-list empty"),
        (["*.bad_domain-"], "is not a valid"),
        (["10.0.0.0/33"], "neither a host name"),
        (["http://host"], "neither a host name"),
        (["host name"], "neither a host name"),
    ],
)
def test_bad_allow_entries_fail_at_start_up(entries: list[str], error: str) -> None:
    with pytest.raises(EgressPolicyError, match=error):
        EgressPolicy.parse(entries)


def test_parse_keeps_entries_and_skips_blanks() -> None:
    policy = EgressPolicy.parse([" Hooks.Slack.com. ", "", "10.1.0.0/16", "*.svc"])
    assert policy.entries == ("hooks.slack.com", "10.1.0.0/16", "*.svc")
    assert not policy.allows_any_host
    assert EgressPolicy.parse([]).allows_any_host


@pytest.mark.parametrize(
    ("src", "dst", "allowed"),
    [
        ("http://a/x", "/y", True),
        ("http://a/x", "y?z=1", True),
        ("http://a/x", "http://a/y", True),
        ("http://a/x", "http://a:80/y", True),
        ("https://a/x", "https://a:443/y", True),
        ("http://a/x", "http://a:8080/y", False),
        ("https://a/x", "http://a/y", False),
        ("http://a/x", "http://b/y", False),
        ("http://a/x", "//169.254.169.254/", False),
        ("http://a/x", "http://a:bad/", False),
    ],
)
def test_redirects_stay_on_the_same_origin(src: str, dst: str, allowed: bool) -> None:
    assert redirect_allowed(src, dst) is allowed


# ------------------------------------------------------------------------- settings and flags

WEBHOOK_DEFAULT = json.dumps(
    [
        {
            "name": "platform",
            "webhook": {"url": "http://hooks.example/", "secretRef": {"name": "s", "key": "k"}},
        }
    ]
)


def run_settings(*argv: str, env: dict[str, str] | None = None) -> OperatorSettings:
    return settings_from_args(_parser().parse_args(["run", *argv]), env or {})


def test_the_allow_list_from_flags_and_environment() -> None:
    s = run_settings("--egress-allow", "*.svc.cluster.local", "--egress-allow", "10.0.0.0/8,hooks.slack.com")
    assert s.egress_allow == ("*.svc.cluster.local", "10.0.0.0/8", "hooks.slack.com")
    assert s.egress_policy.refusal("https://hooks.slack.com/services/x") is None
    assert s.egress_policy.refusal("https://evil.example/", ["93.184.216.34"]) is not None
    s = run_settings(env={"JEFFREY_EGRESS_ALLOW": "a.example, b.example"})
    assert s.egress_allow == ("a.example", "b.example")
    assert run_settings().egress_policy.allows_any_host


def test_default_sinks_from_flags_and_environment() -> None:
    s = run_settings("--default-notifications", WEBHOOK_DEFAULT, env={"POD_NAMESPACE": "jeffrey-system"})
    assert [(d.name, d.kind) for d in s.default_notifications] == [("platform", "webhook")]
    assert s.operator_namespace == "jeffrey-system"
    s = run_settings(env={"JEFFREY_DEFAULT_NOTIFICATIONS": WEBHOOK_DEFAULT, "POD_NAMESPACE": "ops"})
    assert s.default_notifications[0].webhook is not None


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--egress-allow", "http://x"], {}, "neither a host name"),
        ([], {"JEFFREY_EGRESS_ALLOW": "*"}, "leave the allow-list empty"),
        (["--default-notifications", "{not json"], {}, "not a valid list of sinks"),
        (["--default-notifications", '[{"name": "x"}]'], {}, "exactly one of alertmanager, webhook, slack"),
        (["--default-notifications", WEBHOOK_DEFAULT], {}, "set POD_NAMESPACE"),
        (  # what Helm renders from a bare `on:` in values.yaml
            [
                "--default-notifications",
                '[{"name": "m", "true": ["RolledBack"], "alertmanager": {"url": "http://a"}}]',
            ],
            {},
            'write "on": quoted in YAML',
        ),
        (
            [
                "--default-notifications",
                '[{"name": "m", "alertmanager": {"url": "http://169.254.169.254/"}}]',
            ],
            {},
            "default notification m: http://169.254.169.254/ is refused",
        ),
        (
            [
                "--egress-allow",
                "*.svc",
                "--default-notifications",
                '[{"name": "m", "alertmanager": {"url": "http://am.other/"}}]',
            ],
            {},
            "not in the operator's egress allow-list",
        ),
    ],
)
def test_bad_egress_and_default_sink_settings_are_one_clear_line(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        run_settings(*argv, env=env)


def test_bad_egress_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--egress-allow", "not a host"])
    assert exc.value.code == 2
    assert "egress allow entry 'not a host'" in capsys.readouterr().err
