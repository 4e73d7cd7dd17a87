"""Argo CD health check and resource actions for JeffreyIntegration, run for real with lupa.

The scripts run in a sandbox shaped like Argo CD's (``util/lua/lua.go``): gopher-lua is Lua 5.1,
with only the base and table libraries and a "safe" ``os`` holding ``time`` and ``date``; the
string library is not loaded, so ``("x"):find`` fails there. We run every script under Lua 5.1
(gopher-lua's dialect) and Lua 5.4, with string methods switched off.

``examples/argocd/argocd-cm.yaml`` inlines the same Lua; ``test_argocd_cm_inlines_the_files``
fails when it drifts. Regenerate it with ``python tests/test_argocd_lua.py --write``.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ARGOCD = ROOT / "examples" / "argocd"
HEALTH = ARGOCD / "health.lua"
DISCOVERY = ARGOCD / "actions" / "discovery.lua"
ACTIONS = ("retry", "pause", "resume")
CM = ARGOCD / "argocd-cm.yaml"
GROUP_KIND = "jeffreyos.io_JeffreyIntegration"

TRANSITIONAL = ("Pending", "Promoting", "Validating", "CoolingDown", "Demoting", "RollingBack")
ISO_SECOND = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def action_path(name: str) -> Path:
    return ARGOCD / "actions" / name / "action.lua"


# ------------------------------------------------------------------------------------ the sandbox


class ArgoLua:
    """One Lua runtime with Argo CD's sandbox: run a script against ``obj``, get Python back."""

    def __init__(self, version: str) -> None:
        pytest.importorskip("lupa")
        module = importlib.import_module(f"lupa.{version}")
        self.version = version
        self.lua = module.LuaRuntime(unpack_returned_tuples=True)
        self.lua_type = module.lua_type
        # No string library in Argo CD: method calls on strings must fail here too.
        self.lua.execute('getmetatable("").__index = {}')
        self._run = self.lua.eval(
            """
            function(script, name, obj, fake_date, fake_time)
              local safe_os = {time = os.time, date = os.date}
              if fake_date ~= nil then safe_os.date = function() return fake_date end end
              if fake_time ~= nil then safe_os.time = function() return fake_time end end
              local env = {
                obj = obj,
                assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
                pcall = pcall, select = select, tonumber = tonumber, tostring = tostring,
                type = type, rawget = rawget, rawset = rawset, rawequal = rawequal,
                setmetatable = setmetatable, getmetatable = getmetatable,
                table = {insert = table.insert, remove = table.remove, concat = table.concat,
                         sort = table.sort},
                os = safe_os,
              }
              local chunk, err
              if setfenv ~= nil then
                chunk, err = loadstring(script, name)
                if chunk ~= nil then setfenv(chunk, env) end
              else
                chunk, err = load(script, name, "t", env)
              end
              if chunk == nil then error(err) end
              return chunk()
            end
            """
        )

    def to_lua(self, value: Any) -> Any:
        if isinstance(value, dict):
            table = self.lua.table()
            for key, item in value.items():
                if item is not None:
                    table[key] = self.to_lua(item)
            return table
        if isinstance(value, list):
            table = self.lua.table()
            for i, item in enumerate(value, start=1):
                table[i] = self.to_lua(item)
            return table
        return value

    def to_py(self, value: Any) -> Any:
        if self.lua_type(value) != "table":
            return value
        items = dict(value.items())
        if (
            items
            and all(isinstance(k, int) for k in items)
            and sorted(items) == list(range(1, len(items) + 1))
        ):
            return [self.to_py(items[i]) for i in range(1, len(items) + 1)]
        return {k: self.to_py(v) for k, v in items.items()}

    def run(self, path: Path, obj: dict[str, Any], *, date: str | None = None, now: int | None = None) -> Any:
        result = self._run(path.read_text(), "@" + path.name, self.to_lua(obj), date, now)
        return self.to_py(result)


@pytest.fixture(scope="module", params=["lua51", "lua54"])
def argo(request: pytest.FixtureRequest) -> ArgoLua:
    return ArgoLua(request.param)


def test_the_sandbox_is_as_strict_as_argo_cd(argo: ArgoLua, tmp_path: Path) -> None:
    """Guard the guard: string methods, the string library and io are unavailable."""
    for snippet in ('return ("x"):upper()', "return string.upper('x')", "return io.open('/etc/passwd')"):
        script = tmp_path / "probe.lua"
        script.write_text(snippet)
        with pytest.raises(Exception, match="attempt to"):
            argo.run(script, {})


def integration(
    phase: str | None = "Stable",
    *,
    generation: int = 3,
    observed: int | None = 3,
    current: str | None = "PRODUCTION",
    target: str = "PRODUCTION",
    paused: bool | None = None,
    reason: str = "",
    message: str = "",
    **status: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "jeffreyos.io/v1alpha1",
        "kind": "JeffreyIntegration",
        "metadata": {"name": "jeffrey", "namespace": "jeffrey", "generation": generation},
        "spec": {"targetLevel": target, "levels": [{"level": "CORE", "modules": [{"deployment": "memory"}]}]},
    }
    if paused is not None:
        obj["spec"]["paused"] = paused
    if phase is not None:
        obj["status"] = {
            "phase": phase,
            "observedGeneration": observed,
            "currentLevel": current,
            "targetLevel": target,
            "reason": reason,
            "message": message,
            **status,
        }
    return obj


# ------------------------------------------------------------------------------------ health.lua


def health(argo: ArgoLua, obj: dict[str, Any]) -> tuple[str, str]:
    result = argo.run(HEALTH, obj)
    assert set(result) == {"status", "message"}
    return result["status"], result["message"]


@pytest.mark.parametrize("phase", TRANSITIONAL)
def test_transitional_phases_are_progressing(argo: ArgoLua, phase: str) -> None:
    obj = integration(
        phase, current="COGNITIVE", reason="GatesPassing", message="waiting 20s more", activeLevel="EMOTIONAL"
    )
    status, message = health(argo, obj)
    assert status == "Progressing"
    assert message == (
        f"{phase} (current COGNITIVE, target PRODUCTION, working on EMOTIONAL): "
        "GatesPassing: waiting 20s more"
    )


def test_pending_without_a_level_yet(argo: ArgoLua) -> None:
    status, message = health(argo, integration("Pending", current=None))
    assert status == "Progressing"
    assert message == "Pending (current none, target PRODUCTION)"


def test_stable_at_target_is_healthy(argo: ArgoLua) -> None:
    obj = integration("Stable", reason="TargetReached", message="all 12 modules ready")
    assert health(argo, obj) == ("Healthy", "Stable at PRODUCTION: TargetReached: all 12 modules ready")


def test_stable_at_a_lower_custom_target_is_healthy(argo: ArgoLua) -> None:
    obj = integration("Stable", current="LOOPS", target="LOOPS")
    assert health(argo, obj) == ("Healthy", "Stable at LOOPS")


def test_stable_below_target_is_still_progressing(argo: ArgoLua) -> None:
    obj = integration(
        "Stable", current="CONSCIOUS", reason="Holding", message="gate promotion-cpu has no data"
    )
    status, message = health(argo, obj)
    assert status == "Progressing"
    assert message == "Stable at CONSCIOUS, target PRODUCTION: Holding: gate promotion-cpu has no data"


def test_rolled_back_is_degraded_with_the_reason(argo: ArgoLua) -> None:
    obj = integration(
        "RolledBack",
        current="CORE",
        reason="GateBreach",
        message="rollback-bus-rate: 4210 > 1000",
        lastRollback={"time": "2025-01-01T00:00:00Z", "fromLevel": "LOOPS", "reason": "GateBreach"},
    )
    assert health(argo, obj) == (
        "Degraded",
        "Rolled back to CORE from LOOPS: GateBreach: rollback-bus-rate: 4210 > 1000",
    )


def test_checks_in_flight_are_named_while_progressing(argo: ArgoLua) -> None:
    checks = [
        {"name": "core-smoke", "level": "CORE", "result": "Pass"},
        {"name": "loops-ready", "level": "LOOPS", "result": "Inconclusive"},
        {"name": "later", "level": "PRODUCTION", "result": "Pending"},
    ]
    obj = integration(
        "Validating",
        current="CONSCIOUS",
        reason="WaitingForChecks",
        message="holding LOOPS: waiting for validation checks (loops-ready)",
        activeLevel="LOOPS",
        checks=checks,
    )
    assert health(argo, obj) == (
        "Progressing",
        "Validating (current CONSCIOUS, target PRODUCTION, working on LOOPS): WaitingForChecks: "
        "holding LOOPS: waiting for validation checks (loops-ready); checks: loops-ready Inconclusive",
    )


def test_a_rollback_by_a_check_names_it(argo: ArgoLua) -> None:
    obj = integration(
        "RolledBack",
        current="CORE",
        reason="RolledBack",
        message="rolled back to CORE: check core-smoke failed: Job jeffrey-core-smoke-1 failed",
        lastRollback={"fromLevel": "COGNITIVE", "reason": "CheckFailed", "check": "core-smoke"},
        checks=[{"name": "core-smoke", "level": "CORE", "result": "Fail"}],
    )
    assert health(argo, obj) == (
        "Degraded",
        "Rolled back to CORE from COGNITIVE (check core-smoke): RolledBack: "
        "rolled back to CORE: check core-smoke failed: Job jeffrey-core-smoke-1 failed",
    )


def test_stable_with_a_held_failed_check_is_degraded(argo: ArgoLua) -> None:
    obj = integration(
        "Stable",
        reason="CheckFailed",
        message="holding: check prod-e2e failed: HTTP 503, expected 2xx",
        checks=[{"name": "prod-e2e", "level": "PRODUCTION", "result": "Fail"}],
    )
    assert health(argo, obj) == (
        "Degraded",
        "Stable at PRODUCTION, check failed: prod-e2e: CheckFailed: "
        "holding: check prod-e2e failed: HTTP 503, expected 2xx",
    )


def test_rolled_back_without_a_record(argo: ArgoLua) -> None:
    assert health(argo, integration("RolledBack", current="CORE")) == ("Degraded", "Rolled back to CORE")


def test_invalid_is_degraded(argo: ArgoLua) -> None:
    obj = integration("Invalid", current=None, reason="InvalidSpec", message="level CORE listed twice")
    assert health(argo, obj) == ("Degraded", "Invalid spec: InvalidSpec: level CORE listed twice")


def test_paused_phase_is_suspended(argo: ArgoLua) -> None:
    obj = integration(
        "Paused", current="EMOTIONAL", paused=True, reason="Paused", message="spec.paused is true"
    )
    assert health(argo, obj) == ("Suspended", "Paused at EMOTIONAL: Paused: spec.paused is true")


def test_spec_paused_is_suspended_even_before_the_phase_says_so(argo: ArgoLua) -> None:
    obj = integration("Promoting", current="COGNITIVE", paused=True)
    assert health(argo, obj) == ("Suspended", "Paused at COGNITIVE")


@pytest.mark.parametrize("phase", ["Stable", "RolledBack", "Paused", "Invalid", "Promoting"])
def test_unobserved_generation_is_progressing_whatever_the_phase(argo: ArgoLua, phase: str) -> None:
    obj = integration(phase, generation=5, observed=4)
    assert health(argo, obj) == (
        "Progressing",
        "Waiting for the operator to observe generation 5 (observed 4)",
    )


def test_never_observed(argo: ArgoLua) -> None:
    obj = integration("Pending", generation=1, observed=None)
    assert health(argo, obj) == (
        "Progressing",
        "Waiting for the operator to observe generation 1 (observed none)",
    )


def test_no_status_yet(argo: ArgoLua) -> None:
    obj = integration(None)
    assert health(argo, obj) == ("Progressing", "Waiting for the operator to pick up the integration")


def test_unknown_phase(argo: ArgoLua) -> None:
    assert health(argo, integration("Exploded")) == ("Unknown", "Unknown phase Exploded")


def test_every_phase_of_the_model_is_handled(argo: ArgoLua) -> None:
    """A phase added to the models without a health rule would show as Unknown in Argo CD."""
    models = pytest.importorskip("jeffrey_operator.core.models")
    for phase in models.Phase:
        status, _ = health(argo, integration(phase.value))
        assert status != "Unknown", phase


# ---------------------------------------------------------------------------------- the actions


def discovery(argo: ArgoLua, obj: dict[str, Any]) -> dict[str, bool]:
    actions = argo.run(DISCOVERY, obj)
    assert set(actions) == set(ACTIONS)
    for spec in actions.values():
        assert spec["iconClass"].startswith("fa ")
        assert spec["displayName"]
    return {name: spec["disabled"] for name, spec in actions.items()}


@pytest.mark.parametrize(
    ("phase", "paused", "disabled"),
    [
        ("Stable", None, {"retry": True, "pause": False, "resume": True}),
        ("Promoting", False, {"retry": True, "pause": False, "resume": True}),
        ("RolledBack", None, {"retry": False, "pause": False, "resume": True}),
        ("Invalid", None, {"retry": False, "pause": False, "resume": True}),
        ("Paused", True, {"retry": True, "pause": True, "resume": False}),
        ("RolledBack", True, {"retry": True, "pause": True, "resume": False}),
        (None, None, {"retry": True, "pause": False, "resume": True}),
    ],
)
def test_discovery_enables_what_makes_sense(
    argo: ArgoLua, phase: str | None, paused: bool | None, disabled: dict[str, bool]
) -> None:
    assert discovery(argo, integration(phase, paused=paused)) == disabled


def test_retry_sets_a_new_annotation_and_keeps_the_others(argo: ArgoLua) -> None:
    obj = integration("RolledBack", current="CORE")
    obj["metadata"]["annotations"] = {"team": "jeffrey"}
    out = argo.run(action_path("retry"), obj)
    annotations = out["metadata"]["annotations"]
    assert annotations["team"] == "jeffrey"
    assert ISO_SECOND.match(annotations["jeffreyos.io/retry"])
    assert out["spec"] == argo.to_py(argo.to_lua(obj["spec"]))
    assert out["status"]["phase"] == "RolledBack"


def test_retry_without_annotations(argo: ArgoLua) -> None:
    out = argo.run(action_path("retry"), integration("RolledBack"), date="2025-06-01T12:00:00Z")
    assert out["metadata"]["annotations"] == {"jeffreyos.io/retry": "2025-06-01T12:00:00Z"}


def test_retry_twice_in_one_second_still_changes_the_value(argo: ArgoLua) -> None:
    obj = integration("RolledBack")
    obj["metadata"]["annotations"] = {"jeffreyos.io/retry": "2025-06-01T12:00:00Z"}
    out = argo.run(action_path("retry"), obj, date="2025-06-01T12:00:00Z", now=1748779200)
    assert out["metadata"]["annotations"]["jeffreyos.io/retry"] == "2025-06-01T12:00:00Z-1748779200"


def test_pause_and_resume_set_spec_paused(argo: ArgoLua) -> None:
    paused = argo.run(action_path("pause"), integration("Promoting"))
    assert paused["spec"]["paused"] is True
    assert paused["spec"]["targetLevel"] == "PRODUCTION"
    resumed = argo.run(action_path("resume"), integration("Paused", paused=True))
    assert resumed["spec"]["paused"] is False
    assert resumed["spec"]["levels"][0]["modules"][0]["deployment"] == "memory"


def test_scripts_avoid_what_argo_cd_does_not_load() -> None:
    """No string/math/io library, no method calls on strings, nothing beyond Lua 5.1."""
    for path in (HEALTH, DISCOVERY, *(action_path(a) for a in ACTIONS)):
        code = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
        for forbidden in ("string.", "math.", "io.", "require", "goto", "//", "os.getenv", "os.execute"):
            assert forbidden not in code, f"{path.name} uses {forbidden}"
        assert not re.search(r"\w:\w+\(", code), f"{path.name} calls a method"


# ---------------------------------------------------------------------------------- argocd-cm.yaml


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def render_argocd_cm() -> str:
    """examples/argocd/argocd-cm.yaml, with the Lua files inlined."""
    actions = "discovery.lua: |\n" + _indent(DISCOVERY.read_text(), 2) + "definitions:\n"
    for name in ACTIONS:
        actions += f"  - name: {name}\n    action.lua: |\n" + _indent(action_path(name).read_text(), 6)
    return (
        "# The argocd-cm entries for JeffreyIntegration: health check and resource actions.\n"
        "# Merge them into your argocd-cm ConfigMap (namespace argocd), e.g.\n"
        "#   kubectl -n argocd patch configmap argocd-cm --patch-file examples/argocd/argocd-cm.yaml\n"
        "# The Lua is inlined from examples/argocd/health.lua and examples/argocd/actions/; do not edit\n"
        "# it here: edit the files and run `python tests/test_argocd_lua.py --write`.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  namespace: argocd\n"
        "  labels:\n"
        "    app.kubernetes.io/name: argocd-cm\n"
        "    app.kubernetes.io/part-of: argocd\n"
        "data:\n"
        f"  resource.customizations.health.{GROUP_KIND}: |\n"
        + _indent(HEALTH.read_text(), 4)
        + f"  resource.customizations.actions.{GROUP_KIND}: |\n"
        + _indent(actions, 4)
    )


def test_argocd_cm_inlines_the_files() -> None:
    text = CM.read_text()
    assert text == render_argocd_cm(), (
        "argocd-cm.yaml is stale: run `python tests/test_argocd_lua.py --write`"
    )
    cm = yaml.safe_load(text)
    data = cm["data"]
    assert data[f"resource.customizations.health.{GROUP_KIND}"] == HEALTH.read_text()
    actions = yaml.safe_load(data[f"resource.customizations.actions.{GROUP_KIND}"])
    assert actions["discovery.lua"] == DISCOVERY.read_text()
    assert [d["name"] for d in actions["definitions"]] == list(ACTIONS)
    for definition in actions["definitions"]:
        assert definition["action.lua"] == action_path(definition["name"]).read_text()


def test_inlined_health_check_runs_like_the_file(argo: ArgoLua, tmp_path: Path) -> None:
    cm = yaml.safe_load(CM.read_text())
    inlined = tmp_path / "health.lua"
    inlined.write_text(cm["data"][f"resource.customizations.health.{GROUP_KIND}"])
    obj = integration("RolledBack", current="CORE", reason="GateBreach")
    assert argo.run(inlined, obj) == argo.run(HEALTH, obj)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        CM.write_text(render_argocd_cm())
        print(f"wrote {CM.relative_to(ROOT)}")
    else:
        sys.exit("usage: python tests/test_argocd_lua.py --write")
