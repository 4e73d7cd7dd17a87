"""The operator's distribution carries the operator only: no test tooling (issue 9).

The emulator (``tools/emulator``) and the playground (``tools/playground``) are distributions of
their own; the wheel that the image installs must not contain them, nor depend on kmock.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jeffrey_operator.runtime import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=out,
    )
    (built,) = out.glob("jeffrey_operator-*.whl")
    return built


def test_wheel_holds_the_operator_and_no_test_tooling(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"jeffrey_operator"}
    for layer in ("core", "adapters", "runtime", "ctl", "sim", "sdk"):
        assert f"jeffrey_operator/{layer}/__init__.py" in names
    assert not [n for n in names if "emulator" in n or "playground" in n]


def test_wheel_carries_the_dashboard_assets(wheel: Path) -> None:
    """``jeffreyctl dashboard`` serves its page from package data: no CDN, so it must be inside."""
    from jeffrey_operator.ctl.dashboard.server import ASSETS

    names = zipfile.ZipFile(wheel).namelist()
    assert ASSETS and [a for a in ASSETS if f"jeffrey_operator/ctl/dashboard/static/{a}" not in names] == []


def test_wheel_does_not_depend_on_test_tooling(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        (meta,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line for line in whl.read(meta).decode().splitlines() if line.startswith("Requires-Dist:")
        ]
    runtime = [r for r in requires if "extra ==" not in r]
    assert any("kopf" in r for r in runtime)
    assert not [r for r in runtime if "kmock" in r or "looptime" in r or "pytest" in r]


def test_playground_command_without_the_playground_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes `import jeffrey_playground.main` raise ModuleNotFoundError, as on
    # an image that carries only the operator.
    monkeypatch.setitem(sys.modules, "jeffrey_playground", None)
    monkeypatch.setitem(sys.modules, "jeffrey_playground.main", None)
    with pytest.raises(SystemExit) as exc:
        cli.main(["playground"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "playground is not installed" in err
    assert "make demo" in err
