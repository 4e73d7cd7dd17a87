"""One way to turn the views' frozen dataclasses into JSON-ready dicts (``-o json|yaml``). Pure.

:func:`plain` lists a dataclass's fields in their order, under their own names (or camelCase),
and makes each value JSON-ready: an Enum becomes its ``.value``; a nested dataclass its own
``to_dict()`` when it has one (else :func:`plain`); tuples and lists lists; dicts are copied; None
stays None. A ``to_dict`` then says only how it differs from its fields.

>>> import enum
>>> from dataclasses import dataclass
>>> class Colour(enum.Enum):
...     RED = "red"
>>> @dataclass(frozen=True)
... class Paint:
...     colour_name: Colour
...     coats: tuple[int, ...]
...     note: str | None = None
>>> plain(Paint(Colour.RED, (1, 2)))
{'colour_name': 'red', 'coats': [1, 2], 'note': None}
>>> plain(Paint(Colour.RED, ()), camel=True, omit=("note",))
{'colourName': 'red', 'coats': []}
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection
from typing import Any

__all__ = ["plain"]


def plain(obj: object, *, camel: bool = False, omit: Collection[str] = ()) -> dict[str, Any]:
    """The fields of the dataclass instance ``obj`` (minus ``omit``) as a JSON-ready dict;
    ``camel``: keys in camelCase (``phase_since`` → ``phaseSince``)."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"plain() takes a dataclass instance, not {type(obj).__name__}")
    return {
        (_camel(f.name) if camel else f.name): _json(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if f.name not in omit
    }


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def _json(value: object) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if callable(to_dict) else plain(value)
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value
