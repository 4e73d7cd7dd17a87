"""The benchmark script runs (in a tiny configuration) and prints every target, so it cannot rot.

It asserts that numbers are printed, never what they are: performance targets are measured by
``make bench`` on a quiet machine (docs/benchmarks.md), not asserted by tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from operator_fixtures import ROOT


def test_bench_operator_runs_and_prints_every_target() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_operator.py"),
            "--integrations=2",
            "--baseline=1",
            "--unrelated=10",
            "--steady-seconds=0.5",
            "--overhead-runs=1",
            "--skip-prometheus",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for pattern in (
        r"overhead per level .*median [\d.]+ ms, worst [\d.]+ ms",
        r"2 integrations .* all Stable at PRODUCTION in [\d.]+ s",
        r"operator CPU [\d.]+ s = [\d.]+ ms per transition .* peak RSS \d+ MB",
        r"= \d+ for 36 transitions \([\d.]+ per transition",
        r"steady state, 2 Stable .*: 0 API writes, operator CPU [\d.]+ % of one core",
        r"10 unrelated Deployments .* RSS .* MB .*, CPU [\d.]+ ms per unrelated event",
        r"CPU per transition: median [\d.]+ ms at 1 \([\d.]+, [\d.]+\), [\d.]+ ms at 2 \([\d.]+\) = [\d.]+ x",
        r"each climb of 2 against the climbs of 1 just before and after it: [\d.]+ x, median [\d.]+ x",
        r"garbage collector \(\(10000, 10, 10\), \d+ objects frozen\): [\d.]+ s of that CPU",
    ):
        assert re.search(pattern, out), f"{pattern!r} not in:\n{out}"
