"""Table responses (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``), as ``kubectl get``
asks for them: the server decides the columns, kubectl only prints them.

* custom resources: the CRD version's ``additionalPrinterColumns`` (JSONPath evaluated, typed as
  the API server types cells: ``date`` as an age, ``integer``/``number``/``boolean`` as JSON values),
  ``Name`` first; a CRD without columns gets ``Age``, as the API server defaults it;
* built-ins: the columns of the API server's printers for the kinds in :data:`BUILTIN_COLUMNS`
  (Deployments, Events, Namespaces, ConfigMaps, Secrets, Leases, Jobs; more can be registered with
  :func:`register_columns`); any other kind gets the API server's default (``Name``, ``Created At``).

Every cell is computed (``priority: 1`` columns too: kubectl shows them with ``-o wide``). Rows carry
the object as ``PartialObjectMetadata`` (``includeObject=Metadata``, the default), as the whole
object (``Object``) or not at all (``None``). Watches send the column definitions with their first
event only, like the API server.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .resources import ResourceType

__all__ = [
    "BUILTIN_COLUMNS",
    "Column",
    "columns_for",
    "human_duration",
    "jsonpath",
    "register_columns",
    "table",
    "wants_table",
]

Cell = Callable[[Mapping[str, Any], datetime.datetime], Any]

_NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_CREATED_DOC = "CreationTimestamp is a timestamp representing the server time when this object was created."


@dataclass(frozen=True)
class Column:
    """One column: its definition (as in ``columnDefinitions``) and how to compute its cell."""

    name: str
    cell: Cell
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


# ------------------------------------------------------------------------------------ Accept


def wants_table(accept: str | None) -> bool:
    """Whether the client's first acceptable media type is a ``meta.k8s.io`` Table."""
    for media in (accept or "").split(","):
        parts = [p.strip() for p in media.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if parts[0] not in ("application/json", "*/*"):
            continue
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v") in ("v1", "v1beta1")
        return False
    return False


# ------------------------------------------------------------------------------------ values


def parse_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """apimachinery's ``duration.HumanDuration``: ``42s``, ``5m3s``, ``3h10m``, ``2d4h``, ``3y12d``.

    >>> [human_duration(s) for s in (5, 119, 303, 3600 * 3 + 600, 86400 * 2 + 3600 * 4)]
    ['5s', '119s', '5m3s', '3h10m', '2d4h']
    """
    total = int(seconds)
    if total < -1:
        return "<invalid>"
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = total // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(text: Any, now: datetime.datetime) -> str:
    """``translateTimestampSince``: the age of a timestamp, ``<unknown>`` when there is none."""
    stamp = parse_time(text)
    if stamp is None:
        return "<unknown>"
    return human_duration((now - stamp).total_seconds())


def go_format(value: Any) -> str:
    """A value as Go's ``%v`` prints decoded JSON (what JSONPath printing shows for non-strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_format(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    return "" if value is None else str(value)


# ---------------------------------------------------------------------------------- JSONPath

_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_$-]+)            # .field
      | \[(?P<index>-?\d+|\*)\]                 # [0], [*]
      | \[['"](?P<quoted>[^'"]+)['"]\]          # ['field.with.dots']
      | \[\?\(@\.(?P<fpath>[A-Za-z0-9_.$-]+)\s*(?P<op>==|!=)\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+)\s*\)\]
      | \.\*                                    # .* (every value)
    """,
    re.VERBOSE,
)


def _compile(expression: str) -> list[re.Match[str]]:
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    tokens: list[re.Match[str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise bad_request(f"unrecognized JSONPath {expression!r} at {text[position:]!r}")
        tokens.append(match)
        position = match.end()
    return tokens


def _literal(text: str) -> Any:
    if text[:1] in ("'", '"'):
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def jsonpath(obj: Any, expression: str) -> list[Any]:
    """The values a Kubernetes JSONPath (the subset printer columns use) selects.

    >>> jsonpath({"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    ...          '.status.conditions[?(@.type=="Ready")].status')
    ['True']
    """
    nodes: list[Any] = [obj]
    for token in _compile(expression):
        found: list[Any] = []
        for node in nodes:
            if token.group("field") is not None or token.group("quoted") is not None:
                key = token.group("field") or token.group("quoted")
                if isinstance(node, Mapping) and key in node:
                    found.append(node[key])
            elif token.group("index") is not None:
                if not isinstance(node, list):
                    continue
                if token.group("index") == "*":
                    found.extend(node)
                else:
                    index = int(token.group("index"))
                    if -len(node) <= index < len(node):
                        found.append(node[index])
            elif token.group("fpath") is not None:
                if not isinstance(node, list):
                    continue
                wanted = _literal(token.group("fval"))
                for item in node:
                    value = jsonpath(item, "." + token.group("fpath"))
                    equal = bool(value) and value[0] == wanted
                    if equal == (token.group("op") == "=="):
                        found.append(item)
            elif isinstance(node, Mapping):
                found.extend(node.values())
        nodes = found
    return nodes


# ------------------------------------------------------------------------------------ columns


def _name(obj: Mapping[str, Any], _now: datetime.datetime) -> Any:
    return (obj.get("metadata") or {}).get("name", "")


def _age(obj: Mapping[str, Any], now: datetime.datetime) -> Any:
    return age((obj.get("metadata") or {}).get("creationTimestamp"), now)


NAME = Column("Name", _name, format="name", description=_NAME_DOC)
AGE = Column("Age", _age, description=_CREATED_DOC)
DEFAULT_COLUMNS = (
    NAME,
    Column(
        "Created At",
        lambda obj, _now: (obj.get("metadata") or {}).get("creationTimestamp"),
        type="date",
        description=_CREATED_DOC,
    ),
)


def _path(obj: Mapping[str, Any], *keys: str) -> Any:
    node: Any = obj
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _containers(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    containers = _path(obj, "spec", "template", "spec", "containers")
    return [c for c in containers if isinstance(c, Mapping)] if isinstance(containers, list) else []


def _selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: ``app=web,tier in (a,b)``; ``<none>`` when empty."""
    if not isinstance(selector, Mapping):
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _event_times(obj: Mapping[str, Any], now: datetime.datetime) -> tuple[str, str, int]:
    first_raw = obj.get("firstTimestamp") or obj.get("eventTime")
    first = age(first_raw, now)
    last = age(obj.get("lastTimestamp"), now) if obj.get("lastTimestamp") else first
    count = _int(obj.get("count")) or 1
    series = obj.get("series")
    if isinstance(series, Mapping):
        last = age(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    return first, last, count


def _event_object(obj: Mapping[str, Any]) -> str:
    involved = obj.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    return f"{kind}/{involved['name']}" if involved.get("name") else kind


def _event_source(obj: Mapping[str, Any]) -> str:
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingComponent") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else str(component)


_DEPLOYMENT = (
    NAME,
    Column(
        "Ready",
        lambda o, _n: f"{_int(_path(o, 'status', 'readyReplicas'))}/{_int(_path(o, 'spec', 'replicas'))}",
        description="Number of the pod with ready state",
    ),
    Column(
        "Up-to-date",
        lambda o, _n: _int(_path(o, "status", "updatedReplicas")),
        description="Total number of non-terminated pods targeted by this deployment that have the "
        "desired template spec.",
    ),
    Column(
        "Available",
        lambda o, _n: _int(_path(o, "status", "availableReplicas")),
        description="Total number of available pods (ready for at least minReadySeconds) targeted by "
        "this deployment.",
    ),
    AGE,
    Column(
        "Containers",
        lambda o, _n: ",".join(str(c.get("name", "")) for c in _containers(o)),
        priority=1,
        description="Names of each container in the template.",
    ),
    Column(
        "Images",
        lambda o, _n: ",".join(str(c.get("image", "")) for c in _containers(o)),
        priority=1,
        description="Images referenced by each container in the template.",
    ),
    Column(
        "Selector",
        lambda o, _n: _selector(_path(o, "spec", "selector")),
        priority=1,
        description="Label selector for pods. Existing ReplicaSets whose pods are selected by this will "
        "be the ones affected by this deployment.",
    ),
)
_EVENT = (
    Column(
        "Last Seen",
        lambda o, n: _event_times(o, n)[1],
        description="The time at which the most recent occurrence of this event was recorded.",
    ),
    Column("Type", lambda o, _n: o.get("type", ""), description="Type of this event (Normal, Warning)"),
    Column(
        "Reason",
        lambda o, _n: o.get("reason", ""),
        description="This should be a short, machine "
        "understandable string that gives the reason for the transition into the object's current status.",
    ),
    Column("Object", lambda o, _n: _event_object(o), description="The object that this event is about."),
    Column(
        "Subobject",
        lambda o, _n: (o.get("involvedObject") or {}).get("fieldPath", ""),
        priority=1,
        description="If referring to a piece of an object instead of an entire object.",
    ),
    Column(
        "Source",
        lambda o, _n: _event_source(o),
        priority=1,
        description="The component reporting this event.",
    ),
    Column(
        "Message",
        lambda o, _n: str(o.get("message") or "").strip(),
        description="A human-readable description of the status of this operation.",
    ),
    Column(
        "First Seen",
        lambda o, n: _event_times(o, n)[0],
        priority=1,
        description="The time at which the event was first recorded.",
    ),
    Column(
        "Count",
        lambda o, n: _event_times(o, n)[2],
        priority=1,
        description="The number of times this event has occurred.",
    ),
    Column("Name", _name, priority=1, format="name", description=_NAME_DOC),
)
_NAMESPACE = (
    NAME,
    Column(
        "Status", lambda o, _n: _path(o, "status", "phase") or "", description="The status of the namespace"
    ),
    AGE,
)
_CONFIGMAP = (
    NAME,
    Column(
        "Data",
        lambda o, _n: len(o.get("data") or {}) + len(o.get("binaryData") or {}),
        description="Data contains the configuration data.",
    ),
    AGE,
)
_SECRET = (
    NAME,
    Column(
        "Type",
        lambda o, _n: o.get("type", ""),
        description="Used to facilitate programmatic handling of secret data.",
    ),
    Column("Data", lambda o, _n: len(o.get("data") or {}), description="Data contains the secret data."),
    AGE,
)
_LEASE = (
    NAME,
    Column(
        "Holder",
        lambda o, _n: _path(o, "spec", "holderIdentity") or "",
        description="holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
)


def _job_status(obj: Mapping[str, Any]) -> str:
    conditions = {
        c.get("type"): c.get("status")
        for c in _path(obj, "status", "conditions") or []
        if isinstance(c, Mapping)
    }
    for kind in ("Complete", "Failed"):
        if conditions.get(kind) == "True":
            return kind
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for kind in ("FailureTarget", "SuccessCriteriaMet"):
        if conditions.get(kind) == "True":
            return kind
    return "Suspended" if _path(obj, "spec", "suspend") is True else "Running"


def _job_completions(obj: Mapping[str, Any]) -> str:
    succeeded = _int(_path(obj, "status", "succeeded"))
    completions = _path(obj, "spec", "completions")
    if isinstance(completions, int):
        return f"{succeeded}/{completions}"
    parallelism = _path(obj, "spec", "parallelism")
    if isinstance(parallelism, int) and parallelism > 1:
        return f"{succeeded}/1 of {parallelism}"
    return f"{succeeded}/1"


def _job_duration(obj: Mapping[str, Any], now: datetime.datetime) -> str:
    start = parse_time(_path(obj, "status", "startTime"))
    if start is None:
        return ""
    end = parse_time(_path(obj, "status", "completionTime")) or now
    return human_duration((end - start).total_seconds())


_JOB = (
    NAME,
    Column("Status", lambda o, _n: _job_status(o), description="Status of the job."),
    Column(
        "Completions",
        lambda o, _n: _job_completions(o),
        description="The desired and successful completions.",
    ),
    Column("Duration", _job_duration, description="Time required to complete the job."),
    AGE,
    *_DEPLOYMENT[5:],  # Containers, Images, Selector (priority 1) from the pod template, alike
)

#: The columns of built-in kinds by ``(group, kind)``, as the API server's printers define them.
BUILTIN_COLUMNS: dict[tuple[str, str], tuple[Column, ...]] = {
    ("apps", "Deployment"): _DEPLOYMENT,
    ("", "Event"): _EVENT,
    ("", "Namespace"): _NAMESPACE,
    ("", "ConfigMap"): _CONFIGMAP,
    ("", "Secret"): _SECRET,
    ("coordination.k8s.io", "Lease"): _LEASE,
    ("batch", "Job"): _JOB,  # served once a Job resource is added (see resources.py)
}


def _as_core_event(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An ``events.k8s.io/v1`` Event in core ``v1`` words (the API server prints both alike)."""
    return {
        "metadata": obj.get("metadata") or {},
        "involvedObject": obj.get("regarding") or {},
        "reason": obj.get("reason", ""),
        "message": obj.get("note", ""),
        "type": obj.get("type", ""),
        "count": obj.get("deprecatedCount"),
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "eventTime": obj.get("eventTime"),
        "series": obj.get("series"),
        "source": obj.get("deprecatedSource") or {},
        "reportingComponent": obj.get("reportingController", ""),
        "reportingInstance": obj.get("reportingInstance", ""),
    }


def _on_core_event(cell: Cell) -> Cell:
    def converted(obj: Mapping[str, Any], now: datetime.datetime) -> Any:
        return cell(_as_core_event(obj), now)

    return converted


BUILTIN_COLUMNS[("events.k8s.io", "Event")] = tuple(
    Column(c.name, _on_core_event(c.cell), c.type, c.format, c.description, c.priority) for c in _EVENT
)


def register_columns(group: str, kind: str, columns: Sequence[Column]) -> None:
    """The columns of a built-in kind (e.g. a Job controller added to the emulator)."""
    BUILTIN_COLUMNS[(group, kind)] = tuple(columns)


def _crd_cell(expression: str, kind: str) -> Cell:
    def cell(obj: Mapping[str, Any], now: datetime.datetime) -> Any:
        results = jsonpath(obj, expression)
        if not results or results[0] is None:
            return None
        value = results[0]
        if kind == "string":
            return value if isinstance(value, str) else go_format(value)
        if kind == "integer":
            return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if kind == "number":
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if kind == "boolean":
            return value if isinstance(value, bool) else None
        if kind == "date":
            return age(value, now) if parse_time(value) is not None else "<invalid>"
        return None

    return cell


def columns_for(rt: ResourceType) -> tuple[Column, ...]:
    """The table columns of a resource type (see the module docstring)."""
    if rt.custom:
        printer = rt.printer_columns or (
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        )
        return (
            NAME,
            *(
                Column(
                    str(c.get("name", "")),
                    _crd_cell(str(c.get("jsonPath", "")), str(c.get("type", "string"))),
                    type=str(c.get("type", "string")),
                    format=str(c.get("format", "")),
                    description=str(
                        c.get("description")
                        or f"Custom resource definition column (in JSONPath format): {c.get('jsonPath')}"
                    ),
                    priority=int(c.get("priority", 0)),
                )
                for c in printer
            ),
        )
    return BUILTIN_COLUMNS.get((rt.group, rt.kind), DEFAULT_COLUMNS)


def _row_object(obj: Mapping[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(obj.get("metadata") or {}),
    }


def table(
    rt: ResourceType,
    objects: Iterable[Mapping[str, Any]],
    *,
    metadata: Mapping[str, Any],
    include_object: str | None = None,
    headers: bool = True,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects``."""
    include = include_object or "Metadata"
    if include not in ("None", "Metadata", "Object"):
        raise bad_request(f'includeObject: Unsupported value: "{include}"')
    now = now or datetime.datetime.now(datetime.UTC)
    columns = columns_for(rt)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [column.cell(obj, now) for column in columns]}
        embedded = _row_object(obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(metadata),
        "columnDefinitions": [c.definition() for c in columns] if headers else None,
        "rows": rows,
    }
