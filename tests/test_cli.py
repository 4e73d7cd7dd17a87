"""``jeffrey-operator`` flags and typed settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jeffrey_operator.core.durations import DurationError, format_duration, parse_duration
from jeffrey_operator.runtime.cli import _parser, main, settings_from_args
from jeffrey_operator.runtime.settings import OperatorSettings, SettingsError


def settings(*argv: str, env: dict[str, str] | None = None) -> OperatorSettings:
    return settings_from_args(_parser().parse_args(["run", *argv]), env or {})


def test_run_help_explains_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jeffrey_operator.runtime.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--namespace",
        "--all-namespaces",
        "--health-port",
        "--metrics-port",
        "--log-format",
        "--peering",
        "--standalone",
        "--redis-url",
        "KUBECONFIG",
    ):
        assert flag in out


def test_defaults_watch_all_namespaces_standalone() -> None:
    s = settings()
    assert s.all_namespaces and s.namespaces == ()
    assert (s.health_port, s.metrics_port, s.log_format, s.standalone) == (8080, 9090, "text", True)


def test_repeatable_namespaces_and_env() -> None:
    s = settings("-n", "a", "--namespace", "b")
    assert s.namespaces == ("a", "b") and not s.all_namespaces
    s = settings(env={"JEFFREY_NAMESPACES": "x, y", "JEFFREY_LOG_FORMAT": "json"})
    assert s.namespaces == ("x", "y") and s.log_format == "json"
    # flags win over the environment
    assert settings("-A", env={"JEFFREY_NAMESPACES": "x"}).all_namespaces


def test_peering_and_redis_password_from_env_is_secret() -> None:
    s = settings(
        "--peering",
        "jeffrey",
        env={"JEFFREY_REDIS_URL": "redis://r:6379/0", "JEFFREY_REDIS_PASSWORD": "hunter2"},
    )
    assert s.peering == "jeffrey" and not s.standalone
    assert s.redis_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--health-port", "70000"], {}, "health-port"),
        (["--redis-url", "http://nope"], {}, "redis://"),
        ([], {"JEFFREY_METRICS_PORT": "lots"}, "JEFFREY_METRICS_PORT"),
    ],
)
def test_bad_settings_are_one_clear_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings(*argv, env=env)


def test_bad_flag_exits_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--health-port", "99999"])
    assert exc.value.code == 2
    assert "health-port must be 0..65535" in capsys.readouterr().err


def test_crd_command_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert "kind: CustomResourceDefinition" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("2m", 120), ("1h30m", 5400), ("1.5s", 1.5), ("0", 0), ("0s", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5", "2 min", "1d", "-1s", "s"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(DurationError, match="Go notation"):
        parse_duration(bad)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (0.25, "250ms"), (90, "1m30s"), (3600, "1h")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_wakeup_handlers_do_not_flood_the_log() -> None:
    import logging

    from jeffrey_operator.runtime.handlers import QuietWakeups

    def record(level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)

    quiet = QuietWakeups()
    # kopf runs one handler, for every JeffreyIntegration event: its success line is dropped …
    assert not quiet.filter(record(logging.INFO, "Handler 'integration_event' succeeded."))
    # … its failures, and every other line, are kept.
    assert quiet.filter(record(logging.INFO, "Daemon 'integration' succeeded."))
    assert quiet.filter(record(logging.INFO, "Handler 'other' succeeded."))
    assert quiet.filter(record(logging.ERROR, "Handler 'integration_event' succeeded."))


def test_kopf_runs_event_handlers_only_so_no_diff_base_is_needed() -> None:
    """NoDiffBase is right only while kopf has no handler that reads a diff (on.create, on.update,
    on.field, daemons, timers): a new one of those must bring the diff-base back."""
    import kopf

    from jeffrey_operator.runtime import handlers

    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    assert [h.id for h in registry._watching.get_all_handlers()] == ["integration_event"]
    assert not registry._changing.get_all_handlers()  # on.create/update/delete/field/resume
    assert not registry._spawning.get_all_handlers()  # daemons, timers
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    storage = settings.persistence.diffbase_storage
    body = kopf.Body(
        {"metadata": {"name": "x"}, "spec": {"targetLevel": "CORE"}, "status": {"phase": "Stable"}}
    )
    assert storage.build(body=body) == {} and storage.fetch(body=body) is None
