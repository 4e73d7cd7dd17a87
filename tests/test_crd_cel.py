"""The CEL rules of the generated CRD, evaluated by a real CEL implementation (cel-python).

The API server refuses what these rules refuse; the operator's own validation refuses the same
objects when an older CRD let them in (``Invalid`` with a message naming the gate).
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from cel_fixtures import spec_schema, violations
from engine_world import World
from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.models import Phase

ROOT = pathlib.Path(__file__).resolve().parent.parent


def spec(**gate: Any) -> dict[str, Any]:
    return {
        "levels": [{"level": "CORE", "modules": [{"deployment": "memory"}]}],
        "gates": [{"name": "bus-rate", "query": "sum(rate(x[1m]))", **gate}],
    }


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_passes_every_rule(cel: Any, path: pathlib.Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "JeffreyIntegration":
            assert list(violations(cel, spec_schema(), doc["spec"])) == []


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ({"max": 1000}, []),
        ({"min": 5}, []),
        ({"min": 5, "max": 5}, []),
        ({"min": 0.5, "max": 1000}, []),
        ({}, ["gate bus-rate needs min, max or both (it could never breach)"]),
        ({"min": 10, "max": 1}, ["gate bus-rate: min 10"]),
    ],
)
def test_gate_bounds_rules(cel: Any, gate: dict[str, Any], expected: list[str]) -> None:
    found = list(violations(cel, spec_schema(), spec(**gate)))
    assert len(found) == len(expected), found
    for message, prefix in zip(found, expected, strict=True):
        assert message.startswith(prefix)
        assert "bus-rate" in message


def test_duplicate_levels_and_gate_names_are_refused(cel: Any) -> None:
    raw = spec(max=1)
    raw["levels"].append(copy.deepcopy(raw["levels"][0]))
    raw["gates"].append(copy.deepcopy(raw["gates"][0]))
    assert sorted(violations(cel, spec_schema(), raw)) == [
        "each level may appear at most once in spec.levels",
        "gate names must be unique",
    ]


@pytest.mark.parametrize(
    ("gate", "words"),
    [({}, "has neither min nor max"), ({"min": 10, "max": 1}, "min 10 > max 1")],
)
def test_the_operator_refuses_what_an_older_crd_let_in(gate: dict[str, Any], words: str) -> None:
    w = World.of(spec(**gate))
    d = w.step()
    assert d.status.phase == Phase.INVALID and d.actions == ()
    assert d.status.reason == c.INVALID_GATE_BOUNDS
    assert "spec.gates[0]" in d.status.message and "'bus-rate'" in d.status.message
    assert words in d.status.message
