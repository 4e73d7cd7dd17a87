"""Every example in the operator's docstrings runs: an example that lies is worse than none."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import jeffrey_operator

MODULES = sorted(m.name for m in pkgutil.walk_packages(jeffrey_operator.__path__, prefix="jeffrey_operator."))


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_in_the_docstrings_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
