"""``python -m jeffrey_emulator`` (``jeffrey-emulator``): the emulated API alone, until Ctrl-C.

For trying a manifest or a kubectl command without the whole playground::

    python -m jeffrey_emulator --crds crds --namespace jeffrey
    export KUBECONFIG=/tmp/jeffrey-emulator-.../kubeconfig     # printed first
    kubectl apply -f examples/jeffrey-full-ladder.yaml         # validated, defaulted, stored

Nothing reconciles what you create (no operator runs); Deployments become ready through the
simulated controller. It is not a cluster: see docs/emulator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .server import Emulator, load_crds


async def serve(crds: Sequence[Path], namespaces: Sequence[str], port: int, kubeconfig: Path | None) -> None:
    workdir = None if kubeconfig is not None else Path(tempfile.mkdtemp(prefix="jeffrey-emulator-"))
    path = kubeconfig or (workdir or Path(".")) / "kubeconfig"
    definitions = [crd for source in crds for crd in load_crds(source)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Emulator(crds=definitions, namespaces=("default", *namespaces), port=port) as emu:
            emu.write_kubeconfig(path, namespace=namespaces[0] if namespaces else "default")
            print(f"export KUBECONFIG={path}", flush=True)
            print(f"# the emulated Kubernetes API at {emu.url} (not a cluster; Ctrl-C stops it)", flush=True)
            await stop.wait()
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jeffrey-emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--crds", type=Path, action="append", default=[], help="a CRD file or directory")
    parser.add_argument("--namespace", action="append", default=[], help="a namespace to create")
    parser.add_argument("--port", type=int, default=0, help="the port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="where to write the kubeconfig")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.crds, args.namespace, args.port, args.kubeconfig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
