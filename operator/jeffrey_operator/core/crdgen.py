"""Generate the JeffreyIntegration CRD from the pydantic models (the single source of truth).

``python -m jeffrey_operator.core.crdgen > crds/jeffreyintegrations.jeffreyos.io.yaml`` (``make crds``).
A test fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from jeffrey_operator.core.models import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
)

CRD_FILENAME = f"{PLURAL}.{GROUP}.yaml"

_DROP = {"title", "$defs", "discriminator"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Inline ``$ref``s and turn a pydantic JSON schema into a Kubernetes structural schema."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        nullable = len(variants) < len(node["anyOf"])
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(variants) == 1:
            single: dict[str, Any] = _structural({**variants[0], **rest}, defs)
            if nullable:
                single["nullable"] = True
            return single
        raise ValueError(f"unsupported union in schema: {node}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "additionalProperties" and value is False:
            continue  # structural schemas forbid it beside properties; pruning drops unknowns
        if key == "additionalProperties" and value is True:
            # Pass-through Kubernetes types (a Job template): keep the fields we do not type.
            out["x-kubernetes-preserve-unknown-fields"] = True
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" in out:
        for name, prop in out["properties"].items():
            # Nested objects whose fields all have defaults get `default: {}` so that the API
            # server applies the inner defaults too.
            if prop.get("type") == "object" and "properties" in prop and name not in out.get("required", []):
                inner_required = prop.get("required", [])
                if not inner_required and "default" not in prop and not prop.get("nullable"):
                    prop["default"] = {}
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


def _schema_of(model: type[Any], mode: str) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode=mode)
    defs = raw.get("$defs", {})
    return dict(_structural(raw, defs))


def spec_schema() -> dict[str, Any]:
    schema = _schema_of(JeffreyIntegrationSpec, "validation")
    levels = schema["properties"]["levels"]
    levels["x-kubernetes-validations"] = [
        {
            "rule": "self.all(x, self.exists_one(y, y.level == x.level))",
            "message": "each level may appear at most once in spec.levels",
        }
    ]
    gates = schema["properties"]["gates"]
    gates["x-kubernetes-validations"] = [
        {"rule": "self.all(x, self.exists_one(y, y.name == x.name))", "message": "gate names must be unique"}
    ]
    gates["items"]["x-kubernetes-validations"] = GATE_RULES
    _check_rules(schema["properties"]["checks"])
    return schema


#: What the operator's validation (``gate_bound_problems``) also refuses, enforced by the API server
#: for new objects: a gate needs a bound it can cross, and a range it can be in.
GATE_RULES = [
    {
        "rule": "has(self.min) || has(self.max)",
        "message": "a gate needs min, max or both",
        "messageExpression": "'gate ' + self.name + ' needs min, max or both (it could never breach)'",
    },
    {
        "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
        "message": "a gate's min must not be greater than its max",
        "messageExpression": "'gate ' + self.name + ': min ' + string(self.min) + ' is greater than max '"
        " + string(self.max) + ' (it could never pass)'",
    },
]


def _check_rules(checks: dict[str, Any]) -> None:
    """CEL for what the pydantic validators of :class:`CheckSpec` say (one rule, two places: the
    API server refuses; an object that bypassed it becomes Invalid in the operator)."""
    checks["x-kubernetes-validations"] = [
        {"rule": "self.all(x, self.exists_one(y, y.name == x.name))", "message": "check names must be unique"}
    ]
    item = checks["items"]
    item["x-kubernetes-validations"] = [
        {"rule": "has(self.job) != has(self.http)", "message": "set exactly one of job or http"}
    ]
    http = item["properties"]["http"]
    http["x-kubernetes-validations"] = [
        {
            "rule": "has(self.jsonPath) == has(self.equals)",
            "message": "jsonPath and equals go together: set both or neither",
        }
    ]
    http["properties"]["expectStatus"]["items"].update({"minimum": 100, "maximum": 599})
    header = http["properties"]["headers"]["items"]
    header["x-kubernetes-validations"] = [
        {"rule": "has(self.value) != has(self.valueFrom)", "message": "set exactly one of value or valueFrom"}
    ]


def status_schema() -> dict[str, Any]:
    schema = _schema_of(JeffreyIntegrationStatus, "serialization")
    conds = schema["properties"]["conditions"]
    conds["x-kubernetes-list-type"] = "map"
    conds["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "jeffrey-operator",
                "app.kubernetes.io/part-of": "jeffrey-os",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["jeffrey"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Target", "type": "string", "jsonPath": ".spec.targetLevel"},
                        {"name": "Current", "type": "string", "jsonPath": ".status.currentLevel"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Progressive, health-gated integration of Jeffrey OS modules.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Write repeated values in full: anchors and aliases confuse kubectl users and diff tools."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    header = "# Generated from operator/jeffrey_operator/models.py by `make crds`. Do not edit.\n"
    body = yaml.dump(crd(), Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=120)
    return header + body


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
