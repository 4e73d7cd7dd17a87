"""The ``jeffreyctl`` command line (also installed as ``kubectl-jeffrey``: ``kubectl jeffrey ...``).

    jeffreyctl status [NAME] [-A] [-w] [-o text|json|yaml]
    jeffreyctl history NAME [--redis-url URL] [--limit N] [-o ...]
    jeffreyctl plan NAME [-o ...]
    jeffreyctl retry|pause|resume NAME
    jeffreyctl dashboard [--address 127.0.0.1] [--port 3100] [--read-only] [-A]

Every command takes ``-n/--namespace``, ``--context`` and ``--kubeconfig`` like kubectl. Errors
are one line on stderr and exit code 1; usage errors exit 2; Ctrl-C exits 130 (0 for --watch).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml

from jeffrey_operator import __version__
from jeffrey_operator.core.models import PLURAL, JeffreyIntegrationSpec
from jeffrey_operator.ctl.client import Cluster, CtlError, connect
from jeffrey_operator.ctl.plan import claims_of, make_plan, parse_status
from jeffrey_operator.ctl.render import HistoryRow, render_history, render_plan, render_table, render_view
from jeffrey_operator.ctl.view import StatusView, build_view

__all__ = ["main"]

Output = str  # "text" | "json" | "yaml"

#: Set to 1 to get the traceback of an unexpected error (bugs only: expected failures never have one).
DEBUG_ENV = "JEFFREYCTL_DEBUG"


def _prog(argv0: str | None = None) -> str:
    name = os.path.basename(argv0 or sys.argv[0] or "jeffreyctl")
    return "kubectl jeffrey" if name.startswith("kubectl-") else "jeffreyctl"


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-n", "--namespace", default=default, help="the namespace (default: the current context's namespace)"
    )
    parser.add_argument("--context", default=default, help="the kubeconfig context to use (default: current)")
    parser.add_argument(
        "--kubeconfig",
        default=default,
        help="path of the kubeconfig (default: $KUBECONFIG or ~/.kube/config)",
    )


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=["text", "json", "yaml"],
        default="text",
        help="text for people (default); json or yaml for scripts (see docs/jeffreyctl.md)",
    )


def build_parser(prog: str = "jeffreyctl") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="See and steer JeffreyIntegrations: the ladder, its history, the operator's next "
        "step, and retry/pause/resume. Uses your kubeconfig and namespace like kubectl.",
    )
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    status = sub.add_parser(
        "status",
        help="the ladder of one integration, or a table of all of them",
        description="Without NAME: a table of the integrations of the namespace (-A: of every "
        "namespace). With NAME: the ladder level by level, the modules' ready/desired counts, what is "
        "being waited for and how long is left, each gate against its threshold, the last rollback.",
    )
    status.add_argument("name", nargs="?", metavar="NAME")
    _common(status, suppress=True)
    status.add_argument("-A", "--all-namespaces", action="store_true", help="list every namespace")
    status.add_argument("-w", "--watch", action="store_true", help="refresh until Ctrl-C")
    status.add_argument(
        "--interval", type=float, default=1.5, metavar="SECONDS", help="--watch refresh period (1.5)"
    )
    status.add_argument("--all-gates", action="store_true", help="also list gates that are inactive now")
    _output(status)

    history = sub.add_parser(
        "history",
        help="the transitions, newest first, with reasons",
        description="From the Redis history when a Redis URL is configured (--redis-url or "
        "JEFFREY_REDIS_URL; password from JEFFREY_REDIS_PASSWORD), otherwise from status.transitions "
        "(the last 50).",
    )
    history.add_argument("name", metavar="NAME")
    _common(history, suppress=True)
    history.add_argument("--redis-url", help="redis:// URL of the state store (env JEFFREY_REDIS_URL)")
    history.add_argument(
        "--redis-key-prefix", help="prefix of the Redis keys (default jeffrey, env JEFFREY_REDIS_KEY_PREFIX)"
    )
    history.add_argument("--limit", type=int, default=200, metavar="N", help="at most N entries (200)")
    _output(history)

    plan = sub.add_parser(
        "plan",
        help="what the operator would do next and why (a dry run)",
        description="Runs the operator's own decision code on the object and its Deployments as they "
        "are now, and prints the next phase, the scalings, the events and when the operator would look "
        "again. Changes nothing. Gates: the last results in status (plan does not query Prometheus).",
    )
    plan.add_argument("name", metavar="NAME")
    _common(plan, suppress=True)
    _output(plan)

    for verb, text in (
        ("retry", "climb again after a rollback (sets the jeffreyos.io/retry annotation)"),
        ("pause", "freeze the integration (spec.paused: true)"),
        ("resume", "unfreeze the integration (spec.paused: false)"),
    ):
        p = sub.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("name", metavar="NAME")
        _common(p, suppress=True)

    dashboard = sub.add_parser(
        "dashboard",
        help="a live web dashboard of the ladders (in your browser, with your kubeconfig)",
        description="Serves a web page on 127.0.0.1 showing every integration in scope, live through "
        "one watch of the API: the ladder, modules, gates with sparklines from Prometheus, the "
        "transitions, the last rollback; pause/resume/retry behind a confirmation (not with "
        "--read-only). See docs/dashboard.md.",
    )
    _common(dashboard, suppress=True)
    dashboard.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    dashboard.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    dashboard.add_argument(
        "--port", type=int, default=3100, help="port to listen on (3100; 0: any free port)"
    )
    dashboard.add_argument(
        "--read-only", action="store_true", help="no pause/resume/retry buttons; refuse writes"
    )
    dashboard.add_argument(
        "--prometheus-url",
        help="where the sparklines come from instead of each integration's spec.analysis.prometheus.url "
        "(e.g. http://127.0.0.1:9090 with kubectl port-forward)",
    )
    dashboard.add_argument(
        "--redis-url", help="redis:// URL of the state store for the whole history (env JEFFREY_REDIS_URL)"
    )
    dashboard.add_argument(
        "--redis-key-prefix", help="prefix of the Redis keys (default jeffrey, env JEFFREY_REDIS_KEY_PREFIX)"
    )
    return parser


class Session:
    """The parsed arguments and a lazily connected cluster."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self._cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = connect(
                getattr(self.args, "kubeconfig", None), getattr(self.args, "context", None)
            )
        return self._cluster

    @property
    def namespace(self) -> str:
        explicit: str | None = getattr(self.args, "namespace", None)
        return explicit or self.cluster.namespace

    def warn(self, text: str) -> None:
        self.err.write(text.rstrip("\n") + "\n")

    def emit(self, data: Any, text: str) -> None:
        fmt = getattr(self.args, "output", "text")
        if fmt == "json":
            self.out.write(json.dumps(data, indent=2) + "\n")
        elif fmt == "yaml":
            self.out.write(yaml.safe_dump(data, sort_keys=False))
        else:
            self.out.write(text)
        self.out.flush()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def view_of(body: dict[str, Any], now: datetime.datetime) -> StatusView:
    """The view of a JeffreyIntegration as read from the API."""
    from jeffrey_operator.core.validation import parse_spec

    meta = body.get("metadata") or {}
    parsed = parse_spec(body.get("spec") or {})
    spec: JeffreyIntegrationSpec | None = None if isinstance(parsed, list) else parsed
    return build_view(
        spec,
        parse_status(body.get("status")),
        now,
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        generation=int(meta.get("generation") or 0) or None,
        created=str(meta.get("creationTimestamp", "")),
    )


# ---------------------------------------------------------------------------------------- status


def _status_once(s: Session) -> tuple[Any, str]:
    now = _now()
    args = s.args
    if args.name:
        view = view_of(s.cluster.get(s.namespace, args.name), now)
        return view.to_dict(), render_view(view, now, all_gates=args.all_gates)
    namespace = None if args.all_namespaces else s.namespace
    views = [view_of(body, now) for body in s.cluster.list(namespace)]
    text = render_table(views, now, namespaces=args.all_namespaces)
    if not views:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        text = f"No JeffreyIntegrations found in {where}.\n"
    return {"items": [v.to_dict() for v in views]}, text


def cmd_status(s: Session, *, sleep: Callable[[float], None] = time.sleep, rounds: int | None = None) -> int:
    args = s.args
    if args.name and args.all_namespaces:
        raise CtlError("a NAME and --all-namespaces exclude each other")
    if not args.watch:
        data, text = _status_once(s)
        s.emit(data, text)
        return 0
    tty = s.out.isatty()
    interval = max(0.2, float(args.interval))
    previous = None
    count = 0
    try:
        while rounds is None or count < rounds:
            try:
                data, text = _status_once(s)
                error = None
            except CtlError as exc:
                if count == 0:
                    raise
                data, text, error = None, "", str(exc)
            count += 1
            stamp = _now().astimezone().strftime("%H:%M:%S")
            if args.output != "text":
                if data is not None and data != previous:
                    s.emit(data, "")
                previous = data
            elif tty:
                header = f"Every {interval:g}s: {s.args.prog_line}   {stamp}   (Ctrl-C to stop)\n\n"
                body = text if error is None else f"{s.args.prog}: {error} (retrying)\n"
                s.out.write("\x1b[H\x1b[2J" + header + body)
                s.out.flush()
            else:
                shown = text if error is None else f"{s.args.prog}: {error} (retrying)\n"
                if shown != previous:
                    s.out.write(f"--- {stamp}\n{shown}")
                    s.out.flush()
                previous = shown
            if rounds is None or count < rounds:
                sleep(interval)
    except KeyboardInterrupt:
        if tty:
            s.out.write("\n")
    return 0


# --------------------------------------------------------------------------------------- history


def cmd_history(s: Session) -> int:
    from jeffrey_operator.adapters.redis.connection import redact_url
    from jeffrey_operator.core.ports import StateStoreUnavailable
    from jeffrey_operator.ctl.history import redis_history, rows_from_status

    args = s.args
    url = args.redis_url or os.environ.get("JEFFREY_REDIS_URL", "")
    prefix = args.redis_key_prefix or os.environ.get("JEFFREY_REDIS_KEY_PREFIX", "") or "jeffrey"
    rows: list[HistoryRow] = []
    source = ""
    namespace = s.namespace
    if url:
        try:
            rows = redis_history(
                url,
                os.environ.get("JEFFREY_REDIS_PASSWORD") or None,
                key_prefix=prefix,
                namespace=namespace,
                name=args.name,
                count=args.limit,
            )
        except (StateStoreUnavailable, ValueError, OSError) as exc:
            s.warn(f"warning: the Redis history is unavailable ({exc}); showing status.transitions instead")
        else:
            if rows:
                source = f"Redis history at {redact_url(url)}"
            else:
                s.warn(
                    f"warning: the Redis history of {namespace}/{args.name} is empty; "
                    "showing status.transitions instead"
                )
    if not rows:
        body = s.cluster.get(namespace, args.name)
        rows = rows_from_status(body.get("status"))[: args.limit]
        source = "status.transitions (the last 50; --redis-url or JEFFREY_REDIS_URL for the whole history)"
    data = {
        "name": args.name,
        "namespace": namespace,
        "source": source,
        "transitions": [r.to_dict() for r in rows],
    }
    s.emit(data, render_history(rows, _now(), source=source))
    return 0


# ------------------------------------------------------------------------------------------ plan


def cmd_plan(s: Session) -> int:
    namespace = s.namespace
    body = s.cluster.get(namespace, s.args.name)
    deployments = s.cluster.deployments(namespace)
    others = s.cluster.list(namespace)
    job_checks = [
        c for c in (body.get("spec") or {}).get("checks") or [] if isinstance(c, dict) and "job" in c
    ]
    jobs = s.cluster.check_jobs(namespace, s.args.name) if job_checks else []
    plan = make_plan(body, deployments, _now(), claims=claims_of(body, others), jobs=jobs)
    s.emit(plan.to_dict(), render_plan(plan))
    return 0


# ----------------------------------------------------------------------------------------- steer


def cmd_steer(s: Session, action: str) -> int:
    from jeffrey_operator.ctl.steer import argocd_tracking, argocd_warning, steer

    namespace = s.namespace
    name = s.args.name
    body = s.cluster.get(namespace, name)
    tracking = argocd_tracking(body)
    assert action in ("retry", "pause", "resume")
    plan = steer(action, body, _now())  # type: ignore[arg-type]
    if tracking is not None and plan.patch is not None:
        s.warn(argocd_warning(tracking, action, namespace, name))  # type: ignore[arg-type]
    what = f"{PLURAL}.jeffreyos.io/{name} (namespace {namespace})"
    if plan.patch is None:
        s.out.write(f"{what} unchanged: {plan.note}\n")
        return 0
    s.cluster.patch(namespace, name, plan.patch)
    lines = [f"{what} patched"] + [f"  {c.render()}" for c in plan.changes]
    if plan.note:
        lines.append(plan.note)
    s.out.write("\n".join(lines) + "\n")
    return 0


# ------------------------------------------------------------------------------------- dashboard


def cmd_dashboard(s: Session) -> int:
    # The server (aiohttp web) loads only for this command: the others start faster without it.
    from jeffrey_operator.ctl.dashboard.server import DashboardOptions, serve

    args = s.args
    if args.all_namespaces and getattr(args, "namespace", None):
        raise CtlError("-n/--namespace and --all-namespaces exclude each other")
    if not 0 <= args.port <= 65535:
        raise CtlError(f"--port {args.port}: not a TCP port")
    options = DashboardOptions(
        address=args.address,
        port=args.port,
        read_only=args.read_only,
        namespace=None if args.all_namespaces else s.namespace,
        prometheus_url=args.prometheus_url or None,
        redis_url=args.redis_url or os.environ.get("JEFFREY_REDIS_URL") or None,
        redis_password=os.environ.get("JEFFREY_REDIS_PASSWORD") or None,
        redis_key_prefix=args.redis_key_prefix or os.environ.get("JEFFREY_REDIS_KEY_PREFIX") or "jeffrey",
    )
    return serve(options, s.cluster, s.out, s.err)


# ------------------------------------------------------------------------------------------ main


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    prog = _prog()
    parser = build_parser(prog)
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(out)
        return 2
    args.prog = prog
    args.prog_line = " ".join([prog, *arguments])
    session = Session(args, out, err)
    try:
        if args.command == "status":
            return cmd_status(session)
        if args.command == "history":
            return cmd_history(session)
        if args.command == "plan":
            return cmd_plan(session)
        if args.command == "dashboard":
            return cmd_dashboard(session)
        return cmd_steer(session, args.command)
    except CtlError as exc:
        err.write(f"{prog}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        err.write("\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        err.write(
            f"{prog}: unexpected error: {type(exc).__name__}: {first} (set {DEBUG_ENV}=1 for details)\n"
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
