"""``jeffrey-operator``: run the operator, print the CRD, or start the local playground."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pydantic import SecretStr

from jeffrey_operator import __version__
from jeffrey_operator.runtime.settings import (
    OperatorSettings,
    SettingsError,
    env_defaults,
    parse_notifications,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jeffrey-operator",
        description="Progressive, health-gated integration of Jeffrey OS modules on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"jeffrey-operator {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the operator",
        description="Run the operator. Credentials come from KUBECONFIG (or ~/.kube/config) like kubectl, "
        "or from the in-cluster service account. Every flag has an environment variable.",
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeatable; env JEFFREY_NAMESPACES=a,b)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no --namespace is given)",
    )
    run.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="serve the liveness probe at :PORT/healthz; 0 disables (default 8080, env JEFFREY_HEALTH_PORT)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at :PORT/metrics; 0 disables (default 9090, env JEFFREY_METRICS_PORT)",
    )
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text for people, json for log pipelines (default text, env JEFFREY_LOG_FORMAT)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    ha = run.add_mutually_exclusive_group()
    ha.add_argument(
        "--peering",
        metavar="NAME",
        help="high availability: the coordination.k8s.io/v1 Lease the replicas elect a leader "
        "with; with several replicas exactly one acts (env JEFFREY_PEERING)",
    )
    ha.add_argument(
        "--standalone",
        action="store_true",
        help="no leader election: only for a single replica (the default without --peering)",
    )
    run.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="namespace of the Lease (default env JEFFREY_LEASE_NAMESPACE or POD_NAMESPACE, else the "
        "first --namespace, else default)",
    )
    run.add_argument(
        "--lease-duration",
        type=float,
        metavar="SECONDS",
        help="a standby takes the Lease after seeing it unchanged this long (default 8)",
    )
    run.add_argument(
        "--renew-deadline",
        type=float,
        metavar="SECONDS",
        help="the leader stops acting when it could not renew for this long (default 6)",
    )
    run.add_argument(
        "--retry-period",
        type=float,
        metavar="SECONDS",
        help="seconds between two attempts to acquire or renew the Lease (default 2)",
    )
    run.add_argument(
        "--liveness-grace",
        type=float,
        metavar="SECONDS",
        help="/healthz fails after this long without reaching the Kubernetes API "
        "(default 60, env JEFFREY_LIVENESS_GRACE)",
    )
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="integrations reconciled at the same time (default 8)",
    )
    run.add_argument(
        "--redis-url",
        metavar="URL",
        help="redis:// or rediss:// URL of the state store; the password comes from env "
        "JEFFREY_REDIS_PASSWORD (filled from a Secret), never from the command line "
        "(env JEFFREY_REDIS_URL; empty disables the store)",
    )
    run.add_argument(
        "--redis-key-prefix",
        metavar="PREFIX",
        help="prefix of every Redis key (default jeffrey, env JEFFREY_REDIS_KEY_PREFIX)",
    )
    run.add_argument(
        "--history-length",
        type=int,
        metavar="N",
        help="trim the Redis history stream to about N entries (default 1000)",
    )

    run.add_argument(
        "--egress-allow",
        action="append",
        metavar="HOST|CIDR",
        help="a host (name or *.domain) or CIDR the operator may send requests to for an integration "
        "(Prometheus, checks, notification sinks); repeatable; none: any host. Link-local and cloud "
        "metadata addresses are refused unless listed (env JEFFREY_EGRESS_ALLOW=a,b)",
    )
    run.add_argument(
        "--default-notifications",
        metavar="JSON",
        help="notification sinks every integration gets, a JSON list shaped like spec.notifications; "
        "their Secrets are read in POD_NAMESPACE (env JEFFREY_DEFAULT_NOTIFICATIONS)",
    )

    sub.add_parser("crd", help="print the JeffreyIntegration CRD (generated from the models)")
    play = sub.add_parser(
        "playground",
        help="the whole system on this machine: emulated Kubernetes API, module simulators, real "
        "Prometheus and Redis when installed, and the operator itself",
    )
    play.add_argument(
        "--non-interactive",
        action="store_true",
        help="no live display; exit 0 when the climb and the rollback happened as expected",
    )
    play.add_argument("--speed", type=float, default=1.0, help="shorten every window by this factor")
    play.add_argument(
        "--keep",
        action="store_true",
        help="keep the whole system running until Ctrl-C (make playground); prints what to paste first",
    )
    return parser


def settings_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> OperatorSettings:
    values = env_defaults(env)
    if args.namespaces:
        values["namespaces"] = tuple(args.namespaces)
    if args.all_namespaces:
        values["namespaces"] = ()
    values["all_namespaces"] = not values.get("namespaces")
    for flag in (
        "health_port",
        "metrics_port",
        "log_format",
        "redis_url",
        "redis_key_prefix",
        "history_length",
        "lease_namespace",
        "lease_duration",
        "renew_deadline",
        "retry_period",
        "liveness_grace",
        "workers",
    ):
        value = getattr(args, flag)
        if value is not None:
            values[flag] = value
    if args.egress_allow:
        values["egress_allow"] = tuple(
            h.strip() for arg in args.egress_allow for h in arg.split(",") if h.strip()
        )
    if args.default_notifications is not None:
        values["default_notifications"] = parse_notifications(args.default_notifications)
    if args.verbose:
        values["verbose"] = True
    if args.peering:
        values["peering"] = args.peering
        values["standalone"] = False
    if args.standalone:
        values["peering"] = None
        values["standalone"] = True
    if "lease_namespace" not in values and values.get("namespaces"):
        values["lease_namespace"] = values["namespaces"][0]  # type: ignore[index]
    if isinstance(values.get("redis_password"), str):
        values["redis_password"] = SecretStr(str(values["redis_password"]))
    return OperatorSettings(**values)  # type: ignore[arg-type]


def _configure_logging(settings: OperatorSettings) -> None:
    from jeffrey_operator.runtime import logs

    logs.configure(settings.log_format, verbose=settings.verbose)


def _run(settings: OperatorSettings) -> int:
    from jeffrey_operator.runtime.app import build_context, run_operator, serve_metrics, tune_gc

    _configure_logging(settings)
    ctx = build_context(settings)
    serve_metrics(settings, ctx)
    tune_gc()
    try:
        asyncio.run(run_operator(settings, ctx))
    except KeyboardInterrupt:
        return 130
    return 0


PLAYGROUND_MISSING = (
    "jeffrey-operator: the playground is not installed; from a checkout of the repository run "
    "`make demo` (or: pip install -e tools/emulator -e tools/playground)\n"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "crd":
        from jeffrey_operator.core.crdgen import render

        sys.stdout.write(render())
        return 0
    if args.command == "playground":
        # The playground is test tooling in its own distribution (tools/playground): the operator's
        # wheel and image do not carry it, so it is imported only when asked for.
        try:
            from jeffrey_playground.main import main as playground_main
        except ModuleNotFoundError:
            parser.exit(2, PLAYGROUND_MISSING)
        return playground_main(non_interactive=args.non_interactive, speed=args.speed, keep=args.keep)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        parser.exit(2, f"jeffrey-operator: {exc}\n")
    return _run(settings)


if __name__ == "__main__":
    raise SystemExit(main())
